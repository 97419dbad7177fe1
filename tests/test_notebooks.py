"""The notebooks, executed for real by papermill (small parameters), and the report export.

Each notebook run starts a kernel and a throwaway redis-server; scenarios last one or two
seconds, so the whole module takes about a minute.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, fanout_cmd, needs_redis7
from fanout.report import tables
from fanout.errors import ConfigError, FanoutError
from fanout.report.notebooks import (
    QUICK_DURATION_S,
    SCENARIO_NOTEBOOK,
    VALIDATION_NOTEBOOK,
    _secret_free,
    build_validation_report,
    execute_notebook,
    run_scenario_notebook,
    scenario_parameters,
    validation_scenario,
)
from fanout.lab.scenario import Scenario

SCENARIO_FIELDS = list(Scenario().to_dict())


def assert_exact_fanout(result: dict, instances: int) -> None:
    """The seed's arithmetic: each instance should receive the sum of the others' publications,
    and did; nobody got its own; the verdict says PASS."""
    per = result["per_instance"]
    assert len(per) == instances
    published = {r["instance"]: r["published"] for r in per}
    assert sum(published.values()) == result["overall"]["published"] > 0
    for r in per:
        others = sum(v for k, v in published.items() if k != r["instance"])
        assert r["expected"] == others, r
        assert r["received"] == r["expected"], r
        assert r["self_received"] == 0 and r["duplicates"] == 0 and r["arithmetic_ok"], r
        assert r["expected_formula"].endswith(f"= {others}")
    assert result["overall"]["received"] == (instances - 1) * result["overall"]["published"]
    assert result["status"] == "PASS" and result["passed"] is True
    assert all(c["passed"] for c in result["verdict"])


# ---------------------------------------------------------------- parameters


def test_help_notebook_lists_every_parameter_with_its_comment():
    out = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(SCENARIO_NOTEBOOK)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for name in [*SCENARIO_FIELDS, "save_to", "result_json"]:
        m = re.search(rf"^  {name}: (\S+) \(default (.+?)\)\s*\n?\s*(.*)$", text, re.M)
        assert m, f"{name} missing from --help-notebook:\n{text}"
        assert m.group(1) != "Unknown", f"{name} has no type"
        assert m.group(3).strip(), f"{name} has no help comment"
    assert "faults: list[dict] (default [])" in text
    report = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(VALIDATION_NOTEBOOK)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    for name in ("scenarios", "quick", "duration_scale", "redis_url", "seed", "min_delivery_pct",
                 "max_avg_latency_ms", "save_to", "result_json"):
        assert re.search(rf"^  {name}: ", report, re.M), f"{name} missing:\n{report}"


def test_notebooks_are_committed_clean_with_the_python3_kernelspec():
    import nbformat

    for path in (SCENARIO_NOTEBOOK, VALIDATION_NOTEBOOK):
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and nb.cells.index(tagged[0]) <= 1
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
        # minimal cells: the logic lives in the package
        assert max(len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code" and c is not tagged[0]) <= 8


def test_scenario_parameters_and_validation_scenario_durations():
    ns = {"name": "x", "instances": 4, "redis_url": None, "result_json": "r.json", "other": 1}
    assert scenario_parameters(ns) == {"name": "x", "instances": 4, "redis_url": None}
    sc, source, changes = validation_scenario("standard", quick=True)
    assert sc.duration_s == QUICK_DURATION_S and changes["duration_s"] == (20, QUICK_DURATION_S)
    assert source.endswith("scenarios/standard.yaml")
    sc, _, changes = validation_scenario("stress", quick=True, duration_scale=0.1, max_avg_latency_ms="1e-9")
    assert sc.duration_s == pytest.approx(3.0) and sc.max_avg_latency_ms == 1e-9
    assert changes["max_avg_latency_ms"] == (100.0, 1e-9)
    sc, _, changes = validation_scenario("load-1k", quick=False)
    assert sc.duration_s == 10 and changes == {}
    with pytest.raises(ConfigError, match="duration_scale"):
        validation_scenario("standard", duration_scale=0)
    with pytest.raises(ConfigError, match="nope"):
        validation_scenario("nope")


def test_credentials_in_redis_url_never_reach_the_notebook():
    params, env = _secret_free({"redis_url": "redis://:s3cret@db:6379/0", "quick": True})
    assert "s3cret" not in json.dumps(params) and params["redis_url"].startswith("env:")
    assert list(env.values()) == ["redis://:s3cret@db:6379/0"]
    assert _secret_free({"redis_url": "redis://localhost:6379/0"}) == ({"redis_url": "redis://localhost:6379/0"}, {})


def test_md_table_escapes_and_aligns():
    import pandas as pd

    md = tables.md_table(pd.DataFrame({"a": ["x|y", "z"], "n": ["1,000", "2"], "k": [1, 2]}))
    lines = md.splitlines()
    assert lines[0] == "| a | n | k |" and lines[1] == "|---|---:|---:|"
    assert lines[2] == "| x\\|y | 1,000 | 1 |"


# ---------------------------------------------------------------- scenario.ipynb


def test_scenario_notebook_with_small_parameters(tmp_path):
    out = tmp_path / "scenario.ipynb"
    result = run_scenario_notebook({"instances": 3, "duration_s": 2, "rate_per_s": 20,
                                    "save_to": str(tmp_path / "runs")}, out)
    assert_exact_fanout(result, 3)
    assert result["overall"]["published"] == 40
    assert result["scenario"]["name"] == "quick" and result["run_id"]
    assert (Path(result["record"]) / "run.json").is_file()
    assert result["kernel_python"] == sys.executable
    text = out.read_text()
    for section in ("Overall Statistics", "Event Distribution Verification", "Latency Statistics", "Verdict",
                    "image/png", "Should receive (sum of the others)"):
        assert section in text


def test_scenario_notebook_with_a_yaml_scenario_from_notebooks_dir_and_a_bogus_kernelspec(tmp_path, monkeypatch):
    """papermill -f scenarios/stress.yaml (keys = Scenario fields, lists as lists), shortened; the
    kernel is started from notebooks/ (records must still land under the repository root) while
    a ``python3`` kernelspec pointing at a broken interpreter shadows the real one."""
    bogus = tmp_path / "jupyter" / "kernels" / "python3"
    bogus.mkdir(parents=True)
    (bogus / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "raise SystemExit('bogus kernel')", "{connection_file}"],
        "display_name": "bogus", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(bogus.parent.parent))

    params = yaml.safe_load((ROOT / "scenarios" / "stress.yaml").read_text())
    assert isinstance(params["event_types"], list)
    params |= {"duration_s": 2, "faults": [], "result_json": str(tmp_path / "result.json")}
    execute_notebook(SCENARIO_NOTEBOOK, tmp_path / "stress.ipynb", params, cwd=ROOT / "notebooks")
    result = json.loads((tmp_path / "result.json").read_text())
    try:
        assert_exact_fanout(result, 5)
        assert result["scenario"]["name"] == "stress" and result["scenario"]["event_types"] == ["ticker", "trade"]
        assert result["kernel_python"] == sys.executable
        assert result["record"].startswith("data/runs/")
        assert (ROOT / result["record"] / "run.json").is_file()
    finally:
        if result.get("record", "").startswith("data/runs/"):
            shutil.rmtree(ROOT / result["record"], ignore_errors=True)


# ---------------------------------------------------------------- validation-report.ipynb


def assert_clean_html(html: str) -> None:
    assert '<img src="data:image/png;base64,' in html
    assert not re.search(r'class="[^"]*(jp-InputArea|input_area|jp-InputPrompt|jp-OutputPrompt)', html)
    assert not re.search(r'<script[^>]+src="https?:', html), "the page must not load scripts from the network"
    body = re.sub(r"<style.*?</style>", "", html, flags=re.S)  # the inlined stylesheets name every class
    for source in ("run_scenario(", "run_validation_scenarios(", "show_markdown(", "import ", "tables.",
                   "jp-InputArea", "In&nbsp;[", "Out["):
        assert source not in body, source


def assert_markdown_images_exist(md_path: Path) -> int:
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_path.read_text())
    assert refs
    for ref in refs:
        assert not ref.startswith("data:")
        assert (md_path.parent / ref).is_file(), ref
    return len(refs)


@needs_redis7  # its failover part runs Streams
def test_validation_report_pass(tmp_path):
    res = build_validation_report({"scenarios": ["standard", "stress"], "duration_scale": 0.05,
                                   "failover": ["instance-crash"],
                                   "save_to": str(tmp_path / "runs")}, tmp_path / "out", printer=None)
    assert res.passed is True and res.status == "PASS"
    assert res.html == tmp_path / "out" / "validation-report.html"
    assert res.markdown == tmp_path / "out" / "validation-report.md"
    assert res.executed.is_file()
    html = res.html.read_text()
    assert_clean_html(html)
    assert "✅ PASS" in html and "FAIL" not in html
    md = res.markdown.read_text()
    assert md.startswith("# Redis Multi-Instance Testing Report")
    assert "\n# ✅ PASS\n" in md
    # 3 figures per scenario + comparison + latency by scenario + delivery around the faults
    # (+ the load curve when a benchmark result exists in this checkout)
    load_curve = int((ROOT / "benchmarks" / "results" / "latest.json").is_file())
    assert assert_markdown_images_exist(res.markdown) == 2 * 3 + 2 + 1 + load_curve
    assert "## Failover: what each transport loses under each fault" in md
    assert re.search(r"\| instance-crash \| ✓ \d+ delivered / \d+ lost / 0 recovered.*\| ✓ \d+ delivered / 0 lost / [1-9]\d* recovered", md)
    for section in ("## Provenance", "## Executive Summary", "### Key Results", "## Test Scenario 1: standard",
                    "## Test Scenario 2: stress", "## Comparative Analysis", "### Performance Scaling",
                    "3 Instances (standard)", "5 Instances (stress)", "### Event Distribution", "2:1", "4:1",
                    "### Throughput", "### Latency Distribution", "## Load and Scale", "## Failover and Streams",
                    "## Known Limitations",
                    "### 1. Event Ordering", "### 2. No Message Persistence", "### 3. Network Latency",
                    "### 4. Single Point of Failure", "## Conclusion", "Redis server", "redis-py", "CPU cores"):
        assert section in md, section
    runs = res.result["runs"]
    assert [r["name"] for r in runs] == ["standard", "stress", "instance-crash-pubsub", "instance-crash-streams"]
    for r in runs:
        assert r["run_id"] in md and r["findings"]["status"] == "PASS"
    for r in runs[:2]:
        assert r["run_id"] in md and (Path(r["record"]) / "run.json").is_file()
        assert_exact_fanout(r["findings"], r["findings"]["overall"]["instances"])
    assert res.result["provenance"]["parameters"]["duration_scale"] == 0.05
    # latency always in ms with three decimals
    assert re.search(r"\| Average \| \d+\.\d{3}ms \| \d+\.\d{3}ms \|", md)


def test_validation_report_says_fail_plainly_for_an_impossible_threshold(tmp_path):
    res = build_validation_report({"scenarios": ["standard"], "duration_scale": 0.05, "max_avg_latency_ms": 1e-9,
                                   "failover": [], "save_to": str(tmp_path / "runs")}, tmp_path, printer=None)
    assert res.passed is False and res.status == "FAIL"
    md = res.markdown.read_text()
    assert md.index("# ❌ FAIL") < md.index("## Provenance")
    assert "Average latency <1e-09ms" in md and "❌ FAIL" in res.html.read_text()
    assert "✅ PASS" not in md.split("## Provenance")[0]


def test_cli_report_exits_non_zero_when_the_verdict_fails(tmp_path):
    out = subprocess.run([*fanout_cmd(), "report", "--scenarios", "standard", "--duration-scale", "0.05",
                          "-p", "max_avg_latency_ms", "1e-9", "-p", "save_to", str(tmp_path / "runs"),
                          "-p", "failover", "[]",
                          "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT, timeout=170)
    assert out.returncode == 1, out.stderr
    assert "Verdict: FAIL" in out.stdout
    assert "Traceback" not in out.stderr
    assert "[1/1] standard:" in out.stderr  # progress lines from inside the notebook
    assert "# ❌ FAIL" in (tmp_path / "out" / "validation-report.md").read_text()


def test_a_failing_cell_is_one_line_and_leaves_the_executed_notebook(tmp_path):
    with pytest.raises(FanoutError) as info:
        build_validation_report({"scenarios": ["no-such-scenario"]}, tmp_path, printer=None, relay_stderr=False)
    msg = str(info.value)
    assert isinstance(info.value, ConfigError)  # the notebook's own error class: the CLI exits 2
    assert "\n" not in msg and "no-such-scenario" in msg and "ConfigError" in msg and "cell" in msg
    assert "validation-report.ipynb" in msg
    assert (tmp_path / "validation-report.ipynb").is_file()
    assert not (tmp_path / "validation-report.html").exists()


@needs_redis7
def test_failover_notebook_runs_one_fault_on_both_transports(tmp_path):
    result = tmp_path / "failover.json"
    execute_notebook(ROOT / "notebooks" / "failover.ipynb", tmp_path / "failover.ipynb",
                     {"faults": ["partition"], "transports": ["pubsub", "streams"], "save_to": "",
                      "result_json": str(result)}, cwd=ROOT)
    data = json.loads(result.read_text())
    assert data["status"] == "PASS"
    rows = {r["transport"]: r for r in data["runs"]}
    assert set(rows) == {"pubsub", "streams"}
    assert rows["pubsub"]["lost"] > 0 and rows["pubsub"]["unexplained"] == 0
    assert rows["pubsub"]["causes"].startswith("lost during partition")
    assert rows["streams"]["lost"] == 0 and rows["streams"]["recovered"] > 0
