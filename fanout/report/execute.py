"""Execute a notebook in batch with papermill, in this interpreter's kernel.

Kernel selection: the notebooks' metadata names the ``python3`` kernel, but a machine may have
a ``python3`` kernelspec that points at another interpreter (a user-level spec, another venv).
The batch runs here never look one up: the kernel manager from :func:`kernel_manager_class`
starts ``sys.executable -m ipykernel_launcher``, so the notebook runs in the interpreter that
imported this module (the one with ``fanout`` installed), with this checkout on ``PYTHONPATH``.
A cell that fails becomes one line of the notebook's own error class; a ``redis_url`` with
credentials travels in the kernel's environment, never in the executed notebook; so does the
command line that started the notebook (``$FANOUT_COMMAND``, redacted), which its runs record.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from fanout import errors as _errors
from fanout.errors import FanoutError
from fanout.lab.provenance import COMMAND_ENV, command_line
from fanout.report.nbhelpers import find_repo_root
from fanout.report.paths import REPO_ROOT, SCENARIO_NOTEBOOK, display_path

#: a secret-bearing redis_url is handed to the kernel in this variable, never written into a notebook
REDIS_URL_ENV = "FANOUT_REPORT_REDIS_URL"


def _kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    py_path = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(py_path))}
    env.update(extra or {})
    return env


def kernel_manager_class(extra_env: dict[str, str] | None = None, log_path: Path | None = None) -> type:
    """An AsyncKernelManager whose kernel is always ``sys.executable -m ipykernel_launcher``
    (whatever kernelspec the notebook names), with ``extra_env`` added to its environment and the
    kernel process's own stderr (its log, not the notebook's output) written to ``log_path``."""
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

        async def _async_launch_kernel(self, kernel_cmd, **kw):  # type: ignore[override]
            if log_path is not None:  # e.g. the ZMQ noise of a kernel shut down by a signal
                kw["stderr"] = self._fanout_log = open(log_path, "ab")  # noqa: SIM115 - closed with the kernel
            return await super()._async_launch_kernel(kernel_cmd, **kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:  # type: ignore[override]
            await super()._async_cleanup_resources(restart=restart)
            log = getattr(self, "_fanout_log", None)
            if log is not None and not restart:
                log.close()

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
           f"(executed notebook: {display_path(executed)})")
    try:
        err = cls(msg)
    except Exception:  # noqa: BLE001 - an error class with an unusual constructor
        err = FanoutError(msg)
    return err


def secret_free(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
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
    params, env = secret_free(parameters)
    env.setdefault(COMMAND_ENV, command_line())  # the runs record the command typed, not the kernel's
    if progress_bar is None:
        progress_bar = sys.stderr.isatty()
    cwd = Path(cwd).resolve() if cwd else find_repo_root()
    here = Path.cwd()
    try:
        pm.execute_notebook(
            str(notebook), str(output), parameters=params, kernel_name="python3", language="python",
            progress_bar=progress_bar, stderr_file=stderr, cwd=str(cwd), start_timeout=start_timeout,
            kernel_manager_class=kernel_manager_class(env, output.with_suffix(".kernel.log")),
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


__all__ = ["execute_notebook", "run_scenario_notebook", "kernel_manager_class", "secret_free", "REDIS_URL_ENV"]
