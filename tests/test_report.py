"""render_text / render_json / render_markdown_table over synthetic records (no Redis)."""
from __future__ import annotations

import json
import re

from _records import event_id, make_record
from fanout.analysis import analyse
from fanout.report.text import render_json, render_markdown_table, render_text

SEED_3 = {"test-instance-0": 69, "test-instance-1": 65, "test-instance-2": 61}
RULE = "=" * 60


def test_text_follows_the_seed_layout():
    text = render_text(analyse(make_record(SEED_3, latency_ns=1_062_000)))
    lines = text.splitlines()
    assert lines[:3] == [RULE, "Test Results - Multi-Instance Redis Pub/Sub", RULE]
    assert lines[-2:] == ["✓ Overall Status: PASS", RULE]
    headings = ["Overall Statistics:", "Latency Statistics (from intended send time):", "Per-Instance Statistics:",
                "Instance test-instance-0:", "Instance test-instance-1:", "Instance test-instance-2:",
                "Event Distribution Verification:", "Test Verdict:"]
    positions = [lines.index(h) for h in headings]
    assert positions == sorted(positions)
    for expected in ["  Total Instances: 3", "  Test Duration: 20s", "  Total Events Published: 195",
                     "  Total Events Received: 390", "  Expected Received: 390", "  Delivery Rate: 100.00%",
                     "  Self-Received Events: 0 ✓", "  Total Errors: 0", "  Average: 1.062ms",
                     "  P50 (Median): 1.062ms", "  P99.9: n too small (n=390; p99.9 needs ≥ 10,000)",
                     "  Loss rate: 0 of 390 (< 0.77 % at 95 % confidence, rule of three)",
                     "  Connected: Yes", "  Published: 69",
                     "  Received: 126", "  Expected: 126  (65 + 61)", "  Self-Received: 0 ✓",
                     "  Avg Latency: 1.062ms (P99 n too small (n=126; p99 needs ≥ 1,000))", "  Errors: 0",
                     "  - test-instance-0: Published 69, Should receive 65+61=126 ✓ Received 126",
                     "  - test-instance-2: Published 61, Should receive 69+65=134 ✓ Received 134",
                     "  ✓ All instances connected (measured 3/3 connected; threshold all)",
                     "  ✓ Delivery rate >95% (measured 100.00%; threshold >95%)",
                     "  ✓ Average latency <100ms (measured 1.062ms; threshold <100ms)"]:
        assert expected in lines, expected


def test_latencies_have_three_decimals_everywhere():
    text = render_text(analyse(make_record(SEED_3, latency_ns=[1_234_567, 2_000_000, 800_001])))
    assert re.search(r"\d+\.\d{3}ms", text)
    body = text.split("Test Verdict:")[0]  # the verdict quotes thresholds as given ("<100ms")
    for value in re.findall(r"(-?[\d.]+)ms", body):
        assert re.fullmatch(r"-?\d+\.\d{3}", value), value
    assert "  Min: 0.800ms" in text and "  Max: 2.000ms" in text


def test_failing_run_says_why():
    rec = make_record(SEED_3, drop=[("test-instance-1", event_id("test-instance-0", 4))],
                      duplicate=[("test-instance-2", event_id("test-instance-0", 0))])
    lines = render_text(analyse(rec)).splitlines()
    assert "✗ Overall Status: FAIL" in lines
    assert "  - test-instance-1: Published 65, Should receive 69+61=130 ✗ Received 129 (missing 1)" in lines
    assert "  - test-instance-2: Published 61, Should receive 69+65=134 ✗ Received 134 (duplicates 1)" in lines
    assert ("  ✗ Per-instance arithmetic exact (each received all published minus its own) "
            "(measured 1/3 instances exact; threshold all)") in lines
    assert "  ✗ No duplicates (measured 1; threshold 0)" in lines
    assert "  Missing: 1" in lines and "  Delivery Rate: 99.74%" in lines


def test_many_instances_become_a_table():
    text = render_text(analyse(make_record({f"i{k}": 3 for k in range(13)})))
    assert "Instance i0:" not in text
    table = text.split("Per-Instance Statistics:")[1].split("Event Distribution Verification:")[0]
    rows = [ln for ln in table.splitlines() if re.match(r"  i\d+ ", ln)]
    assert len(rows) == 13
    assert re.search(r"\bi12\s+yes\s+3\s+36\s+36\s+0\s+0\s+0\s+0\s+1\.000ms\s+— \(n=36\)$", rows[-1])
    assert "p99 1,000" in table  # the rule behind the withheld p99 column, said once under it


def test_topology_shows_roles():
    rec = make_record({"host": 4, "bot": 0}, scenario_overrides={"publishers": ["host"], "receivers": ["bot"]})
    text = render_text(analyse(rec))
    assert "  Role: publisher" in text and "  Role: receiver" in text
    assert "  - host: Published 4, Should receive not a receiver ✓ Received 0" in text


