"""analyse(), compare() and latency_samples() over synthetic records (no Redis)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _records import T0, event_id, make_record
from fanout.analysis import Criterion, Thresholds, analyse, compare, latency_samples
from fanout.lab.record import DELIVERY_COLUMNS, frame

SEED_3 = {"test-instance-0": 69, "test-instance-1": 65, "test-instance-2": 61}
SEED_5 = {f"test-instance-{i}": n for i, n in enumerate((51, 68, 49, 53, 73))}
ARITHMETIC = "Per-instance arithmetic exact (each received all published minus its own)"


def per(findings, instance: str) -> dict:
    """One instance's row of per_instance as a dict."""
    rows = findings.per_instance.set_index("instance")
    return rows.loc[instance].to_dict()


def criterion(findings, name: str) -> Criterion:
    return next(c for c in findings.verdict if c.name == name)


def add_deliveries(record, rows: list[dict]) -> None:
    """Append delivery rows to a record in place."""
    record.deliveries = pd.concat([record.deliveries, frame(rows, DELIVERY_COLUMNS)], ignore_index=True)


# --- the seed's arithmetic ----------------------------------------------------------------

def test_seed_three_instance_arithmetic():
    f = analyse(make_record(SEED_3))
    pi = f.per_instance
    assert list(pi["instance"]) == list(SEED_3)
    assert list(pi["published"]) == [69, 65, 61]
    assert list(pi["expected"]) == [126, 130, 134]
    assert list(pi["expected_formula"]) == ["65 + 61 = 126", "69 + 61 = 130", "69 + 65 = 134"]
    assert list(pi["received"]) == [126, 130, 134]
    assert list(pi["missing"]) == [0, 0, 0]
    assert pi["arithmetic_ok"].all()
    o = f.overall
    assert (o["instances"], o["published"], o["expected"]) == (3, 195, 390)
    assert (o["received"], o["delivered_rows"]) == (390, 390)
    assert o["delivery_pct"] == 100.0
    assert o["duration_s"] == 20.0
    assert (o["missing"], o["duplicates"], o["self_received"], o["unknown"], o["unexpected"]) == (0, 0, 0, 0, 0)
    assert f.passed and f.status == "PASS"
    assert [c.name for c in f.verdict] == [
        "All instances connected", "No self-received events (instance filtering works)", "Delivery rate >95%",
        "No errors", "Average latency <100ms", ARITHMETIC, "No duplicates",
    ]


def test_seed_five_instance_arithmetic():
    f = analyse(make_record(SEED_5))
    assert list(f.per_instance["expected"]) == [243, 226, 245, 241, 221]
    assert f.per_instance["expected_formula"].iloc[0] == "68 + 49 + 53 + 73 = 243"
    assert (f.overall["published"], f.overall["received"]) == (294, 1176)
    assert f.passed


def test_expected_is_sum_of_the_others_for_each_instance():
    counts = {"a": 3, "b": 0, "c": 11, "d": 7}
    f = analyse(make_record(counts))
    total = sum(counts.values())
    for name, n in counts.items():
        assert per(f, name)["expected"] == total - n
    assert per(f, "b")["expected_formula"] == "3 + 11 + 7 = 21"  # an instance that published nothing appears
    assert per(f, "a")["expected_formula"] == "0 + 11 + 7 = 18"


def test_formula_spelled_out_up_to_eight_others_then_summarised():
    nine = analyse(make_record({f"i{k}": k + 1 for k in range(9)}))
    assert per(nine, "i0")["expected_formula"] == "2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 = 44"
    ten = analyse(make_record({f"i{k}": k + 1 for k in range(10)}))
    assert per(ten, "i0")["expected_formula"] == "sum of 9 others = 54"


# --- faults are counted where they happened -------------------------------------------------

