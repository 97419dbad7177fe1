"""The report's sections as Markdown: each one a template (``templates/<section>.md.j2``) filled
from a :class:`~fanout.report.context.Report`, with its tables from :mod:`fanout.report.tables`.
The validation notebook calls these in order; nothing here runs anything."""
from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from fanout.report import capacity as _capacity
from fanout.report import compare as _compare
from fanout.report import outcomes as _outcomes
from fanout.report import tables as T
from fanout.report.context import Report
from fanout.report.prose import macro, render
from fanout.report.runs import ScenarioRun


class Section(str):
    """A section's Markdown, its tables as pipe tables (what every caller reads), carrying
    ``parts`` too: its prose (str) and its tables (DataFrames of display strings) in order, so a
    notebook can show each table as a DataFrame (:func:`fanout.report.nbhelpers.show_section`)."""

    parts: tuple = ()


def _table(df: pd.DataFrame, noted: bool = True, **kwargs) -> tuple[pd.DataFrame, str, str]:
    """(the frame, its Markdown, the note under it) for :func:`_section`."""
    text = T.md_noted(df, **kwargs) if noted else T.md(df, **kwargs)
    plain = T.md(df, **kwargs)
    return df, text, text[len(plain):].strip()


def _section(template: str, tables: dict[str, tuple | None], **context) -> Section:
    """``template`` rendered with ``context`` and ``tables`` (name -> :func:`_table`, or None),
    as a :class:`Section`: the same Markdown as rendering the tables in place, and its parts."""
    out = Section(render(template, **context, **{k: (t[1] if t else None) for k, t in tables.items()}))
    marked = render(template, **context, **{k: (f"\x00{k}\x00" if t else None) for k, t in tables.items()})
    parts: list = []
    for i, piece in enumerate(re.split("\x00(\\w+)\x00", marked)):
        if i % 2 == 0:
            if piece.strip():
                parts.append(piece)
            continue
        df, _text, note = tables[piece]
        parts.append(df)
        if note:
            parts.append(note)
    out.parts = tuple(parts)
    return out


def _short(o) -> str:
    return macro("_macros.md.j2", "short")(o)


def _group_short(g: dict, entries: dict[str, dict]) -> str:
    """A configuration's outcome over its repeated runs in one phrase: the run's own phrase when
    there is one run or every run reads the same; else the loss per run as a range and how it was
    attributed."""
    runs = [entries[k] for k in g["run_ids"]]
    phrases = [_short(e) for e in runs]
    if len(set(phrases)) == 1:
        return phrases[0] + (f" (every one of {len(runs)} runs)" if len(runs) > 1 else "")
    lost = [int(e["missing"]) for e in runs]
    if not any(lost):
        return f"lost nothing in {len(runs)} runs"
    where = ("all where the fault acted" if all(e["all_planned"] for e in runs if e["missing"])
             else "not all attributed to a planned fault (see Failover)")
    late = [e for e in runs if (e.get("lateness") or {}).get("late")]
    return (f"lost {min(lost):,}–{max(lost):,} per run ({sum(1 for n in lost if n)} of {len(runs)} runs lost), "
            f"{where}" + (f"; late in {len(late)} of {len(runs)} runs" if late else ""))


