"""Instances as separate OS processes (``Scenario.process_mode = "processes"``).

The realistic deployment: every instance has its own interpreter, event loop and connections.
The coordinator (this process) spawns one worker per instance; every worker runs the same
simulator code over its one instance (``_Simulation(hosted=[i])``), so the records that come
back are the ones a single-process run makes and the analysis is unchanged.

The conversation with each worker, over a pipe, every step bounded by a timeout:

    worker -> ("ready", version)          bridges started, subscriptions confirmed on its side
    coord  -> ("go", t_start)             after Redis shows every subscriber (PUBSUB NUMSUB)
    worker -> ("published", pubs)         its share of the schedule is done
    coord  -> ("drain", expected)         distinct events each of its receivers must get
    worker -> ("done", records...)        deliveries, metrics, outages
A worker that dies or goes silent is named in a one-line error; no step waits forever.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Any

from .errors import FanoutError
from .scenario import Scenario, from_dict

#: how long a worker may take to start its bridge and report ready
READY_TIMEOUT_S = 60.0


def _worker(index: int, scenario: dict, url: str, conn) -> None:
    """Entry point of one worker process (spawned: imports fanout afresh)."""
    from .simulator import _Simulation

    async def main() -> None:
        sc = from_dict(scenario)
        sim = _Simulation(sc, url, hosted=[index])
        try:
            version = await sim.setup()
            conn.send(("ready", version))
            msg = await _recv(conn, READY_TIMEOUT_S + sc.duration_s)
            if msg[0] != "go":
                return
            sim.t0 = msg[1] + int(sc.warmup_s * 1e9)
            await sim.publish_phase(msg[1])
            conn.send(("published", sim.pubs))
            msg = await _recv(conn, 60.0 + sc.drain_timeout_s)
            if msg[0] != "drain":
                return
            await sim.drain(msg[1])
            conn.send(("done", sim.deliveries, sim._instance_rows(), sim.outage_rows()))
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator in one line
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            await sim.close()

    asyncio.run(main())


async def _recv(conn, timeout_s: float):
    """Receive one message from a pipe without blocking the event loop, bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        if conn.poll():
            return conn.recv()
        if time.monotonic() > deadline:
            raise FanoutError(f"no message within {timeout_s:g}s")
        await asyncio.sleep(0.005)


class _Workers:
    def __init__(self, sc: Scenario, url: str) -> None:
        ctx = mp.get_context("spawn")
        self.sc = sc
        self.ids = [f"test-instance-{i}" for i in range(sc.instances)]
        self.pipes = []
        self.procs = []
        for i in range(sc.instances):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(i, sc.to_dict(), url, child), name=f"fanout-{self.ids[i]}",
                            daemon=True)
            self.pipes.append(parent)
            self.procs.append(p)

    def start(self) -> None:
        for p in self.procs:
            p.start()

    async def gather(self, what: str, timeout_s: float) -> list[tuple]:
        """One message from every worker (all of kind ``what``), or a one-line error naming who failed."""
        out: list[Any] = [None] * len(self.pipes)
        deadline = time.monotonic() + timeout_s
        while any(m is None for m in out):
            for i, conn in enumerate(self.pipes):
                if out[i] is not None:
                    continue
                if conn.poll():
                    msg = conn.recv()
                    if msg[0] == "error":
                        raise FanoutError(f"{self.ids[i]} (pid {self.procs[i].pid}) failed: {msg[1]}")
                    out[i] = msg
                elif not self.procs[i].is_alive():
                    raise FanoutError(f"{self.ids[i]} (pid {self.procs[i].pid}) died with exit code "
                                      f"{self.procs[i].exitcode} while the coordinator waited for '{what}'")
            if time.monotonic() > deadline:
                late = [self.ids[i] for i, m in enumerate(out) if m is None]
                raise FanoutError(f"no '{what}' from {', '.join(late)} within {timeout_s:g}s")
            await asyncio.sleep(0.005)
        return out

    def send_all(self, msgs: list[tuple]) -> None:
        for conn, msg in zip(self.pipes, msgs):
            conn.send(msg)

    def stop(self) -> None:
        for conn in self.pipes:
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


async def simulate_processes(sc: Scenario, url: str, run_id: str, progress=None) -> "RunRecord":  # noqa: F821
    """The coordinator: one worker process per instance, one RunRecord at the end."""
    from .simulator import (
        SUBSCRIBE_CONFIRM_TIMEOUT_S,
        _confirm_subscriptions,
        _Progress,
        build_record,
        expected_counts,
    )

    workers = _Workers(sc, url)
    workers.start()
    try:
        ready = await workers.gather("ready", READY_TIMEOUT_S)
        version = ready[0][1]
        if sc.transport == "pubsub":
            channels = [f"{sc.key_prefix}{t}" for t in sc.event_types]
            await _confirm_subscriptions(url, channels, sc.instances, SUBSCRIBE_CONFIRM_TIMEOUT_S)
        t_start = time.time_ns() + 200_000_000  # every worker gets the message well before the first event
        t0 = t_start + int(sc.warmup_s * 1e9)
        workers.send_all([("go", t_start)] * sc.instances)
        bar = _Progress(progress, sc.warmup_s + sc.duration_s, sc.name)
        try:
            wait_s = sc.warmup_s + sc.duration_s + 60.0
            published_task = asyncio.ensure_future(workers.gather("published", wait_s))
            while not published_task.done():
                await asyncio.wait([published_task], timeout=0.25)
                bar.update((time.time_ns() - t_start) / 1e9, 0, 0)
            published = published_task.result()
        finally:
            bar.close()
        pubs = [p for msg in published for p in msg[1]]
        expected = expected_counts(pubs, workers.ids)
        workers.send_all([("drain", {r: expected[r]}) for r in workers.ids])
        done = await workers.gather("done", sc.drain_timeout_s + 60.0)
        t_end = time.time_ns()
    finally:
        workers.stop()
    deliveries = [d for msg in done for d in msg[1]]
    inst_rows = [r for msg in done for r in msg[2]]
    outages = [o for msg in done for o in msg[3]]
    rec = build_record(sc, url, run_id, version, t0, t_end, pubs, deliveries, inst_rows, [], outages, {})
    rec.environment["process_mode"] = "processes"
    rec.environment["worker_pids"] = [p.pid for p in workers.procs]
    return rec
