"""Each figure of the report once, with its caption: ``(figure, caption)`` pairs the notebook
shows with :func:`fanout.report.nbhelpers.show_figure`. Captions come from
``templates/captions.md.j2``, one macro per figure."""
from __future__ import annotations

from fanout.report import load as _load
from fanout.report import plots, plots_faults, plots_resources, plots_soak
from fanout.report.context import Report
from fanout.report.prose import macro


def caption(name: str, *args) -> str:
    return macro("captions.md.j2", name)(*args)


def scenario(run) -> list[tuple]:
    """Per scenario: expected vs received, the latency distribution, latency over the run."""
    return [(plots.expected_vs_received(run.findings), caption("expected_vs_received", run)),
            (plots.latency_ecdf(run.record, run.findings), caption("latency_ecdf", run)),
            (plots.latency_over_time(run.record, run.findings), caption("latency_over_time", run))]


def across(rep: Report) -> list[tuple]:
    runs = rep.scenarios
    if len(runs) < 2:
        return []
    return [(plots.scenario_comparison([r.findings for r in runs]), caption("scenario_comparison", runs)),
            (plots.latency_ecdf_by_scenario([r.record for r in runs]), caption("latency_by_scenario", runs))]


def faults(rep: Report) -> list[tuple]:
    """Delivery around each fault: the first run of each fault and transport (repeated runs are
    in the failover table, one number per run)."""
    runs = rep.first_of("fault")
    fig = plots_faults.plot_delivery_around_faults(runs)
    return [(fig, caption("fault_delivery", runs))] if fig is not None else []


def resources(rep: Report) -> list[tuple]:
    """CPU per configuration: the first run of each (repeated runs would repeat its bar)."""
    runs = [r for role in ("scenario", "capacity", "fault", "soak") for r in rep.first_of(role)]
    fig = plots_resources.plot_cpu([(r, rep.resources(r)) for r in runs if len(r.record.resources)])
    return [(fig, caption("resources", runs))] if fig is not None else []


def soak(rep: Report) -> list[tuple]:
    """Per soak run: its series over time, drawn from report.json's facts."""
    out = []
    for k in rep.facts["soak"]["runs"]:
        fig = plots_soak.plot_soak(k)
        if fig is not None:
            out.append((fig, caption("soak", k)))
    return out


def load_curve(bench: dict | None) -> list[tuple]:
    fig = _load.plot_curve(bench) if bench else None
    return [(fig, caption("load_curve", bench))] if fig is not None else []


def deployment(rep: Report) -> list[tuple]:
    """The recommendation's deployment diagram, drawn from ``rep.facts["recommendation"]``."""
    from fanout.report import plots_deploy

    R = rep.facts["recommendation"]
    return [(plots_deploy.plot_deployment(R), macro("_recommendation.md.j2", "deployment_caption")(R))]


__all__ = ["deployment", "scenario", "across", "faults", "resources", "soak", "load_curve", "caption"]
