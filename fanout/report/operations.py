"""Production readiness, deployment and monitoring, from the evidence of this report's runs:
a checklist where each item is ticked by a measured fact (or left open with the reason), the
Redis settings that matter as read from the server used, and alert thresholds derived from the
measured values. The wording is ``templates/operations.md.j2``."""
from __future__ import annotations

from fanout.report.context import Report
from fanout.report.readiness import checklist
from fanout.report.prose import render


def operations(rep: Report) -> str:
    """Production readiness and monitoring."""
    f = rep.facts
    return render("operations.md.j2", rep=rep, items=f["readiness"], s=f["settings"], th=f["monitoring"],
                  servers=len(f["scope"]["servers"]))


def deployment(rep: Report) -> str:
    """The appendix: every server setting that decides what happens under load, as each run's server
    reported it, with what to set (the recommendation's Redis settings are the short form)."""
    f = rep.facts
    return render("deployment.md.j2", rep=rep, s=f["settings"])


def limitations(rep: Report) -> str:
    """The seed's four known limitations, each with what these runs measured about it."""
    f = rep.facts
    return render("limitations.md.j2", rep=rep, F=f, g=f["groups"], order=f["ordering"]["total"],
                  mach=f["scope"]["machine"])


def methodology() -> str:
    from fanout.report.facts import DEFINITIONS

    return render("methodology.md.j2", defs=DEFINITIONS)


__all__ = ["checklist", "operations", "deployment", "limitations", "methodology"]
