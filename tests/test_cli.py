"""The fanout command as a user runs it: exit codes, one-line errors, JSON that matches the text."""
from __future__ import annotations

import json
import re
import subprocess

from conftest import ROOT, fanout_cmd

SMALL = ["--duration=2", "--rate=20", "--no-progress"]


def fanout(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*fanout_cmd(), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_version_and_help():
    assert fanout("--version").stdout.strip().startswith("fanout 0.")
    out = fanout("run", "--help").stdout
    for flag in ("--instances", "--duration", "--rate", "--verbose", "--scenario", "--redis-url", "--json", "--out"):
        assert flag in out


def test_run_passes_with_exact_arithmetic_and_text_matches_json(redis_url, tmp_path):
    text = fanout("run", "--instances=3", *SMALL, f"--redis-url={redis_url}", f"--out={tmp_path}")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "Test Results - Multi-Instance Redis Pub/Sub" in out and "Overall Status: PASS" in out
    assert "Total Events Published: 40" in out and "Expected Received: 80" in out and "Delivery Rate: 100.00%" in out
    lines = re.findall(r"Published (\d+), Should receive ([\d+]+)=(\d+) ✓ Received (\d+)", out)
    assert len(lines) == 3 and sum(int(p) for p, *_ in lines) == 40
    for pub, parts, expected, received in lines:
        assert sum(int(x) for x in parts.split("+")) == int(expected) == int(received) == 40 - int(pub)
    assert re.search(r"Average: \d+\.\d{3}ms", out), "latencies must carry three decimals"
    run_dir = re.search(r"Run record: (\S+)", out).group(1)
    assert (ROOT / run_dir / "run.json").exists() or (tmp_path / run_dir.split("/")[-1] / "run.json").exists()

    js = fanout("run", "--instances=3", *SMALL, f"--redis-url={redis_url}", "--json", "--no-save")
    assert js.returncode == 0, js.stderr
    data = json.loads(js.stdout)
    assert data["status"] == "PASS" and data["overall"]["published"] == 40 and data["overall"]["received"] == 80
    assert [r["expected"] for r in data["per_instance"]] == [int(e) for _, _, e, _ in lines]


def test_verbose_prints_every_transmission_and_delivery(redis_url):
    res = fanout("run", "--instances=2", "--duration=1", "--rate=5", "--verbose", "--no-progress", "--no-save",
                 f"--redis-url={redis_url}")
    assert res.returncode == 0, res.stderr
    sent = re.findall(r"test-instance-\d -> (ticker|trade) \S+/USDT", res.stdout)
    got = re.findall(r"test-instance-\d <- test-instance-\d", res.stdout)
    assert len(sent) == 5 and len(got) == 5


def test_a_failing_verdict_exits_1(redis_url):
    res = fanout("run", *SMALL, "--max-avg-latency=0.000001", "--no-save", f"--redis-url={redis_url}")
    assert res.returncode == 1
    assert "Overall Status: FAIL" in res.stdout and "✗ Average latency" in res.stdout


def test_bad_flags_exit_2_with_one_line():
    for args in (["run", "--bogus"], ["run", "--instances=abc"], ["run", "--instances=0"],
                 ["run", "--event-types=ticker,quote"], ["run", "--transport=kafka"], ["run", "--scenario=nope"]):
        res = fanout(*args)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, (args, res.stderr)
    assert "instances" in fanout("run", "--instances=0").stderr
    assert "quote" in fanout("run", "--event-types=ticker,quote").stderr


def test_unreachable_redis_exits_3_with_one_redacted_line():
    res = fanout("run", *SMALL, "--redis-url=redis://:hunter2@127.0.0.1:1/0", timeout=30)
    assert res.returncode == 3
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "redis://:***@127.0.0.1:1/0" in lines[0] and "hunter2" not in res.stderr


def test_demo_runs_on_a_throwaway_server():
    res = fanout("demo", "--events=8", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "each bot received all 8 events: PASS" in res.stdout
