"""Kernel ▸ Interrupt stops a run in a notebook: the kernel is idle again at once, what was measured
is kept (a record marked interrupted, never a PASS, saved where a normal run's goes), one line says
so, and the kernel still runs the next cell.

A real kernel (``jupyter_client``, this interpreter, this checkout on PYTHONPATH) and the run's own
throwaway server, started by the cell as a user's cell would.
"""
from __future__ import annotations

import json
import queue
import sys
import time

import psutil
import pytest

from conftest import ROOT
from fanout.analysis import analyse
from fanout.lab.record import load_run

#: the issue's bound: Kernel ▸ Interrupt gives the kernel back within this (a timeout, not a measurement)
IDLE_WITHIN_S = 5.0


@pytest.fixture
def kernel(tmp_path):
    """A started kernel and its client; shut down (with whatever it started) at the end."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec

    class ThisInterpreter(KernelManager):
        @property
        def kernel_spec(self):  # type: ignore[override]
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name="fanout test", language="python", env={"PYTHONPATH": str(ROOT)},
                    metadata={}, resource_dir="")
            return self._kernel_spec

    km = ThisInterpreter()
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def drain(kc, msg_id: str, *, until, timeout_s: float) -> list[dict]:
    """iopub messages of the cell ``msg_id`` until ``until(msg)`` is true; fails after ``timeout_s``
    with what the cell said."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            msg = kc.get_iopub_msg(timeout=max(0.01, left))
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout_s:g}s; the cell said: {said(got)}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        got.append(msg)
        if until(msg):
            return got


def idle(msg: dict) -> bool:
    return msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"


def said(msgs: list[dict], name: str | None = None) -> str:
    """What the cell printed (one stream, or every stream and error)."""
    out = []
    for m in msgs:
        if m["msg_type"] == "stream" and name in (None, m["content"]["name"]):
            out.append(m["content"]["text"])
        elif m["msg_type"] == "error" and name is None:
            out.append("\n".join(m["content"]["traceback"]))
    return "".join(out)


CELL = """
import json, time
from fanout.lab import Scenario, run_scenario
rec = run_scenario(Scenario({fields}), progress=False, printer=print, save_to={save_to!r})
print("RESULT " + json.dumps({{"interrupted": rec.environment.get("interrupted"), "path": str(rec.path),
                               "notes": rec.notes, "t_end": rec.t_end}}))
"""


def result_of(out: str) -> dict:
    (line,) = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


