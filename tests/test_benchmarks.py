"""The benchmarks' correctness (never their timing): the knee search on a fake measure
function, and one tiny real run of the quick benchmark's latency section."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fanout.percentiles import carried, quantile_of
from conftest import ROOT

if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder of the repository, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import Criteria, judge  # noqa: E402
from benchmarks.knee import find_knee  # noqa: E402


def fake_measure(threshold: float = 300.0):
    """Passes below ``threshold`` events/s, fails at or above it with a reason; records every probe."""
    probes: list[float] = []

    def measure(rate: float) -> dict:
        probes.append(rate)
        if rate < threshold:
            return {"passed": True, "reason": "", "target_rate": rate}
        return {"passed": False, "reason": f"delivery 99.000% < 100% at {rate:g}/s", "target_rate": rate}

    return measure, probes


def test_raise_phase_stops_at_the_first_failure_and_reports_its_reason():
    measure, probes = fake_measure()
    r = find_knee(measure, start=50, factor=2, refine_steps=0)
    assert probes == [50, 100, 200, 400]            # never beyond the first failing step
    assert (r.knee_rate, r.failed_rate) == (200, 400)
    assert r.reason == "delivery 99.000% < 100% at 400/s"
    assert not r.capped
    assert [p[0] for p in r.probes] == ["raise"] * 4
    assert r.knee_step["target_rate"] == 200 and r.failed_step["target_rate"] == 400


def test_bisection_narrows_below_the_first_failure_and_never_probes_above_it():
    measure, probes = fake_measure()
    r = find_knee(measure, start=50, factor=2, refine_steps=6, tolerance=0.02)
    raise_phase = [rate for phase, rate, _ in r.probes if phase == "raise"]
    assert raise_phase == [50, 100, 200, 400]
    assert sum(1 for p in raise_phase if p >= 300) == 1  # exactly one failing probe while raising
    later = probes[len(raise_phase):]
    assert later and all(200 < p < 400 for p in later)
    assert r.knee_rate == max(p for p in probes if p < 300)
    assert 290 <= r.knee_rate < 300
    assert r.failed_rate == min(p for p in probes if p >= 300)
    assert r.reason == f"delivery 99.000% < 100% at {r.failed_rate:g}/s"
    assert len(probes) <= 4 + 6


def test_a_failing_first_step_descends_until_one_passes():
    measure, probes = fake_measure()
    r = find_knee(measure, start=1000, factor=2, refine_steps=0)
    assert probes == [1000, 500, 250]
    assert (r.knee_rate, r.failed_rate) == (250, 500)
    assert r.reason.endswith("at 500/s")


def test_nothing_fails_up_to_the_cap_and_nothing_passes_at_all():
    measure, probes = fake_measure(threshold=1e9)
    r = find_knee(measure, start=100, factor=4, max_rate=1000)
    assert probes == [100, 400, 1000] and r.capped and r.knee_rate == 1000 and r.failed_rate is None
    assert r.reason == ""
    measure, probes = fake_measure(threshold=0)
    r = find_knee(measure, start=8, factor=2, min_rate=1)
    assert probes == [8, 4, 2, 1] and r.knee_rate is None and r.failed_rate == 1


def _step(**over) -> dict:
    base = {"reconnects": 0, "gaps": 0, "disconnects": 0, "output_buffer_disconnections": 0,
            "all_connected": True, "publish_failed": 0, "delivery_pct": 100.0, "missing": 0, "expected": 10,
            "drain_timeout_s": 2.0, "achieved_rate": 1000.0, "target_rate": 1000.0,
            "schedule_lag_p99_ms": 1.0, "latency": {"p99_ms": 2.0}}
    return base | over


def test_a_disconnected_subscriber_is_never_a_pass_even_with_full_delivery():
    assert judge(_step(), Criteria()) == []
    why = judge(_step(output_buffer_disconnections=1), Criteria())
    assert why and "disconnected" in why[0]
    assert judge(_step(reconnects=1), Criteria()) and judge(_step(gaps=3), Criteria())
    assert "publisher behind" in judge(_step(achieved_rate=900.0), Criteria())[0]
    assert "delivery" in judge(_step(delivery_pct=99.9, missing=1), Criteria())[0]


def test_quick_latency_smoke_writes_json_with_the_fields(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--only", "latency", "--rates", "200",
           "--instances", "2", "--duration", "1", "--out", str(tmp_path)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Latency at fixed rates" in p.stdout
    res = json.loads((tmp_path / "latest.json").read_text())
    assert res["mode"] == "quick" and res["sections"] == ["latency"]
    m = res["machine"]
    for key in ("cores", "cpu_model", "redis_server", "python", "redis_py", "hiredis"):
        assert key in m
    assert m["cores"] >= 1 and m["python"] and m["redis_py"]
    assert set(res["provenance"]) == {"commit", "dirty", "fanout", "command"}  # the appendix names the commit
    runs = res["latency"]["runs"]
    assert {r["harness"] for r in runs} == {"fanout", "baseline", "baseline-pipelined"}
    for r in runs:
        assert r["instances"] == 2 and r["target_rate"] == 200
        assert r["delivery_pct"] == pytest.approx(100.0), r
        assert r["missing"] == 0 and r["expected"] == r["received"] > 0
        lat = r["latency"]
        for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
            if key in lat.get("withheld", {}):  # a percentile its samples do not carry is not given
                assert lat[key] is None and not carried(quantile_of(key), lat["count"])
            else:
                assert isinstance(lat[key], float) and lat[key] >= 0
        assert r["achieved_rate"] > 0 and "python_cpu_pct" in r["cpu"] and "redis_cpu_pct" in r["cpu"]
        assert r["reconnects"] == r["disconnects"] == r["output_buffer_disconnections"] == 0
    assert "ratios_fanout_over" in res["latency"]
    assert list(tmp_path.glob("*-quick.json"))
