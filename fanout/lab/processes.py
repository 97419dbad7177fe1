"""Instances outside this process: one coordinator, many workers, one RunRecord.

A *worker* hosts some instances and runs the same simulator code over them
(``Simulation(hosted=[...])``), so the records that come back are the ones a single-process run
makes and the analysis is unchanged. Two kinds of worker share this conversation:

* a **process** (``Scenario.process_mode = "processes"``): one spawned OS process per instance,
  talking over a pipe (``ProcessLink``);
* an **agent** on any host (``fanout agent``, see :mod:`fanout.agents`), talking through Redis.

The conversation, every step bounded by a timeout::

    worker -> ("ready", version, clock)    bridges started; clock = (offset_ns, uncertainty_ns)
    coord  -> ("go", t_start)              after Redis shows every subscriber (PUBSUB NUMSUB)
    worker -> ("published", pubs)          its share of the schedule is done
    coord  -> ("drain", expected)          distinct events each of its receivers must get
    worker -> ("done", deliveries, instance rows, outages)

Times cross the link in the *reference clock* (Redis's ``TIME`` for agents, the shared wall
clock for local processes): a worker adds its clock offset to every time it sends and subtracts
it from the start time it receives, so latency across hosts is measured on one clock.
A worker that dies or goes silent is named: a process in a one-line error, an agent in the
record (its instances' missing deliveries are attributed to it).
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Any

from fanout.errors import FanoutError
from fanout.lab import control, resources
from fanout.lab.options import DEFAULT, RunOptions
from fanout.lab.progress import Progress
from fanout.lab.record import INSTANCE_COLUMNS, RunRecord, build_record
from fanout.lab.scenario import Scenario, from_dict
from fanout.lab.schedule import expected_counts
from fanout.lab.simulator import Simulation
from fanout.lab.topology import instance_ids, roles

_PUB_TIMES = (5, 6, 7)      # t_intended, t_sent, t_acked in a publication tuple
_DEL_TIME = 5               # t_received in a delivery tuple


def shift_records(pubs: list, deliveries: list, outages: list, offset_ns: int) -> tuple[list, list, list]:
    """Every time in the raw records moved by ``offset_ns`` (local clock -> reference clock)."""
    if not offset_ns:
        return pubs, deliveries, outages
    p2 = [tuple(v + offset_ns if k in _PUB_TIMES and v else v for k, v in enumerate(p)) for p in pubs]
    d2 = [tuple(v + offset_ns if k == _DEL_TIME else v for k, v in enumerate(d)) for d in deliveries]
    o2 = [(o[0], o[1] + offset_ns if o[1] else 0, o[2] + offset_ns if o[2] else 0, o[3]) for o in outages]
    return p2, d2, o2


async def serve(sc: Scenario, url: str, hosted: list[int], send, recv, *, clock=(0, 0),
                options: RunOptions = DEFAULT) -> None:
    """The worker's side of the conversation over ``send(msg)`` / ``await recv(timeout)``."""
    offset = int(clock[0])
    sim = Simulation(sc, url, hosted=hosted, options=options)
    try:
        version = await sim.setup()
        await send(("ready", version, list(clock)))
        msg = await recv(options.ready_timeout_s + sc.duration_s)
        if msg[0] != "go":
            return
        t_start = int(msg[1]) - offset
        sim.t0 = t_start + int(sc.warmup_s * 1e9)
        await sim.publish_phase(t_start)
        pubs, _, _ = shift_records(sim.recorder.pubs, [], [], offset)
        await send(("published", pubs))
        msg = await recv(60.0 + sc.drain_timeout_s)
        if msg[0] != "drain":
            return
        receivers = set(roles(sc)[1])
        await sim.drain({r: n for r, n in msg[1].items() if sim.ids.index(r) in receivers})
        _, dels, outs = shift_records([], sim.recorder.deliveries, sim.outage_rows(), offset)
        await send(("done", dels, sim.instance_rows(), outs))
    except Exception as exc:  # noqa: BLE001 - any failure is the worker's answer: one line to the coordinator
        await send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        await sim.close()


# ------------------------------------------------------------------ the coordinator


@dataclass
class Link:
    """One worker as the coordinator sees it."""

    name: str
    hosted: list[int]
    clock: tuple[int, int] = (0, 0)
    dead: str | None = None           # why it is gone, once it is
    info: dict[str, Any] = field(default_factory=dict)

    async def send(self, msg: tuple) -> None: ...
    async def poll(self) -> tuple | None: ...
    async def alive(self) -> bool: ...
    def stop(self) -> None: ...


class ProcessLink(Link):
    def __init__(self, name: str, hosted: list[int], proc, conn) -> None:
        super().__init__(name, hosted)
        self.proc, self.conn = proc, conn

    async def send(self, msg: tuple) -> None:
        self.conn.send(msg)

    async def poll(self) -> tuple | None:
        return self.conn.recv() if self.conn.poll() else None

    async def alive(self) -> bool:
        return self.proc.is_alive()

    def stop(self) -> None:
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)