def page_one(rep: Report) -> str:
    """Verdict, the recommendation's first line, scope, key results (one line per configuration,
    over its repeated runs), the fault summary and what needs attention: everything a reader must
    see first. Every figure is read from ``rep.facts`` (report.json)."""
    F = rep.facts
    entries = {e["run_id"]: e for e in F["runs"]}
    groups = F["repeats"]["groups"]
    key = [g for g in groups if not g["faulted"]]
    key_df = pd.DataFrame([{
        "Configuration": g["name"], "Transport": g["transport"], "Instances": f"{g['instances']:,}",
        "Runs": f"{g['runs']:,}", "Delivered": f"{g['delivered']:,} of {g['expected']:,}",
        "p99 ms: median (range)": T.percentile_spread(g, "p99_ms"), "Outcome": _group_short(g, entries),
        "Status": T.status_word(g["passed"] == g["runs"]),
    } for g in key], columns=["Configuration", "Transport", "Instances", "Runs", "Delivered", "p99 ms: median (range)",
                              "Outcome", "Status"])
    fault_groups = [g for g in groups if g["faulted"]]
    matrix = None
    if fault_groups:
        rows = {}
        for g in fault_groups:
            rows.setdefault(g["fault"] or g["name"], {"Fault": g["fault"] or g["name"]})[
                macro("_macros.md.j2", "transport")(g["transport"])] = (
                f"{_group_short(g, entries)} ({T.status_word(g['passed'] == g['runs'])})")
        matrix = T.md(pd.DataFrame(list(rows.values())).fillna("not run"))
    fault_entries = [e for e in F["runs"] if e["faulted"]]
    return render("page_one.md.j2", rep=rep, F=F, g=F["groups"], S=F["scope"], ml=F["max_lossless"],
                  R=F["repeats"], rec=F.get("recommendation"), toc=TOC,
                  fault_transports=list(dict.fromkeys(e["transport"] for e in fault_entries)),
                  late_runs=[e for e in fault_entries if (e["lateness"] or {}).get("late")],
                  over=[e for e in F["runs"] if e["load"]["over_capacity"]],
                  not_measured=F["scope"]["not_measured"], key=T.md_noted(key_df),
                  matrix=matrix, attention=_outcomes.merge_repeats(_outcomes.attention(F["runs"], rep.skipped, []))
                  + [{"kind": "drift", "run": k} for k in F["soak"]["runs"] if k["drifting"]])


#: the report's sections in order (anchor, title): page one's table of contents
TOC = (("recommendation", "Recommendation"), ("scenarios", "Scenarios"), ("comparisons", "Comparisons"),
       ("failover", "Failover"), ("capacity", "Capacity planning"), ("soak", "Soak"),
       ("readiness", "Readiness and monitoring"), ("limitations", "Limitations and methodology"), ("appendix", "Appendix"))


def scenarios(rep: Report) -> str:
    """All scenarios (and capacity rows) in one table, each configuration over its repeated runs."""
    groups = [g for g in rep.facts["repeats"]["groups"] if g["role"] in ("scenario", "capacity")]
    return render("scenarios.md.j2", rep=rep, R=rep.facts["repeats"], groups=groups,
                  table=T.md_noted(T.scenarios_table(groups)) if groups else "")


class _ShortOutcome:
    """An outcome's one-phrase form, as the key results table reads it (``.short``)."""

    def __init__(self, short: str) -> None:
        self.short = short


def scenario_head(rep: Report, run: ScenarioRun, index: int) -> str:
    agents = T.agents_table(run.record)
    o = next(e for e in rep.facts["runs"] if e["run_id"] == run.record.run_id)
    return _section("scenario.md.j2", {
        "overall": _table(T.overall_table(run.findings), align={"Value": "left"}),
        "arithmetic": _table(T.arithmetic_table(run.findings), noted=False, align={"Exact": "center"}),
        "agents": _table(agents, noted=False) if agents is not None else None}, run=run, index=index, o=o)


def scenario_latency(run: ScenarioRun) -> str:
    return _section("scenario_latency.md.j2", {"latency": _table(T.latency_table(run.findings)),
                                               "per_instance": _table(T.instance_latency_table(run.findings))})


def scenario_verdict(run: ScenarioRun) -> str:
    return _section("scenario_verdict.md.j2", {"verdict": _table(T.verdict_table(run.findings), noted=False)},
                    run=run, failed=[c for c in run.findings.verdict if not c.passed and _outcomes.judged(c)],
                    noted=[c for c in run.findings.verdict if not _outcomes.judged(c)])


