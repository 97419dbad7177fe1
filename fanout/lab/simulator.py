"""The simulation engine: N bridges, one publishing loop per instance, every hop recorded.

The seed's test methodology, measured honestly:

1. N bridges ``test-instance-0 .. N-1``, each subscribed to every event type of the scenario;
   the subscriptions are confirmed on the server (``PUBSUB NUMSUB`` shows N subscribers per
   channel) before the first publish.
2. An **open-loop** schedule (:mod:`fanout.lab.schedule`): event k is due at ``t0 + k/rate``
   (or Poisson arrivals). When a publisher falls behind, events are sent late, never skipped,
   and their latency is measured from the time they were *due*, so lag shows up in the figures
   instead of hiding (no coordinated omission).
3. Every delivery is recorded at the handler in integer nanoseconds, into preallocated
   columns (:mod:`fanout.lab.recorder`); each publish is ``bridge.publish_nowait`` with the
   event's row as token, its acknowledgement recorded by the bridge's ``on_published``
   callback: no task, Future or timer per event, and a full in-flight window makes the
   publisher wait (``bridge.writable()``), so a slow link delays sends, which shows as lag.
4. After the last publish it drains until every expected delivery arrived or
   ``drain_timeout_s`` passed.
5. It measures its own CPU over the run (:mod:`fanout.lab.instrument`) and says in the
   record when it, not Redis, was the limit (``environment["instrument"]``).

:class:`Simulation` hosts all instances (a single-process run) or some of them (a worker
process or an agent, see :mod:`fanout.lab.processes`); :mod:`fanout.lab.run` chooses.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Callable

from fanout.config import BridgeConfig
from fanout.bridge import RedisEventBridge
from fanout.errors import PartialRun, FanoutError, PublishError, RedisUnavailable
from fanout.lab import control, instrument, resources
from fanout.lab.faults import PROXY_KINDS, FaultRunner, parse_faults
from fanout.lab.market import SyntheticMarket
from fanout.lab.options import DEFAULT, RunOptions
from fanout.lab.progress import Progress
from fanout.lab.record import INSTANCE_COLUMNS, RunRecord, build_record, run_signing_keys
from fanout.lab.recorder import Recorder
from fanout.lab.scenario import Scenario
from fanout.lab.schedule import PlanFeed, expected_counts
from fanout.lab.topology import instance_ids, roles
from fanout.metrics import COUNTER_NAMES

log = logging.getLogger(__name__)

Printer = Callable[[str], None]

#: after its last publish, how long (beyond publish_timeout_s) a publisher waits for the last outcomes
SETTLE_SLACK_S = 2.0


def _rss_mb() -> float | None:
    """This process's resident memory in MB (None where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return None


def new_run_id(sc: Scenario) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{sc.name}{'' if sc.transport in sc.name else '-' + sc.transport}-{secrets.token_hex(2)}"


def backend_options(server, scenario: Scenario) -> dict:
    """Extra :class:`~fanout.config.BridgeConfig` keyword arguments for a scenario's bridges:
    the setup's (sentinel addresses and master name) and the sharded transport's partitions."""
    opts = dict(server.bridge_options()) if hasattr(server, "bridge_options") else {}
    if scenario.transport == "sharded" and scenario.shard_partitions > 1:
        opts["shard_partitions"] = scenario.shard_partitions
    return opts


def _redacted(scenario: dict) -> dict:
    """A scenario dict fit to write down: the Redis URL's password masked."""
    from fanout.redact import redact_url

    return {**scenario, "redis_url": redact_url(scenario["redis_url"]) if scenario.get("redis_url") else None}


