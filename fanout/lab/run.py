"""Entry points of the lab: run a Scenario against a Redis (``simulate``) or against a throwaway
server it starts (``run_scenario``), in this process, in one process per instance, or over agents."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import threading
from pathlib import Path

from redis.exceptions import RedisError

from fanout.capabilities import require
from fanout.errors import ConfigError, FanoutError, Interrupted, PartialRun
from fanout.lab import control
from fanout.lab.options import DEFAULT, RunOptions
from fanout.lab.record import RunRecord, name_server
from fanout.lab.scenario import Scenario
from fanout.lab.servers import LocalCluster, LocalSentinel, RedisServer
from fanout.lab.servers.discovery import require_local
from fanout.redact import redact_url
from fanout.lab.simulator import Printer, Simulation, new_run_id
from fanout.lab.topology import instance_ids

log = logging.getLogger(__name__)

#: re-exported for callers that check a URL before a run
check_reachable = control.check_reachable


def needs(sc: Scenario) -> list[str]:
    """What a scenario asks of the server: its transport and its fault kinds (see fanout.capabilities)."""
    return [sc.transport, *dict.fromkeys(str(f.get("kind")) for f in sc.faults or ())]


async def check_server(sc: Scenario, url: str):
    """Before a run: raise :class:`~fanout.errors.ServerTooOld` (one line) unless the server at
    ``url`` supports the scenario's transport and faults; return what it is (None: no answer)."""
    ident = await control.server_identity(url)
    if ident is not None and ident.redis_tuple > (0,):  # a server that does not say: the transports decide
        for feature in needs(sc):
            require(feature, ident, redact_url(url))
    return ident


async def simulate(sc: Scenario, *, redis_url: str | None = None, progress: bool | None = None,
                   printer: Printer | None = None, run_id: str | None = None, server=None,
                   options: RunOptions = DEFAULT) -> RunRecord:
    """Run ``sc`` against Redis at ``redis_url`` (or ``sc.redis_url``) and return its record.

    ``server`` is the throwaway server behind ``redis_url``, needed by ``redis_restart`` faults."""
    url = redis_url or sc.redis_url
    if not url:
        raise FanoutError("simulate() needs a Redis URL: pass redis_url, or use run_scenario() for a throwaway server")
    run_id = run_id or new_run_id(sc)
    ident = await check_server(sc, url)
    own_prefix = sc.key_prefix is None and server is None  # a prefix of the run's own, on a Redis it shares
    sc = isolated(sc, run_id, throwaway=server is not None)
    outside = await warn_outside_listeners(sc, url)
    removed = None
    try:
        rec = await _dispatch(sc, url, run_id, progress=progress, printer=printer, server=server, options=options)
    except PartialRun as stopped:  # a signal: what was measured still says where and how
        if stopped.record is not None:
            _describe(stopped.record, sc, ident, server, outside)
        raise
    finally:
        if own_prefix and sc.transport == "streams":  # its streams and positions: nobody else's, never read again
            removed = await remove_run_keys(url, sc.key_prefix)
    if removed is not None:
        rec.environment["keys_removed"] = removed
    return _describe(rec, sc, ident, server, outside)


def _describe(rec: RunRecord, sc: Scenario, ident, server, outside: dict[str, int]) -> RunRecord:
    name_server(rec, ident, getattr(server, "binary", None))
    rec.environment["key_prefix"] = sc.key_prefix
    rec.environment["outside_subscribers"] = outside
    return rec


def isolated(sc: Scenario, run_id: str, *, throwaway: bool) -> Scenario:
    """The scenario with its key prefix resolved: as given; else ``ws:`` (the seed's) on a throwaway
    server, and a prefix of the run's own on a Redis it shares with others, so a validation run never
    feeds synthetic market data to live bots."""
    if sc.key_prefix is not None:
        return sc
    return sc.replace(key_prefix="ws:" if throwaway else f"fanout:{run_id}:")


