"""The appendix at the end of the report: provenance (versions, machine), every run with its
record, the exact parameters, each run's fields that differ from the Scenario defaults, and the
separate load benchmark when one was run. Also what the report writes for its caller and its
archive (:func:`result`)."""
from __future__ import annotations

import dataclasses
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fanout.lab.provenance import short
from fanout.redact import redact_url
from fanout.report import tables as T
from fanout.report.context import Report
from fanout.report.facts import server_name
from fanout.report.prose import render
from fanout.report.runs import ScenarioRun

#: package versions stated in the provenance (those that are installed)
PACKAGES = ("redis", "hiredis", "pandas", "numpy", "pyarrow", "psutil", "seaborn", "matplotlib", "papermill",
            "nbconvert", "jinja2", "tabulate")


def _version(pkg: str) -> str | None:
    try:
        return _metadata.version(pkg)
    except _metadata.PackageNotFoundError:
        return None


def _started(run: ScenarioRun) -> str:
    t0 = run.record.t0
    return datetime.fromtimestamp(t0 / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if t0 else ""


def record_shown(run: ScenarioRun, save_to: str | None = None) -> str:
    """Where a run's record is, as the page shows it: ``runs/<run id>`` relative to the report folder
    when the report is written to one (``fanout report`` saves or copies every record into its
    ``runs/``: an absolute ``save_to``), else the folder it was read from."""
    if save_to and Path(save_to).is_absolute() and (Path(save_to) / run.record.run_id / "run.json").is_file():
        return f"{Path(save_to).name}/{run.record.run_id}"
    return run.path


def runs_frame(runs: Sequence[ScenarioRun], save_to: str | None = None) -> pd.DataFrame:
    return pd.DataFrame([{"Run": r.name, "Role": r.role, "Run id": f"`{r.record.run_id}`",
                          "Record": f"`{record_shown(r, save_to)}`",
                          "Started (UTC)": _started(r), "Server": server_name(r)}
                         for r in runs], columns=["Run", "Role", "Run id", "Record", "Started (UTC)", "Server"])


def _plain(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_plain(w)}" for k, w in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(x) for x in v) or "(none)"
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)


def changed_fields_frame(runs: Sequence[ScenarioRun]) -> pd.DataFrame:
    """Per run, the Scenario fields that differ from the defaults (each run's run.json has them all)."""
    from fanout.lab.scenario import Scenario

    defaults = Scenario().to_dict()
    rows = []
    for r in runs:
        sc = dict(r.findings.scenario)
        if sc.get("redis_url"):
            sc["redis_url"] = redact_url(str(sc["redis_url"]))
        diff = [f"{k}={_plain(v)}" for k, v in sc.items() if k in defaults and k != "name" and v != defaults[k]
                and not (isinstance(v, list) and tuple(v) == tuple(defaults[k]))]
        rows.append({"Run": r.name, "Fields that differ from the Scenario defaults": "; ".join(diff) or "(none)"})
    return pd.DataFrame(rows)


def code_commits(runs: Sequence[ScenarioRun]) -> list[dict[str, Any]]:
    """The commits the runs were made with (``environment.provenance``, first seen first): commit
    (None: not recorded), dirty (any of its runs had uncommitted changes) and how many runs."""
    seen: dict[str | None, dict[str, Any]] = {}
    for r in runs:
        prov = (r.record.environment or {}).get("provenance") or {}
        d = seen.setdefault(prov.get("commit"), {"commit": prov.get("commit"), "dirty": False, "runs": 0})
        d["dirty"] = d["dirty"] or bool(prov.get("dirty"))
        d["runs"] += 1
    return list(seen.values())


def _dirty(flag: Any) -> str:
    return " with uncommitted changes" if flag else ""


def code_line(commits: Sequence[dict[str, Any]]) -> str:
    """The appendix's "Code" fact: which commit(s) the runs were made with."""
    named = [c for c in commits if c["commit"]]
    if not named:
        return "not recorded (runs made before run records named their commit)"
    parts = [f"commit `{short(c['commit'])}`{_dirty(c['dirty'])}" + (f" ({c['runs']} runs)" if len(commits) > 1 else "")
             for c in named]
    unknown = sum(c["runs"] for c in commits if not c["commit"])
    return "; ".join(parts) + (f"; not recorded for {unknown} run{'s' if unknown != 1 else ''}" if unknown else "")


