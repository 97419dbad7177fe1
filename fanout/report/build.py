"""``fanout report``: run notebooks/validation-report.ipynb with papermill (this interpreter's
kernel), export it with nbconvert, and leave an archive beside it.

The output folder (default ``reports/latest/``, git-ignored) gets ``validation-report.ipynb``
(executed), ``.html``, ``.md`` with its figures in ``validation-report_files/``, the run
records in ``runs/`` and ``report.json`` (verdict, parameters, every run's role, record and
findings): ``fanout report --from-runs <folder>`` renders it again, ``fanout compare`` compares two.
Beside it, ``alerts.yml`` (Prometheus alerting rules) and ``dashboard.json`` (Grafana), their
thresholds from the report's facts (:mod:`fanout.report.alerts`).

A report folder holds its runs: rendered from archived runs (``from_runs``), they are copied into
its ``runs/`` first. The archive names every path (records, ``save_to``, ``from_runs``) relative
to the report folder, so the folder renders again from any clone or copy of it.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fanout.errors import FanoutError
from fanout.report.execute import execute_notebook
from fanout.report.export import export_notebook
from fanout.report.nbhelpers import Printer, stderr_printer
from fanout.report.paths import ARCHIVE_NAME, DEFAULT_OUT, REPORT_STEM, VALIDATION_NOTEBOOK, display_path


@dataclass(frozen=True)
class ReportResult:
    """What was written; ``result`` is the notebook's (absolute paths, records where they were
    read from), the archive file the same with :func:`portable_archive`'s paths."""

    html: Path
    markdown: Path
    executed: Path
    archive: Path
    status: str
    passed: bool
    result: dict
    #: ``alerts.yml`` and ``dashboard.json`` (:mod:`fanout.report.alerts`), when the result held its facts
    alerts: tuple[Path, ...] = ()


def _describe(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k != "result_json"}
    if shown.get("redis_url"):
        from fanout.redact import redact_url

        shown["redis_url"] = redact_url(str(shown["redis_url"]))
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "defaults"


def _relative(path: str, folder: Path) -> str:
    """An absolute ``path`` relative to ``folder`` (POSIX separators); anything else as it is."""
    if not path or not Path(path).is_absolute():
        return path
    return Path(os.path.relpath(path, folder)).as_posix()


def portable_archive(result: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The notebook's result as the report folder's archive: each run's record is the copy in
    ``out_dir/runs`` when there is one, and every path is relative to ``out_dir``."""
    result = json.loads(json.dumps(result, default=str))
    for run in result.get("runs", []):
        record = str(run.get("record") or "")
        if Path(record).is_absolute():
            copy = out_dir / "runs" / Path(record).name
            run["record"] = _relative(str(copy if (copy / "run.json").is_file() else record), out_dir)
    for params in (result.get("parameters"), (result.get("provenance") or {}).get("parameters")):
        if isinstance(params, dict):
            if isinstance(params.get("save_to"), str):
                params["save_to"] = _relative(params["save_to"], out_dir)
            if isinstance(params.get("from_runs"), list):
                params["from_runs"] = [_relative(str(p), out_dir) for p in params["from_runs"]]
    return result


def build_validation_report(params: dict[str, Any], out_dir: str | os.PathLike = DEFAULT_OUT, *,
                            printer: Printer | None = stderr_printer, progress_bar: bool | None = None,
                            relay_stderr: bool = True) -> ReportResult:
    """Execute and export the validation report into ``out_dir``. ``passed`` is False when any run
    failed its verdict (the report then says FAIL). A failing cell raises a one-line FanoutError.
    The run records go to ``<out_dir>/runs`` unless ``params["save_to"]`` says otherwise."""
    say = printer or (lambda _line: None)
    out_dir = Path(out_dir).resolve()
    executed = out_dir / f"{REPORT_STEM}.ipynb"
    params = dict(params or {})
    params.setdefault("save_to", str(out_dir / "runs"))
    if params.get("from_runs"):
        from fanout.report.runs import copy_runs

        copy_runs(params["from_runs"], out_dir / "runs")
    say(f"fanout report: running {display_path(VALIDATION_NOTEBOOK)} ({_describe(params)})")
    with tempfile.TemporaryDirectory(prefix="fanout-report-") as tmp:
        result_json = Path(tmp) / "result.json"
        execute_notebook(VALIDATION_NOTEBOOK, executed, {**params, "result_json": str(result_json)},
                         progress_bar=progress_bar, stderr=sys.stderr if relay_stderr else None)
        if not result_json.is_file():
            raise FanoutError(f"{VALIDATION_NOTEBOOK.name} ran but wrote no result "
                              f"(executed notebook: {display_path(executed)})")
        result = json.loads(result_json.read_text())
    say(f"fanout report: exporting {display_path(out_dir / REPORT_STEM)}.html and .md")
    html, md = export_notebook(executed, out_dir, REPORT_STEM)
    archive = out_dir / ARCHIVE_NAME
    archive.write_text(json.dumps(portable_archive(result, out_dir), indent=2, allow_nan=False, default=str) + "\n")
    written: tuple[Path, ...] = ()
    if isinstance(result.get("facts"), dict):  # Prometheus rules and a Grafana dashboard, thresholds from the facts
        from fanout.report.alerts import write as write_alerts

        written = tuple(write_alerts(result["facts"], out_dir))
        say(f"fanout report: {', '.join(p.name for p in written)} beside it (thresholds from these runs)")
    return ReportResult(html=html, markdown=md, executed=executed, archive=archive,
                        status=str(result.get("status", "FAIL")), passed=bool(result.get("passed")), result=result,
                        alerts=written)


__all__ = ["ReportResult", "build_validation_report", "portable_archive"]