def test_json_carries_the_same_numbers():
    f = analyse(make_record(SEED_3, drop=[("test-instance-1", event_id("test-instance-0", 4))], failed=2,
                            latency_ns=[1_000_000, 1_500_000, 900_000]))
    doc = json.loads(render_json(f))
    assert doc["status"] == "FAIL" == f.status
    assert doc["overall"] == f.to_dict()["overall"]
    assert doc["overall"]["received"] == f.overall["received"] == 389
    assert doc["overall"]["publish_failed"] == 2
    assert doc["latency"]["avg_ms"] == f.latency["avg_ms"]
    assert [r["expected_formula"] for r in doc["per_instance"]] == list(f.per_instance["expected_formula"])
    assert [v["passed"] for v in doc["verdict"]] == [c.passed for c in f.verdict]
    text = render_text(f)
    assert f"  Delivery Rate: {doc['overall']['delivery_pct']:.2f}%" in text
    assert f"  Average: {doc['latency']['avg_ms']:.3f}ms" in text
    assert doc["latency"]["p99_ms"] is None and doc["latency"]["withheld"]["p99_ms"] == 1_000
    assert f"  P99: n too small (n={doc['latency']['count']}; p99 needs ≥ 1,000)" in text
    assert f"  P50 (Median): {doc['latency']['p50_ms']:.3f}ms" in text


def test_markdown_table():
    md = render_markdown_table(analyse(make_record(SEED_3, drop=[("test-instance-2", event_id("test-instance-1", 0))])))
    lines = md.splitlines()
    assert lines[0] == "| Instance | Published | Should receive | Received | ✓ |"
    assert lines[2] == "| test-instance-0 | 69 | 65 + 61 = 126 | 126 | ✓ |"
    assert lines[4] == "| test-instance-2 | 61 | 69 + 65 = 134 | 133 | ✗ |"
    assert len(lines) == 5


def test_text_names_the_transport_used():
    for transport, title in (("streams", "Streams"), ("sharded", "Sharded Pub/Sub (Cluster)")):
        text = render_text(analyse(make_record(SEED_3, scenario_overrides={"transport": transport})))
        assert text.splitlines()[1] == f"Test Results - Multi-Instance Redis {title}"
        assert f"  Transport: {transport}" in text


def test_cli_help_lists_every_transport_and_what_quick_mode_runs_never_a_measured_time():
    import subprocess
    import sys

    from conftest import ROOT
    from fanout.transports import TRANSPORT_NAMES

    run = subprocess.run([sys.executable, "-m", "fanout", "run", "--help"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60).stdout
    for name in TRANSPORT_NAMES:
        assert name in run.split("--transport", 1)[1], name
    rep = subprocess.run([sys.executable, "-m", "fanout", "report", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60).stdout
    quick = " ".join(rep.split("--quick", 2)[2].split("--full")[0].split())
    assert quick.startswith("short runs, the default: scenarios capped at 3 s, capacity rows 2 s, the soak 60 s"), quick
    assert not re.search(r"measured|minutes|\d+ s on", quick), quick  # a timing belongs to README, with its command
    assert "--from-runs" in rep and "reports/latest" in rep


def test_run_ids_name_the_transport():
    from fanout.lab.scenario import Scenario
    from fanout.lab.simulator import new_run_id

    assert "-standard-sharded-" in new_run_id(Scenario(transport="sharded"))
    assert "-partition-streams-" in new_run_id(Scenario(name="partition-streams", transport="streams"))


def test_report_flags_derive_from_the_report_parameters_and_default_to_quick():
    import pytest

    from fanout.cli import build_parser
    from fanout.cli.report import report_parameters
    from fanout.errors import ConfigError

    parse = build_parser().parse_args
    assert "quick" not in report_parameters(parse(["report"]))  # the notebook's default: quick
    assert report_parameters(parse(["report", "--full"]))["quick"] is False
    values = report_parameters(parse(["report", "--scenarios", "standard,standard@streams", "--failover", "",
                                      "--no-capacity", "--key-prefix", "run7:", "--max-avg-latency", "50"]))
    assert values == {"scenarios": ["standard", "standard@streams"], "failover": [], "capacity": False,
                      "key_prefix": "run7:", "max_avg_latency_ms": 50.0}
    with pytest.raises(ConfigError, match="-p nope: no such report parameter"):
        report_parameters(parse(["report", "-p", "nope", "1"]))
    with pytest.raises(ConfigError, match="^failover_transports: unknown transport 'carrier-pigeon'"):
        report_parameters(parse(["report", "--failover-transports", "carrier-pigeon"]))
