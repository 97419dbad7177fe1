"""The failover matrix: every fault scenario on every transport, and what each one lost.

    results = run_matrix(["redis-restart", "instance-crash"], ["pubsub", "streams"], duration_scale=1.0)
    failover_table(results)          # rows: faults, columns: transports, cells: delivered / lost / recovered
    plot_delivery_around_faults(results)

The scenarios are the files in ``scenarios/faults/`` (``<fault>-<transport>.yaml``), so the CLI
(``fanout run --scenario faults/<fault>-<transport>``), the notebooks and the tests run the
same thing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from fanout.analysis import Findings, analyse
from fanout.lab.record import RunRecord
from fanout.lab.scenario import SCENARIO_DIR, Scenario, load_scenario
from fanout.lab.run import run_scenario

FAULTS = ("redis-restart", "redis-restart-aof", "instance-crash", "slow-consumer", "latency", "partition")
TRANSPORTS = ("pubsub", "streams")


@dataclass
class FaultRun:
    fault: str
    transport: str
    record: RunRecord
    findings: Findings
    scenario: Scenario | None = None

    @property
    def row(self) -> dict:
        """The numbers one cell of the table shows."""
        acc = self.findings.losses
        ft = acc.faults.iloc[0] if len(acc.faults) else None
        return {
            "fault": self.fault, "transport": self.transport, "status": self.findings.status,
            "expected": int(self.findings.overall["expected"]), "delivered": int(self.findings.overall["received"]),
            "lost": int(acc.lost), "unexplained": int(acc.unexplained), "not_published": int(acc.not_published),
            "recovered": int(ft["recovered"]) if ft is not None else 0,
            "recovery_ms": (float(ft["recovery_ms"]) if ft is not None and pd.notna(ft["recovery_ms"]) else None),
            "causes": ", ".join(f"{c}: {n}" for c, n in sorted(acc.by_cause.items())) or "none",
            "run_id": self.record.run_id,
        }


def supported_transports(transports: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The transports the server a throwaway server runs here supports, and (one line each) why
    not the others: the same check a run makes before it starts (fanout.capabilities.require)."""
    from fanout.lab.servers.discovery import local_support

    return local_support(list(transports or TRANSPORTS))


def available() -> list[str]:
    """Fault names that have a scenario file for every transport."""
    return [f for f in FAULTS if all((SCENARIO_DIR / "faults" / f"{f}-{t}.yaml").exists() for t in TRANSPORTS)]


def run_matrix(faults: list[str] | None = None, transports: list[str] | None = None, *,
               duration_scale: float | None = None, save_to: str | None = "data/runs",
               on_run: Callable[[FaultRun], None] | None = None) -> list[FaultRun]:
    """Run each fault scenario on each transport (throwaway servers); return the runs.

    ``duration_scale`` stretches or shrinks each scenario's timeline (the faults move with it).
    """
    out = []
    for fault in faults or available():
        for transport in transports or TRANSPORTS:
            sc = load_scenario(f"faults/{fault}-{transport}")
            if duration_scale and duration_scale != 1:
                sc = sc.replace(
                    duration_s=sc.duration_s * duration_scale,
                    faults=[{**f, "at_s": f["at_s"] * duration_scale, "duration_s": f["duration_s"] * duration_scale}
                            for f in sc.to_dict()["faults"]],
                )
            rec = run_scenario(sc, progress=False, save_to=save_to)
            run = FaultRun(fault, transport, rec, analyse(rec), sc)
            if on_run:
                on_run(run)
            out.append(run)
    return out


def failover_table(runs: list[FaultRun]) -> pd.DataFrame:
    """Rows are faults, columns are transports; each cell: delivered / lost / recovered and recovery time."""
    cells: dict[str, dict[str, str]] = {}
    for run in runs:
        r = run.row
        rec = "n/a" if r["recovery_ms"] is None else f"{r['recovery_ms']:.1f} ms"
        mark = "✓" if r["status"] == "PASS" else "✗"
        cells.setdefault(run.fault, {})[run.transport] = (
            f"{mark} {r['delivered']} delivered / {r['lost']} lost / {r['recovered']} recovered; "
            f"receiving again after {rec}"
        )
    table = pd.DataFrame.from_dict(cells, orient="index")
    table.index.name = "fault"
    return table


