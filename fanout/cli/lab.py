"""``fanout lab``: JupyterLab on a working copy of the notebooks.

The committed notebooks (``notebooks/*.ipynb``) are copied into ``work/notebooks/`` under the
repository root (git-ignored) when a copy is not there yet — a copy already there is kept, it holds
your work — and JupyterLab opens that folder, so exploring never dirties the committed notebooks.
The URL (with its token) is printed once the server answers; Ctrl-C stops it.

    fanout lab                          # opens a browser
    fanout lab --no-browser --port 8899
"""
from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fanout.cli import EXIT_PASS
from fanout.errors import ConfigError, FanoutError, Interrupted

#: how long the server may take to answer before ``fanout lab`` gives up (s)
START_TIMEOUT_S = 60.0
#: how long it may take to stop after Ctrl-C before it is killed (s)
STOP_TIMEOUT_S = 10.0


def add_parser(sub) -> None:
    p = sub.add_parser("lab", help="JupyterLab on a working copy of the notebooks (work/notebooks/)",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--port", type=int, default=None, metavar="N", help="the port to listen on (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL only; open no browser")
    p.add_argument("--dir", default=None, metavar="DIR",
                   help="the working folder (default: work/notebooks under the repository root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(folder: str | None) -> tuple[Path, list[Path], list[Path]]:
    """The working folder, made and filled with the committed notebooks it lacks: (folder, copied, kept)."""
    from fanout.report.nbhelpers import find_repo_root
    from fanout.report.notebooks import working_copy
    from fanout.report.paths import WORK_NOTEBOOKS

    dest = Path(folder) if folder else find_repo_root() / WORK_NOTEBOOKS
    copied, kept = working_copy(dest)
    return dest, copied, kept


def command(dest: Path, port: int, token: str, *, browser: bool) -> list[str]:
    """The JupyterLab command line: this Python's jupyter (so the kernel is this environment's),
    on loopback, on exactly ``port`` (no moving to another), with ``token``."""
    return [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={dest}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--ServerApp.open_browser={browser}", "--ServerApp.log_level=WARN",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"] + \
        (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])  # containers often run as root


def wait_ready(proc: subprocess.Popen, port: int, token: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Until the server answers ``/api/status``; a one-line error when it exits or does not answer."""
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FanoutError(f"JupyterLab exited with code {proc.returncode} before it answered on port {port} "
                              "(its messages are above)")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.25)
    raise FanoutError(f"JupyterLab did not answer on port {port} within {timeout_s:g} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is None:
        from fanout.errors import MissingExtra

        raise MissingExtra("'fanout lab' needs JupyterLab (the report extra): pip install 'fanout[report]'")
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port: must be between 1 and 65535, got {args.port}")
    dest, copied, kept = prepare(args.dir)
    for p in copied:
        print(f"copied {p.name} into {dest}")
    if kept:
        print(f"kept your copies of {', '.join(p.name for p in kept)} in {dest} (delete one to get the committed one)")
    port = args.port or free_port()
    token = secrets.token_hex(16)
    proc = subprocess.Popen(command(dest, port, token, browser=not args.no_browser), cwd=dest,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_ready(proc, port, token)
        print(f"JupyterLab on {dest}: http://127.0.0.1:{port}/lab?token={token}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        proc.wait()
    except (KeyboardInterrupt, Interrupted):
        stop(proc)
        print("JupyterLab stopped.")
        return EXIT_PASS
    finally:
        stop(proc)
    if proc.returncode not in (0, None):
        raise FanoutError(f"JupyterLab exited with code {proc.returncode}")
    return EXIT_PASS
