"""Percentiles only where the samples carry them (a percentile q needs 10 / (1 − q) samples), and
"exactly once" with its 95 % upper bound on the loss rate (the rule of three). Synthetic records
(no Redis), except the ``fanout run`` test, which runs on a throwaway server."""
from __future__ import annotations

import itertools
import json
import re
import subprocess

import numpy as np
import pytest

from _records import event_id, make_record
from conftest import ROOT, fanout_cmd
from fanout import formatting as fmt
from fanout.analysis import analyse
from fanout.analysis.findings import compare
from fanout.analysis.latency import carried, latency_stats, min_samples, ms_quantiles, withheld
from fanout.report import saturation, sections
from fanout.report import tables as T
from fanout.report.compare import compare_sets
from fanout.report.context import Report
from fanout.report.params import ReportParams
from fanout.report.runs import ScenarioRun
from fanout.report.text import render_text

import pandas as pd

SEED_3 = {"test-instance-0": 69, "test-instance-1": 65, "test-instance-2": 61}  # 390 samples
KEYS = ("count", "negative", "avg_ms", "min_ms", "max_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms")
_IDS = itertools.count()
PARAMS = ReportParams(scenarios=("standard",), failover=(), capacity=False)


def run_of(record, role="scenario") -> ScenarioRun:
    record.run_id = f"pct-{next(_IDS)}"
    return ScenarioRun(scenario=None, record=record, findings=analyse(record), role=role)


# --- the rule -----------------------------------------------------------------------------------

def test_the_rule_is_ten_samples_beyond_the_percentile():
    assert [min_samples(q) for q in (50, 95, 99, 99.9)] == [20, 200, 1_000, 10_000]
    assert not carried(99, 999) and carried(99, 1_000)
    assert not carried(99.9, 9_999) and carried(99.9, 10_000)
    assert not carried(95, 199) and carried(95, 200)
    assert not carried(50, 19) and carried(50, 20)


@pytest.mark.parametrize("n, shown, held", [
    (999, {"p50_ms", "p95_ms"}, {"p99_ms": 1_000, "p999_ms": 10_000}),
    (1_000, {"p50_ms", "p95_ms", "p99_ms"}, {"p999_ms": 10_000}),
    (9_999, {"p50_ms", "p95_ms", "p99_ms"}, {"p999_ms": 10_000}),
    (10_000, {"p50_ms", "p95_ms", "p99_ms", "p999_ms"}, {}),
])
def test_latency_stats_withholds_at_the_boundaries(n, shown, held):
    ns = np.arange(1, n + 1, dtype=np.int64) * 1_000
    s = latency_stats(ns)
    assert set(KEYS) <= set(s)  # every key stays, so other code keeps working
    assert s["count"] == n and s["withheld"] == held
    for key in ("p50_ms", "p95_ms", "p99_ms", "p999_ms"):
        if key in shown:
            q = {"p50_ms": 50, "p95_ms": 95, "p99_ms": 99, "p999_ms": 99.9}[key]
            assert s[key] == np.percentile(ns, q) / 1e6
        else:
            assert s[key] is None
    assert s["max_ms"] == n / 1_000 and s["avg_ms"] is not None  # not percentiles of the tail: always shown


def test_no_samples_is_not_a_withheld_percentile():
    s = latency_stats(np.empty(0, dtype=np.int64))
    assert s["p50_ms"] is None and s["withheld"] == {} and s["count"] == 0
    assert withheld(0) == {} and withheld(19) == {"p50_ms": 20, "p95_ms": 200, "p99_ms": 1_000, "p999_ms": 10_000}


def test_schedule_lag_quantiles_follow_the_rule():
    q = ms_quantiles(pd.Series(np.arange(999) * 1_000))
    assert q["p99_ms"] is None and q["p50_ms"] is not None and q["withheld"] == {"p99_ms": 1_000} and q["count"] == 999
    assert ms_quantiles(pd.Series(np.arange(1_000) * 1_000))["p99_ms"] is not None