class Simulation:
    """One run (or a worker's share of it): the bridges, the recorder, the publishers, the faults."""

    def __init__(self, sc: Scenario, url: str, *, progress=None, printer=None, run_id=None, server=None,
                 hosted: list[int] | None = None, options: RunOptions = DEFAULT) -> None:
        self.sc = sc
        self.url = url
        self.progress = progress
        self.say = printer if (printer and sc.verbose) else None
        self.run_id = run_id or new_run_id(sc)
        self.server = server
        self.options = options
        self.now_ns = time.time_ns if not options.clock_skew_ns else options.now_ns  # (the same clock)
        self.ids = instance_ids(sc)
        self.faults = parse_faults(sc.faults, sc.instances, sc.duration_s)
        if any(f.kind == "redis_restart" for f in self.faults) and server is None:
            raise FanoutError("a redis_restart fault needs the throwaway server (run without redis_url)")
        self.hosted = list(range(sc.instances)) if hosted is None else list(hosted)
        self.recorder = Recorder(self.now_ns, parts=self.parts_dir(), tag=self.tag(), t0=lambda: self.t0,
                                 warmup=sc.warmup_s > 0, chunk_rows=options.chunk_rows, chunk_s=options.chunk_s,
                                 meta={"run_id": self.run_id, "scenario": _redacted(sc.to_dict())})
        self.feed = PlanFeed(sc, [i for i in self.hosted if i in set(roles(sc)[0])])
        self.recorder.plan()
        self.cpu: dict | None = None                    # this process's CPU over the run (instrument)
        self.mode_reason = ""                           # why this process mode (said in the record)
        self.spun_s = 0.0                               # seconds the publishers spent yielding until due
        self.bridges: dict[int, RedisEventBridge] = {}
        self.retired: list[RedisEventBridge] = []      # crashed bridges, for their metrics and outages
        self.down: dict[int, str] = {}                  # instance index -> why it cannot publish now
        self.crash_outages: list[tuple] = []
        self.proxies: dict[int, Any] = {}
        self.t0 = 0

    def parts_dir(self):
        """Where this run's rows are written as it goes (None: kept in memory)."""
        from pathlib import Path

        root = self.options.record_dir
        return Path(root) / self.run_id / "parts" if root else None

    def tag(self) -> str:
        """This process's name in its part files: ``main``, or the first hosted instance's index."""
        return "main" if len(self.hosted) == self.sc.instances else f"w{self.hosted[0] if self.hosted else 0}"

    # -- bridges -----------------------------------------------------------------------
    def _config(self, i: int) -> BridgeConfig:
        url = self.proxies[i].url_for(self.url) if i in self.proxies else self.url
        fast = bool(self.faults)  # under faults, notice and recover quickly
        publishers, receivers = roles(self.sc)
        keys = self.__dict__.get("_signing_keys")  # one key per run, the same for every bridge
        if keys is None and self.sc.signing:
            keys = self._signing_keys = run_signing_keys(self.run_id, shared=len(self.hosted) < self.sc.instances)
        return BridgeConfig(
            enable_publishing=i in publishers, enable_subscription=i in receivers,
            url=url, instance_id=self.ids[i], event_types=self.sc.event_types, transport=self.sc.transport,
            key_prefix=self.sc.key_prefix, health_check_interval_s=self.sc.health_check_s,
            health_check_timeout_s=min(3.0, self.sc.health_check_s), stream_maxlen=self.sc.stream_maxlen,
            reconnect_max_s=0.5 if fast else 2.0, publish_timeout_s=1.0 if fast else 2.0,
            batch_max=self.sc.batch_max, batch_delay_ms=self.sc.batch_delay_ms, signing_keys=keys,
            histograms=self.options.bridge_histograms,
            # the output-buffer check reads a (sharded) pub/sub subscriber's omem (fanout.outbuf): receivers only
            output_buffer_check_s=(self.options.output_buffer_check_s
                                   if self.sc.transport in ("pubsub", "sharded") and i in receivers else None),
            **backend_options(self.server, self.sc),  # sentinel addresses, shard partitions
        )

    def _make_bridge(self, i: int) -> RedisEventBridge:
        b = RedisEventBridge(self._config(i))
        receivers = max(1, sum(1 for j in self.hosted if j in roles(self.sc)[1]))
        capacity = self.options.chunk_rows // receivers  # a chunk's rows; the columns grow to it as rows come
        record = self.recorder.handler(self.ids[i], capacity, self.say, lambda: self.t0)
        if b.config.enable_subscription:  # (a publish-only bridge refuses handlers: they would never run)
            b.on("*", record)
        b.on_published(self.recorder.pubs.ack)  # token: the event's publication row
        return b

    def crash(self, i: int, why: str) -> None:
        """Instance ``i`` dies without a goodbye (the instance_crash fault)."""
        self.down[i] = why
        b = self.bridges[i]
        b.abort()
        self.retired.append(b)

    async def restart(self, i: int) -> RedisEventBridge | None:
        """A new bridge with instance ``i``'s id; None when it could not start (try again)."""
        b = self._make_bridge(i)
        try:
            await b.start()
        except (RedisUnavailable, FanoutError) as exc:
            log.debug("restart of %s failed: %s", self.ids[i], exc)
            return None
        self.bridges[i] = b
        self.down.pop(i, None)
        return b

    async def _start_proxies(self) -> None:
        needs = sorted({f.instance for f in self.faults if f.kind in PROXY_KINDS})
        if not needs:
            return
        from urllib.parse import urlsplit

        from fanout.lab.proxy import FaultProxy

        parts = urlsplit(self.url)
        for i in needs:
            self.proxies[i] = await FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()

    # -- the run -------------------------------------------------------------------------
    async def setup(self) -> str | None:
        """Start the hosted instances' bridges (subscriptions confirmed); return Redis's version."""
        await self._start_proxies()
        self.bridges = {i: self._make_bridge(i) for i in self.hosted}
        if self.options.on_simulation is not None:
            self.options.on_simulation(self)
        results = await asyncio.gather(*(b.start() for b in self.bridges.values()), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return await control.redis_version(self.url)

    def live(self) -> dict:
        """What progress shows of this process, now: publications settled, deliveries, p99 of the
        last closed interval, events the bridges found missing (``gaps``), resident memory (MB)."""
        rec = self.recorder
        missing = sum(int(b.metrics().get("gaps", 0)) for b in self.bridges.values())
        return {"published": rec.pubs.settled, "delivered": rec.n_deliveries, "p99_ms": rec.summary.last_p99_ms(),
                "missing": missing, "rss_mb": _rss_mb()}

    async def publish_phase(self, t_start: int, bar: Progress | None = None, on_live=None) -> None:
        """Every hosted instance publishes its own share of the plan on its own, as separate
        hosts would: one slow instance (a fault, a full window) delays only its own events."""
        window = instrument.CpuWindow()
        publishers = [asyncio.create_task(self._publisher(i, t_start)) for i in self.feed.queues]
        rec = self.recorder
        next_live = time.monotonic() + 1.0
        try:
            while not all(t.done() for t in publishers):
                await asyncio.wait(publishers, timeout=0.25)
                rec.tick()
                if bar is not None:
                    bar.update((self.now_ns() - t_start) / 1e9, rec.pubs.settled, rec.n_deliveries, self.live())
                if on_live is not None and time.monotonic() >= next_live:
                    next_live = time.monotonic() + 1.0
                    await on_live(self.live())
            for t in publishers:
                t.result()  # a publisher that crashed is a bug: surface it
        finally:
            for t in publishers:
                t.cancel()
            await asyncio.gather(*publishers, return_exceptions=True)
        self._cpu_window = window

    def expected(self) -> dict[str, int]:
        """Distinct events each receiver should get, from what this process saw published."""
        return expected_counts(self.recorder.published_by, [self.ids[i] for i in roles(self.sc)[1]])

    async def drain(self, expected: dict[str, int]) -> None:
        """Until each receiver has its expected count of distinct events, or the drain bound passed."""
        deadline = time.monotonic() + self.sc.drain_timeout_s
        rec = self.recorder
        while time.monotonic() < deadline and any(rec.distinct(r) < n for r, n in expected.items()):
            rec.tick()
            await asyncio.sleep(0.01)
        window = getattr(self, "_cpu_window", None)
        self.cpu = window.stop(self.spun_s, self.recorder.pubs.lag_p99_ms()) if window is not None else None

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.bridges.values()), return_exceptions=True)
        for p in self.proxies.values():
            await p.close()

    async def run(self) -> RunRecord:
        """The whole run in this process: every instance hosted here."""
        sc = self.sc
        runner: FaultRunner | None = None
        rec = self.recorder
        sampler = resources.for_run(self.url, self.server)  # Redis INFO + this process, on a thread
        version, t0, wall0 = None, 0, time.monotonic()
        try:
            version = await self.setup()
            sampler.start()
            if sc.transport == "pubsub":
                await control.confirm_subscriptions(
                    self.url, [self._config(0).channel(t) for t in sc.event_types], len(roles(sc)[1]),
                    self.options.subscribe_confirm_timeout_s)
            redis_cpu0, wall0 = await instrument.redis_cpu_s(self.url), time.monotonic()
            total_s = sc.warmup_s + sc.duration_s
            bar = Progress(self.progress, total_s, sc.name)
            t_start = self.now_ns() + 20_000_000  # first event due 20 ms from now
            self.t0 = t0 = t_start + int(sc.warmup_s * 1e9)
            if self.faults:
                runner = FaultRunner(self.faults, t0, self)
                runner.start()
            try:
                await self.publish_phase(t_start, bar)
                if runner is not None:
                    await runner.wait(timeout_s=max((f.at_s + f.duration_s for f in self.faults), default=0) + 30)
                await self.drain(self.expected())
                bar.update(total_s, rec.pubs.settled, rec.n_deliveries)
            finally:
                bar.close()
                if runner is not None:
                    await runner.cancel()
            t_end = self.now_ns()
            redis_cpu1, wall = await instrument.redis_cpu_s(self.url), time.monotonic() - wall0
            stats = await control.redis_stats(self.url, self.server)
            inst_rows = self.instance_rows()  # before closing: "connected" is as the run ended
        except asyncio.CancelledError:  # stopped by a signal: keep what was measured, marked as such
            partial = self._partial_record(version, t0, time.monotonic() - wall0, runner)
            raise PartialRun(partial) from None
        finally:
            sampler.stop()
            await self.close()
        record = self._build(version, t0, t_end, inst_rows, runner, stats)
        redis_cpu = None if redis_cpu0 is None or redis_cpu1 is None else redis_cpu1 - redis_cpu0
        record.environment["instrument"] = instrument.verdict(
            {"main": self.cpu or {"cpu_s": 0.0, "wall_s": wall, "cpu_pct": 0.0}}, redis_cpu, wall,
            mode="single", reason=self.mode_reason)
        sampler.attach(record)
        return record

    def _partial_record(self, version, t0: int, wall_s: float, runner) -> RunRecord | None:
        """What a run stopped midway had recorded, marked ``interrupted`` (None before it started)."""
        if not t0:
            return None
        record = self._build(version, t0, self.now_ns(), self.instance_rows(), runner, {})
        planned = self.sc.warmup_s + self.sc.duration_s
        record.environment["interrupted"] = {"after_s": round(wall_s, 3), "of_s": planned}
        record.notes.append(f"interrupted after {wall_s:.1f} s of {planned:g} s: the numbers cover only that part")
        return record

    def _build(self, version, t0: int, t_end: int, inst_rows: list[dict], runner, stats: dict) -> RunRecord:
        """The record: the recorder's last chunk closed, its rows (from memory, or read back from
        the parts written as the run went) as frames, and its summary."""
        rec = self.recorder
        rec.finish()
        if rec.parts is not None:  # the rows are in the parts: read only if something asks for them
            pubs = dels = None
        else:
            pubs, dels = rec.publication_columns(), rec.delivery_columns()
        record = build_record(self.sc, self.url, self.run_id, version, t0, t_end, pubs, dels, inst_rows,
                              runner.log if runner else [], self.outage_rows(), stats)
        record.summary = rec.summary
        record.parts = rec.parts
        record.environment["recorder"] = rec.stats()
        return record

    async def _publisher(self, i: int, t_start: int) -> None:
        """Instance ``i``'s publishing loop: each event at its due time, late but never skipped,
        sent with ``publish_nowait`` (its outcome comes back through ``on_published``). Its events
        come from the plan feed as it goes; its publication rows from the recorder's ring."""
        market = SyntheticMarket(random.Random(self.sc.seed * 1_000 + i), symbols=self.sc.symbols,
                                 book_depth=self.sc.book_depth)
        sleep_until, now_ns, say = self.options.sleep_until, self.now_ns, self.say
        rec, feed, src = self.recorder, self.feed, self.ids[i]
        pubs = rec.pubs
        code = pubs.code(pubs.sources, src)
        types, symbols = pubs.types, pubs.symbols
        sent = 0
        while (nxt := feed.next(i)) is not None:
            k, ev = nxt
            due = t_start + int(ev.due_s * 1e9)
            self.spun_s += await sleep_until(due)
            if not pubs.room(k):
                rec.make_room(k)
            j = pubs.plan(k, code, pubs.code(types, ev.type), pubs.code(symbols, ev.symbol), due)
            sent += 1
            data = market.make(ev.type, ev.symbol, due // 1_000_000)
            pubs.t_sent[j] = now_ns()
            while True:
                if i in self.down:
                    pubs.ids[k & pubs.mask] = f"not-sent:{src}:{ev.k}"
                    pubs.fail(k, self.down[i])
                    break
                bridge = self.bridges[i]
                try:
                    eid = bridge.publish_nowait(ev.type, data, token=k, intended_ns=due)
                    if eid is None:  # the window is full: wait for room (bounded), then send it
                        await bridge.writable()
                        continue
                except PublishError as exc:
                    pubs.ids[k & pubs.mask] = getattr(exc, "envelope_id", None) or f"failed:{src}:{ev.k}"
                    pubs.fail(k, str(exc))
                    if say:
                        say(f"[{(pubs.t_sent[k & pubs.mask] - self.t0) / 1e9:9.3f}s] {src} -x {ev.type}: {exc}")
                    break
                pubs.ids[k & pubs.mask] = eid  # (the slot anew: another publisher may have grown the ring meanwhile)
                if say:
                    say(f"[{(pubs.t_sent[k & pubs.mask] - self.t0) / 1e9:9.3f}s] {src} -> {ev.type} {ev.symbol} {eid}")
                break
        # every outcome is known within the publishing connection's deadline (publish_timeout_s)
        limit = self._config(i).publish_timeout_s + SETTLE_SLACK_S
        bound = time.monotonic() + limit
        while sent and pubs.settled_by[code] < sent and time.monotonic() < bound:
            await asyncio.sleep(0.005)
        if sent and pubs.settled_by[code] < sent:
            for k in range(rec.pubs_written, pubs.n):  # rows not written yet: the unsettled are among them
                j = k & pubs.mask
                if pubs.src[j] == code and pubs.t_intended[j] and not pubs.done[j]:
                    pubs.fail(k, f"no outcome within {limit:g}s")

    def instance_rows(self) -> list[dict]:
        rows = []
        for i, b in sorted(self.bridges.items()):
            m = b.metrics()
            lives = [m]
            for old in self.retired:  # a crashed and restarted instance: add its first life's counters
                if str(old.instance_id) == self.ids[i]:
                    om = old.metrics()
                    lives.append(om)
                    for k in (*COUNTER_NAMES, "output_buffer_warnings"):
                        m[k] = m.get(k, 0) + om.get(k, 0)
            # the output-buffer check's largest reading over the instance's lives (-1: never read, the check off)
            m["output_buffer_max_bytes"] = max((x["output_buffer_max_bytes"] for x in lives
                                                if x.get("output_buffer_max_bytes") is not None), default=-1)
            rows.append({k: m.get(k, 0) for k in INSTANCE_COLUMNS if k != "instance"} | {"instance": self.ids[i]})
        return rows

    def outage_rows(self) -> list[tuple]:
        out = [(str(b.instance_id), o[0], o[1], o[2]) for b in [*self.retired, *self.bridges.values()]
               for o in b.outages]
        return out + self.crash_outages