def test_removed_delivery_is_missing_for_that_receiver_only():
    rec = make_record(SEED_3, drop=[("test-instance-1", event_id("test-instance-0", 4))])
    f = analyse(rec)
    assert list(f.per_instance["missing"]) == [0, 1, 0]
    assert list(f.per_instance["received"]) == [126, 129, 134]
    assert list(f.per_instance["arithmetic_ok"]) == [True, False, True]
    assert f.overall["missing"] == 1 and f.overall["received"] == 389
    assert f.overall["delivery_pct"] == pytest.approx(100 * 389 / 390)
    assert per(f, "test-instance-1")["delivery_pct"] == pytest.approx(100 * 129 / 130)
    assert not criterion(f, ARITHMETIC).passed
    assert criterion(f, ARITHMETIC).measured == "2/3 instances exact"
    assert criterion(f, "Delivery rate >95%").passed
    assert f.status == "FAIL" and not f.passed


def test_duplicate_is_counted_and_does_not_inflate_received():
    eid = event_id("test-instance-2", 0)
    f = analyse(make_record(SEED_3, duplicate=[("test-instance-0", eid)]))
    assert list(f.per_instance["duplicates"]) == [1, 0, 0]
    assert list(f.per_instance["received"]) == [126, 130, 134]
    assert f.overall["duplicates"] == 1 and f.overall["delivered_rows"] == 391 and f.overall["received"] == 390
    assert f.latency["count"] == 390  # only the first delivery of each (id, receiver) is a sample
    assert not criterion(f, "No duplicates").passed
    assert not criterion(f, ARITHMETIC).passed
    assert f.status == "FAIL"


def test_self_received_is_counted_and_fails():
    f = analyse(make_record(SEED_3, self_deliver=["test-instance-2"]))
    assert list(f.per_instance["self_received"]) == [0, 0, 1]
    assert list(f.per_instance["received"]) == [126, 130, 134]
    assert f.overall["self_received"] == 1
    assert f.latency["count"] == 390  # self-deliveries are not latency samples
    c = criterion(f, "No self-received events (instance filtering works)")
    assert not c.passed and c.measured == "1"
    assert f.status == "FAIL"


def test_failed_publications_are_expected_nowhere_and_reported():
    f = analyse(make_record(SEED_3, failed=4))
    assert f.overall["publish_failed"] == 4
    assert f.overall["published"] == 195
    assert list(f.per_instance["published"]) == [69, 65, 61]
    assert list(f.per_instance["publish_failed"]) == [2, 1, 1]
    assert list(f.per_instance["expected"]) == [126, 130, 134]
    assert f.overall["missing"] == 0 and criterion(f, ARITHMETIC).passed
    assert f.overall["errors"] == 4 and not criterion(f, "No errors").passed  # the bridge counts them as errors


def test_failed_publication_delivered_anyway_is_reported_not_received():
    rec = make_record({"a": 2, "b": 2}, failed=1)
    failed = rec.publications.loc[~rec.publications["ok"]].iloc[0]
    add_deliveries(rec, [{"id": failed["id"], "source": failed["source"], "receiver": "b", "type": failed["type"],
                          "seq": failed["seq"], "t_received": failed["t_intended"] + 1}])
    f = analyse(rec)
    assert f.overall["failed_delivered"] == 1
    assert f.overall["unknown"] == 0
    assert list(f.per_instance["received"]) == [2, 2]


def test_unknown_delivery_is_counted_and_fails_arithmetic():
    rec = make_record({"a": 2, "b": 2})
    add_deliveries(rec, [{"id": "zz:ticker:1", "source": "a", "receiver": "b", "type": "ticker", "seq": 1,
                          "t_received": T0}])
    f = analyse(rec)
    assert f.overall["unknown"] == 1
    assert list(f.per_instance["received"]) == [2, 2]
    assert not criterion(f, ARITHMETIC).passed


def test_receivers_topology_publisher_expects_nothing():
    rec = make_record({"host": 50, "bot-1": 0, "bot-2": 0},
                      scenario_overrides={"publishers": ["host"], "receivers": ["bot-1", "bot-2"]})
    f = analyse(rec)
    assert list(f.per_instance["role"]) == ["publisher", "receiver", "receiver"]
    assert list(f.per_instance["expected"]) == [0, 50, 50]
    assert per(f, "host")["expected_formula"] == "not a receiver"
    assert f.overall["expected"] == 100 and f.passed


