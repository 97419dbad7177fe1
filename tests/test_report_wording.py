"""The report's words follow its findings (synthetic RunRecords, no Redis): exactly-once only when
it was, a fault run says what it lost and why, an over-capacity load point is marked and left out
of the max lossless rate, every figure has one caption."""
from __future__ import annotations

import itertools
import re

import pandas as pd
import pytest

from _records import T0, event_id, make_record
from fanout.analysis import analyse
from fanout.lab.record import DELIVERY_COLUMNS, FAULT_COLUMNS, frame
from fanout.report import saturation, sections
from fanout.report.context import Report
from fanout.report.params import ReportParams
from fanout.report.runs import ScenarioRun

SEED_3 = {"test-instance-0": 69, "test-instance-1": 65, "test-instance-2": 61}
_IDS = itertools.count()
PARAMS = ReportParams(scenarios=("standard",), failover=(), capacity=False)


def run_of(record, role="scenario") -> ScenarioRun:
    record.run_id = f"synthetic-{next(_IDS)}"  # the report keys runs by id
    return ScenarioRun(scenario=None, record=record, findings=analyse(record), role=role)


def fault_run(lose: bool) -> ScenarioRun:
    """A partition of test-instance-1 from 2 s to 3 s; pub/sub loses what was sent meanwhile."""
    start, end = T0 + 2_000_000_000, T0 + 3_000_000_000
    probe = make_record(SEED_3)
    pubs = probe.publications
    inside = pubs[(pubs["t_sent"] >= start) & (pubs["t_sent"] <= end) & (pubs["source"] != "test-instance-1")]
    drop = [("test-instance-1", eid) for eid in inside["id"]] if lose else []
    transport = "pubsub" if lose else "streams"
    rec = make_record(SEED_3, drop=drop, scenario_overrides={
        "name": f"partition-{transport}", "transport": transport,
        "faults": [{"kind": "partition", "at_s": 2, "duration_s": 1, "instance": 1, "mode": "reset"}]})
    rec.faults = frame([{"kind": "partition", "instance": "test-instance-1", "t_start": start, "t_end": end,
                         "detail": "test-instance-1 cut off from Redis (reset); partition healed"}], FAULT_COLUMNS)
    run = run_of(rec, role="fault")
    assert run.findings.passed, [c for c in run.findings.verdict if not c.passed]
    assert run.findings.losses.lost == len(drop) and run.findings.losses.unexplained == 0
    return run


def summary_of(rep: Report) -> str:
    """Page one above the scope box: the verdict and what was lost."""
    return sections.page_one(rep).split("### Scope")[0]


def test_a_fault_run_with_loss_never_claims_exactly_once_and_names_the_loss():
    lossy = fault_run(lose=True)
    lost = lossy.findings.losses.lost
    assert lost > 0
    rep = Report(params=PARAMS, runs=[run_of(make_record(SEED_3)), lossy, fault_run(lose=False)])
    summary, failover = summary_of(rep), sections.failover(rep)
    for text in (summary, failover):
        assert "every instance received every other instance's events exactly once" not in text
        assert f"{lost:,}" in text and "lost" in text
    assert re.search(rf"pub/sub lost {lost} of \d+ expected deliveries .* during the partition, every one where the fault acted",
                     failover)
    assert "Streams lost nothing through the network partition" in failover
    assert f"pub/sub lost {lost} of" in failover


def test_lossless_findings_say_exactly_once():
    rep = Report(params=PARAMS, runs=[run_of(make_record(SEED_3)), run_of(make_record({"a": 4, "b": 5, "c": 3}))])
    summary = summary_of(rep)
    assert "exactly once" in summary and "lost" not in summary
    assert 'class="verdict-pass">✅ PASS' in summary


