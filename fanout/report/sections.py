"""The report's sections as Markdown: each one a template (``templates/<section>.md.j2``) filled
from a :class:`~fanout.report.context.Report`, with its tables from :mod:`fanout.report.tables`.
The validation notebook calls these in order; nothing here runs anything."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fanout.report import capacity as _capacity
from fanout.report import compare as _compare
from fanout.report import outcomes as _outcomes
from fanout.report import tables as T
from fanout.report.context import Report
from fanout.report.prose import macro, render
from fanout.report.runs import ScenarioRun


def _short(o) -> str:
    return macro("_macros.md.j2", "short")(o)


def page_one(rep: Report) -> str:
    """Verdict, scope, key results and what needs attention: everything a reader must see first."""
    shorts = {k: _ShortOutcome(_short(o)) for k, o in rep.outcomes.items()}
    main = [r for r in rep.runs if r.role != "fault"]
    matrix = None
    if rep.faults:
        rows = {}
        for r in rep.faults:
            rows.setdefault(r.fault, {"Fault": r.fault})[macro("_macros.md.j2", "transport")(r.transport)] = (
                f"{_short(rep.outcome(r))} ({T.status_word(r.findings.passed)})")
        matrix = T.md(pd.DataFrame(list(rows.values())).fillna("not run"))
    return render("page_one.md.j2", rep=rep, t=rep.totals, ml=rep.max_lossless, mach=rep.machine(),
                  not_measured=rep.not_measured(), key=T.md_noted(T.key_results_table(main, shorts)), matrix=matrix,
                  attention=_outcomes.attention(rep.outcome_list(), rep.skipped, []))


class _ShortOutcome:
    """An outcome's one-phrase form, as the key results table reads it (``.short``)."""

    def __init__(self, short: str) -> None:
        self.short = short


def scenario_head(rep: Report, run: ScenarioRun, index: int) -> str:
    agents = T.agents_table(run.record)
    return render("scenario.md.j2", run=run, index=index, o=rep.outcome(run),
                  overall=T.md_noted(T.overall_table(run.findings), align={"Value": "left"}),
                  arithmetic=T.md(T.arithmetic_table(run.findings), align={"Exact": "center"}),
                  agents=T.md(agents) if agents is not None else None)


def scenario_latency(run: ScenarioRun) -> str:
    return render("scenario_latency.md.j2", latency=T.md_noted(T.latency_table(run.findings)),
                  per_instance=T.md_noted(T.instance_latency_table(run.findings)))


def scenario_verdict(run: ScenarioRun) -> str:
    return render("scenario_verdict.md.j2", run=run, verdict=T.md(T.verdict_table(run.findings)),
                  failed=[c for c in run.findings.verdict if not c.passed])


def comparison_pairs(runs: Sequence[ScenarioRun]) -> list[tuple[str, ScenarioRun, ScenarioRun]]:
    """The seed's 3 vs 5 instances (standard vs stress), and each scenario against itself on
    another transport (``standard`` vs ``standard-streams``)."""
    by = {r.name: r for r in runs}
    pairs = []
    if "standard" in by and "stress" in by:
        pairs.append(("instances: 3 (standard) vs 5 (stress)", by["standard"], by["stress"]))
    for r in runs:
        base = r.name.removesuffix(f"-{r.transport}")
        if base != r.name and base in by and by[base].transport != r.transport:
            pairs.append((f"transport: {by[base].transport} vs {r.transport} ({base})", by[base], r))
    return pairs


def comparisons(rep: Report) -> str:
    pairs = comparison_pairs(rep.scenarios)
    blocks = []
    for label, a, b in pairs:
        c = _compare.compare_sets([a], [b])
        shown = _compare.display_frame(c).drop(columns=["scenario", "regressed"])
        blocks.append({"label": label, "a": a, "b": b, "table": T.md_noted(shown),
                       "noise": [row for row in c.rows.to_dict(orient="records")
                                 if row["reading"] == "within noise"],
                       "differ": [row for row in c.rows.to_dict(orient="records")
                                  if row["reading"] in ("higher", "lower") and row["metric"] != "delivery (%)"]})
    return render("comparisons.md.j2", rep=rep, blocks=blocks,
                  distribution=T.md(T.distribution_table(rep.scenarios)) if rep.scenarios else "")


def performance(rep: Report) -> str:
    runs = rep.scenarios + rep.capacity
    return render("performance.md.j2", rep=rep, latency=T.md_noted(T.latency_distribution_table(runs)),
                  throughput=T.md_noted(T.throughput_table(runs, rep.loads)))


def resources(rep: Report) -> str:
    runs = [r for r in rep.runs if len(r.record.resources)]
    summaries = [(r, rep.resources(r)) for r in runs]
    redis_cpu = [float(s[s["kind"] == "redis"]["cpu_pct"].sum()) for _, s in summaries if (s["kind"] == "redis").any()]
    memory = [int(s[s["kind"] == "redis"]["memory_peak_bytes"].sum()) for _, s in summaries
              if (s["kind"] == "redis").any()]
    inst = [float(s[s["kind"] == "process"]["cpu_pct"].max()) for _, s in summaries if (s["kind"] == "process").any()]
    unsampled = [r.name for r in rep.runs if not len(r.record.resources)]
    return render("resources.md.j2", rep=rep, table=T.md(T.resources_table(summaries)) if summaries else "",
                  redis_cpu=redis_cpu, memory=memory, inst=inst, unsampled=unsampled, n=len(summaries))


def capacity(rep: Report) -> str:
    rows = _capacity.measured_rows(rep.capacity, requested=bool(rep.params.capacity))
    measured = [d for d in rows if d["run"] is not None]
    return render("capacity.md.j2", rep=rep, rows=rows, measured=measured, ml=rep.max_lossless,
                  seed=T.md_noted(_capacity.seed_table(rows)),
                  model=T.md(_capacity.model_table(rows)) if measured else "")


def failover(rep: Report) -> str:
    ocs = rep.outcome_list(rep.faults)
    return render("failover.md.j2", rep=rep, faults=_outcomes.by_fault(ocs),
                  table=T.md(T.failover_table(rep.faults)) if rep.faults else "", defs=T.DEFINITIONS,
                  skipped=rep.skipped)


def conclusion(rep: Report) -> str:
    return render("conclusion.md.j2", rep=rep, t=rep.totals, ml=rep.max_lossless)


__all__ = ["page_one", "scenario_head", "scenario_latency", "scenario_verdict", "comparisons", "comparison_pairs",
           "performance", "resources", "capacity", "failover", "conclusion"]
