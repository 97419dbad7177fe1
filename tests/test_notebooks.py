"""The notebooks, executed for real by papermill with tiny parameters, and the report they export.

Each notebook run starts a kernel and throwaway redis-servers; every output goes to a temporary
folder, never into the repository's data/runs or reports/.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, fanout_cmd, needs_redis7
from fanout.errors import ConfigError, FanoutError
from fanout.lab.scenario import Scenario
from fanout.report.build import build_validation_report
from fanout.report.execute import execute_notebook, run_scenario_notebook, secret_free
from fanout.report.notebooks import out_of_date
from fanout.report.paths import EXPLORE_NOTEBOOK, FAILOVER_NOTEBOOK, SCENARIO_NOTEBOOK, VALIDATION_NOTEBOOK
from fanout.report.params import ReportParams
from fanout.report.runs import QUICK_DURATION_S, load_runs, report_scenario, scenario_from_namespace

SCENARIO_FIELDS = list(Scenario().to_dict())
REPORT_FIELDS = list(ReportParams.__dataclass_fields__)


def assert_exact_fanout(result: dict, instances: int) -> None:
    """The seed's arithmetic: each instance should receive the sum of the others' publications,
    and did; nobody got its own; the verdict says PASS."""
    per = result["per_instance"]
    assert len(per) == instances
    published = {r["instance"]: r["published"] for r in per}
    assert sum(published.values()) == result["overall"]["published"] > 0
    for r in per:
        others = sum(v for k, v in published.items() if k != r["instance"])
        assert r["expected"] == others and r["received"] == r["expected"], r
        assert r["self_received"] == 0 and r["duplicates"] == 0 and r["arithmetic_ok"], r
    assert result["status"] == "PASS" and all(c["passed"] for c in result["verdict"])


# ---------------------------------------------------------------- parameters


def test_parameters_cells_are_derived_from_the_dataclasses():
    """python -m fanout.report.notebooks --sync-parameters rewrites them; the committed ones are current."""
    assert out_of_date() == []
    out = subprocess.run([sys.executable, "-m", "fanout.report.notebooks", "--check"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_help_notebook_lists_every_parameter_with_its_comment():
    for path, names in ((SCENARIO_NOTEBOOK, [*SCENARIO_FIELDS, "save_to", "result_json", "from_run", "progress"]),
                        (VALIDATION_NOTEBOOK, REPORT_FIELDS)):
        out = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(path)],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        for name in names:
            m = re.search(rf"^  {name}: (\S+) \(default (.+?)\)\s*\n?\s*(.*)$", out.stdout, re.M)
            assert m, f"{name} missing from --help-notebook {path.name}:\n{out.stdout}"
            assert m.group(1) != "Unknown" and m.group(3).strip(), name


@pytest.mark.parametrize("path", [SCENARIO_NOTEBOOK, VALIDATION_NOTEBOOK, FAILOVER_NOTEBOOK, EXPLORE_NOTEBOOK],
                         ids=lambda p: p.name)
def test_notebooks_are_committed_clean_with_minimal_cells(path):
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and nb.cells.index(tagged[0]) <= 1
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    assert max(len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code" and c is not tagged[0]) <= 8


def test_report_scenario_durations_transport_and_key_prefix():
    sc, source, changes = report_scenario("standard", quick=True)
    assert sc.duration_s == QUICK_DURATION_S and changes["duration_s"] == (20, QUICK_DURATION_S)
    assert source.endswith("scenarios/standard.yaml")
    sc, _, changes = report_scenario("standard@streams", quick=True, key_prefix="run42:")
    assert sc.transport == "streams" and sc.name == "standard-streams" and sc.key_prefix == "run42:"
    assert changes["transport"] == ("pubsub", "streams") and changes["key_prefix"] == (None, "run42:")
    sc, _, changes = report_scenario("load-1k", quick=False)
    assert sc.duration_s == 10 and changes == {}
    with pytest.raises(ConfigError, match="nope"):
        report_scenario("nope")


def test_credentials_in_redis_url_never_reach_the_notebook():
    params, env = secret_free({"redis_url": "redis://:s3cret@db:6379/0", "quick": True})
    assert "s3cret" not in json.dumps(params) and params["redis_url"].startswith("env:")
    assert list(env.values()) == ["redis://:s3cret@db:6379/0"]


@pytest.mark.parametrize("notebook, params, named", [
    (VALIDATION_NOTEBOOK, {"failover": 3}, "failover: must be a list"),
    (VALIDATION_NOTEBOOK, {"capacity": "maybe"}, "capacity: must be true or false"),
    (VALIDATION_NOTEBOOK, {"duration_scale": "fast"}, "duration_scale: must be a number"),
    (SCENARIO_NOTEBOOK, {"instances": "many"}, "instances: must be a whole number"),
    (SCENARIO_NOTEBOOK, {"event_types": "[ticker, nope]"}, "event_types: unknown event type 'nope'"),
])
def test_a_wrong_parameter_stops_the_notebook_at_the_top_with_one_line_naming_it(tmp_path, notebook, params, named):
    with pytest.raises(ConfigError) as info:
        execute_notebook(notebook, tmp_path / "out.ipynb", {**params, "save_to": str(tmp_path / "runs")})
    msg = str(info.value)
    assert "\n" not in msg and named in msg and " cell " in msg, msg
    assert not (tmp_path / "runs").exists()  # nothing ran


# ---------------------------------------------------------------- scenario.ipynb


def test_scenario_notebook_with_small_parameters(tmp_path):
    out = tmp_path / "scenario.ipynb"
    result = run_scenario_notebook({"instances": 3, "duration_s": 2, "rate_per_s": 20,
                                    "save_to": str(tmp_path / "runs")}, out)
    assert_exact_fanout(result, 3)
    assert result["overall"]["published"] == 40
    assert "-pubsub-" in result["run_id"]  # run ids name the transport
    assert (Path(result["record"]) / "run.json").is_file() and (Path(result["record"]) / "resources.parquet").is_file()
    assert result["kernel_python"] == sys.executable
    text = out.read_text()
    for section in ("Overall statistics", "Event distribution", "Latency", "Verdict", "image/png", "What it counts"):
        assert section in text


def test_scenario_notebook_from_yaml_started_in_notebooks_dir_with_a_bogus_kernelspec(tmp_path, monkeypatch):
    """papermill -f scenarios/stress.yaml, shortened; the kernel starts in notebooks/ while a
    ``python3`` kernelspec pointing at a broken interpreter shadows the real one."""
    bogus = tmp_path / "jupyter" / "kernels" / "python3"
    bogus.mkdir(parents=True)
    (bogus / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "raise SystemExit('bogus kernel')", "{connection_file}"],
        "display_name": "bogus", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(bogus.parent.parent))
    params = yaml.safe_load((ROOT / "scenarios" / "stress.yaml").read_text())
    params |= {"duration_s": 2, "faults": [], "result_json": str(tmp_path / "result.json"),
               "save_to": str(tmp_path / "runs")}
    execute_notebook(SCENARIO_NOTEBOOK, tmp_path / "stress.ipynb", params, cwd=ROOT / "notebooks")
    result = json.loads((tmp_path / "result.json").read_text())
    assert_exact_fanout(result, 5)
    assert result["scenario"]["name"] == "stress" and result["kernel_python"] == sys.executable
    assert Path(result["record"]).is_relative_to(tmp_path)


def test_scenario_notebook_names_each_set_of_parameters_apart_and_keeps_a_given_name():
    """Left None, ``name`` comes from the parameters: runs with different ones never merge into one
    configuration (one bar) in a report; the same parameters again are repeats of one."""
    base = {"name": None, "instances": 3, "rate_per_s": 10.0}
    a, again = scenario_from_namespace(base), scenario_from_namespace(dict(base))
    b = scenario_from_namespace({**base, "rate_per_s": 50.0})
    c = scenario_from_namespace({**base, "duration_s": 5.0})
    assert a.name == again.name and len({a.name, b.name, c.name}) == 3, (a.name, b.name, c.name)
    assert a.name.startswith("nb-3x10-pubsub-") and b.name.startswith("nb-3x50-pubsub-")
    assert scenario_from_namespace({**base, "name": "mine"}).name == "mine"


def test_scenario_notebook_from_run_renders_that_run_and_a_fault_run_as_one(tmp_path):
    """``from_run`` opens a recorded run instead of running one; a run with faults is shown as a
    fault run (the failover section with its own loss), never "no fault run was possible"."""
    from _runs import partition_run, saved

    folder = saved(partition_run(), tmp_path)
    out, result = tmp_path / "scenario.ipynb", tmp_path / "result.json"
    execute_notebook(SCENARIO_NOTEBOOK, out, {"from_run": str(folder), "result_json": str(result),
                                              "save_to": str(tmp_path / "unused")}, cwd=ROOT)
    data = json.loads(result.read_text())
    assert data["run_id"] == folder.name and data["losses"]["lost"] == 5
    assert data["losses"]["by_cause"]["lost during partition"] == 3
    assert not (tmp_path / "unused").exists()  # nothing ran
    text = out.read_text()
    assert "Failover: what each transport loses under each fault" in text
    assert "pub/sub lost 5 of 120 expected deliveries" in text and "3 during the partition" in text  # its own loss
    assert "no fault run was possible" not in text


@needs_redis7
def test_a_fault_scenario_run_from_the_scenario_notebook_is_recorded_and_rendered_as_a_fault_run(tmp_path):
    params = yaml.safe_load((ROOT / "scenarios" / "faults" / "partition-pubsub.yaml").read_text())
    params |= {"duration_s": 3, "faults": [{"kind": "partition", "at_s": 1, "duration_s": 0.5, "instance": 1}],
               "result_json": str(tmp_path / "result.json"), "save_to": str(tmp_path / "runs"), "progress": False}
    execute_notebook(SCENARIO_NOTEBOOK, tmp_path / "scenario.ipynb", params, cwd=ROOT)
    result = json.loads((tmp_path / "result.json").read_text())
    text = (tmp_path / "scenario.ipynb").read_text()
    assert "Failover: what each transport loses under each fault" in text
    assert "no fault run was possible" not in text
    (run,) = load_runs([result["record"]])  # the archive knows its place too: a report re-rendered from it
    assert run.role == "fault" and run.record.environment["report_role"] == "fault"


# ---------------------------------------------------------------- validation-report.ipynb


def assert_clean_html(html: str) -> None:
    assert '<img src="data:image/png;base64,' in html
    assert not re.search(r'<script[^>]+src="https?:', html), "the page must not load scripts from the network"
    assert not re.search(r'<link[^>]+href="https?:', html), "nor stylesheets"
    assert "@media print" in html and "size: A4" in html
    body = re.sub(r"<style.*?</style>", "", html, flags=re.S)
    for source in ("make_report(", "show_markdown(", "import ", "jp-InputArea", "In&nbsp;[", "Out["):
        assert source not in body, source


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    """One small report: three scenarios (one on Streams), the capacity rows, one fault on both
    transports, at a tenth of their lengths."""
    tmp = tmp_path_factory.mktemp("report")
    if not __import__("conftest").REDIS7:
        pytest.skip("needs Redis 7 (Streams)")
    res = build_validation_report({"scenarios": ["standard", "stress", "standard@streams"], "duration_scale": 0.1,
                                   "failover": ["partition"], "capacity": True}, tmp / "out", printer=None)
    return res


@needs_redis7
def test_the_report_puts_verdict_scope_and_key_results_first_and_the_appendix_last(small_report):
    res = small_report
    all_passed = all(r["findings"]["passed"] for r in res.result["runs"])
    assert res.passed is all_passed and res.status == ("PASS" if all_passed else "FAIL") and res.archive.is_file()
    md = res.markdown.read_text()
    order = ["## Verdict:", "**Contents**", "### Scope", "### Key results", "### Needs attention", "## Recommendation",
             "### Next steps", "## Scenarios", "## Comparisons", "## Failover", "## Capacity planning",
             "## Production readiness", "## Monitoring", "## Known limitations", "## Testing methodology",
             "## Appendix", "### Failover, run by run", "## Deployment and configuration", "## Performance",
             "## Resource usage", "## 1. standard"]
    positions = [md.index(h) for h in order]
    assert positions == sorted(positions), [h for h, p in zip(order, positions)]
    assert "**Durations × 0.1**" in md.split("## Verdict")[0]  # the mode in the page header
    assert "Sentinel failover" in md.split("### Key results")[0]  # page one says Sentinel is not measured
    hosted = next(ln for ln in md.splitlines() if ln.startswith("- **Instances**:"))  # how they ran, from the records
    assert "all in one process" in hosted and "agents" not in hosted, hosted
    assert 'class="verdict-pass">✅ PASS</span>' in md  # a word with colour; the emoji never alone:
    assert "✅" not in md.replace("✅ PASS", "") and "❌" not in md.replace("❌ FAIL", "")
    assert_clean_html(res.html.read_text())
    for r in res.result["runs"]:  # (on a loaded machine a 1 s capacity row may fail its latency mark)
        assert r["run_id"] in md
    assert all(r["findings"]["passed"] for r in res.result["runs"] if r["role"] != "capacity")
    assert {r["role"] for r in res.result["runs"]} == {"scenario", "capacity", "fault"}


@needs_redis7
def test_each_figure_once_and_each_with_a_caption(small_report):
    md_path = small_report.markdown
    lines = md_path.read_text().splitlines()
    refs = [(i, m.group(1)) for i, ln in enumerate(lines) if (m := re.match(r"!\[[^\]]*\]\(([^)]+)\)", ln))]
    assert len(refs) >= 3 * 3 + 2 + 1 + 1  # per scenario 3, across 2, resources 1, faults 1
    digests = [hashlib.sha256((md_path.parent / ref).read_bytes()).hexdigest() for _, ref in refs]
    assert len(set(digests)) == len(digests), "two identical images"
    for i, ref in refs:
        assert not ref.startswith(("data:", "/")), ref  # relative paths: renders on a code host
        caption = next(ln for ln in lines[i + 1:] if ln.strip())
        assert caption.startswith("*Figure — "), (ref, caption)


def _table_rows(md: str, section: str, header_start: str) -> list[list[str]]:
    part = md.split(section, 1)[1].split("\n## ", 1)[0]
    lines = part.splitlines()
    start = next(i for i, ln in enumerate(lines)
                 if ln.startswith("|") and ln.strip("|").split("|")[0].strip() == header_start)
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


@needs_redis7
def test_resource_and_capacity_sections_hold_measured_numbers(small_report):
    md = small_report.markdown.read_text()
    rows = _table_rows(md, "## Resource usage", "Scenario")
    assert len(rows) == len(small_report.result["runs"])
    for row in rows:
        cpu_mean = float(row[1].split("/")[0])
        mem_end = float(row[2].split("/")[0])
        assert cpu_mean > 0 and mem_end > 0, row  # read from the server's INFO, not assumed
    cap = _table_rows(md, "## Capacity planning", "bot instances")
    assert [r[0] for r in cap] == ["1", "3", "5", "10"]
    for row in cap:
        assert float(row[9].split("/")[0]) > 0, row  # Redis CPU % per row, measured (after "hosted in")
        assert "capacity" in row[-2] and row[-1] in ("holds", "does not hold", "not judged"), row
    settings = md.split("## Deployment and configuration", 1)[1]
    assert "hard 32.0 MiB, soft 8.0 MiB for 60 s" in settings  # Redis 7's pubsub default, read by CONFIG GET


@needs_redis7
def test_from_runs_renders_the_same_numbers_without_running(small_report, tmp_path):
    again = build_validation_report({"from_runs": [str(small_report.archive.parent)]}, tmp_path / "again",
                                    printer=None)
    before = {r["run_id"]: r for r in small_report.result["runs"]}
    after = {r["run_id"]: r for r in again.result["runs"]}
    assert set(before) == set(after)
    for run_id, r in before.items():
        assert after[run_id]["role"] == r["role"]
        for key in ("overall", "latency", "latency_sent", "per_instance", "verdict", "losses"):
            assert after[run_id]["findings"][key] == r["findings"][key], (run_id, key)
    # nothing was run: the new report folder holds copies of the same runs (and so renders again alone)
    assert sorted(p.name for p in (tmp_path / "again" / "runs").iterdir()) == sorted(before)
    # alerts.yml and dashboard.json beside report.json, each time, the same from the same runs
    assert [p.name for p in again.alerts] == ["alerts.yml", "dashboard.json"]
    for name in ("alerts.yml", "dashboard.json"):
        assert (tmp_path / "again" / name).read_text() == (small_report.archive.parent / name).read_text(), name
    md = again.markdown.read_text()
    assert "re-rendered from archived runs, nothing was run again" in md
    # a rendering of a rendering still says how the runs were made (durations x 0.1, not "quick")
    third = build_validation_report({"from_runs": [str(tmp_path / "again")]}, tmp_path / "third", printer=None)
    page_one = third.markdown.read_text().split("### Key results")[0]
    assert "durations × 0.1" in page_one and "quick mode" not in page_one, page_one


@needs_redis7
def test_compare_passes_identical_runs_and_flags_a_synthetic_regression(small_report, tmp_path):
    import pandas as pd

    out_dir = small_report.archive.parent
    # one run per scenario each side: no reading but the verdict's, so INCONCLUSIVE (exit 3)
    once = subprocess.run([*fanout_cmd(), "compare", str(out_dir), str(out_dir)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert once.returncode == 3, once.stdout + once.stderr
    assert "INCONCLUSIVE" in once.stdout and "too few runs (1+1" in once.stdout and "REGRESSED" not in once.stdout
    run = next(Path(r["record"]) for r in small_report.result["runs"] if r["name"] == "stress")
    base, slower = tmp_path / "base", tmp_path / "slower"
    for k in range(4):  # four copies a side, every delivery of the new ones 20 ms later
        shutil.copytree(run, base / f"{run.name}-{k}")
        shutil.copytree(run, slower / f"{run.name}-{k}")
        d = pd.read_parquet(slower / f"{run.name}-{k}" / "deliveries.parquet")
        d["t_received"] += 20_000_000 + k * 100_000
        d.to_parquet(slower / f"{run.name}-{k}" / "deliveries.parquet", index=False)
    same = subprocess.run([*fanout_cmd(), "compare", str(base), "--", str(base)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "No regression." in same.stdout and "SAME" in same.stdout
    bad = subprocess.run([*fanout_cmd(), "compare", str(base), "--", str(slower)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "REGRESSED" in bad.stdout and "p50 latency" in bad.stdout


def test_papermill_takes_list_parameters_as_text(tmp_path):
    """papermill -p passes '[]' and '["standard"]' as strings; the notebook reads them as lists."""
    result = tmp_path / "result.json"
    out = subprocess.run([sys.executable, "-m", "papermill", str(VALIDATION_NOTEBOOK), str(tmp_path / "out.ipynb"),
                          "-p", "scenarios", '["standard"]', "-p", "failover", "[]", "-p", "capacity", "False",
                          "-p", "duration_scale", "0.05", "-p", "save_to", str(tmp_path / "runs"),
                          "-p", "key_prefix", "t42:", "-p", "result_json", str(result)],
                         capture_output=True, text=True, cwd=ROOT, timeout=170)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(result.read_text())
    assert [r["name"] for r in doc["runs"]] == ["standard"] and doc["status"] == "PASS"
    assert doc["runs"][0]["findings"]["scenario"]["key_prefix"] == "t42:"  # passed through to the scenario


def test_cli_report_exits_non_zero_when_the_verdict_fails(tmp_path):
    out = subprocess.run([*fanout_cmd(), "report", "--scenarios", "standard", "--duration-scale", "0.05",
                          "--max-avg-latency", "1e-9", "--no-capacity", "--failover", "",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=170)
    assert out.returncode == 1, out.stderr
    assert "Verdict: FAIL" in out.stdout and "Traceback" not in out.stderr
    assert "[1/1] standard:" in out.stderr  # progress lines from inside the notebook
    md = (tmp_path / "out" / "validation-report.md").read_text()
    assert md.index('class="verdict-fail">❌ FAIL') < md.index("### Scope")
    assert (tmp_path / "out" / "runs").is_dir()  # the records beside the report, not in the repository


def test_a_failing_cell_is_one_line_and_leaves_the_executed_notebook(tmp_path):
    with pytest.raises(FanoutError) as info:
        build_validation_report({"scenarios": ["no-such-scenario"]}, tmp_path, printer=None, relay_stderr=False)
    msg = str(info.value)
    assert isinstance(info.value, ConfigError)  # the notebook's own error class: the CLI exits 2
    assert "\n" not in msg and "no-such-scenario" in msg and "cell" in msg and "validation-report.ipynb" in msg
    assert (tmp_path / "validation-report.ipynb").is_file() and not (tmp_path / "validation-report.html").exists()


@needs_redis7
def test_failover_notebook_runs_one_fault_on_both_transports(tmp_path):
    result = tmp_path / "failover.json"
    execute_notebook(FAILOVER_NOTEBOOK, tmp_path / "failover.ipynb",
                     {"faults": ["partition"], "transports": ["pubsub", "streams"], "duration_scale": 0.5,
                      "save_to": "", "result_json": str(result)}, cwd=ROOT)
    data = json.loads(result.read_text())
    assert data["status"] == "PASS"
    rows = {r["transport"]: r for r in data["runs"]}
    assert set(rows) == {"pubsub", "streams"}
    assert rows["pubsub"]["lost"] > 0 and rows["pubsub"]["unexplained"] == 0
    assert rows["pubsub"]["causes"].startswith("lost during partition")
    assert rows["streams"]["lost"] == 0
    assert "Streams lost nothing through the network partition" in (tmp_path / "failover.ipynb").read_text()
