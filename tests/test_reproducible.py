"""Anyone can re-derive a report from the repository (issue 21, item 5): every run names the code
that made it, a report folder holds its runs and names them by relative paths, a clone renders
the same report.json again, and the load benchmark's appendix names its commit."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, fanout_cmd
from fanout.lab.provenance import git_state
from fanout.lab.record import load_run
from fanout.lab.servers import RedisServer

EXAMPLE = ROOT / "reports" / "example"
GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
                           *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("REDIS_URL", "FANOUT_COMMAND"):
        env.pop(name, None)
    return env


def _head() -> str | None:
    """This checkout's HEAD, or None when the tests run outside a git checkout."""
    return git_state()["commit"]


# ------------------------------------------------------------------ (a) provenance in every run record


def test_a_run_records_its_commit_and_command_and_never_the_redis_password(tmp_path):
    with RedisServer(password="s3cret-pw") as srv:
        url = f"redis://:s3cret-pw@127.0.0.1:{srv.port}/0"
        out = subprocess.run([*fanout_cmd(), "run", "--redis-url", url, "--instances", "2", "--rate", "50",
                              "--duration", "1", "--out", str(tmp_path / "runs"), "--no-progress"],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    text = (folder / "run.json").read_text()
    prov = json.loads(text)["environment"]["provenance"]
    assert set(prov) == {"commit", "dirty", "fanout", "command"}
    assert prov["commit"] == _head()
    assert prov["dirty"] in (True, False) if prov["commit"] else prov["dirty"] is None
    assert " run --redis-url " in prov["command"] and "redis://:***@127.0.0.1:" in prov["command"]
    assert "--duration 1" in prov["command"]
    files = [p for p in folder.rglob("*") if p.is_file()]  # the parts written as the run went too
    assert all("s3cret-pw" not in p.read_text(errors="replace") for p in files if p.suffix == ".json")
    assert b"s3cret-pw" not in b"".join(p.read_bytes() for p in files)

    # compact files, and a run written with pyarrow's defaults (snappy) before them still loads
    rec = load_run(folder)
    (part, *_) = sorted((folder / "parts").glob("deliveries-*.parquet"))
    assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "ZSTD"
    old = tmp_path / "old" / folder.name
    shutil.copytree(folder, old)
    shutil.rmtree(old / "parts")  # a run from before parts: whole files
    for name in ("publications", "deliveries", "instances", "faults", "outages", "resources"):
        getattr(rec, name).to_parquet(old / f"{name}.parquet", index=False)
    back = load_run(old)
    pd.testing.assert_frame_equal(back.deliveries, rec.deliveries)
    pd.testing.assert_frame_equal(back.publications, rec.publications)


@needs_git
def test_the_commit_is_the_checkouts_only_when_the_package_is_tracked_in_it(tmp_path):
    repo, pkg = tmp_path / "repo", tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    assert git_state(pkg) == {"commit": None, "dirty": None}  # untracked (e.g. a venv inside a checkout)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one")
    assert git_state(pkg) == {"commit": _git(repo, "rev-parse", "HEAD"), "dirty": False}
    (pkg / "__init__.py").write_text("x = 2\n")
    assert git_state(pkg)["dirty"] is True
    (pkg / "__init__.py").write_text("x = 1\n")
    (pkg / "new.py").write_text("")  # untracked files are not uncommitted changes to the code
    assert git_state(pkg)["dirty"] is False
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a checkout at all


# ------------------------------------------------------------------ (b) a clone renders the same report


@pytest.fixture(scope="module")
def small_report(tmp_path_factory) -> Path:
    """A small report written with --out: the standard scenario and one fault, short."""
    out = tmp_path_factory.mktemp("made") / "report"
    res = subprocess.run([*fanout_cmd(), "report", "--scenarios", "standard", "--duration-scale", "0.05",
                          "--no-capacity", "--failover", "partition", "--failover-transports", "pubsub",
                          "--out", str(out)], cwd=out.parent, env=_env(), capture_output=True, text=True, timeout=170)
    assert res.returncode in (0, 1) and (out / "report.json").is_file(), res.stdout + res.stderr[-3000:]  # 1: FAIL
    return out


def _render(source: Path, out: Path) -> dict:
    res = subprocess.run([*fanout_cmd(), "report", "--from-runs", str(source), "--out", str(out)],
                         cwd=out.parent, env=_env(), capture_output=True, text=True, timeout=170)
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr, res.stdout + res.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


def _without_generation_time(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    assert doc["provenance"].pop("generated_utc")
    return doc


@needs_git
def test_a_report_committed_and_cloned_renders_the_same_report_json_again(small_report, tmp_path):
    original = json.loads((small_report / "report.json").read_text())
    assert [r["record"] for r in original["runs"]] == [f"runs/{r['run_id']}" for r in original["runs"]]
    assert original["parameters"]["save_to"] == "runs" and original["parameters"]["from_runs"] == []
    assert {r["role"] for r in original["runs"]} == {"scenario", "fault"}
    commits = original["provenance"]["commits"]
    assert [c["commit"] for c in commits] == [_head()] and commits[0]["runs"] == len(original["runs"])
    for r in original["runs"]:
        command = r["findings"]["environment"]["provenance"]["command"]
        assert " report --scenarios standard " in command and "ipykernel" not in command  # the command typed

    origin = tmp_path / "origin"
    shutil.copytree(small_report, origin / "reports" / "mine")
    _git(origin, "init", "-q")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "a report and its runs")
    clone = tmp_path / "elsewhere" / "clone"
    clone.parent.mkdir()
    _git(clone.parent, "clone", "-q", str(origin), str(clone))

    first = _render(clone / "reports" / "mine", tmp_path / "again")
    second = _render(clone / "reports" / "mine", tmp_path / "again2")
    # rendered twice: the same document but for the time it was generated
    assert _without_generation_time(first) == _without_generation_time(second)
    # from the clone: the same as the original, but for when and from where it was rendered
    assert first["parameters"]["from_runs"] == first["provenance"]["parameters"]["from_runs"] == \
        ["../elsewhere/clone/reports/mine"]
    for doc in (first, original):
        doc["parameters"]["from_runs"] = doc["provenance"]["parameters"]["from_runs"] = None
    assert _without_generation_time(first) == _without_generation_time(original)
    # the new folder holds its runs (copies), so it renders again alone
    copied = sorted(p.name for p in (tmp_path / "again" / "runs").iterdir())
    assert copied == sorted(r["run_id"] for r in original["runs"])


def test_the_appendix_names_the_benchmarks_commit_and_says_when_it_is_not_the_runs(small_report):
    from fanout.report.appendix import appendix, bench_commit_note
    from fanout.report.context import Report
    from fanout.report.params import ReportParams
    from fanout.report.runs import load_runs

    rep = Report(params=ReportParams(from_runs=[str(small_report)]), runs=load_runs([str(small_report)]))
    ours = rep.runs[0].record.environment["provenance"]["commit"]
    other = "abc1234" + "0" * 33
    md = appendix(rep, {"provenance": {"commit": other, "dirty": False}}, "the benchmark's tables")
    if ours:
        assert f"| Code | commit `{ours[:7]}`" in md
        assert f"Measured at commit `abc1234`, not the commit of this report's runs (`{ours[:7]}`)." in md
        same = appendix(rep, {"provenance": {"commit": ours, "dirty": True}}, "tables")
        assert (f"Measured at commit `{ours[:7]}` with uncommitted changes, the commit of this report's runs."
                in same)
    commits = [{"commit": "def5678" + "1" * 33, "dirty": False, "runs": 2}]
    assert bench_commit_note({"machine": {"git_commit": "def5678"}}, commits) == \
        "Measured at commit `def5678`, the commit of this report's runs."  # an older results file: short commit
    assert bench_commit_note({"machine": {}}, commits) == "The results file does not name the commit it was measured at."


# ------------------------------------------------------------------ (c) the committed example keeps its runs


@needs_git
def test_the_example_runs_are_not_git_ignored():
    if _head() is None:
        pytest.skip("not a git checkout")
    probe = subprocess.run(["git", "check-ignore", "-q", "reports/example/runs/some-run/deliveries.parquet"],
                           cwd=ROOT, timeout=30)
    assert probe.returncode == 1, "reports/example/runs/ is git-ignored"
    latest = subprocess.run(["git", "check-ignore", "-q", "reports/latest/runs/x/run.json"], cwd=ROOT, timeout=30)
    assert latest.returncode == 0, "reports/latest/ must stay git-ignored"


@pytest.mark.skipif(not (EXAMPLE / "runs").is_dir(),
                    reason="reports/example/runs is absent until the example is regenerated with "
                           "`fanout report --full --out reports/example` (make example)")
def test_the_committed_example_holds_every_run_its_archive_names():
    doc = json.loads((EXAMPLE / "report.json").read_text())
    named = {r["run_id"]: r["record"] for r in doc["runs"]}
    held = {p.name for p in (EXAMPLE / "runs").iterdir() if p.is_dir()}
    assert held == set(named), (sorted(held ^ set(named)))
    for run_id, record in named.items():
        assert record == f"runs/{run_id}", record  # relative to the report folder: renders from any clone
        meta = json.loads((EXAMPLE / record / "run.json").read_text())
        assert meta["run_id"] == run_id
        assert {"commit", "dirty", "command"} <= set(meta["environment"]["provenance"])
    # what a clone holds: the executed notebook and the kernel log a rendering leaves are git-ignored
    size = sum(p.stat().st_size for p in EXAMPLE.rglob("*")
               if p.is_file() and p.suffix != ".ipynb" and not p.name.endswith(".kernel.log"))
    assert size < 50 * 2**20, f"reports/example is {size / 2**20:.1f} MiB"


@needs_git
@pytest.mark.skipif(not (EXAMPLE / "runs").is_dir(),
                    reason="reports/example/runs is absent until the example is regenerated (make example)")
def test_a_fresh_clone_renders_the_committed_example_again_with_the_same_runs_and_verdict(tmp_path):
    """What a new user does: clone, then `fanout report --from-runs reports/example --out DIR`. The
    committed report.json comes back but for when, from where and with which libraries it was rendered."""
    if _head() is None:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(ROOT), str(clone))
    if not (clone / "reports" / "example" / "runs").is_dir():
        pytest.skip("the example's runs are not committed yet (regenerated in the working tree only)")
    again = _render(clone / "reports" / "example", tmp_path / "again")
    committed = json.loads((clone / "reports" / "example" / "report.json").read_text())
    assert again["status"] == committed["status"]
    mine = {r["run_id"]: r for r in again["runs"]}
    assert set(mine) == {r["run_id"] for r in committed["runs"]}
    for r in committed["runs"]:
        f, g = r["findings"], mine[r["run_id"]]["findings"]
        assert g["status"] == f["status"], r["run_id"]
        for key in ("published", "expected", "received", "missing", "duplicates", "self_received", "unexplained"):
            assert g["overall"][key] == f["overall"][key], (r["run_id"], key)
        assert g["losses"] == f["losses"], r["run_id"]
    for doc in (again, committed):
        doc["parameters"]["from_runs"] = doc["provenance"]["parameters"]["from_runs"] = None
        # the libraries that rendered it are the renderer's (a fresh venv may hold a newer pandas):
        # recorded, not part of what the runs say
        assert doc["provenance"].pop("packages")
    assert _without_generation_time(again) == _without_generation_time(committed)