def test_findings_per_instance_and_json_carry_null_and_why():
    f = analyse(make_record(SEED_3))
    assert f.latency["count"] == 390 and f.latency["p99_ms"] is None and f.latency["p999_ms"] is None
    assert f.latency["withheld"] == {"p99_ms": 1_000, "p999_ms": 10_000}
    assert f.latency["p50_ms"] == 1.0 and f.latency["p95_ms"] == 1.0
    assert list(f.per_instance["lat_count"]) == [126, 130, 134]
    assert f.per_instance["lat_p95_ms"].isna().all() and f.per_instance["lat_p50_ms"].notna().all()
    assert f.overall["schedule_lag_p99_ms"] is None and f.overall["schedule_lag_withheld"] == {"schedule_lag_p99_ms": 1_000}
    doc = json.loads(json.dumps(f.to_dict(), allow_nan=False))
    assert doc["latency"]["p999_ms"] is None and doc["latency"]["withheld"]["p999_ms"] == 10_000
    assert doc["per_instance"][0]["lat_p99_ms"] is None and doc["per_instance"][0]["lat_count"] == 126
    assert doc["percentile_rule"]["min_samples"] == {"p50_ms": 20, "p95_ms": 200, "p99_ms": 1_000, "p999_ms": 10_000}


# --- how a withheld percentile reads ------------------------------------------------------------

def test_a_withheld_percentile_reads_n_too_small():
    assert fmt.percentile(None, 180, "p999_ms") == "n too small (n=180; p99.9 needs ≥ 10,000)"
    assert fmt.percentile(None, 180, "lat_p99_ms", short=True) == "— (n=180)"
    assert fmt.percentile(1.5, 20_000, "p999_ms") == "1.500ms"
    assert fmt.percentile(None, 0, "p99_ms") == "n/a"


def test_run_text_says_n_too_small_with_n():
    text = render_text(analyse(make_record(SEED_3)))
    lines = text.splitlines()
    assert "  P99.9: n too small (n=390; p99.9 needs ≥ 10,000)" in lines
    assert "  P99: n too small (n=390; p99 needs ≥ 1,000)" in lines
    assert "  P50 (Median): 1.000ms" in lines and "  P95: 1.000ms" in lines
    assert "  Avg Latency: 1.000ms (P99 n too small (n=126; p99 needs ≥ 1,000))" in lines
    assert not re.search(r"P99(\.9)?:? \d", text)


def test_none_percentiles_never_break_the_comparisons():
    small, big = analyse(make_record(SEED_3)), analyse(make_record({"a": 600, "b": 600}))
    t = compare(small, big)
    assert t.loc["P99 Latency"].tolist()[:2] == ["— (n=390)", "1.000ms"] and t.loc["P99 Latency", "Difference"] == "n/a"
    # repeated runs: a p99 no run carries is not compared; one side carrying it is no test
    base = [run_of(make_record(SEED_3)) for _ in range(3)]
    c = compare_sets(base, [run_of(make_record(SEED_3, latency_ns=9_000_000)) for _ in range(3)])
    assert [m for _s, m in c.skipped if m.startswith("p99")] == ["p99 latency"]
    p50 = c.rows.set_index("metric").loc["p50 latency"]
    assert p50["shift"] == pytest.approx(8.0) and p50["p"] is not None  # what the samples carry is still compared
    one_side = compare_sets(base, [run_of(make_record({"a": 600, "b": 600}))] * 3).rows.set_index("metric")
    p99 = one_side.loc["p99 latency"]
    assert (p99["base_n"], p99["new_n"], p99["p"], p99["reading"]) == (0, 3, None, "INCONCLUSIVE")
    assert not p99["regressed"]


# --- the rule of three --------------------------------------------------------------------------

def test_exactly_once_comes_with_the_rule_of_three():
    f = analyse(make_record(SEED_3))
    assert f.overall["loss_rate_upper_95"] == pytest.approx(3 / 390)
    assert "  Loss rate: 0 of 390 (< 0.77 % at 95 % confidence, rule of three)" in render_text(f).splitlines()
    lossy = analyse(make_record(SEED_3, drop=[("test-instance-1", event_id("test-instance-0", 4))]))
    assert lossy.overall["loss_rate_upper_95"] is None
    assert "  Loss rate: 1 of 390 (0.26 %)" in render_text(lossy).splitlines()
    assert fmt.loss_bound(400) == "< 0.75 %" and fmt.loss_bound(40_000) == "< 0.0075 %"
    assert fmt.loss_bound(1_800) == "< 0.17 %"  # rounded up: a bound stays a bound


