"""The failover matrix: every fault scenario on every transport, run on its own throwaway server.

    runs = run_matrix(["redis-restart", "instance-crash"], ["pubsub", "streams"])
    details(runs)        # every number behind the report's failover table, one row per run

The scenarios are the files in ``scenarios/faults/`` (``<fault>-<transport>.yaml``), so the CLI
(``fanout run --scenario faults/<fault>-<transport>``), the notebooks and the tests run the
same thing. The table and the figure are :func:`fanout.report.tables.failover_table` and
:mod:`fanout.report.plots_faults`.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fanout.errors import ConfigError
from fanout.lab.scenario import SCENARIO_DIR, load_scenario
from fanout.report.params import DEFAULT_FAULT_TRANSPORTS, DEFAULT_FAULTS
from fanout.report.runs import ScenarioRun, run_planned

FAULTS = DEFAULT_FAULTS
TRANSPORTS = DEFAULT_FAULT_TRANSPORTS


def supported_transports(transports: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The transports the server a throwaway server runs here supports, and (one line each) why
    not the others: the same check a run makes before it starts (fanout.capabilities.require)."""
    from fanout.lab.servers.discovery import local_support

    return local_support(list(transports or TRANSPORTS))


def available() -> list[str]:
    """Fault names that have a scenario file for every transport."""
    return [f for f in FAULTS if all((SCENARIO_DIR / "faults" / f"{f}-{t}.yaml").exists() for t in TRANSPORTS)]


def plan_matrix(faults: Sequence[str], transports: Sequence[str], *, duration_scale: float | None = None,
                seed: int | None = None) -> list[tuple]:
    """``(scenario, "fault", source, changes)`` for every fault on every transport, each file
    checked before the first run. ``duration_scale`` stretches or shrinks each timeline (the
    faults move with it)."""
    out = []
    for fault in faults:
        for transport in transports:
            path = SCENARIO_DIR / "faults" / f"{fault}-{transport}.yaml"
            if not path.exists():
                raise ConfigError(f"failover: no scenario {path.name} for fault {fault!r} on {transport} "
                                  f"(faults: {', '.join(available())})")
            sc = load_scenario(path, seed=seed)
            changes = {}
            if duration_scale and duration_scale != 1:
                scaled = sc.replace(duration_s=sc.duration_s * duration_scale,
                                    faults=[{**f, "at_s": f["at_s"] * duration_scale,
                                             "duration_s": f["duration_s"] * duration_scale}
                                            for f in sc.to_dict()["faults"]])
                changes = {"duration_s": (sc.duration_s, scaled.duration_s)}
                sc = scaled
            out.append((sc, "fault", f"scenarios/faults/{path.name}", changes))
    return out


def run_matrix(faults: Sequence[str] | None = None, transports: Sequence[str] | None = None, *,
               duration_scale: float | None = None, save_to: str | None = "data/runs",
               progress: bool = True) -> list[ScenarioRun]:
    """Run each fault scenario on each transport (throwaway servers); return the runs."""
    planned = plan_matrix(list(faults or available()), list(transports or TRANSPORTS), duration_scale=duration_scale)
    return run_planned(planned, save_to=save_to, progress=progress)


def details(runs: Sequence[ScenarioRun]) -> pd.DataFrame:
    """One row per run with every number behind the failover table (plain values, for JSON)."""
    rows = []
    for r in runs:
        acc = r.findings.losses
        ft = acc.faults.iloc[0] if len(acc.faults) else None
        rec = ft["recovery_ms"] if ft is not None else None
        rows.append({"fault": r.fault, "transport": r.transport, "status": r.findings.status,
                     "expected": int(r.findings.overall["expected"]), "delivered": int(r.findings.overall["received"]),
                     "lost": int(acc.lost), "unexplained": int(acc.unexplained),
                     "not_published": int(acc.not_published),
                     "recovered": int(ft["recovered"]) if ft is not None else 0,
                     "recovery_ms": float(rec) if rec is not None and pd.notna(rec) else None,
                     "causes": ", ".join(f"{c}: {n}" for c, n in sorted(acc.by_cause.items())) or "none",
                     "run_id": r.record.run_id})
    return pd.DataFrame(rows)


__all__ = ["FAULTS", "TRANSPORTS", "supported_transports", "available", "plan_matrix", "run_matrix", "details"]