def test_a_rerendering_shows_the_benchmark_results_its_report_showed(tmp_path):
    """The load benchmark's results live in a git-ignored file; a report keeps the ones it showed in
    its archive, so a fresh clone re-renders the same appendix (and one that showed none, none)."""
    from fanout.report.load import load_results
    from fanout.report.paths import ARCHIVE_NAME

    shown = {"mode": "quick", "provenance": {"commit": "abc1234"}, "latency": {"runs": []}}
    (tmp_path / "with").mkdir()
    (tmp_path / "with" / ARCHIVE_NAME).write_text(json.dumps({"runs": [], "benchmark": shown}))
    (tmp_path / "without").mkdir()
    (tmp_path / "without" / ARCHIVE_NAME).write_text(json.dumps({"runs": [], "benchmark": None}))
    local = tmp_path / "latest.json"
    local.write_text(json.dumps({"mode": "full"}))
    assert load_results(local, from_runs=[str(tmp_path / "with")]) == shown
    assert load_results(local, from_runs=[str(tmp_path / "without")]) is None
    assert load_results(local) == {"mode": "full"}  # a report that runs shows this machine's results


def test_benchmark_results_are_strict_json_so_the_archive_can_keep_them(tmp_path):
    """A withheld percentile in the benchmark's frames is NaN: written as null (the report's archive
    is strict JSON), and an older file holding NaN reads as None."""
    from benchmarks.runner import strict_json
    from fanout.report.load import load_results

    assert strict_json({"rows": [{"p99_ms": float("nan"), "p50_ms": 0.5}], "t": (1.0, float("nan"))}) == \
        {"rows": [{"p99_ms": None, "p50_ms": 0.5}], "t": [1.0, None]}
    old = tmp_path / "latest.json"
    old.write_text('{"capacity": {"rows": [{"p99_ms": NaN}]}}')
    got = load_results(old)
    assert got == {"capacity": {"rows": [{"p99_ms": None}]}}
    json.dumps(got, allow_nan=False)


def test_the_page_names_each_record_inside_the_report_folder(small_report):
    """The appendix's Record column points into the report's own runs/, not where it was written."""
    md = (small_report / "validation-report.md").read_text()
    doc = json.loads((small_report / "report.json").read_text())
    for r in doc["runs"]:
        assert f"`runs/{r['run_id']}`" in md
    assert str(small_report.parent) not in md.split("### Runs", 1)[1].split("###", 1)[0]