def test_a_failed_run_is_named_on_page_one():
    bad = make_record(SEED_3, drop=[("test-instance-1", event_id("test-instance-0", 4))])
    rep = Report(params=PARAMS, runs=[run_of(bad)])
    summary = summary_of(rep)
    assert "FAIL" in summary and "did **not** meet their criteria" in summary
    assert "0 of the 1 run without injected faults delivered every event exactly once" in summary
    assert "1 of the 390 deliveries expected in the runs without injected faults were lost" in summary
    assert "with no fault to explain them" in summary
    assert "Needs attention" in sections.page_one(rep) and "**Failed**" in sections.page_one(rep)


def test_a_load_point_below_its_target_rate_is_over_capacity_and_left_out_of_the_max_lossless_rate():
    fast = make_record({"host": 40, "bot": 0}, scenario_overrides={"name": "capacity-1x40", "publishers": ["host"],
                                                                   "receivers": ["bot"], "topology": "host-bots"})
    fast.scenario["rate_per_s"] = 40.0  # the schedule ran at 10/s: the publisher fell behind its 40/s target
    slow = make_record({"host": 30, "bot": 0}, scenario_overrides={"name": "capacity-1x10", "publishers": ["host"],
                                                                   "receivers": ["bot"], "topology": "host-bots"})
    over, ok = run_of(fast, "capacity"), run_of(slow, "capacity")
    assert over.findings.passed and over.findings.overall["missing"] == 0  # lossless, yet not a measurement
    load = saturation.assess(over)
    assert load.over_capacity and load.rate_short and load.state == saturation.BEHIND
    assert not saturation.assess(ok).over_capacity
    ml = saturation.max_lossless([over, ok])
    assert ml["best"][0] is ok and ml["best"][1].target_rate == 10.0
    assert [r for r, _ in ml["excluded_over"]] == [over]
    rep = Report(params=PARAMS, runs=[over, ok])
    page = sections.page_one(rep)
    assert "1 run of 1 load point ran over capacity (`capacity-1x40`: over capacity — the publisher fell behind)" in page
    assert "Max lossless rate measured: **10.00 events/s**" in page and "capacity-1x10" in page
    assert "**Over capacity**" in page


def test_the_instrument_flag_names_the_instrument_when_present():
    rec = make_record({"host": 40, "bot": 0}, scenario_overrides={"publishers": ["host"], "receivers": ["bot"]})
    rec.scenario["rate_per_s"] = 40.0
    rec.environment["instrument"] = {"saturated": True, "cpu_pct": 99.0}
    assert saturation.assess(run_of(rec)).state == saturation.INSTRUMENT


@pytest.mark.parametrize("announced", [True, False])
def test_gaps_missing_and_failed_publishes_are_reconciled_one_sentence_each(announced):
    rec = make_record(SEED_3, failed=3)
    pubs = rec.publications
    pubs.loc[~pubs["ok"], "seq"] = [40, 41, 42]  # publishes that failed inside the bridge used their numbers
    # each of the 3 numbers seen by the 2 other receivers: announced (unsent), or, from an older
    # publisher that could not announce them, as gaps
    rec.instances["unsent" if announced else "gaps"] = [2, 2, 2]
    run = run_of(rec)
    rep = Report(params=PARAMS, runs=[run])
    o = rep.outcome(run)
    assert (o.gaps, o.unsent, o.gaps_from_failed_publishes, o.gaps_other) == \
        ((0, 6, 6, 0) if announced else (6, 0, 6, 0))
    head = sections.scenario_head(rep, run, 1)
    assert "No expected delivery is missing." in head
    assert "3 publishes failed within the bound: the publisher was told and nobody expects them" in head
    assert "reached Redis anyway" not in head  # none of them was delivered
    if announced:
        assert "The receivers counted no sequence gap." in head
        assert "counted 6 of their sequence numbers as unsent" in head
    else:
        assert "The receivers counted 6 sequence gaps — events lost after Redis accepted them, 6 of them the " \
               "numbers of failed publishes whose publisher could not announce them in time." in head


