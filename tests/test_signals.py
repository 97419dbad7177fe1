"""SIGINT, SIGTERM and SIGHUP stop a run the same way: throwaway servers and children stopped,
nothing left running, exit 128 + the signal."""
from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest

from conftest import ROOT, fanout_cmd


def wait_for_child(proc: subprocess.Popen, name: str, timeout_s: float = 30) -> psutil.Process:
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in parent.children(recursive=True):
            try:
                if name in " ".join(child.cmdline()) or name in child.name():
                    return child
            except psutil.NoSuchProcess:
                continue
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {name} child of pid {proc.pid} within {timeout_s}s: {proc.communicate()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_fanout_run_and_leaves_nothing_running(sig):
    proc = subprocess.Popen([*fanout_cmd(), "run", "--duration", "30", "--no-save", "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = wait_for_child(proc, "redis-server")
    time.sleep(1.0)  # well into the run
    everyone = [server, *psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert err.strip().splitlines()[-1].startswith(f"fanout run: interrupted by {sig.name}"), err
    assert "Traceback" not in err
    gone, alive = psutil.wait_procs(everyone, timeout=10)
    assert not alive, [p.pid for p in alive]