def servers_and_workers(km) -> list[psutil.Process]:
    """What the kernel started that outlives a run if a stop goes wrong: servers and worker processes."""
    out = []
    for p in psutil.Process(km.provisioner.process.pid).children(recursive=True):
        try:
            if "-server" in p.name() or "spawn_main" in " ".join(p.cmdline()):  # (not the resource tracker)
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def interrupted_cell_returns_the_partial_record(km, kc, save_to, fields: str, *, publishing) -> dict:
    """Run a 30 s scenario in a cell, interrupt it once ``publishing(messages so far)`` says it is
    under way; the kernel is idle again (bounded wait); the cell's own output, checked."""
    msg_id = kc.execute(CELL.format(fields=fields, save_to=str(save_to)))
    before = drain(kc, msg_id, until=lambda m: publishing(m), timeout_s=90)
    running = servers_and_workers(km)
    assert running, "the run's throwaway server is not the kernel's child"
    t_interrupt = time.time_ns()
    km.interrupt_kernel()
    after = drain(kc, msg_id, until=idle, timeout_s=IDLE_WITHIN_S)
    t_idle = time.time_ns()
    reply = kc.get_shell_msg(timeout=5)
    while reply["parent_header"].get("msg_id") != msg_id:  # (a kernel_info reply of the start, left over)
        reply = kc.get_shell_msg(timeout=5)
    out = said(before + after)
    assert reply["content"]["status"] == "ok", out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    res = result_of(said(after, "stdout"))
    # in this order: publishing seen, interrupt sent, the record closed, the kernel idle
    assert t_interrupt < res["t_end"] < t_idle, (t_interrupt, res["t_end"], t_idle)
    stopped = res["interrupted"]
    assert stopped and stopped["of_s"] == 30 and 0 < stopped["after_s"] < 30, stopped
    # one line says so, where the record is and that it is no pass
    lines = [ln for ln in said(after, "stderr").splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and res["path"] in lines[0] and "never PASS" in lines[0], said(after, "stderr")
    gone, alive = psutil.wait_procs(running, timeout=10)  # what it started, stopped with it
    assert not alive, [(p.pid, p.name()) for p in alive]
    return res


def check_saved(res: dict, save_to) -> None:
    (folder,) = [d for d in save_to.iterdir() if d.is_dir()]
    assert str(folder) == res["path"]
    rec = load_run(folder)  # saved as a normal run is (run.json), marked interrupted
    assert (folder / "run.json").exists() and rec.environment["interrupted"] == res["interrupted"]
    f = analyse(rec)
    assert not f.passed and f.verdict[0].name == "Run completed" and not f.verdict[0].passed
    assert f.overall["published"] > 0


def test_run_sync_inside_a_running_loop_is_stopped_by_a_keyboard_interrupt():
    """The mechanism alone (no kernel, no Redis): from a thread whose loop runs, as a kernel's does, a
    KeyboardInterrupt in the waiting thread cancels the run on its own loop; its cleanup runs, and
    what it kept comes back on Interrupted; a second run then works."""
    import _thread
    import asyncio
    import signal
    import threading

    from fanout.errors import Interrupted, PartialRun
    from fanout.lab.run import run_sync

    steps: list[str] = []

    async def run(seconds: float):
        steps.append("started")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise PartialRun("what was measured") from None
        return "whole"

    async def cell():
        threading.Timer(0.5, lambda: (steps.append("interrupt"), _thread.interrupt_main())).start()
        with pytest.raises(Interrupted) as stopped:
            run_sync(run(8))
        steps.append("returned")
        assert stopped.value.record == "what was measured" and stopped.value.signum == signal.SIGINT
        return run_sync(run(0.01))

    loop = asyncio.new_event_loop()  # (no asyncio.run: SIGINT is Python's default_int_handler, as in a kernel)
    try:
        assert loop.run_until_complete(cell()) == "whole"
    finally:
        loop.close()
    assert steps == ["started", "interrupt", "cancelled", "returned", "started"], steps


def test_interrupt_stops_a_run_in_a_notebook_and_keeps_what_it_measured(kernel, tmp_path):
    km, kc = kernel
    save_to = tmp_path / "runs"

    def publishing(m: dict) -> bool:  # the run's own printer: an event went out
        return m["msg_type"] == "stream" and " -> " in m["content"]["text"]

    res = interrupted_cell_returns_the_partial_record(
        km, kc, save_to, "instances=2, duration_s=30, rate_per_s=20, verbose=True", publishing=publishing)
    check_saved(res, save_to)

    # the kernel is usable: a short run in the next cell completes, not interrupted
    msg_id = kc.execute(CELL.format(fields="instances=2, duration_s=1, rate_per_s=20", save_to=str(tmp_path / "again")))
    msgs = drain(kc, msg_id, until=idle, timeout_s=90)
    again = result_of(said(msgs, "stdout"))
    assert again["interrupted"] is None and analyse(load_run(again["path"])).passed, said(msgs)


def test_interrupt_stops_a_run_over_worker_processes_in_a_notebook(kernel, tmp_path):
    km, kc = kernel
    save_to = tmp_path / "runs"

    def both_workers_recording() -> bool:  # both wrote rows as parts: well into the run
        return len({p.name.split("-")[1] for p in save_to.glob("*/parts/deliveries-*.parquet")}) >= 2

    msg_id = kc.execute(CELL.format(fields="instances=2, duration_s=30, rate_per_s=100, process_mode='processes'",
                                    save_to=str(save_to)))
    deadline = time.monotonic() + 90  # (the cell prints nothing meanwhile: the folder is the evidence)
    while not both_workers_recording():
        assert time.monotonic() < deadline, "no parts from both workers within 90 s"
        time.sleep(0.1)
    workers = servers_and_workers(km)
    assert any("spawn_main" in " ".join(p.cmdline()) for p in workers), workers
    t_interrupt = time.time_ns()
    km.interrupt_kernel()
    msgs = drain(kc, msg_id, until=idle, timeout_s=IDLE_WITHIN_S)
    t_idle = time.time_ns()
    out = said(msgs)
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    # the interrupt is the kernel's (its process group's): the run's server is stopped by the run's own
    # cleanup, after the workers, never killed under them (no "lost: closed by the server" on the way)
    assert "closed by the server" not in out, out[-3000:]
    res = result_of(said(msgs, "stdout"))
    # what every process had written, cut there: recorded before the interrupt, returned after it
    assert res["t_end"] < t_interrupt < t_idle, (res["t_end"], t_interrupt, t_idle)
    assert res["interrupted"] and 0 < res["interrupted"]["after_s"] < 30, res
    assert any(n.startswith("cut at ") for n in res["notes"]), res["notes"]
    lines = [ln for ln in said(msgs, "stderr").splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and res["path"] in lines[0] and "never PASS" in lines[0], said(msgs, "stderr")
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, [(p.pid, p.name()) for p in alive]
    check_saved(res, save_to)
    # saved as cut: every publication kept was delivered (the rows after the cut left out, not read back)
    f = analyse(load_run(res["path"]))
    assert f.overall["missing"] == 0 and f.overall["published"] > 0, f.overall


def test_a_record_read_back_from_parts_is_saved_as_cut(tmp_path):
    """Worker processes stopped at different points: the record read back from their parts is cut
    where every one had recorded; saved (run.json beside the parts), it loads with that cut, not
    with every row of the parts again (whose publications after the cut would read as missing)."""
    from fanout.lab.record import DELIVERY_COLUMNS, PUBLICATION_COLUMNS, frame
    from fanout.lab.scenario import Scenario

    t0, step = 1_700_000_000_000_000_000, 100_000_000  # an event every 0.1 s from each instance
    parts = tmp_path / "runs" / "r1" / "parts"
    parts.mkdir(parents=True)
    (parts / "recording.json").write_text(json.dumps(
        {"run_id": "r1", "scenario": Scenario(instances=2, duration_s=30).to_dict(), "t0": t0, "warmup": False}))
    names = ["test-instance-0", "test-instance-1"]
    upto = {0: 50, 1: 30}  # worker w0 wrote 5 s of rows, w1 only 3 s

    for w, n in upto.items():
        src, other = names[w], names[1 - w]
        pubs = [{"id": f"e:{src}:{k}", "source": src, "seq": k + 1, "type": "ticker", "symbol": "X",
                 "t_intended": t0 + k * step, "t_sent": t0 + k * step, "t_acked": t0 + k * step + 1, "ok": True,
                 "error": None} for k in range(n)]
        dels = [{"id": f"e:{other}:{k}", "source": other, "receiver": src, "type": "ticker", "seq": k + 1,
                 "t_received": t0 + k * step + 1_000_000} for k in range(n)]
        frame(pubs, PUBLICATION_COLUMNS).to_parquet(parts / f"publications-w{w}-00000.parquet")
        frame(dels, DELIVERY_COLUMNS).to_parquet(parts / f"deliveries-w{w}-00000.parquet")

    rec = load_run(parts.parent)
    assert any(n.startswith("cut at ") for n in rec.notes) and len(rec.publications) < 80, rec.notes
    kept = len(rec.publications)
    assert analyse(rec).overall["missing"] == 0
    rec.save(tmp_path / "runs")
    again = load_run(parts.parent)
    assert again.environment["interrupted"] and len(again.publications) == kept
    assert len(again.deliveries) == len(rec.deliveries)
    f = analyse(again)
    assert f.overall["missing"] == 0 and not f.passed