def test_the_report_states_the_bound_beside_exactly_once():
    runs = [run_of(make_record(SEED_3)), run_of(make_record({"a": 4, "b": 5, "c": 3}))]
    rep = Report(params=PARAMS, runs=runs)
    page = sections.page_one(rep)
    n = 390 + 24
    bound = f"loss rate {fmt.loss_bound(n)} at 95 % confidence"
    assert bound in page.split("### Scope")[0]
    head = sections.scenario_head(rep, runs[0], 1)
    assert f"loss rate {fmt.loss_bound(390)} at 95 % confidence" in head


# --- the report ---------------------------------------------------------------------------------

def test_the_report_never_prints_a_withheld_percentile_as_a_number():
    run = run_of(make_record(SEED_3))
    latency = sections.scenario_latency(run)
    row = next(ln for ln in latency.splitlines() if ln.startswith("| P99.9"))
    assert "— (n=390)" in row and not re.search(r"\d\.\d{3}ms", row)
    assert "p99.9 10,000" in latency  # the rule, said once under the table
    per = T.instance_latency_table(run.findings)
    assert list(per["P99"]) == ["— (n=126)", "— (n=130)", "— (n=134)"]
    rep = Report(params=PARAMS, runs=[run])
    perf = sections.performance(rep)
    row = next(ln for ln in perf.splitlines() if ln.startswith("| standard") or "synthetic" in ln or "pct-" in ln)
    assert "— (n=390)" in row
    key = sections.page_one(rep)
    assert "— (n=390)" in key
    caption = sections.macro("captions.md.j2", "latency_ecdf")(run)
    assert "n too small" in caption and not re.search(r"p99 \d", caption)
    for text in (latency, perf, key, caption):
        assert not re.search(r"P99\.9[^|]*\|\s*\d", text)


def test_a_big_enough_run_shows_every_percentile():
    f = analyse(make_record({"a": 5_000, "b": 5_000}))
    assert f.latency["withheld"] == {} and f.latency["p999_ms"] == 1.0
    assert "  P99.9: 1.000ms" in render_text(f).splitlines()


# --- fanout run on a real server ------------------------------------------------------------------

def test_fanout_run_text_and_json_withhold_what_a_short_run_cannot_carry(redis_url):
    args = [*fanout_cmd(), "run", "--instances=3", "--duration=2", "--rate=20", "--no-progress", "--no-save",
            f"--redis-url={redis_url}"]
    text = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert text.returncode == 0, text.stderr
    n = int(re.search(r"Samples: (\d+)", text.stdout).group(1))
    assert 0 < n < 1_000
    assert f"  P99.9: n too small (n={n}; p99.9 needs ≥ 10,000)" in text.stdout.splitlines()
    assert re.search(rf"  Loss rate: 0 of {n} \(< [\d.]+ % at 95 % confidence, rule of three\)", text.stdout)
    js = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert js.returncode == 0, js.stderr
    doc = json.loads(js.stdout)
    assert doc["latency"]["p999_ms"] is None and doc["latency"]["p99_ms"] is None
    assert doc["latency"]["withheld"] == withheld(doc["latency"]["count"]) and "p999_ms" in doc["latency"]["withheld"]
    assert doc["overall"]["loss_rate_upper_95"] == pytest.approx(3 / doc["overall"]["expected"])


def test_the_load_judgement_still_screens_on_what_it_does_not_print():
    """A short run whose publisher fell 30 ms behind (latency 40 ms from due) is over capacity as
    before, though its schedule-lag p99 (195 publications) is withheld from what the report shows."""
    rec = make_record(SEED_3, latency_ns=40_000_000)
    rec.publications["t_sent"] += 30_000_000
    load = saturation.assess(run_of(rec))
    assert load.over_capacity and load.lag_dominates and load.state == saturation.BEHIND
    assert load.lag_p99_ms is None and load.lag_samples == 195 and load.lag_p50_ms == pytest.approx(30.05)
    calm = saturation.assess(run_of(make_record(SEED_3)))
    assert not calm.over_capacity