async def gather(links: list[Link], what: str, timeout_s: float, *, tolerate_death: bool) -> dict[str, tuple]:
    """One message of kind ``what`` from every live link. A link that dies or errs is marked
    dead (``tolerate_death``) or raises a one-line error naming it."""
    out: dict[str, tuple] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = [ln for ln in links if ln.dead is None and ln.name not in out]
        if not waiting:
            return out
        for ln in waiting:
            msg = await ln.poll()
            why = None
            if msg is not None and msg[0] == "error":
                why = f"failed: {msg[1]}"
            elif msg is not None:
                out[ln.name] = msg
                continue
            elif not await ln.alive():
                why = f"died while the coordinator waited for '{what}'"
            if why:
                if not tolerate_death:
                    raise FanoutError(f"{ln.name} {why}")
                ln.dead = why
        if time.monotonic() > deadline:
            late = [ln.name for ln in links if ln.dead is None and ln.name not in out]
            if not tolerate_death:
                raise FanoutError(f"no '{what}' from {', '.join(late)} within {timeout_s:g}s")
            for ln in links:
                if ln.name in late:
                    ln.dead = f"silent: no '{what}' within {timeout_s:g}s"
        await asyncio.sleep(0.01)


async def coordinate(sc: Scenario, url: str, run_id: str, links: list[Link], *, progress=None,
                     tolerate_death: bool = False, now_ns=None, options: RunOptions = DEFAULT) -> RunRecord:
    """Drive the workers through one run and build its record (see the module doc)."""
    now_ns = now_ns or time.time_ns
    ids = instance_ids(sc)
    ready = await gather(links, "ready", options.ready_timeout_s, tolerate_death=tolerate_death)
    for ln in links:
        if ln.name in ready:
            ln.clock = tuple(ready[ln.name][2])
    version = next((m[1] for m in ready.values() if m[1]), None)
    if sc.transport == "pubsub":
        alive_receivers = [i for ln in links if ln.dead is None for i in ln.hosted if i in roles(sc)[1]]
        await control.confirm_subscriptions(url, [f"{sc.key_prefix}{t}" for t in sc.event_types],
                                            len(alive_receivers), options.subscribe_confirm_timeout_s)
    t_start = now_ns() + 500_000_000  # every worker gets the message well before the first event
    t0 = t_start + int(sc.warmup_s * 1e9)
    for ln in links:
        if ln.dead is None:
            await ln.send(("go", t_start))
    bar = Progress(progress, sc.warmup_s + sc.duration_s, sc.name)
    try:
        task = asyncio.ensure_future(gather(links, "published", sc.warmup_s + sc.duration_s + 60.0,
                                            tolerate_death=tolerate_death))
        while not task.done():
            await asyncio.wait([task], timeout=0.25)
            bar.update((now_ns() - t_start) / 1e9, 0, 0)
        published = task.result()
    finally:
        bar.close()
    pubs = [p for m in published.values() for p in m[1]]
    published_by: dict[str, int] = {}
    for p in pubs:
        if p[8]:  # ok
            published_by[p[1]] = published_by.get(p[1], 0) + 1
    expected = expected_counts(published_by, [ids[i] for i in roles(sc)[1]])
    for ln in links:
        if ln.dead is None:
            await ln.send(("drain", {ids[i]: expected[ids[i]] for i in ln.hosted if ids[i] in expected}))
    done = await gather(links, "done", sc.drain_timeout_s + 60.0, tolerate_death=tolerate_death)
    t_end = now_ns()
    deliveries = [d for m in done.values() for d in m[1]]
    inst_rows = [r for m in done.values() for r in m[2]]
    outages = [o for m in done.values() for o in m[3]]
    lost_instances = {}
    for ln in links:
        if ln.name not in done:
            ln.dead = ln.dead or "no records"
            for i in ln.hosted:
                lost_instances[ids[i]] = ln.name
                inst_rows.append({**dict.fromkeys(INSTANCE_COLUMNS, 0), "instance": ids[i], "connected": False})
    rec = build_record(sc, url, run_id, version, t0, t_end, pubs, deliveries, inst_rows, [], outages, {})
    rec.environment["workers"] = {
        ln.name: {"instances": [ids[i] for i in ln.hosted], "clock_offset_ns": int(ln.clock[0]),
                  "clock_uncertainty_ns": int(ln.clock[1]), "status": ln.dead or "ok", **ln.info}
        for ln in links}
    if lost_instances:
        rec.environment["dead_instances"] = lost_instances
    return rec


# ------------------------------------------------------------------ workers as local processes


def _process_main(index: int, scenario: dict, url: str, conn, options: dict) -> None:
    """Entry point of one spawned worker process (imports fanout afresh)."""

    async def send(msg) -> None:
        conn.send(msg)

    async def recv(timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while not conn.poll():
            if time.monotonic() > deadline:
                raise FanoutError(f"no message from the coordinator within {timeout_s:g}s")
            await asyncio.sleep(0.005)
        return conn.recv()

    asyncio.run(serve(from_dict(scenario), url, [index], send, recv, options=RunOptions(**options)))


async def simulate_processes(sc: Scenario, url: str, run_id: str, progress=None,
                             options: RunOptions = DEFAULT) -> RunRecord:
    """One worker process per instance; the same RunRecord as a single-process run."""
    ctx = mp.get_context("spawn")
    ids = instance_ids(sc)
    links: list[Link] = []
    for i in range(sc.instances):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_process_main, args=(i, sc.to_dict(), url, child, options.to_dict()), name=f"fanout-{ids[i]}",
                        daemon=True)
        p.start()
        links.append(ProcessLink(ids[i], [i], p, parent))
    sampler = resources.for_run(url, processes={"coordinator": os.getpid(),
                                                **{f"worker {ln.name}": ln.proc.pid for ln in links}}).start()
    try:
        rec = await coordinate(sc, url, run_id, links, progress=progress, options=options)
    finally:
        sampler.stop()
        for ln in links:
            ln.stop()
    sampler.attach(rec)
    rec.environment["process_mode"] = "processes"
    rec.environment["worker_pids"] = [ln.proc.pid for ln in links]
    return rec
