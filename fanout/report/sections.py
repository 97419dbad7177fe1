"""The report's sections as Markdown: each one a template (``templates/<section>.md.j2``) filled
from a :class:`~fanout.report.context.Report`, with its tables from :mod:`fanout.report.tables`.
The validation notebook calls these in order; nothing here runs anything."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fanout.report import capacity as _capacity
from fanout.report import compare as _compare
from fanout.report.compare import comparison_pairs
from fanout.report import outcomes as _outcomes
from fanout.report import tables as T
from fanout.report.context import Report
from fanout.report.prose import macro, render
from fanout.report.runs import ScenarioRun


def _short(o) -> str:
    return macro("_macros.md.j2", "short")(o)


def page_one(rep: Report) -> str:
    """Verdict, scope, key results and what needs attention: everything a reader must see first.
    Every figure is read from ``rep.facts`` (report.json) or the runs' findings (also in it)."""
    F = rep.facts
    entries = {e["run_id"]: e for e in F["runs"]}
    shorts = {k: _ShortOutcome(_short(e)) for k, e in entries.items()}
    main = [r for r in rep.runs if not entries[r.record.run_id]["faulted"]]
    fault_entries = [e for e in F["runs"] if e["faulted"]]
    matrix = None
    if fault_entries:
        rows = {}
        for e in fault_entries:
            rows.setdefault(e["fault"], {"Fault": e["fault"]})[macro("_macros.md.j2", "transport")(e["transport"])] = (
                f"{_short(e)} ({T.status_word(e['passed'])})")
        matrix = T.md(pd.DataFrame(list(rows.values())).fillna("not run"))
    return render("page_one.md.j2", rep=rep, F=F, g=F["groups"], S=F["scope"], ml=F["max_lossless"],
                  fault_transports=list(dict.fromkeys(e["transport"] for e in fault_entries)),
                  late_runs=[e for e in fault_entries if (e["lateness"] or {}).get("late")],
                  over=[e for e in F["runs"] if e["load"]["over_capacity"]],
                  not_measured=F["scope"]["not_measured"], key=T.md_noted(T.key_results_table(main, shorts)),
                  matrix=matrix, attention=_outcomes.attention(F["runs"], rep.skipped, [])
                  + [{"kind": "drift", "run": k} for k in F["soak"]["runs"] if k["drifting"]])


class _ShortOutcome:
    """An outcome's one-phrase form, as the key results table reads it (``.short``)."""

    def __init__(self, short: str) -> None:
        self.short = short


def scenario_head(rep: Report, run: ScenarioRun, index: int) -> str:
    agents = T.agents_table(run.record)
    o = next(e for e in rep.facts["runs"] if e["run_id"] == run.record.run_id)
    return render("scenario.md.j2", run=run, index=index, o=o,
                  overall=T.md_noted(T.overall_table(run.findings), align={"Value": "left"}),
                  arithmetic=T.md(T.arithmetic_table(run.findings), align={"Exact": "center"}),
                  agents=T.md(agents) if agents is not None else None)


def scenario_latency(run: ScenarioRun) -> str:
    return render("scenario_latency.md.j2", latency=T.md_noted(T.latency_table(run.findings)),
                  per_instance=T.md_noted(T.instance_latency_table(run.findings)))


def scenario_verdict(run: ScenarioRun) -> str:
    return render("scenario_verdict.md.j2", run=run, verdict=T.md(T.verdict_table(run.findings)),
                  failed=[c for c in run.findings.verdict if not c.passed and _outcomes.judged(c)],
                  noted=[c for c in run.findings.verdict if not _outcomes.judged(c)])