def test_delivery_to_a_non_receiver_is_unexpected():
    rec = make_record({"a": 3, "b": 3, "c": 0}, scenario_overrides={"receivers": ["b", "c"]})
    add_deliveries(rec, [{"id": event_id("b", 0), "source": "b", "receiver": "a", "type": "ticker", "seq": 1,
                          "t_received": T0 + 10**9}])
    f = analyse(rec)
    assert per(f, "a")["expected"] == 0 and per(f, "a")["received"] == 0 and per(f, "a")["unexpected"] == 1
    assert f.overall["unexpected"] == 1 and f.overall["delivery_pct"] == 100.0
    assert not criterion(f, ARITHMETIC).passed


def test_single_instance_expects_nothing_and_passes():
    f = analyse(make_record({"solo": 5}))
    assert per(f, "solo")["expected"] == 0 and per(f, "solo")["delivery_pct"] == 100.0
    assert f.latency["count"] == 0 and f.latency["avg_ms"] is None
    assert f.passed
    json.dumps(f.to_dict(), allow_nan=False)


def test_disconnected_instance_fails():
    rec = make_record(SEED_3)
    rec.instances.loc[1, "connected"] = False
    c = criterion(analyse(rec), "All instances connected")
    assert not c.passed and c.measured == "2/3 connected"


# --- latency ---------------------------------------------------------------------------------

def test_percentiles_use_every_sample():
    lat_ns = [i * 1_000 for i in range(1, 1001)]  # 1 .. 1000 µs
    f = analyse(make_record({"a": 500, "b": 500}, latency_ns=lat_ns))
    arr = np.array(lat_ns)
    assert f.latency["count"] == 1000
    assert f.latency["p50_ms"] == np.percentile(arr, 50) / 1e6 == 0.5005
    assert f.latency["p95_ms"] == np.percentile(arr, 95) / 1e6
    assert f.latency["p99_ms"] == np.percentile(arr, 99) / 1e6
    assert f.latency["p999_ms"] is None and f.latency["withheld"] == {"p999_ms": 10_000}  # 1,000 do not carry it
    assert f.latency["max_ms"] == 1.0 and f.latency["min_ms"] == 0.001
    assert f.latency["avg_ms"] == pytest.approx(0.5005, abs=1e-12)
    # per instance: b receives a's events, which carry the odd-positioned samples
    b = arr[np.array(make_record({"a": 500, "b": 500}, latency_ns=lat_ns).deliveries["receiver"] == "b")]
    assert per(f, "b")["lat_p95_ms"] == np.percentile(b, 95) / 1e6
    assert per(f, "b")["lat_count"] == 500 and np.isnan(per(f, "b")["lat_p99_ms"])  # 500 do not carry a p99
    assert per(f, "b")["lat_max_ms"] == b.max() / 1e6


def test_latency_from_send_is_reported_beside_the_headline():
    f = analyse(make_record(SEED_3, latency_ns=2_000_000))
    assert f.latency["avg_ms"] == 2.0
    assert f.latency_sent["avg_ms"] == pytest.approx(2.0 - 0.05)
    assert f.overall["schedule_lag_p50_ms"] == 0.05 and f.overall["schedule_lag_max_ms"] == 0.05


def test_negative_latency_is_counted_not_dropped():
    f = analyse(make_record({"a": 2, "b": 2}, latency_ns=[-200_000, 1_000_000, 1_000_000, 1_000_000]))
    assert f.overall["negative_latencies"] == 1
    assert f.latency["count"] == 4
    assert f.latency["min_ms"] == -0.2
    assert f.latency["avg_ms"] == pytest.approx((-0.2 + 3.0) / 4)


