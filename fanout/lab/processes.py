"""Instances outside this process: one coordinator, many workers, one RunRecord.

A *worker* hosts some instances and runs the same simulator code over them
(``Simulation(hosted=[...])``), so the records that come back are the ones a single-process run
makes and the analysis is unchanged. Two kinds of worker share this conversation:

* a **process** (``Scenario.process_mode = "processes"``, or ``"auto"`` above
  :data:`SINGLE_LOOP_DELIVERIES_S`): one spawned OS process per core (at most one per
  instance), the instances dealt over them round-robin, talking over a pipe (``ProcessLink``);
* an **agent** on any host (``fanout agent``, see :mod:`fanout.agents`), talking through Redis.

The conversation, every step bounded by a timeout::

    worker -> ("ready", version, clock)    bridges started; clock = (offset_ns, uncertainty_ns)
    coord  -> ("go", t_start)              after Redis shows every subscriber (PUBSUB NUMSUB)
    coord  -> ("go", t_start, offsets)     offsets: every instance's clock offset (its worker's)
    worker -> ("published", pubs, published_by)   its share of the schedule is done (columns;
                                           empty when it wrote them as parts of the run folder)
    coord  -> ("drain", expected)          distinct events each of its receivers must get
    worker -> ("done", deliveries, instance rows, outages, cpu, summary)   (deliveries as columns,
                                           empty when written as parts; cpu: its process CPU over
                                           publish + drain; summary: Summary.to_wire())

Times cross the link in the *reference clock* (Redis's ``TIME`` for agents, the shared wall
clock for local processes): a worker adds its clock offset to every time it sends and subtracts
it from the start time it receives, so latency across hosts is measured on one clock.
A worker that dies or goes silent is named: a process in a one-line error, an agent in the
record (its instances' missing deliveries are attributed to it).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout.errors import FanoutError
from fanout.lab import control, instrument, resources
from fanout.lab.options import DEFAULT, RunOptions
from fanout.lab.progress import Progress
from fanout.lab.record import (DELIVERY_COLUMNS, INSTANCE_COLUMNS, MISSING, PARTS_DIR, PUBLICATION_COLUMNS, RunRecord,
                               build_record, columns_frame, frame, read_parts)
from fanout.lab.recorder import merge_columns
from fanout.lab.summary import Summary
from fanout.lab.scenario import Scenario, from_dict
from fanout.lab.schedule import expected_counts
from fanout.lab.simulator import Simulation
from fanout.lab.topology import instance_ids, roles

log = logging.getLogger(__name__)

#: deliveries/s one event loop keeps up with, lossless, with room to spare (about half the
#: single-process knee ``python -m benchmarks`` measured on a 2-core machine): above it
#: ``process_mode="auto"`` spreads the instances over worker processes
SINGLE_LOOP_DELIVERIES_S = 20_000

_PUB_TIMES = ("t_intended", "t_sent", "t_acked")


def shift_records(pubs: dict, deliveries: dict, outages: list, offset_ns: int) -> tuple[dict, dict, list]:
    """Every time in the raw records (columns) moved by ``offset_ns`` (local -> reference clock)."""
    if not offset_ns:
        return pubs, deliveries, outages
    p2 = {k: ([x + offset_ns if x else x for x in v] if k in _PUB_TIMES else v) for k, v in pubs.items()}
    d2 = {k: ([x + offset_ns for x in v] if k == "t_received" else v) for k, v in deliveries.items()}
    o2 = [(o[0], o[1] + offset_ns if o[1] else 0, o[2] + offset_ns if o[2] else 0, o[3]) for o in outages]
    return p2, d2, o2


def _with_parts(cols: dict[str, list], parts: Path, name: str, columns: dict[str, str]):
    """Shipped columns and the rows workers wrote as parts, as one frame."""
    import pandas as pd

    df = read_parts(parts, name)
    shipped = columns_frame(cols, columns)
    if df is None:
        return shipped
    return pd.concat([shipped, frame(df, columns)], ignore_index=True) if len(shipped) else frame(df, columns)


def offered_deliveries_s(sc: Scenario) -> float:
    """Deliveries per second a scenario asks for: each event reaches every receiver but its source."""
    publishers, receivers = roles(sc)
    per_event = len(receivers) - (1 if set(publishers) & set(receivers) else 0)
    return sc.rate_per_s * max(1, per_event)


def choose_mode(sc: Scenario) -> tuple[str, str]:
    """``(mode, why)`` for ``sc.process_mode``: "auto" runs in one process unless the offered
    load is above what one event loop keeps up with, the machine has more than one core, and
    nothing needs a single process (a fault plan, agents)."""
    if sc.process_mode != "auto":
        return sc.process_mode, f"process_mode {sc.process_mode} asked for"
    load, cores = offered_deliveries_s(sc), os.cpu_count() or 1
    if sc.faults or sc.agents:
        return "single", "auto: a fault plan runs in one process"
    if cores < 2 or sc.instances < 2:
        return "single", f"auto: {cores} core(s), {sc.instances} instance(s): nothing to spread"
    if load <= SINGLE_LOOP_DELIVERIES_S:
        return "single", (f"auto: {load:,.0f} deliveries/s offered, within what one event loop keeps up "
                          f"with ({SINGLE_LOOP_DELIVERIES_S:,})")
    return "processes", (f"auto: {load:,.0f} deliveries/s offered is more than one event loop keeps up with "
                         f"({SINGLE_LOOP_DELIVERIES_S:,}): instances spread over {min(cores, sc.instances)} "
                         f"worker processes")


def spread(instances: int, workers: int) -> list[list[int]]:
    """Instances dealt round-robin over ``workers`` processes."""
    return [list(range(w, instances, workers)) for w in range(workers) if w < instances]


async def _recording_while(sim: Simulation, waiting, send):
    """Await ``waiting`` (a message from the coordinator) while the recorder keeps closing its
    chunks (a tick every 0.25 s, as during publishing) and progress goes out every second."""
    task = asyncio.ensure_future(waiting)
    next_live = time.monotonic() + 1.0
    try:
        while not task.done():
            await asyncio.wait([task], timeout=0.25)
            sim.recorder.tick()
            if not task.done() and time.monotonic() >= next_live:
                next_live = time.monotonic() + 1.0
                await send(("progress", sim.live()))
        return task.result()
    finally:
        if not task.done():
            task.cancel()


async def serve(sc: Scenario, url: str, hosted: list[int], send, recv, *, clock=(0, 0),
                options: RunOptions = DEFAULT, run_id: str | None = None) -> None:
    """The worker's side of the conversation over ``send(msg)`` / ``await recv(timeout)``."""
    offset = int(clock[0])
    if offset and options.record_dir:  # parts hold local times: only where the clock is the reference's
        options = dataclasses.replace(options, record_dir=None)
    sim = Simulation(sc, url, hosted=hosted, options=options, run_id=run_id)
    try:
        version = await sim.setup()
        await send(("ready", version, list(clock)))
        msg = await recv(options.ready_timeout_s + sc.duration_s)
        if msg[0] != "go":
            return
        t_start = int(msg[1]) - offset
        sim.t0 = t_start + int(sc.warmup_s * 1e9)
        rec = sim.recorder
        rec.own_offset = offset
        rec.source_offsets = dict(msg[2]) if len(msg) > 2 and msg[2] else {}
        await sim.publish_phase(t_start, on_live=lambda live: send(("progress", live)))
        pubs = {} if rec.parts is not None else shift_records(rec.publication_columns(), {}, [], offset)[0]
        await send(("published", pubs, rec.published_by))
        # the others may still be publishing (a worker of receivers only is done at once): the
        # wait lasts to the schedule's end, recording and reporting progress all along
        left_s = max(0.0, (t_start + int((sc.warmup_s + sc.duration_s) * 1e9) - sim.now_ns()) / 1e9)
        msg = await _recording_while(sim, recv(left_s + 60.0 + sc.drain_timeout_s), send)
        if msg[0] != "drain":
            return
        receivers = set(roles(sc)[1])
        await sim.drain({r: n for r, n in msg[1].items() if sim.ids.index(r) in receivers})
        rec.finish()
        dels = {} if rec.parts is not None else rec.delivery_columns()
        _, dels, outs = shift_records({}, dels, sim.outage_rows(), offset)
        await send(("done", dels, sim.instance_rows(), outs, sim.cpu, rec.summary.to_wire(), rec.stats()))
    except asyncio.CancelledError:  # stopped by the coordinator (SIGTERM): what it recorded so far, written as parts
        if sim.recorder.parts is not None:  # (so a run read back from them is cut where every worker stopped)
            sim.recorder.finish()
        raise
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
    live: dict[str, Any] = field(default_factory=dict)   # its last progress message
    held: tuple | None = None                            # a message read early, for the next gather

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
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):  # the worker is gone: alive() names it
            return None

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
        for ln in links:  # those that answered already still say how they are doing (progress)
            if ln.dead is None and ln.name in out and ln.held is None:
                msg = await ln.poll()
                while msg is not None and msg[0] == "progress":
                    ln.live = msg[1]
                    msg = await ln.poll()
                ln.held = msg  # (a message of the next step: kept for the next gather)
        for ln in waiting:
            msg, ln.held = (ln.held, None) if ln.held is not None else (await ln.poll(), None)
            why = None
            while msg is not None and msg[0] == "progress":  # what the worker is doing, as it goes
                ln.live = msg[1]
                msg = await ln.poll()
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
                     tolerate_death: bool = False, now_ns=None, options: RunOptions = DEFAULT,
                     mode: str = "agents", reason: str = "") -> RunRecord:
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
    redis_cpu0, wall0 = await instrument.redis_cpu_s(url), time.monotonic()
    t0 = t_start + int(sc.warmup_s * 1e9)
    offsets = {ids[i]: int(ln.clock[0]) for ln in links for i in ln.hosted}
    for ln in links:
        if ln.dead is None:
            await ln.send(("go", t_start, offsets))
    bar = Progress(progress, sc.warmup_s + sc.duration_s, sc.name)
    try:
        task = asyncio.ensure_future(gather(links, "published", sc.warmup_s + sc.duration_s + 60.0,
                                            tolerate_death=tolerate_death))
        while not task.done():
            await asyncio.wait([task], timeout=0.25)
            lives = [ln.live for ln in links if ln.live]
            live = {k: sum(x.get(k) or 0 for x in lives) for k in ("published", "delivered", "missing")}
            p99 = [x["p99_ms"] for x in lives if x.get("p99_ms") is not None]
            rss = [x["rss_mb"] for x in lives if x.get("rss_mb") is not None]
            live |= {"p99_ms": max(p99) if p99 else None, "rss_mb": max(rss) if rss else None}
            bar.update((now_ns() - t_start) / 1e9, live["published"], live["delivered"], live)
        published = task.result()
    finally:
        bar.close()
        if not task.done():  # stopped (a signal): the wait goes with it, never an orphan that raises later
            task.cancel()
    pubs = merge_columns([m[1] for m in published.values()], PUBLICATION_COLUMNS)
    published_by: dict[str, int] = {}
    for m in published.values():
        if len(m) > 2:  # the worker's own count (its columns may be in parts)
            for src, n in m[2].items():
                published_by[src] = published_by.get(src, 0) + n
        else:
            for src, ok in zip(m[1]["source"], m[1]["ok"]):
                if ok:
                    published_by[src] = published_by.get(src, 0) + 1
    expected = expected_counts(published_by, [ids[i] for i in roles(sc)[1]])
    for ln in links:
        if ln.dead is None:
            await ln.send(("drain", {ids[i]: expected[ids[i]] for i in ln.hosted if ids[i] in expected}))
    done = await gather(links, "done", sc.drain_timeout_s + 60.0, tolerate_death=tolerate_death)
    t_end = now_ns()
    redis_cpu1, wall = await instrument.redis_cpu_s(url), time.monotonic() - wall0
    deliveries = merge_columns([m[1] for m in done.values()], DELIVERY_COLUMNS)
    parts = Path(options.record_dir) / run_id / PARTS_DIR if options.record_dir else None
    shipped = any(len(v) for v in pubs.values()) or any(len(v) for v in deliveries.values())
    if parts is not None and parts.is_dir() and not shipped:  # every row in parts: read only when asked for
        pubs = deliveries = None
    elif parts is not None and parts.is_dir():  # rows the workers wrote as parts, beside the ones shipped
        pubs = _with_parts(pubs, parts, "publications", PUBLICATION_COLUMNS)
        deliveries = _with_parts(deliveries, parts, "deliveries", DELIVERY_COLUMNS)
    summaries = [Summary.from_bytes(m[5]) for m in done.values() if len(m) > 5 and m[5]]
    inst_rows = [r for m in done.values() for r in m[2]]
    outages = [o for m in done.values() for o in m[3]]
    lost_instances = {}
    for ln in links:
        if ln.name not in done:
            ln.dead = ln.dead or "no records"
            for i in ln.hosted:
                lost_instances[ids[i]] = ln.name
                inst_rows.append({**dict.fromkeys(INSTANCE_COLUMNS, 0), **MISSING, "instance": ids[i],
                                  "connected": False})
    rec = build_record(sc, url, run_id, version, t0, t_end, pubs, deliveries, inst_rows, [], outages, {})
    # every worker's summary merged (exact); none when a worker's records were lost with it
    rec.summary = Summary.merged(summaries) if summaries and len(summaries) == len(links) else None
    rec.parts = parts if parts is not None and parts.is_dir() else None
    rec.environment["recorder"] = {name: m[6] for name, m in done.items() if len(m) > 6}
    rec.environment["workers"] = {
        ln.name: {"instances": [ids[i] for i in ln.hosted], "clock_offset_ns": int(ln.clock[0]),
                  "clock_uncertainty_ns": int(ln.clock[1]), "status": ln.dead or "ok", **ln.info}
        for ln in links}
    if lost_instances:
        rec.environment["dead_instances"] = lost_instances
    cpu = {name: m[4] for name, m in done.items() if len(m) > 4 and m[4]}
    redis_cpu = None if redis_cpu0 is None or redis_cpu1 is None else redis_cpu1 - redis_cpu0
    rec.environment["instrument"] = instrument.verdict(cpu, redis_cpu, wall, mode=mode, reason=reason)
    return rec


