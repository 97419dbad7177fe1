"""Run the notebooks in batch (papermill) and export the validation report (nbconvert).

Two sides:

* **inside a notebook**: :func:`enter_repo_root`, :func:`scenario_parameters`,
  :func:`run_one`, :func:`run_validation_scenarios`, :func:`show_markdown`,
  :func:`show_figure`, :func:`write_result` — the calls the notebooks' cells make;
* **from Python or the CLI**: :func:`build_validation_report` (``fanout report``) and
  :func:`run_scenario_notebook`, which execute the notebooks with papermill and export them.

Kernel selection: the notebooks' metadata names the ``python3`` kernel, but a machine may have
a ``python3`` kernelspec that points at another interpreter (a user-level spec, another venv).
The batch runs here never look one up: :class:`ThisInterpreterKernelManager` starts
``sys.executable -m ipykernel_launcher``, so the notebook runs in the interpreter that imported
this module (the one with ``fanout`` installed), with this checkout on ``PYTHONPATH``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from io import BytesIO
from pathlib import Path
from typing import Any

from fanout import errors as _errors
from fanout import formatting as fmt
from fanout.errors import ConfigError, FanoutError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: the checkout this module was imported from (holds notebooks/, scenarios/, data/)
REPO_ROOT = PACKAGE_DIR.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SCENARIO_NOTEBOOK = NOTEBOOK_DIR / "scenario.ipynb"
VALIDATION_NOTEBOOK = NOTEBOOK_DIR / "validation-report.ipynb"
REPORT_STEM = "validation-report"
#: quick mode: each scenario publishes for at most this long
QUICK_DURATION_S = 3.0
#: a shortened fault scenario keeps at least this long after its last fault ends
FAULT_TAIL_S = 1.5
#: figures are embedded as PNG at this resolution
FIGURE_DPI = 110
#: a secret-bearing redis_url is handed to the kernel in this variable, never written into a notebook
REDIS_URL_ENV = "FANOUT_REPORT_REDIS_URL"

Printer = Callable[[str], None]


# ============================================================ inside the notebooks


def find_repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the first of ``start`` (default: the cwd) and its parents holding
    ``pyproject.toml`` and ``fanout/``; else the checkout this package was imported from."""
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "fanout").is_dir():
            return p
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT
    raise FanoutError(f"no fanout repository (pyproject.toml + fanout/) at or above {here}")


def enter_repo_root(start: str | os.PathLike | None = None) -> Path:
    """chdir to the repository root (so ``data/runs/`` and ``scenarios/`` resolve there, whether
    the notebook was started from the root or from ``notebooks/``) and return it.

    Also keeps the bridges' own log lines out of the notebook's output: under injected faults
    they warn on every failed publish and reconnect, which the report counts and explains."""
    root = find_repo_root(start)
    os.chdir(root)
    fanout_log = logging.getLogger("fanout")
    if not fanout_log.handlers:
        fanout_log.addHandler(logging.NullHandler())
    return root


def resolve_redis_url(value: str | None) -> str | None:
    """``None``/empty stays None (a throwaway server); ``env:NAME`` reads the variable NAME."""
    if not value:
        return None
    value = str(value)
    if value.startswith("env:"):
        name = value[4:]
        got = os.environ.get(name)
        if not got:
            raise ConfigError(f"redis_url: environment variable {name} is not set")
        return got
    return value


def scenario_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """The Scenario fields found in ``namespace`` (a notebook's ``globals()``), ready for
    :func:`fanout.scenario.from_dict`. ``redis_url`` goes through :func:`resolve_redis_url`."""
    from fanout.lab.scenario import Scenario

    names = [f.name for f in fields(Scenario)]
    values = {n: namespace[n] for n in names if n in namespace}
    if "redis_url" in values:
        values["redis_url"] = resolve_redis_url(values["redis_url"])
    return values