def bench_commit(bench: dict | None) -> tuple[str | None, bool]:
    """The commit the load benchmark's results were measured at (``provenance``; older files:
    ``machine.git_commit``, a short one) and whether it had uncommitted changes."""
    bench = bench or {}
    prov, machine = bench.get("provenance") or {}, bench.get("machine") or {}
    commit = prov.get("commit") or machine.get("git_commit")
    return commit or None, bool(prov.get("dirty") if "dirty" in prov else machine.get("fanout_uncommitted_changes"))


def bench_commit_note(bench: dict | None, commits: Sequence[dict[str, Any]]) -> str:
    """One sentence: the commit the benchmark was measured at, against the commit(s) of the report's runs."""
    b, dirty = bench_commit(bench)
    if not b:
        return "The results file does not name the commit it was measured at."
    said = f"Measured at commit `{short(b)}`{_dirty(dirty)}"
    ours = [c["commit"] for c in commits if c["commit"]]
    if not ours:
        return f"{said}; this report's runs do not name theirs."
    listed = ", ".join(f"`{short(c)}`" for c in ours)
    if any(c.startswith(b) or b.startswith(c) for c in ours):
        return f"{said}, the commit of this report's runs." if len(ours) == 1 else \
            f"{said}, one of the commits of this report's runs ({listed})."
    return f"{said}, not the commit of this report's runs ({listed})." if len(ours) == 1 else \
        f"{said}, not a commit of this report's runs ({listed})."


def provenance(rep: Report) -> dict[str, Any]:
    env = rep.runs[0].findings.environment if rep.runs else {}
    return {
        "generated_utc": rep.generated.isoformat(timespec="seconds"), "commits": code_commits(rep.runs),
        "python": env.get("python") or platform.python_version(),
        "fanout": env.get("fanout"), "packages": {p: v for p in PACKAGES if (v := _version(p))},
        "machine": rep.machine(), "servers": rep.servers(), "parameters": rep.parameters(),
    }


def appendix(rep: Report, bench: dict | None = None, bench_md: str = "") -> str:
    prov = provenance(rep)
    return render("appendix.md.j2", rep=rep, prov=prov, runs=T.md(runs_frame(rep.runs, rep.params.save_to)) if rep.runs else "",
                  changed=T.md(changed_fields_frame(rep.runs), align={"Fields that differ from the Scenario defaults":
                                                                       "left"}) if rep.runs else "",
                  params_yaml=yaml.safe_dump(prov["parameters"], sort_keys=False, default_flow_style=None).strip(),
                  bench=bench, bench_md=bench_md, code=code_line(prov["commits"]),
                  bench_commit=bench_commit_note(bench, prov["commits"]) if bench else "")


def _record_path(run: ScenarioRun) -> str:
    """The run folder as an absolute path (the archive's writer makes it relative to the report
    folder: :func:`fanout.report.build.portable_archive`), or "(not saved)"."""
    return Path(run.record.path).resolve().as_posix() if run.record.path else "(not saved)"


def result(rep: Report, bench: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the notebook writes to ``result_json``, and the report folder's archive: the verdict,
    every run with its role, record and findings, the parameters and provenance, and the load
    benchmark's results the appendix showed (``benchmark``: a re-rendering shows the same)."""
    return {
        "status": "PASS" if rep.passed else "FAIL", "passed": rep.passed, "provenance": provenance(rep),
        "parameters": rep.parameters(), "skipped": dict(rep.skipped),
        "runs": [{"name": r.name, "role": r.role, "run_id": r.record.run_id, "record": _record_path(r),
                  "findings": r.findings.to_dict(),
                  "load": dataclasses.asdict(rep.loads[r.record.run_id])} for r in rep.runs],
        # every figure the sections state, computed once (fanout.report.facts): the page reads these
        "facts": rep.facts,
        "benchmark": bench,
    }


def scenario_result(run: ScenarioRun) -> dict[str, Any]:
    """What the scenario notebook writes to ``result_json``: Findings.to_dict() plus run id and record."""
    d = run.findings.to_dict()
    d["run_id"] = run.record.run_id
    d["record"] = run.path
    d["kernel_python"] = sys.executable
    return d


__all__ = ["appendix", "provenance", "result", "code_commits", "code_line", "bench_commit", "bench_commit_note",
           "scenario_result", "runs_frame", "changed_fields_frame"]