@pytest.mark.parametrize("failed, delivered, unsent, said", [
    # failed publish -> the receivers that got it anyway; per receiver each ends delivered or unsent
    (3, {0: ["test-instance-1", "test-instance-2"], 1: ["test-instance-0"]}, [1, 1, 1],
     ("2 of the 3 failed publishes reached Redis anyway and were delivered (3 deliveries; outcome unknown at "
      "the publisher).")),
    (1, {0: ["test-instance-2"]}, [0, 1, 0],
     "That failed publish reached Redis anyway and was delivered (1 delivery; outcome unknown at the publisher)."),
])
def test_failed_publishes_delivered_anyway_are_said_in_the_reconciliation(failed, delivered, unsent, said):
    rec = make_record(SEED_3, failed=failed)
    pubs = rec.publications
    bad = pubs[~pubs["ok"]].reset_index(drop=True)
    pubs.loc[~pubs["ok"], "seq"] = list(range(40, 40 + failed))
    rows = [{"id": bad.at[i, "id"], "source": bad.at[i, "source"], "receiver": r, "type": bad.at[i, "type"],
             "seq": 40 + i, "t_received": int(bad.at[i, "t_intended"]) + 1_000_000}
            for i, receivers in delivered.items() for r in receivers]
    rec.deliveries = pd.concat([rec.deliveries, frame(rows, DELIVERY_COLUMNS)], ignore_index=True)
    rec.instances["unsent"] = unsent
    run = run_of(rec)
    o = Report(params=PARAMS, runs=[run]).outcome(run)
    assert (o.not_published, o.failed_delivered_events, o.failed_delivered) == \
        (failed, len(delivered), sum(map(len, delivered.values())))
    head = sections.scenario_head(Report(params=PARAMS, runs=[run]), run, 1)
    assert said in head, head
    assert f"counted {sum(unsent)} of their sequence numbers as unsent" in head


@pytest.mark.parametrize("name", ["expected_vs_received", "latency_ecdf", "latency_over_time"])
def test_every_scenario_figure_has_a_one_sentence_caption(name):
    from fanout.report.figures import caption

    text = caption(name, run_of(make_record(SEED_3)))
    assert text.startswith("*Figure — ") and text.count("\n") == 0 and text.endswith(".")


def test_page_one_says_what_protected_the_run_and_names_forged_traffic():
    plain = make_record(SEED_3)
    signed = make_record(SEED_3)
    signed.environment["protection"] = {"signing": True, "key_id": "k-1234", "acl_user": "fanout-peer"}
    signed.instances["rejected"] = [5, 0, 0]
    signed.instances["suspicious"] = [0, 2, 0]
    rep = Report(params=PARAMS, runs=[run_of(plain), run_of(signed)])
    page = sections.page_one(rep)
    row = next(line for line in page.splitlines() if line.startswith("- **Protection**:"))
    assert "1 run: signing off, the default Redis user" in row
    assert "1 run: signing on (key id `k-1234`), ACL user `fanout-peer`" in row
    assert "**Forged or conflicting traffic**" in page and "(2 suspicious, 5 rejected, 0 id conflicts)" in page
    plain_rep = Report(params=PARAMS, runs=[run_of(plain)])
    only_plain = sections.page_one(plain_rep)
    assert "**signed envelopes**" in only_plain and "[Next steps](#next-steps)" in only_plain
    assert "**Signed envelopes** — no run signed its envelopes" in sections.recommendation(plain_rep)
    assert "**least-privilege ACL users**" in only_plain and "**Forged" not in only_plain


def test_every_entry_of_page_ones_table_of_contents_links_to_a_section():
    from fanout.report import appendix, operations

    rep = Report(params=PARAMS, runs=[run_of(make_record(SEED_3)), fault_run(lose=True)])
    page = sections.page_one(rep)
    body = "".join([page, sections.recommendation(rep), sections.scenarios(rep), sections.comparisons(rep),
                    sections.failover(rep), sections.capacity(rep), sections.soak(rep), operations.operations(rep),
                    operations.limitations(rep), operations.methodology(), appendix.appendix(rep, None, "")])
    for anchor, title in sections.TOC:
        assert f"[{title}](#{anchor})" in page
        assert f'<a id="{anchor}"></a>' in body, anchor