def test_latency_samples_frame():
    rec = make_record({"a": 2, "b": 1}, duplicate=[("b", event_id("a", 0))], self_deliver=["a"],
                      latency_ns=[1_500_000, 2_500_000, 3_500_000])
    s = latency_samples(rec)
    assert list(s.columns) == ["receiver", "source", "id", "type", "t_received", "lat_ns", "lat_sent_ns", "lat_ms"]
    assert len(s) == 3
    assert sorted(s["lat_ns"]) == [1_500_000, 2_500_000, 3_500_000]
    assert (s["lat_sent_ns"] == s["lat_ns"] - 50_000).all()
    assert list(s["lat_ms"]) == [1.5, 2.5, 3.5]


# --- rates --------------------------------------------------------------------------------------

def test_rates():
    rec = make_record(SEED_3)
    f = analyse(rec)
    assert f.overall["target_rate_per_s"] == 10.0
    assert f.overall["achieved_rate_per_s"] == pytest.approx(10.0)
    assert f.overall["deliveries_per_s"] == pytest.approx(390 / ((rec.t_end - rec.t0) / 1e9))


# --- thresholds ------------------------------------------------------------------------------

def test_thresholds_from_scenario_and_texts():
    assert Thresholds.from_scenario({}) == Thresholds(95.0, 100.0)
    assert Thresholds.from_scenario({"min_delivery_pct": 99.5, "max_avg_latency_ms": 5}) == Thresholds(99.5, 5.0)
    rec = make_record(SEED_3, drop=[("test-instance-1", event_id("test-instance-0", 4))],
                      scenario_overrides={"min_delivery_pct": 99.5, "max_avg_latency_ms": 5.0})
    f = analyse(rec)
    d = criterion(f, "Delivery rate >99.5%")
    assert d.passed and d.threshold == ">99.5%" and d.measured == "99.74%"
    lat = criterion(f, "Average latency <5ms")
    assert lat.passed and lat.threshold == "<5ms" and lat.measured == "1.000ms"
    strict = analyse(rec, Thresholds(min_delivery_pct=99.8))
    assert not criterion(strict, "Delivery rate >99.8%").passed


def test_delivery_rate_threshold_is_strict():
    f = analyse(make_record({"a": 10, "b": 10}, drop=[("b", event_id("a", 0))]))
    assert f.overall["delivery_pct"] == 95.0
    assert not criterion(f, "Delivery rate >95%").passed


def test_impossible_latency_threshold_fails():
    f = analyse(make_record(SEED_3), Thresholds(max_avg_latency_ms=0.0000001))
    c = f.verdict[4]
    assert c.name.startswith("Average latency <") and not c.passed
    assert f.status == "FAIL"


# --- serialisation and comparison ---------------------------------------------------------------

def test_to_dict_is_plain_json():
    f = analyse(make_record(SEED_3, drop=[("test-instance-1", event_id("test-instance-0", 4))]))
    d = f.to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back == d
    assert back["status"] == "FAIL" and back["passed"] is False
    assert back["overall"]["delivery_pct"] == f.overall["delivery_pct"]
    assert type(back["overall"]["delivery_pct"]) is float and type(back["overall"]["received"]) is int
    assert back["per_instance"][1]["missing"] == 1 and back["per_instance"][1]["instance"] == "test-instance-1"
    assert back["latency"]["p99_ms"] == f.latency["p99_ms"]


def test_compare_seed_table():
    a = analyse(make_record(SEED_3, latency_ns=1_060_000))
    b_rec = make_record(SEED_5, latency_ns=1_280_000)
    b_rec.instances.loc[0, "errors"] = 2
    b = analyse(b_rec)
    t = compare(a, b)
    assert list(t.columns) == ["3 Instances", "5 Instances", "Difference"]
    assert list(t.index) == ["Delivery Rate", "Avg Latency", "P95 Latency", "P99 Latency", "Max Latency",
                             "Self-Received", "Errors"]
    assert t.loc["Avg Latency"].tolist() == ["1.060ms", "1.280ms", "+21%"]
    assert t.loc["Delivery Rate"].tolist() == ["100.00%", "100.00%", "0%"]
    assert t.loc["Self-Received"].tolist() == ["0", "0", "0"]
    assert t.loc["Errors"].tolist() == ["0", "2", "+2"]
    assert compare(b, a, labels=("x", "y")).loc["Avg Latency", "Difference"] == "-17%"