def comparisons(rep: Report) -> str:
    """The comparison pairs, every number read from ``rep.facts["comparisons"]`` (report.json)."""
    by = {r.name: r for r in rep.scenarios}
    blocks = []
    for pair in rep.facts["comparisons"]:
        rows = pd.DataFrame(pair["rows"]).assign(scenario=pair["label"])
        c = _compare.Comparison(rows[_compare.COLUMNS], _compare.THRESHOLD_PCT, _compare.MAX_DELIVERY_DROP)
        shown = _compare.display_frame(c).drop(columns=["scenario", "regressed"])
        blocks.append({"label": pair["label"], "a": by[pair["a"]], "b": by[pair["b"]], "table": T.md_noted(shown),
                       "noise": [row for row in pair["rows"] if row["reading"] == "within noise"],
                       "differ": [row for row in pair["rows"]
                                  if row["reading"] in ("higher", "lower") and row["metric"] != "delivery (%)"]})
    return render("comparisons.md.j2", rep=rep, blocks=blocks,
                  distribution=T.md(T.distribution_table(rep.scenarios)) if rep.scenarios else "")


def performance(rep: Report) -> str:
    runs = rep.scenarios + rep.capacity
    return render("performance.md.j2", rep=rep, latency=T.md_noted(T.latency_distribution_table(runs)),
                  throughput=T.md_noted(T.throughput_table(runs, rep.loads, rep.facts)))


def resources(rep: Report) -> str:
    from fanout.report.facts import DEFINITIONS

    F = rep.facts
    sampled = [e for e in F["runs"] if e["resources"]]
    return render("resources.md.j2", rep=rep, R=F["resources"], defs=DEFINITIONS,
                  table=T.md(T.resources_table(sampled)) if sampled else "")


def capacity(rep: Report) -> str:
    F = rep.facts
    rows = F["capacity"]
    measured = [d for d in rows if d["measured"]]
    return render("capacity.md.j2", rep=rep, rows=rows, measured=measured, ml=F["max_lossless"],
                  seed=T.md_noted(_capacity.seed_table(rows)), model=T.md(_capacity.model_table(rows)) if measured else "",
                  defs=F["definitions"])


def soak(rep: Report) -> str:
    """The soak: series, slopes, drift sentences and reconnects, every figure read from
    ``rep.facts["soak"]`` (report.json); one line when no soak was run."""
    from fanout.report import soak as _soak

    K = rep.facts["soak"]
    entries = {e["run_id"]: e for e in rep.facts["runs"]}
    return render("soak.md.j2", K=K, entries=entries,
                  slopes={k["run_id"]: T.md(_soak.slopes_table(k)) for k in K["runs"]},
                  series={k["run_id"]: T.md_noted(_soak.series_table(k)) for k in K["runs"]},
                  reconnects={k["run_id"]: T.md(_soak.reconnects_table(k)) for k in K["runs"] if k["reconnects"]})


def failover(rep: Report) -> str:
    F = rep.facts
    entries = [e for e in F["runs"] if e["faulted"]]
    return render("failover.md.j2", rep=rep, F=F, g=F["groups"], faults=_outcomes.by_fault(entries),
                  fault_transports=list(dict.fromkeys(e["transport"] for e in entries)),
                  table=T.md(T.failover_table(entries)) if entries else "", defs=T.DEFINITIONS,
                  skipped=rep.skipped)


def conclusion(rep: Report) -> str:
    F = rep.facts
    fault_entries = [e for e in F["runs"] if e["faulted"]]
    return render("conclusion.md.j2", rep=rep, F=F, g=F["groups"],
                  fault_transports=list(dict.fromkeys(e["transport"] for e in fault_entries)),
                  lossy=[e for e in F["runs"] if e["missing"]],
                  over=[e for e in F["runs"] if e["load"]["over_capacity"]])


def recommendation(rep: Report) -> str:
    """The recommendation: headline, trade-off, configuration, Redis settings, sizing, next steps,
    every figure read from ``rep.facts["recommendation"]`` (report.json)."""
    from fanout.report import recommend as _recommend

    R = rep.facts["recommendation"]
    return render("recommendation.md.j2", R=R, tradeoff=T.md(_recommend.tradeoff_table(R)))


__all__ = ["recommendation", "page_one", "scenario_head", "scenario_latency", "scenario_verdict", "comparisons", "comparison_pairs",
           "performance", "resources", "capacity", "soak", "failover", "conclusion"]