def failover_details(runs: list[FaultRun]) -> pd.DataFrame:
    """One row per run with every number behind the table (and the run id for provenance)."""
    return pd.DataFrame([r.row for r in runs])


def delivery_timeline(run: FaultRun, bin_ms: int = 100) -> pd.DataFrame:
    """Deliveries per receiver per time bin (seconds since t0), for plotting around the fault."""
    rec = run.record
    d = rec.deliveries.drop_duplicates(["id", "receiver"])
    t = ((d["t_received"] - rec.t0) // (bin_ms * 1_000_000)) * bin_ms / 1000
    out = d.assign(t_s=t).groupby(["receiver", "t_s"]).size().rename("deliveries").reset_index()
    out["per_s"] = out["deliveries"] * (1000 / bin_ms)
    return out


def plot_delivery_around_faults(runs: list[FaultRun], bin_ms: int = 100):
    """A grid of small plots: delivered events/s per receiver over time, the fault shaded."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    faults = list(dict.fromkeys(r.fault for r in runs))
    transports = list(dict.fromkeys(r.transport for r in runs))
    fig, axes = plt.subplots(len(faults), len(transports), figsize=(5.5 * len(transports), 2.6 * len(faults)),
                             squeeze=False, sharex=False)
    for run in runs:
        ax = axes[faults.index(run.fault)][transports.index(run.transport)]
        tl = delivery_timeline(run, bin_ms)
        if len(tl):
            sns.lineplot(data=tl, x="t_s", y="per_s", hue="receiver", ax=ax, linewidth=1, legend=False)
        for f in run.record.faults.itertuples(index=False):
            ax.axvspan((f.t_start - run.record.t0) / 1e9, (f.t_end - run.record.t0) / 1e9, color="tab:red", alpha=0.15)
        r = run.row
        ax.set_title(f"{run.fault} · {run.transport}: lost {r['lost']}, unexplained {r['unexplained']}", fontsize=9)
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("deliveries/s per instance")
    fig.suptitle("Delivery around each fault (shaded: the fault)", fontsize=11)
    fig.tight_layout()
    return fig


def progress_line(run: FaultRun) -> None:
    """One line per finished run on stderr (the report's progress)."""
    import sys

    acc = run.findings.losses
    print(f"failover {run.fault} · {run.transport}: {run.findings.status} (lost {acc.lost}, "
          f"unexplained {acc.unexplained})", file=sys.stderr, flush=True)


def as_scenario_run(run: FaultRun):
    """The report's per-scenario view of a fault run (fanout.tables.ScenarioRun)."""
    from fanout.report.tables import ScenarioRun

    return ScenarioRun(scenario=run.scenario, record=run.record, findings=run.findings,
                       source=f"scenarios/faults/{run.fault}-{run.transport}.yaml")


def matrix_markdown(runs: list[FaultRun], skipped: dict[str, str] | None = None) -> str:
    """The failover section's head: the fault x transport table and the numbers behind it."""
    from fanout.report.tables import md_table

    not_run = "".join(f"\n**{t} was not measured**: {why}\n" for t, why in (skipped or {}).items())
    if not runs:
        return "## Failover: what each transport loses under each fault\n" + (not_run or "\nNo fault was run.\n")

    details = failover_details(runs)
    shown = details.drop(columns=["run_id"]).rename(columns={"recovery_ms": "receiving again after (ms)"})
    shown["receiving again after (ms)"] = [("n/a" if v is None or v != v else f"{v:.1f}")
                                           for v in shown["receiving again after (ms)"]]
    return ("## Failover: what each transport loses under each fault\n\n"
            "Rows are faults, columns are transports; each cell: events delivered / lost / recovered (sent "
            "while the fault lasted and still delivered after it), and how soon every affected instance "
            "received again after the fault ended. ✓ means the run met its fault verdict: every lost event "
            "explained, Streams lost nothing it promises to keep, everyone connected and receiving after.\n\n"
            + md_table(failover_table(runs), index=True) + not_run
            + "\n\n### Every number behind the table\n\n" + md_table(shown.astype(str))
            + "\n\nRun records: " + ", ".join(f"`data/runs/{r}`" for r in details["run_id"]) + "\n")