def comparisons(rep: Report) -> str:
    """Every comparison pair in one table (a row per pair and metric), every number read from
    ``rep.facts["comparisons"]`` (report.json); what reads WORSE or BETTER said in words under it."""
    F = rep.facts["comparisons"]
    rows = [dict(r, scenario=pair["label"]) for pair in F["pairs"] for r in pair["rows"]]
    table = ""
    if rows:
        shown = _compare.display_frame(_compare.Comparison(_compare.frame(rows))).rename(
            columns={"scenario": "comparison"})
        table = T.md_noted(shown)
    decided = [(pair, r) for pair in F["pairs"] for r in pair["rows"] if r["reading"] in ("WORSE", "BETTER")]
    return render("comparisons.md.j2", rep=rep, C=F, M=F["method"], table=table, decided=decided)


def performance(rep: Report) -> str:
    runs = rep.scenarios + rep.capacity
    return render("performance.md.j2", rep=rep, latency=T.md_noted(T.latency_distribution_table(runs)),
                  throughput=T.md_noted(T.throughput_table(runs, rep.loads, rep.facts)),
                  distribution=T.md(T.distribution_table(rep.scenarios)) if rep.scenarios else "")


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


def capacity_model(rep: Report) -> str:
    """The appendix: the scaling model (docs/scaling.md) beside the capacity rows."""
    F = rep.facts
    measured = [d for d in F["capacity"] if d["measured"]]
    return render("capacity_model.md.j2", rep=rep, measured=measured,
                  model=T.md(_capacity.model_table(F["capacity"])) if measured else "")


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


def soak_series(rep: Report) -> str:
    """The appendix: each soak's series per interval and its drift sentences, from report.json."""
    from fanout.report import soak as _soak

    K = rep.facts["soak"]
    if not K["runs"]:
        return ""
    return render("soak_series.md.j2", K=K, series={k["run_id"]: T.md_noted(_soak.series_table(k)) for k in K["runs"]})


def failover(rep: Report) -> str:
    """Each fault on each transport over its repeated runs: loss per run and as a rate, recovery
    and lateness (``facts["repeats"]``); the run-by-run table is :func:`failover_runs`."""
    F = rep.facts
    entries = [e for e in F["runs"] if e["faulted"]]
    groups = [g for g in F["repeats"]["groups"] if g["faulted"]]
    by_id = {e["run_id"]: e for e in entries}
    faults: dict[str, list[dict]] = {}
    for grp in groups:  # per fault, each transport's worst run stands for its repeated runs
        runs = [by_id[k] for k in grp["run_ids"]]
        worst = max(runs, key=lambda e: (int(e["missing"]), int((e.get("lateness") or {}).get("late") or 0)))
        faults.setdefault(grp["fault"] or grp["name"], []).append({"o": worst, "runs": len(runs)})
    return render("failover.md.j2", rep=rep, F=F, g=F["groups"], R=F["repeats"], faults=faults,
                  fault_transports=list(dict.fromkeys(e["transport"] for e in entries)),
                  groups_table=T.md(T.faults_table(groups)) if groups else "", skipped=rep.skipped)


def failover_runs(rep: Report) -> str:
    """The appendix's failover table: every fault run, every count behind its verdict."""
    entries = [e for e in rep.facts["runs"] if e["faulted"]]
    if not entries:
        return ""
    return render("failover_runs.md.j2", table=T.md(T.failover_table(entries)), defs=T.DEFINITIONS)


def recommendation(rep: Report) -> str:
    """The recommendation: headline, trade-off, configuration, Redis settings, sizing, next steps,
    every figure read from ``rep.facts["recommendation"]`` (report.json)."""
    from fanout.report import recommend as _recommend

    R = rep.facts["recommendation"]
    return render("recommendation.md.j2", R=R, tradeoff=T.md(_recommend.tradeoff_table(R)))


__all__ = ["page_one", "recommendation", "scenarios", "TOC", "scenario_head", "scenario_latency", "scenario_verdict",
           "comparisons", "performance", "resources", "capacity", "soak", "failover",
           "failover_runs", "capacity_model", "soak_series"]
