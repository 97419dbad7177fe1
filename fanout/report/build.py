"""``fanout report``: run notebooks/validation-report.ipynb with papermill (this interpreter's
kernel), export it with nbconvert, and leave an archive beside it.

The output folder (default ``reports/latest/``, git-ignored) gets ``validation-report.ipynb``
(executed), ``.html``, ``.md`` with its figures in ``validation-report_files/``, the run
records in ``runs/`` and ``report.json`` (verdict, parameters, every run's role, record and
findings): ``fanout report --from-runs <folder>`` renders it again, ``fanout compare`` compares two.
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
    html: Path
    markdown: Path
    executed: Path
    archive: Path
    status: str
    passed: bool
    result: dict


def _describe(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k != "result_json"}
    if shown.get("redis_url"):
        from fanout.redact import redact_url

        shown["redis_url"] = redact_url(str(shown["redis_url"]))
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "defaults"


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
    archive.write_text(json.dumps(result, indent=2, allow_nan=False, default=str) + "\n")
    return ReportResult(html=html, markdown=md, executed=executed, archive=archive,
                        status=str(result.get("status", "FAIL")), passed=bool(result.get("passed")), result=result)


__all__ = ["ReportResult", "build_validation_report"]
