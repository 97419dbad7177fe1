"""SIGINT, SIGTERM and SIGHUP stop a run the same way: throwaway servers and children stopped,
nothing left running, exit 128 + the signal."""
from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest

from conftest import ROOT, fanout_cmd
from fanout.analysis import analyse
from fanout.lab.record import load_run


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


def wait_for_publishes(proc: subprocess.Popen, n: int, timeout_s: float = 60) -> psutil.Process:
    """Until the run's throwaway server (a ``-server`` child listening on TCP) has run ``n`` PUBLISH
    commands: the run is under way. Bounded; fails with what the CLI said if it ended first.
    Returns that server."""
    import redis

    calls, deadline = 0, time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:  # (a short-lived "-server --version" probe may come and go)
                if "-server" not in child.name() and "-server" not in " ".join(child.cmdline()):
                    continue
                ports = [c.laddr.port for c in child.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
            except psutil.NoSuchProcess:
                continue
            if not ports:
                continue
            try:
                with redis.Redis(port=ports[0], socket_timeout=5, socket_connect_timeout=5) as r:
                    calls = r.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)
            except redis.ConnectionError:  # still starting
                calls = 0
            if calls >= n:
                return child
        time.sleep(0.05)
    raise AssertionError(f"the run's server saw {calls} of {n} PUBLISH within {timeout_s}s "
                         f"(exit {proc.poll()}): {proc.communicate() if proc.poll() is not None else ''}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_fanout_run_and_leaves_nothing_running(sig, tmp_path):
    proc = subprocess.Popen([*fanout_cmd(), "run", "--duration", "30", "--out", str(tmp_path), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = wait_for_publishes(proc, 50)  # well into the run: publishing (not a sleep that hopes so)
    everyone = [server, *psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert err.strip().splitlines()[-1].startswith(f"fanout run: interrupted by {sig.name}"), err
    assert "Traceback" not in err
    gone, alive = psutil.wait_procs(everyone, timeout=10)
    assert not alive, [p.pid for p in alive]
    saved = list(tmp_path.iterdir())
    assert len(saved) == 1, saved  # the partial record, marked
    rec = load_run(saved[0])
    assert rec.environment["interrupted"]["of_s"] == 30 and 0 < rec.environment["interrupted"]["after_s"] < 30
    assert f"partial record (marked interrupted, never PASS): {saved[0]}" in err.replace(str(ROOT) + "/", "")
    f = analyse(rec)
    assert not f.passed and f.verdict[0].name == "Run completed" and not f.verdict[0].passed
    assert len(rec.publications) > 0
    # what was recorded up to the signal is analysed and said before the run stops: never a PASS
    assert "✗ Run completed (measured interrupted after" in out and "Overall Status: FAIL" in out, out[-2000:]


def test_a_cli_killed_outright_takes_its_server_with_it(tmp_path):
    proc = subprocess.Popen([*fanout_cmd(), "run", "--duration", "30", "--no-save", "--no-progress"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = wait_for_child(proc, "-server")
    proc.kill()  # SIGKILL: no cleanup of its own runs
    proc.wait(10)
    gone, alive = psutil.wait_procs([server], timeout=10)
    assert not alive, "the throwaway server outlived the process that started it"


def test_sigterm_stops_fanout_report_and_leaves_no_kernel_or_server(tmp_path):
    proc = subprocess.Popen([*fanout_cmd(), "report", "--scenarios", "standard", "--duration-scale", "2",
                             "-p", "failover", "[]", "--out", str(tmp_path / "out")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = wait_for_child(proc, "-server", timeout_s=120)  # the kernel's throwaway server: the run is on
    everyone = [server, *psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    assert "interrupted by SIGTERM" in err.strip().splitlines()[-1] and "Traceback" not in err, err[-2000:]
    gone, alive = psutil.wait_procs(everyone, timeout=20)
    assert not alive, [(p.pid, p.name()) for p in alive]


def test_sigterm_stops_an_agent_and_it_deregisters(redis_server):
    import redis

    proc = subprocess.Popen([*fanout_cmd(), "agent", "--redis-url", redis_server.url, "--name", "ag", "--wait", "60"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with redis.Redis.from_url(redis_server.url) as r:
        deadline = time.monotonic() + 30
        while not r.sismember("fanout:agents", "ag") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.sismember("fanout:agents", "ag")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 143 and "interrupted by SIGTERM" in err and "Traceback" not in err, err
        assert not r.sismember("fanout:agents", "ag") and not r.exists("fanout:agent:ag:alive")


def test_ctrl_c_on_a_run_over_worker_processes_keeps_and_analyses_what_every_process_recorded(tmp_path):
    """Worker processes cannot hand a record back once stopped: what they wrote as parts is read
    back, cut where every process had recorded, analysed (never a PASS) and saved; no traceback."""
    proc = subprocess.Popen([*fanout_cmd(), "run", "--instances", "4", "--topology", "host-bots", "--rate", "400",
                             "--duration", "60", "--process-mode", "processes", "--out", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and \
            len({p.name.split("-")[1] for p in tmp_path.glob("*/parts/deliveries-*.parquet")}) < 2:
        time.sleep(0.1)  # both workers wrote parts: well into the run
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    assert "✗ Run completed (measured interrupted after" in out and "Overall Status: FAIL" in out, out[-2000:]
    assert "Unexplained" not in out, out[-2000:]
    (folder,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert f"partial record (marked interrupted, never PASS): {folder}" in err.replace(str(ROOT) + "/", "")
    rec = load_run(folder)
    assert rec.environment["interrupted"] and any(n.startswith("cut at ") for n in rec.notes), rec.notes
    f = analyse(rec)
    assert f.overall["missing"] == 0 and f.overall["published"] > 0 and not f.passed