def _stderr_printer(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_one(sc, *, save_to: str | None = "data/runs", source: str = "", changes: dict | None = None,
            printer: Printer | None = None, label: str = ""):
    """Run one Scenario (throwaway redis-server unless ``sc.redis_url``), analyse it, and return a
    :class:`fanout.tables.ScenarioRun`. Prints a start and an end line through ``printer``."""
    from fanout.analysis import analyse
    from fanout.lab.run import run_scenario
    from fanout.report.tables import ScenarioRun

    say = printer or (lambda _line: None)
    say(f"{label}{sc.name}: {sc.instances} instances, {sc.duration_s:g} s at {sc.rate_per_s:g} events/s "
        f"({sc.transport}) ...")
    record = run_scenario(sc, progress=False, save_to=save_to, printer=print if sc.verbose else None)
    findings = analyse(record)
    say(f"{label}{sc.name}: {findings.status} (delivery {findings.overall['delivery_pct']:.2f}%, "
        f"avg latency {fmt.ms(findings.latency['avg_ms'])}) -> {record.path or 'not saved'}")
    return ScenarioRun(scenario=sc, record=record, findings=findings, source=source, changes=dict(changes or {}))


def _number(name: str, value: Any) -> float | None:
    """None, an int/float, or a string holding one ("1e-9": YAML 1.1 reads that as a string)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{name}: must be a number, got {value!r}")


def validation_scenario(name: str, *, quick: bool = True, duration_scale: float | None = None,
                        redis_url: str | None = None, seed: int | None = None,
                        min_delivery_pct: float | None = None, max_avg_latency_ms: float | None = None):
    """Load a shipped scenario (or a YAML path) with the report's overrides.

    Duration: ``duration_scale`` (if given) multiplies the file's duration; otherwise ``quick``
    caps it at :data:`QUICK_DURATION_S`; otherwise the file's. A shortened scenario with faults
    still runs until :data:`FAULT_TAIL_S` after its last fault ends (never past the file's
    duration), so the faults happen and recovery is seen. Returns ``(scenario, source,
    changes)`` where ``changes`` maps each field that differs from the file to (file, used).
    """
    from fanout.lab.scenario import load_scenario, resolve_scenario_path

    path = resolve_scenario_path(name)
    file_sc = load_scenario(path)
    duration_scale = _number("duration_scale", duration_scale)
    min_delivery_pct = _number("min_delivery_pct", min_delivery_pct)
    max_avg_latency_ms = _number("max_avg_latency_ms", max_avg_latency_ms)
    if duration_scale is not None:
        if duration_scale <= 0:
            raise ConfigError(f"duration_scale: must be a number > 0, got {duration_scale!r}")
        duration = round(file_sc.duration_s * float(duration_scale), 6)
    elif quick:
        duration = min(file_sc.duration_s, QUICK_DURATION_S)
    else:
        duration = file_sc.duration_s
    # a shortened run still covers its faults: the last one ends, then FAULT_TAIL_S of recovery
    fault_end = max((float(f.get("at_s", 0)) + float(f.get("duration_s", 0)) for f in file_sc.faults), default=0.0)
    if fault_end and duration < file_sc.duration_s:
        duration = min(file_sc.duration_s, max(duration, fault_end + FAULT_TAIL_S))
    overrides = {"duration_s": duration, "redis_url": resolve_redis_url(redis_url), "seed": seed,
                 "min_delivery_pct": min_delivery_pct, "max_avg_latency_ms": max_avg_latency_ms}
    sc = load_scenario(path, **overrides)
    changes = {k: (getattr(file_sc, k), getattr(sc, k)) for k in ("duration_s", "seed", "min_delivery_pct",
                                                                   "max_avg_latency_ms")
               if getattr(file_sc, k) != getattr(sc, k)}
    try:
        source = path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        source = path.as_posix()
    return sc, source, changes


def run_validation_scenarios(scenarios: Sequence[str] | str, *, quick: bool = True, duration_scale: float | None = None,
                             redis_url: str | None = None, seed: int | None = None,
                             min_delivery_pct: float | None = None, max_avg_latency_ms: float | None = None,
                             save_to: str | None = "data/runs", progress: bool = True) -> list:
    """Run every named scenario for the validation report, one after the other; progress lines
    go to stderr (relayed live by :func:`build_validation_report`, left out of the exports)."""
    names = [n.strip() for n in scenarios.split(",")] if isinstance(scenarios, str) else list(scenarios or [])
    names = [str(n) for n in names if str(n).strip()]
    if not names:
        raise ConfigError("scenarios: at least one scenario name is needed")
    loaded = [validation_scenario(n, quick=quick, duration_scale=duration_scale, redis_url=redis_url, seed=seed,
                                  min_delivery_pct=min_delivery_pct, max_avg_latency_ms=max_avg_latency_ms)
              for n in names]  # every name checked before the first run starts
    say = _stderr_printer if progress else None
    return [run_one(sc, save_to=save_to, source=source, changes=changes, printer=say,
                    label=f"[{i}/{len(loaded)}] ")
            for i, (sc, source, changes) in enumerate(loaded, 1)]


def show_markdown(text: str) -> None:
    """Display markdown (renders in Jupyter, the HTML export and the markdown export alike)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def figure_png(fig, dpi: int = FIGURE_DPI) -> bytes:
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _figure_title(fig) -> str:
    sup = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    return (sup or (titles[0] if titles else "figure")).replace("\n", " — ")


def show_figure(fig, alt: str | None = None) -> None:
    """Display a Figure as an embedded PNG (alt text: its title), independent of the matplotlib
    backend, so nothing is shown twice and the exports carry the image."""
    from IPython.display import Image, display

    display(Image(data=figure_png(fig), format="png", alt=alt or _figure_title(fig)))


def write_result(path: str | os.PathLike | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` as strict JSON to ``path`` (nothing when ``path`` is None). Returns
    nothing, so the notebook cell that calls it shows nothing."""
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n")


# ============================================================ running notebooks (papermill)


def _kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    py_path = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(py_path))}
    env.update(extra or {})
    return env


def kernel_manager_class(extra_env: dict[str, str] | None = None) -> type:
    """An AsyncKernelManager whose kernel is always ``sys.executable -m ipykernel_launcher``
    (whatever kernelspec the notebook names), with ``extra_env`` added to its environment."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    env = _kernel_env(extra_env)
    transport = _kernel_transport()

    class ThisInterpreterKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = transport
            if transport == "ipc":
                # a socket path of our own: the default ("kernel-ipc" or the tcp host name, relative
                # to the cwd) is shared by every kernel started from the same folder at once
                import uuid

                from jupyter_core.paths import jupyter_runtime_dir

                runtime = Path(jupyter_runtime_dir())
                runtime.mkdir(parents=True, exist_ok=True)
                self.ip = str(runtime / f"fanout-{uuid.uuid4().hex[:16]}-ipc")
        @property
        def kernel_spec(self):  # type: ignore[override]
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"Python {sys.version_info.major}.{sys.version_info.minor} ({sys.executable})",
                    language="python", env=env, metadata={}, resource_dir="",
                )
            return self._kernel_spec

    return ThisInterpreterKernelManager


def _kernel_transport() -> str:
    """``ipc`` (unix sockets, not reachable over the network) where the socket paths fit,
    else ``tcp`` on loopback."""
    if os.name != "posix":
        return "tcp"
    from jupyter_core.paths import jupyter_runtime_dir

    # <runtime>/fanout-<16 hex>-ipc-<port>: keep it inside the 104-byte sun_path limit
    return "ipc" if len(jupyter_runtime_dir()) + 32 < 100 else "tcp"


def _check_ipykernel() -> None:
    import importlib.util

    if importlib.util.find_spec("ipykernel") is None:
        raise FanoutError(f"ipykernel is not installed for {sys.executable}: "
                          f"run '{sys.executable} -m pip install ipykernel'")


def _one_line(text: str) -> str:
    from fanout.redact import redact_text

    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return redact_text(lines[0] if lines else "")


def _cell_error(exc, notebook: Path, executed: Path) -> FanoutError:
    """A papermill cell failure as one line, of the notebook's own error class when it is a
    FanoutError (so the CLI keeps its exit code: 2 for a ConfigError, 3 for Redis unreachable)."""
    cls = getattr(_errors, str(exc.ename), None)
    if not (isinstance(cls, type) and issubclass(cls, FanoutError)):
        cls = FanoutError
    cell = f"cell {exc.exec_count}" if exc.exec_count is not None else f"cell #{exc.cell_index}"
    msg = (f"{notebook.name} failed in {cell}: {exc.ename}: {_one_line(exc.evalue)} "
           f"(executed notebook: {_display_path(executed)})")
    try:
        err = cls(msg)
    except Exception:  # noqa: BLE001 - an error class with an unusual constructor
        err = FanoutError(msg)
    return err


def _display_path(p: Path) -> str:
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def _secret_free(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Move a redis_url that carries credentials out of the parameters (which are written into
    the executed notebook) into the kernel's environment."""
    params = dict(params)
    url = params.get("redis_url")
    if url and not str(url).startswith("env:"):
        from urllib.parse import urlsplit

        parts = urlsplit(str(url))
        if parts.password or parts.username or "password=" in parts.query:
            params["redis_url"] = f"env:{REDIS_URL_ENV}"
            return params, {REDIS_URL_ENV: str(url)}
    return params, {}


def execute_notebook(notebook: str | os.PathLike, output: str | os.PathLike, parameters: dict[str, Any], *,
                     progress_bar: bool | None = None, stderr=None, cwd: str | os.PathLike | None = None,
                     start_timeout: float = 120) -> Path:
    """Execute ``notebook`` with papermill into ``output`` with ``parameters`` in this interpreter's
    kernel. A failing cell raises a one-line :class:`FanoutError` (the executed notebook is kept).
    ``stderr``: a file the kernel's stderr stream is relayed to live (progress lines)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    _check_ipykernel()
    notebook = Path(notebook).resolve()
    output = Path(output).resolve()
    if not notebook.is_file():
        raise FanoutError(f"notebook not found: {notebook}")
    output.parent.mkdir(parents=True, exist_ok=True)
    params, env = _secret_free(parameters)
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    cwd = Path(cwd).resolve() if cwd else find_repo_root()
    here = Path.cwd()
    try:
        pm.execute_notebook(
            str(notebook), str(output), parameters=params, kernel_name="python3", language="python",
            progress_bar=progress_bar, stderr_file=stderr, cwd=str(cwd), start_timeout=start_timeout,
            kernel_manager_class=kernel_manager_class(env),
        )
    except PapermillExecutionError as exc:
        raise _cell_error(exc, notebook, output) from None
    finally:
        os.chdir(here)  # papermill restores it; be sure
    return output


def run_scenario_notebook(params: dict[str, Any], out: str | os.PathLike, *, progress_bar: bool | None = None,
                          stderr=None) -> dict[str, Any]:
    """Execute notebooks/scenario.ipynb with ``params`` into ``out`` (an .ipynb path) and return
    its result (Findings.to_dict() plus run_id, record and the kernel's interpreter)."""
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="fanout-nb-") as tmp:
        result_json = Path(tmp) / "result.json"
        execute_notebook(SCENARIO_NOTEBOOK, out, {**params, "result_json": str(result_json)},
                         progress_bar=progress_bar, stderr=stderr)
        if not result_json.is_file():
            raise FanoutError(f"{SCENARIO_NOTEBOOK.name} ran but wrote no result (executed notebook: {out})")
        return json.loads(result_json.read_text())


# ============================================================ export (nbconvert)

_HTML_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{#- Self-contained: no script is loaded from the network (no require.js, MathJax or mermaid). -#}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">
body.jp-Notebook { background: #fff; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 28px 64px; }
.jp-Cell { padding: 0; }
.jp-OutputArea-output, .jp-RenderedMarkdown { padding-left: 0; }
.jp-RenderedHTMLCommon { font-size: 15px; line-height: 1.55; padding-right: 0; }
.jp-RenderedHTMLCommon h1 { font-size: 2.0em; margin-top: 0.6em; }
.jp-RenderedHTMLCommon h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.25em; margin-top: 1.6em; }
.jp-RenderedHTMLCommon table { font-size: 13px; margin: 0.5em 0 1.2em 0; border-collapse: collapse; }
.jp-RenderedHTMLCommon th, .jp-RenderedHTMLCommon td { padding: 4px 10px; border: 1px solid #d0d7de; }
.jp-RenderedHTMLCommon tbody tr:nth-child(odd) { background: #f6f8fa; }
.jp-RenderedHTMLCommon code { font-size: 0.9em; }
.jp-RenderedHTMLCommon pre { font-size: 12.5px; background: #f6f8fa; padding: 8px 12px; }
.jp-RenderedImage img { max-width: 100%; height: auto; margin: 6px 0 18px 0; }
.jp-MarkdownCell > .jp-RenderedMarkdown { width: 100%; }
</style>
{%- endblock html_head_css -%}
{% block markdowncell scoped %}
<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell">
<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput" data-mime-type="text/markdown">
{{ cell.source | markdown2html | strip_files_prefix }}
</div>
</div>
{%- endblock markdowncell %}
{% block data_png scoped %}
<div class="jp-RenderedImage jp-OutputArea-output">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}" alt="{{ (output | get_metadata('alt', 'image/png') or 'figure') | escape_html }}">
</div>
{%- endblock data_png %}
"""

_MD_TEMPLATE = r"""{%- extends 'index.md.j2' -%}
{% block data_png %}
![{{ (output | get_metadata('alt', 'image/png') or 'figure') | replace('[', '(') | replace(']', ')') }}]({{ output.metadata.filenames['image/png'] | path2url }})
{% endblock data_png %}
"""


_IMG_ALT_FIRST = re.compile(r'<img alt="([^"]*)" src="(data:image/[a-z+]+;base64,[^"]*)"')


def _export_copy(executed: Path, title: str):
    """The executed notebook prepared for export: no stderr streams (progress lines, warnings),
    no code cells without output (the parameter cells), a title."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    nb.cells = [c for c in nb.cells if c.cell_type != "code" or c.outputs]
    nb.metadata["title"] = title
    return nb


def export_notebook(executed: str | os.PathLike, out_dir: str | os.PathLike, stem: str = REPORT_STEM,
                    title: str = "Redis Multi-Instance Testing Report") -> tuple[Path, Path]:
    """Export an executed notebook to ``<out_dir>/<stem>.html`` (self-contained: images as data
    URIs, no code, no prompts, no network scripts) and ``<out_dir>/<stem>.md`` (no code; figures
    written to ``<out_dir>/<stem>_files/``). Returns the two paths."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter, MarkdownExporter
    from nbconvert.writers import FilesWriter

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = _export_copy(Path(executed), title)
    hide = {"exclude_input": True, "exclude_input_prompt": True, "exclude_output_prompt": True}

    html_exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"fanout.html.j2": _HTML_TEMPLATE})],
                                 template_file="fanout.html.j2", exclude_anchor_links=True, **hide)
    body, _res = html_exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # nbconvert re-serialises the page with attributes sorted (alt before src); put src first again
    body = _IMG_ALT_FIRST.sub(r'<img src="\2" alt="\1"', body)
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(body, encoding="utf-8")

    md_exporter = MarkdownExporter(extra_loaders=[DictLoader({"fanout.md.j2": _MD_TEMPLATE})],
                                   template_file="fanout.md.j2", **hide)
    files_dir = f"{stem}_files"
    shutil.rmtree(out_dir / files_dir, ignore_errors=True)
    body, res = md_exporter.from_notebook_node(
        nb, resources={"metadata": {"name": stem}, "output_files_dir": files_dir, "unique_key": stem})
    FilesWriter(build_directory=str(out_dir)).write(body, res, notebook_name=stem)
    return html_path, out_dir / f"{stem}.md"


# ============================================================ the validation report


@dataclass(frozen=True)
class ReportResult:
    html: Path
    markdown: Path
    executed: Path
    status: str
    passed: bool
    result: dict


def _describe(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k != "result_json"}
    if shown.get("redis_url"):
        from fanout.redact import redact_url

        shown["redis_url"] = redact_url(str(shown["redis_url"]))
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "defaults"


def build_validation_report(params: dict[str, Any], out_dir: str | os.PathLike = Path("reports"), *,
                            printer: Printer | None = _stderr_printer, progress_bar: bool | None = None,
                            relay_stderr: bool = True) -> ReportResult:
    """Run notebooks/validation-report.ipynb with ``params`` (papermill, this interpreter's kernel)
    and export it. Writes ``<out_dir>/validation-report.{ipynb,html,md}`` and the figures in
    ``<out_dir>/validation-report_files/``. ``passed`` is False when any scenario failed its
    verdict (the report then says FAIL). A failing cell raises a one-line FanoutError."""
    say = printer or (lambda _line: None)
    out_dir = Path(out_dir).resolve()
    executed = out_dir / f"{REPORT_STEM}.ipynb"
    params = dict(params or {})
    say(f"fanout report: running {_display_path(VALIDATION_NOTEBOOK)} ({_describe(params)})")
    with tempfile.TemporaryDirectory(prefix="fanout-report-") as tmp:
        result_json = Path(tmp) / "result.json"
        execute_notebook(VALIDATION_NOTEBOOK, executed, {**params, "result_json": str(result_json)},
                         progress_bar=progress_bar, stderr=sys.stderr if relay_stderr else None)
        if not result_json.is_file():
            raise FanoutError(f"{VALIDATION_NOTEBOOK.name} ran but wrote no result "
                              f"(executed notebook: {_display_path(executed)})")
        result = json.loads(result_json.read_text())
    say(f"fanout report: exporting {_display_path(out_dir / REPORT_STEM)}.html and .md")
    html, md = export_notebook(executed, out_dir, REPORT_STEM)
    passed = bool(result.get("passed"))
    return ReportResult(html=html, markdown=md, executed=executed, status=str(result.get("status", "FAIL")),
                        passed=passed, result=result)


__all__ = [
    "ReportResult", "build_validation_report", "run_scenario_notebook", "execute_notebook", "export_notebook",
    "find_repo_root", "enter_repo_root", "scenario_parameters", "resolve_redis_url", "run_one",
    "validation_scenario", "run_validation_scenarios", "show_markdown", "show_figure", "figure_png",
    "write_result", "kernel_manager_class", "QUICK_DURATION_S",
]