# ------------------------------------------------------------------ workers as local processes


def _process_main(hosted: list[int], scenario: dict, url: str, conn, options: dict, run_id: str | None = None) -> None:
    """Entry point of one spawned worker process (imports fanout afresh). A terminal's Ctrl-C
    reaches every process of the group: the worker leaves it to the coordinator, which stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def send(msg) -> None:
        conn.send(msg)

    async def recv(timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while not conn.poll():
            if time.monotonic() > deadline:
                raise FanoutError(f"no message from the coordinator within {timeout_s:g}s")
            await asyncio.sleep(0.005)
        return conn.recv()

    async def main() -> None:  # SIGTERM (the coordinator stopping it): bridges closed, the parts being written finished
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        await serve(from_dict(scenario), url, hosted, send, recv, options=RunOptions(**options), run_id=run_id)

    with contextlib.suppress(asyncio.CancelledError):  # (then the interpreter waits for the parts' writer)
        instrument.run(main())


async def simulate_processes(sc: Scenario, url: str, run_id: str, progress=None,
                             options: RunOptions = DEFAULT, reason: str = "", per_core: bool = False) -> RunRecord:
    """One worker process per instance (``per_core``: one per core, the instances dealt over
    them); the same RunRecord as a single-process run."""
    ctx = mp.get_context("spawn")
    ids = instance_ids(sc)
    links: list[Link] = []
    groups = spread(sc.instances, min(os.cpu_count() or 1, sc.instances) if per_core else sc.instances)
    if reason:
        log.info("%s", reason)
    for w, hosted in enumerate(groups):
        parent, child = ctx.Pipe()
        name = f"worker-{w}" if len(hosted) > 1 else ids[hosted[0]]
        p = ctx.Process(target=_process_main, args=(hosted, sc.to_dict(), url, child, options.to_dict(), run_id),
                        name=f"fanout-{name}", daemon=True)
        p.start()
        links.append(ProcessLink(name, hosted, p, parent))
    sampler = resources.for_run(url, processes={"coordinator": os.getpid(),
                                                **{f"worker {ln.name}": ln.proc.pid for ln in links}}).start()
    try:
        rec = await coordinate(sc, url, run_id, links, progress=progress, options=options, mode="processes",
                               reason=reason or "process_mode processes asked for")
    except asyncio.CancelledError:  # stopped (a signal, a notebook's interrupt): the workers now, not in 5 s;
        for ln in links:            # each closes its bridges and finishes the part it is writing, then exits
            ln.proc.terminate()
        raise
    finally:
        sampler.stop()
        for ln in links:
            ln.stop()
    sampler.attach(rec)
    rec.environment["process_mode"] = "processes"
    rec.environment["worker_pids"] = [ln.proc.pid for ln in links]
    if reason:
        rec.notes.append(reason)
    return rec
