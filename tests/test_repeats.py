"""Repeated runs (``fanout report --repeat K``): the runs interleave round by round (A B A B, not
A A B B), each records its round, and the report summarises a configuration by one number per run
— the median and range of the runs' own percentiles, never a pooled sample — with a fault's loss
per run and per second of its window per receiver."""
from __future__ import annotations

import statistics

import pytest

from _records import make_record
from test_report_facts import NAMES, PARAMS, archive, partition, run_of
from fanout.report import sections, tables
from fanout.report.assemble import make_report
from fanout.report.context import Report
from fanout.report.params import FULL_REPEAT, ReportParams, repeat_of
from fanout.report.runs import interleave
from fanout.errors import ConfigError


def test_interleave_runs_every_configuration_once_per_round():
    planned = [("A", "scenario", "", {}), ("B", "capacity", "", {}), ("C", "fault", "", {})]
    order = interleave(planned, 3)
    assert [x[0] for x in order] == ["A", "B", "C"] * 3  # ABC ABC ABC, never AAA BBB CCC
    assert [x[4]["round"] for x in order] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert {x[4]["of"] for x in order} == {3}
    assert [x[4] for x in interleave(planned, 1)] == [None, None, None]  # once: no round recorded


def test_how_many_rounds_by_mode():
    assert repeat_of(ReportParams()) == 1  # quick mode runs each configuration once
    assert repeat_of(ReportParams(quick=False)) == FULL_REPEAT >= 5
    assert repeat_of(ReportParams(quick=False, repeat=2)) == 2
    assert repeat_of(ReportParams(duration_scale=0.5)) == 1
    from fanout.report.params import report_params

    with pytest.raises(ConfigError, match="repeat: must be a whole number >= 1"):
        report_params({"repeat": 0})


def test_a_repeated_report_runs_round_by_round_and_records_each_round(tmp_path):
    """Real runs on throwaway servers: two scenarios twice each, in the order A B A B."""
    p = ReportParams(scenarios=("standard", "stress"), failover=(), capacity=False, duration_scale=0.05, repeat=2,
                     save_to=str(tmp_path))
    rep = make_report(p, progress=False)
    assert [r.name for r in rep.runs] == ["standard", "stress", "standard", "stress"]
    assert [r.record.environment["repeat"] for r in rep.runs] == [
        {"round": 1, "of": 2}, {"round": 1, "of": 2}, {"round": 2, "of": 2}, {"round": 2, "of": 2}]
    assert rep.rounds == 2
    groups = {g["name"]: g for g in rep.facts["repeats"]["groups"]}
    assert groups["standard"]["runs"] == 2 and len(set(groups["standard"]["run_ids"])) == 2
    # an archive keeps the rounds: rendered again, it is still a report of two rounds
    from fanout.report.runs import load_runs

    again = Report(params=p, runs=load_runs([str(tmp_path)]))
    assert again.rounds == 2 and sorted(r.record.environment["repeat"]["round"] for r in again.runs) == [1, 1, 2, 2]


def _renamed(run, name):
    run.record.scenario["name"] = name
    run.findings.scenario["name"] = name
    return run


def test_a_configuration_is_summarised_by_one_number_per_run():
    # three runs of one configuration with different latencies, and different sample counts: the
    # summary is the median of the three runs' own p50s, not the p50 of their pooled samples
    runs = [_renamed(run_of(make_record({n: k for n in NAMES}, latency_ns=lat)), "cfg")
            for k, lat in ((20, 1_000_000), (20, 2_000_000), (200, 9_000_000))]
    rep = Report(params=PARAMS, runs=runs)
    g = next(g for g in archive(rep)["facts"]["repeats"]["groups"] if g["name"] == "cfg")
    per_run = [r.findings.latency["p50_ms"] for r in runs]
    assert g["runs"] == 3 and g["p50_ms"]["values"] == pytest.approx(per_run)
    assert g["p50_ms"]["median"] == pytest.approx(statistics.median(per_run))
    assert (g["p50_ms"]["min"], g["p50_ms"]["max"]) == pytest.approx((min(per_run), max(per_run)))
    from fanout.analysis import latency_samples

    pooled = statistics.median([x for r in runs for x in latency_samples(r.record)["lat_ms"]])
    assert pooled == pytest.approx(9.0) and g["p50_ms"]["median"] == pytest.approx(2.0)  # the big run does not win
    row = tables.scenarios_table([g]).iloc[0]
    assert row["Runs"] == "3" and row["p50 ms: median (range)"] == tables.spread_cell(g["p50_ms"])
    assert f"({min(per_run):,.3f}–{max(per_run):,.3f})" in row["p50 ms: median (range)"]
    page = sections.page_one(rep)
    assert page.count("| cfg ") == 1  # one line for the configuration, not one per run


def test_a_faults_loss_per_run_and_per_second_of_its_window_per_receiver():
    a, b = partition("pubsub"), partition("pubsub")
    rep = Report(params=PARAMS, runs=[run_of(make_record(dict.fromkeys(NAMES, 20))), a, b])
    F = archive(rep)["facts"]
    g = next(g for g in F["repeats"]["groups"] if g["name"] == "partition-pubsub")
    lost = a.findings.losses.lost
    assert g["lost"]["values"] == [lost, lost] and g["runs"] == 2
    fault = next(e for e in F["runs"] if e["run_id"] == a.record.run_id)["faults"][0]
    assert fault["outage_s"] == pytest.approx(0.5) and fault["receivers"] == 1  # b, cut off for 0.5 s
    assert g["lost_per_outage_s"]["median"] == pytest.approx(lost / 0.5)
    failover = sections.failover(rep)
    row = next(ln for ln in failover.splitlines() if ln.startswith("| partition"))
    assert f"{lost}, {lost}" in row and f"{lost / 0.5:,.2f}" in row
    assert "(the worst of 2 runs)" in failover  # the words stand for both runs, once
    page = sections.page_one(rep)
    assert page.count("`partition-pubsub`") == 1
