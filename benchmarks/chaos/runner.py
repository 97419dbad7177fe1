"""The parent of every case: one process per case, bounded, and what it left behind.

For each case it makes ``<work>/<case>/{tmp,out}``, starts ``python -m benchmarks.chaos.case``
in a new session with ``TMPDIR=tmp``, ``FANOUT_CHAOS_OUT=out``, a marker and a fresh password
in its environment, samples the machine's load while it runs, and kills the session if it
outlives its bound (a hang is a finding, never a stuck suite). Afterwards:

* **processes left**: any process whose environment carries the case's marker (the case's
  servers and children inherit it, orphans included) — listed, then killed by pid;
* **files left**: anything still under the case's ``tmp`` (throwaway servers' directories,
  temporary files); what it wrote on purpose (``out``: run records, its log) is not debris;
* **password seen**: every file under the case's directories, its stdout and stderr, grepped
  for the password it was given.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from .common import MARKER_ENV, OUT_ENV, SECRET_ENV, loadavg

ROOT = Path(__file__).resolve().parents[2]


def marked_processes(token: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if p.pid != os.getpid() and p.environ().get(MARKER_ENV) == token:
                out.append(p)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
    return out


def files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() or p.is_symlink()) if d.exists() else []


def grep(paths: list[Path], needle: bytes, extra: dict[str, bytes]) -> list[str]:
    hits = [name for name, data in extra.items() if needle in data]
    for p in paths:
        try:
            if needle in p.read_bytes():
                hits.append(str(p))
        except OSError:
            continue
    return hits


def _describe(p: psutil.Process) -> str:
    try:
        return f"pid {p.pid} {p.name()} {' '.join(p.cmdline()[:3])[:80]}"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return f"pid {p.pid}"


def run_case(name: str, work: Path, *, small: bool, timeout_s: float) -> dict[str, Any]:
    case_dir = work / name
    tmp, out = case_dir / "tmp", case_dir / "out"
    tmp.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    token, password = secrets.token_hex(8), "chaos-pw-" + secrets.token_hex(10)
    env = {**os.environ, "TMPDIR": str(tmp), MARKER_ENV: token, SECRET_ENV: password, OUT_ENV: str(out),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "MPLBACKEND": "Agg"}
    result_file = out / "result.json"
    cmd = [sys.executable, "-m", "benchmarks.chaos.case", name, "--result", str(result_file)] + (
        ["--small"] if small else [])
    load0, loads = loadavg(), []
    t0 = time.monotonic()
    cpu0 = os.times()
    with open(out / "stdout.txt", "wb") as so, open(out / "stderr.txt", "wb") as se:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=so, stderr=se, start_new_session=True)
        hung = False
        while proc.poll() is None:
            if time.monotonic() - t0 > timeout_s:
                hung = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                break
            loads.append(loadavg())
            time.sleep(1.0)
    wall = time.monotonic() - t0
    cpu1 = os.times()
    child_cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    time.sleep(0.2)  # let the case's last children finish exiting
    left_procs = marked_processes(token)
    procs = [_describe(p) for p in left_procs]
    for p in left_procs:  # ours: end them, one by one
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left_procs, timeout=5)
    left_files = [str(p.relative_to(tmp)) for p in files_under(tmp)]
    left_dirs = [str(p.relative_to(tmp)) for p in tmp.iterdir()] if tmp.exists() else []
    stdout, stderr = (out / "stdout.txt").read_bytes(), (out / "stderr.txt").read_bytes()
    written = files_under(case_dir)
    seen = grep(written, password.encode(), {"stdout": stdout, "stderr": stderr})
    try:
        res = json.loads(result_file.read_text())
    except (OSError, ValueError):
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        why = f"killed after {timeout_s:g} s (hang)" if hung else f"exit {proc.returncode}: {tail[0][:160]}"
        res = {"case": name, "injected": "", "lost": "", "attributed": "", "keys_left": [], "figures": {},
               "notes": [], "checks": [{"name": "the case ran to its end", "passed": False, "measured": why}]}
    res["checks"].append({"name": "no process left running", "passed": not procs, "measured": procs or None})
    res["checks"].append({"name": "no file left in its TMPDIR", "passed": not left_dirs,
                          "measured": left_dirs[:10] or None})
    res["checks"].append({"name": "its password in no output, record, log or report", "passed": not seen,
                          "measured": [str(Path(s).name) for s in seen] or None})
    res["passed"] = all(c["passed"] for c in res["checks"])
    res["left_behind"] = {"processes": procs, "files": left_files[:50], "dirs": left_dirs, "keys": res.get("keys_left", [])}
    res["written"] = {"files": len(written), "bytes": sum(p.stat().st_size for p in written if p.exists())}
    res["machine"] = {"loadavg_start": load0, "loadavg_max": max(loads, default=load0), "loadavg_end": loadavg(),
                      "cores": os.cpu_count(), "case_wall_s": round(wall, 1), "case_cpu_s": round(child_cpu, 1),
                      "case_cpu_pct": round(100 * child_cpu / wall, 0) if wall else None}
    res["exit"] = "hang" if hung else proc.returncode
    return res