async def remove_run_keys(url: str, prefix: str) -> int | None:
    """Delete the keys a run made under its own prefix (bounded); None, and one warning, when it cannot."""
    try:
        return await asyncio.wait_for(control.drop_keys(url, prefix), control.TIMEOUT_S * 3)
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        log.warning("the run's keys under %s were left on %s: %s", prefix, redact_url(url),
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None


async def warn_outside_listeners(sc: Scenario, url: str) -> dict[str, int] | None:
    """Subscribers already on the run's channels before it starts are not part of it: they would hear
    its synthetic events. Logged (one line) and returned for the record (pub/sub only: Redis counts
    sharded and stream readers differently); None when the user may not count them."""
    if sc.transport != "pubsub":
        return {}
    counts = await control.subscriber_counts(url, [f"{sc.key_prefix}{t}" for t in sc.event_types])
    if counts is None:
        return None
    outside = {ch: n for ch, n in counts.items() if n}
    if outside:
        log.warning("subscribers outside this run listen on %s: they will receive its synthetic events "
                    "(a run on a shared Redis should leave key_prefix unset to use a prefix of its own)",
                    ", ".join(f"{ch} ({n})" for ch, n in outside.items()))
    return outside


async def _dispatch(sc: Scenario, url: str, run_id: str, *, progress, printer, server,
                    options: RunOptions) -> RunRecord:
    if sc.transport == "streams":
        await control.forget_stream_positions(url, [f"{sc.key_prefix}pos:{i}" for i in instance_ids(sc)])
    if sc.agents:
        from fanout.lab.agents import run_with_agents

        return await run_with_agents(sc, url, run_id, sc.agents, options=options, progress=progress)
    from fanout.lab.processes import choose_mode, simulate_processes

    mode, why = choose_mode(sc)  # "auto": worker processes above what one event loop keeps up with
    if mode == "processes":
        return await simulate_processes(sc, url, run_id, progress=progress, options=options, reason=why,
                                        per_core=sc.process_mode == "auto")
    sim = Simulation(sc, url, progress=progress, printer=printer, run_id=run_id, server=server, options=options)
    sim.mode_reason = why
    return await sim.run()


#: the signals that stop a run the same way
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def _stoppable(coro):
    """Run ``coro``; SIGINT, SIGTERM or SIGHUP cancel it (its cleanups run) and raise Interrupted."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    got: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def stop(sig: int) -> None:
        if not got:
            got.append(sig)
            me.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await coro
    except asyncio.CancelledError as exc:
        if got:
            raise Interrupted(got[0], record=getattr(exc, "record", None)) from None
        raise
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)  # asyncio would leave the default behind


def in_running_loop() -> bool:
    """Whether this thread runs an event loop already (a Jupyter kernel's): runs go to a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coro):
    """``asyncio.run`` (on uvloop when installed), stoppable by a signal (see :func:`_stoppable`); also
    from inside a running loop (a Jupyter kernel): then in a worker thread, stoppable by the kernel's
    interrupt (see :func:`_in_worker_thread`)."""
    from fanout.lab.instrument import run  # asyncio.run on uvloop when installed

    if in_running_loop():
        return _in_worker_thread(coro)
    if threading.current_thread() is threading.main_thread():
        return run(_stoppable(coro))
    return run(coro)


def _in_worker_thread(coro):
    """Run ``coro`` on an event loop of its own in a worker thread, the calling thread waiting in
    short steps: the kernel's interrupt (SIGINT, a KeyboardInterrupt in the main thread) cancels the
    run's task on its loop, its cleanups run (bridges closed, worker processes stopped, the partial
    record built) and :class:`~fanout.errors.Interrupted` is raised here, with the record. A second
    interrupt while that cleanup runs stops the wait (KeyboardInterrupt); the cleanup goes on."""
    from fanout.lab.instrument import run

    started, done = threading.Event(), threading.Event()
    box: dict = {}

    async def main():
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        try:
            return await coro
        except asyncio.CancelledError as exc:
            if box.get("stopped"):
                raise Interrupted(signal.SIGINT, record=getattr(exc, "record", None)) from None
            raise

    def target() -> None:
        try:
            box["result"] = run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread as it is
            box["error"] = exc
        finally:
            started.set()
            done.set()

    worker = threading.Thread(target=target, name="fanout-run", daemon=True)
    worker.start()
    while True:
        try:
            while not done.wait(0.1):
                pass
            break
        except KeyboardInterrupt:
            if box.get("stopped"):  # a second interrupt: stop waiting for the cleanup
                log.warning("stopped waiting for the interrupted run's cleanup; it goes on in the background")
                raise
            box["stopped"] = True
            started.wait()
            loop, task = box.get("loop"), box.get("task")
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # (its loop closed meanwhile: the run is over)
                    loop.call_soon_threadsafe(task.cancel)
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def throwaway_server(sc: Scenario):
    """The throwaway redis-server a scenario asks for (persistence, output-buffer limit), or a local
    Redis Cluster (``cluster_masters``) or Sentinel setup (``sentinel``): same ``url`` and context manager."""
    if sc.cluster_masters:
        return LocalCluster(sc.cluster_masters, sc.cluster_replicas)
    if sc.sentinel:
        return LocalSentinel()
    return RedisServer(appendonly=sc.redis_aof, pubsub_buffer_limit=sc.pubsub_buffer_limit)


def run_scenario(sc: Scenario, *, progress: bool | None = None, printer: Printer | None = None,
                 save_to: str | None = "data/runs", options: RunOptions = DEFAULT) -> RunRecord:
    """Run one scenario and return its record: start a throwaway server unless ``sc.redis_url``
    is set, run, save the record under ``save_to`` (unless None) and return it. A server too old
    for the scenario's transport or faults raises :class:`~fanout.errors.ServerTooOld` before
    anything starts.

    Stopped midway (Ctrl-C, SIGTERM, SIGHUP; a notebook's Kernel ▸ Interrupt), what was measured is
    kept: the record marked ``interrupted`` (never a PASS; over worker processes, read back from the
    parts they wrote), saved under ``save_to`` as a whole run's would be. From a script it rides on
    :class:`~fanout.errors.Interrupted` (``.record``); in a notebook it is returned, and one line
    (logged) says where it was saved.

    ``sc``: the :class:`~fanout.lab.scenario.Scenario`. ``progress``: show a progress bar (None:
    when on a terminal). ``printer``: where verbose lines go (None: nowhere). ``save_to``: the
    folder the run's folder is made in (None: not saved; rows kept in memory). ``options``:
    recording options (:class:`~fanout.lab.options.RunOptions`).

    Returns the :class:`~fanout.lab.record.RunRecord` (``rec.path``: its saved folder); analyse it
    with :func:`fanout.analysis.analyse`."""
    if sc.agents and not sc.redis_url:
        raise ConfigError("agents: a run over agents needs redis_url (the Redis every agent can reach)")
    if not sc.redis_url:
        require_local(needs(sc))  # the binary's own --version: fail before starting a cluster
    if save_to and options.record_dir is None and not sc.agents:  # record as you go, into the run's folder
        options = dataclasses.replace(options, record_dir=str(save_to))
    run_id = new_run_id(sc)
    where = None  # (a throwaway server: named once it runs)
    try:
        if sc.redis_url:
            rec = run_sync(simulate(sc, redis_url=sc.redis_url, progress=progress, printer=printer, run_id=run_id,
                                    options=options))
        else:
            with throwaway_server(sc) as srv:
                where = f"throwaway {Path(srv.binary).name} on {srv.safe_url}"
                rec = run_sync(simulate(sc, redis_url=srv.url, progress=progress, printer=printer, server=srv,
                                        run_id=run_id, options=options))
                rec.environment["redis_url"] = where
    except Interrupted as stopped:  # save what was measured, marked interrupted, then stop
        rec = stopped.record if stopped.record is not None else _from_parts(options.record_dir, run_id)
        if rec is not None and save_to:
            if not sc.redis_url:
                rec.environment["redis_url"] = where
            rec.save(save_to)
        stopped.record = rec
        if rec is None or not in_running_loop():
            raise
        log.warning("%s", interrupted_line(rec, stopped))
        return rec
    if save_to:
        rec.save(save_to)
    return rec


def _from_parts(record_dir: str | None, run_id: str) -> RunRecord | None:
    """A run stopped where its record could not be built (worker processes, whose rows cannot be
    handed back once stopped): what its processes wrote as parts, read back and cut where every
    one of them had recorded (:func:`fanout.lab.record.load_run`); None without parts."""
    from fanout.lab.record import PARTS_DIR, load_run

    folder = Path(record_dir) / run_id if record_dir else None
    if folder is None or not (folder / PARTS_DIR / "recording.json").exists() or (folder / "run.json").exists():
        return None
    return load_run(folder)


def interrupted_line(rec: RunRecord, stopped: Interrupted) -> str:
    """One line on a run stopped midway: after how long, and where its partial record is."""
    cut = (rec.environment or {}).get("interrupted") or {}
    when = f" after {cut['after_s']:.1f} s of {cut['of_s']:g} s" if cut else ""
    kept = f"saved to {rec.path}" if rec.path else "kept in memory only (save_to=None)"
    return f"run {rec.run_id} {stopped}{when}: partial record (marked interrupted, never PASS) {kept}"


__all__ = ["simulate", "run_scenario", "run_sync", "in_running_loop", "interrupted_line", "throwaway_server", "check_reachable", "check_server", "needs"]
