"""simulate(scenario): N bridges in one process, every publication and delivery recorded.

The seed's test methodology, measured honestly:

1. N bridges ``test-instance-0 .. N-1``, each subscribed to every event type of the scenario;
   the subscriptions are confirmed on the server (``PUBSUB NUMSUB`` shows N subscribers per
   channel) before the first publish.
2. An **open-loop** schedule: event k is due at ``t0 + k/rate`` (or Poisson arrivals); a seeded
   generator picks the publishing instance, the event type and the symbol; payloads come from a
   small synthetic market. When the publisher falls behind, events are sent late, never skipped,
   and their latency is measured from the time they were *due*, so lag shows up in the figures
   instead of hiding (no coordinated omission).
3. Every delivery is recorded at the handler in integer nanoseconds.
4. After the last publish it drains until every expected delivery arrived or
   ``drain_timeout_s`` passed.
"""
from __future__ import annotations

import asyncio
import logging
import random
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from redis.asyncio import Redis

from .bridge import BridgeConfig, RedisEventBridge
from .cluster import backend_options
from .errors import ConfigError, FanoutError, PublishError, RedisUnavailable
from .faults import PROXY_KINDS, Fault, FaultRunner, parse_faults
from .market import SyntheticMarket
from .record import (
    DELIVERY_COLUMNS,
    FAULT_COLUMNS,
    INSTANCE_COLUMNS,
    OUTAGE_COLUMNS,
    PUBLICATION_COLUMNS,
    RunRecord,
    environment,
    frame,
)
from .redact import redact_url
from .redis_server import RedisServer
from .scenario import Scenario

log = logging.getLogger(__name__)

Printer = Callable[[str], None]

#: how long to wait for every subscription to show on the server before publishing
SUBSCRIBE_CONFIRM_TIMEOUT_S = 10.0
#: how long a run over agents waits for them to register (the CLI's --agent-wait sets it)
AGENT_WAIT_S = 60.0
#: publishes one instance may have awaiting their reply at once (bounds memory when Redis is slow)
MAX_IN_FLIGHT = 1000
#: a slow consumer's kernel receive buffer (bytes): small, so Redis's output buffer fills
SLOW_CONSUMER_RCVBUF = 16 * 1024
#: the last stretch before an event is due is waited out by yielding, not sleeping
SPIN_S = 0.0015


@dataclass(frozen=True, slots=True)
class Scheduled:
    k: int
    due_s: float
    publisher: int
    type: str
    symbol: str


def schedule(sc: Scenario) -> list[Scheduled]:
    """The run's plan: which instance publishes what, when (seconds after t0, warm-up first).

    Reproducible: one seeded generator draws the arrival times, publishers, types and symbols.
    """
    rng = random.Random(sc.seed)
    publishers = roles(sc)[0]
    total_s = sc.warmup_s + sc.duration_s
    out: list[Scheduled] = []
    t = 0.0
    k = 0
    while True:
        if sc.arrivals == "uniform":
            t = k / sc.rate_per_s
        elif k > 0:
            t += rng.expovariate(sc.rate_per_s)
        if t >= total_s - 1e-12:
            break
        publisher = rng.choice(publishers) if len(publishers) > 1 else publishers[0]
        out.append(Scheduled(k, t, publisher, rng.choice(sc.event_types), rng.choice(sc.symbols)))
        k += 1
    return out


def instance_ids(sc: Scenario) -> list[str]:
    if sc.topology == "host-bots":
        return ["websocket-host", *(f"bot-{i}" for i in range(1, sc.instances))]
    return [f"test-instance-{i}" for i in range(sc.instances)]


def roles(sc: Scenario) -> tuple[list[int], list[int]]:
    """(publishing instance indices, receiving instance indices) of the scenario's topology."""
    everyone = list(range(sc.instances))
    if sc.topology == "host-bots":  # the seed's deployment: one publish-only host, subscribe-only bots
        return [0], everyone[1:]
    return everyone, everyone


#: added to the wall clock: 0, except in an agent started with an injected skew (tests of clock correction)
CLOCK_SKEW_NS = 0


def clock_ns() -> int:
    """The simulator's clock: integer ns, the wall clock shared by every process on a host."""
    return time.time_ns() + CLOCK_SKEW_NS


def new_run_id(sc: Scenario) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{sc.name}-{secrets.token_hex(2)}"


class _Progress:
    """A tqdm bar over the schedule's seconds; silent when off or not a terminal."""

    def __init__(self, enabled: bool | None, total_s: float, desc: str) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=round(total_s, 1), unit="s", desc=desc, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f}s {postfix}")

    def update(self, elapsed_s: float, published: int, delivered: int) -> None:
        if self.bar is not None:
            self.bar.n = min(round(elapsed_s, 1), self.bar.total)
            self.bar.set_postfix_str(f"published {published}, delivered {delivered}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def _confirm_subscriptions(url: str, channels: list[str], n: int, timeout_s: float) -> None:
    """Wait until Redis itself reports ``n`` subscribers on every channel (bounded)."""
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        deadline = time.monotonic() + timeout_s
        counts: dict = {}
        while True:
            counts = dict(await client.pubsub_numsub(*channels))
            counts = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in counts.items()}
            if all(counts.get(c, 0) >= n for c in channels):
                return
            if time.monotonic() > deadline:
                raise FanoutError(
                    f"subscriptions not confirmed within {timeout_s:g}s: Redis reports {counts}, expected {n} on each"
                )
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def _forget_stream_positions(url: str, sc: Scenario) -> None:
    """A run's instances are new: drop positions an earlier run with the same ids left in Redis
    (a crash *within* this run still resumes, from what this run saves)."""
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.delete(*[f"{sc.key_prefix}pos:{i}" for i in instance_ids(sc)])
    finally:
        await client.aclose()


async def redis_version(url: str) -> str | None:
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        info = await client.info("server")
        return str(info.get("redis_version"))
    except Exception:
        return None
    finally:
        await client.aclose()


async def _sleep_until(due_ns: int) -> None:
    """Sleep until ``due_ns`` (time.time_ns) without the event loop's millisecond overshoot:
    sleep most of the way, then yield to the loop until the moment comes."""
    wait = (due_ns - clock_ns()) / 1e9
    if wait > SPIN_S:
        await asyncio.sleep(wait - SPIN_S)
    while clock_ns() < due_ns:
        await asyncio.sleep(0)


async def simulate(
    sc: Scenario,
    *,
    redis_url: str | None = None,
    progress: bool | None = None,
    printer: Printer | None = None,
    run_id: str | None = None,
    server: RedisServer | None = None,
) -> RunRecord:
    """Run ``sc`` against Redis at ``redis_url`` (or ``sc.redis_url``) and return its record.

    ``server`` is the throwaway server behind ``redis_url``, needed by ``redis_restart`` faults.
    """
    url = redis_url or sc.redis_url
    if not url:
        raise FanoutError("simulate() needs a Redis URL: pass redis_url, or use run_scenario() for a throwaway server")
    if sc.transport == "streams":
        await _forget_stream_positions(url, sc)
    if sc.agents:
        from .agents import run_with_agents

        return await run_with_agents(sc, url, run_id or new_run_id(sc), sc.agents, wait_s=AGENT_WAIT_S,
                                     progress=progress)
    if sc.process_mode == "processes":
        from .processes import simulate_processes

        return await simulate_processes(sc, url, run_id or new_run_id(sc), progress=progress)
    return await _Simulation(sc, url, progress=progress, printer=printer, run_id=run_id, server=server).run()


class _Simulation:
    """One run: the bridges, the recorder, the publisher loop and the fault plan."""

    def __init__(self, sc: Scenario, url: str, *, progress=None, printer=None, run_id=None, server=None,
                 hosted: list[int] | None = None) -> None:
        self.sc = sc
        self.url = url
        self.progress = progress
        self.say = printer if (printer and sc.verbose) else None
        self.run_id = run_id or new_run_id(sc)
        self.server = server
        self.ids = instance_ids(sc)
        self.faults = parse_faults(sc.faults, sc.instances, sc.duration_s)
        if any(f.kind == "redis_restart" for f in self.faults) and server is None:
            raise FanoutError("a redis_restart fault needs the throwaway server (run without redis_url)")
        self.hosted = list(range(sc.instances)) if hosted is None else list(hosted)
        self.deliveries: list[tuple] = []
        self.seen: set[tuple[str, str]] = set()
        self.got: dict[str, int] = {}                    # receiver -> distinct events received
        self.pubs: list[tuple] = []
        self.bridges: dict[int, RedisEventBridge] = {}
        self.retired: list[RedisEventBridge] = []      # crashed bridges, for their metrics and outages
        self.down: dict[int, str] = {}                  # instance index -> why it cannot publish now
        self.crash_outages: list[tuple] = []
        self.proxies: dict[int, Any] = {}
        self.t0 = 0

    # -- bridges -----------------------------------------------------------------------
    def _config(self, i: int) -> BridgeConfig:
        url = self.proxies[i].url_for(self.url) if i in self.proxies else self.url
        fast = bool(self.faults)  # under faults, notice and recover quickly
        publishers, receivers = roles(self.sc)
        return BridgeConfig(
            enable_publishing=i in publishers, enable_subscription=i in receivers,
            url=url, instance_id=self.ids[i], event_types=self.sc.event_types, transport=self.sc.transport,
            key_prefix=self.sc.key_prefix, health_check_interval_s=self.sc.health_check_s,
            health_check_timeout_s=min(3.0, self.sc.health_check_s), stream_maxlen=self.sc.stream_maxlen,
            reconnect_max_s=0.5 if fast else 2.0, publish_timeout_s=1.0 if fast else 2.0,
            batch_max=self.sc.batch_max, batch_delay_ms=self.sc.batch_delay_ms,
            **backend_options(self.server, self.sc),  # sentinel addresses, shard partitions
        )

    def _make_bridge(self, i: int) -> RedisEventBridge:
        b = RedisEventBridge(self._config(i))
        rid = self.ids[i]
        deliveries, seen, got, now_ns, say = self.deliveries, self.seen, self.got, clock_ns, self.say
        got.setdefault(rid, 0)

        def on_event(env, rid=rid):
            t = now_ns()
            src = env.source if type(env.source) is str else str(env.source)
            deliveries.append((env.id, src, rid, env.type, env.seq if env.seq is not None else -1, t))
            key = (env.id, rid)
            if key not in seen:
                seen.add(key)
                got[rid] += 1
            if say:
                say(f"[{(t - self.t0) / 1e9:9.3f}s]   {rid} <- {src} {env.type} {env.id}")

        b.on("*", on_event)
        return b

    # -- faults --------------------------------------------------------------------------
    def _fault_actions(self) -> dict:
        async def restart_begin(f: Fault) -> str:
            await asyncio.to_thread(self.server.kill if f.hard else self.server.stop)
            return f"redis-server {'killed' if f.hard else 'stopped'} (aof={'on' if self.sc.redis_aof else 'off'})"

        async def restart_end(f: Fault) -> str:
            await asyncio.to_thread(self.server.start)
            return "redis-server started again"

        async def crash_begin(f: Fault) -> str:
            i = f.instance
            self.down[i] = f"instance crashed (fault {f.label})"
            self.crash_t = clock_ns()
            b = self.bridges[i]
            b.abort()
            self.retired.append(b)
            return f"{self.ids[i]} aborted without closing"

        async def crash_end(f: Fault) -> str:
            i = f.instance
            t_down = self.crash_t
            for attempt in range(50):
                b = self._make_bridge(i)
                try:
                    await b.start()
                    break
                except (RedisUnavailable, FanoutError):
                    await asyncio.sleep(0.1)
            else:
                return f"{self.ids[i]} could not restart"
            self.bridges[i] = b
            self.down.pop(i, None)
            self.crash_outages.append((self.ids[i], t_down, clock_ns(), "instance_crash"))
            return f"{self.ids[i]} restarted with the same id (epoch {b.epoch})"

        async def slow_begin(f: Fault) -> str:
            self.bridges[f.instance].pause_reading(receive_buffer=SLOW_CONSUMER_RCVBUF)
            return f"{self.ids[f.instance]} stopped reading"

        async def slow_end(f: Fault) -> str:
            self.bridges[f.instance].resume_reading()
            return f"{self.ids[f.instance]} reading again"

        async def latency_begin(f: Fault) -> str:
            self.proxies[f.instance].set_delay(f.delay_ms / 1000)
            return f"+{f.delay_ms:g} ms each way between {self.ids[f.instance]} and Redis"

        async def latency_end(f: Fault) -> str:
            self.proxies[f.instance].set_delay(0)
            return ""

        async def partition_begin(f: Fault) -> str:
            self.proxies[f.instance].partition(mode=f.mode)
            return f"{self.ids[f.instance]} cut off from Redis ({f.mode})"

        async def partition_end(f: Fault) -> str:
            self.proxies[f.instance].heal()
            return "partition healed"

        async def failover_begin(f: Fault) -> str:  # LocalCluster / LocalSentinel: kill a master, wait for its successor
            return await asyncio.to_thread(self.server.fail_over)

        async def failover_end(f: Fault) -> str:
            return ""

        return {
            "redis_restart": (restart_begin, restart_end), "instance_crash": (crash_begin, crash_end),
            "slow_consumer": (slow_begin, slow_end), "latency": (latency_begin, latency_end),
            "partition": (partition_begin, partition_end),
            "node_failover": (failover_begin, failover_end), "sentinel_failover": (failover_begin, failover_end),
        }

    async def _start_proxies(self) -> None:
        needs = sorted({f.instance for f in self.faults if f.kind in PROXY_KINDS})
        if not needs:
            return
        from urllib.parse import urlsplit

        from .proxy import FaultProxy

        parts = urlsplit(self.url)
        for i in needs:
            self.proxies[i] = await FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()

    # -- the run -------------------------------------------------------------------------
    async def setup(self) -> str | None:
        """Start the hosted instances' bridges (subscriptions confirmed); return Redis's version."""
        await self._start_proxies()
        self.bridges = {i: self._make_bridge(i) for i in self.hosted}
        results = await asyncio.gather(*(b.start() for b in self.bridges.values()), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return await redis_version(self.url)

    async def publish_phase(self, t_start: int, bar: "_Progress | None" = None) -> None:
        """Every hosted instance publishes its own share of the plan on its own, as separate
        hosts would: one slow instance (a fault, a full socket) delays only its own events."""
        by_publisher: dict[int, list[Scheduled]] = {i: [] for i in self.hosted}
        for ev in schedule(self.sc):
            if ev.publisher in by_publisher:
                by_publisher[ev.publisher].append(ev)
        publishers = [asyncio.create_task(self._publisher(i, evs, t_start)) for i, evs in by_publisher.items()]
        try:
            while not all(t.done() for t in publishers):
                await asyncio.wait(publishers, timeout=0.25)
                if bar is not None:
                    bar.update((clock_ns() - t_start) / 1e9, len(self.pubs), len(self.deliveries))
            for t in publishers:
                t.result()  # a publisher that crashed is a bug: surface it
        finally:
            for t in publishers:
                t.cancel()

    async def drain(self, expected: dict[str, int]) -> None:
        """Until each receiver has its expected count of distinct events, or the drain bound passed."""
        deadline = time.monotonic() + self.sc.drain_timeout_s
        got = self.got
        while time.monotonic() < deadline and any(got.get(r, 0) < n for r, n in expected.items()):
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.bridges.values()), return_exceptions=True)
        for p in self.proxies.values():
            await p.close()

    async def run(self) -> RunRecord:
        """The whole run in this process: every instance hosted here."""
        sc, ids = self.sc, self.ids
        runner: FaultRunner | None = None
        try:
            version = await self.setup()
            if sc.transport == "pubsub":
                await _confirm_subscriptions(self.url, [self._config(0).channel(t) for t in sc.event_types],
                                             len(roles(sc)[1]), SUBSCRIBE_CONFIRM_TIMEOUT_S)
            total_s = sc.warmup_s + sc.duration_s
            bar = _Progress(self.progress, total_s, sc.name)
            t_start = clock_ns() + 20_000_000  # first event due 20 ms from now
            self.t0 = t0 = t_start + int(sc.warmup_s * 1e9)
            if self.faults:
                runner = FaultRunner(self.faults, t0, self._fault_actions(), ids)
                runner.start()
            try:
                await self.publish_phase(t_start, bar)
                if runner is not None:
                    await runner.wait(timeout_s=max((f.at_s + f.duration_s for f in self.faults), default=0) + 30)
                await self.drain(expected_counts(self.pubs, [ids[i] for i in roles(sc)[1]]))
                bar.update(total_s, len(self.pubs), len(self.deliveries))
            finally:
                bar.close()
            t_end = clock_ns()
            stats = await self._redis_stats()
            inst_rows = self._instance_rows()  # before closing: "connected" is as the run ended
        finally:
            await self.close()
        return self._record(version, t0, t_end, runner.log if runner else [], stats, inst_rows)

    async def _publisher(self, i: int, events: list[Scheduled], t_start: int) -> None:
        """Instance ``i``'s publishing loop: each event at its due time, late but never skipped."""
        market = SyntheticMarket(random.Random(self.sc.seed * 1_000 + i), symbols=self.sc.symbols,
                                 book_depth=self.sc.book_depth)
        # Each event is sent when due, without waiting for the previous one's reply: the bridge
        # pipelines them on one connection in order, so a slow link slows delivery, not the schedule.
        window = asyncio.Semaphore(MAX_IN_FLIGHT)
        in_flight: set[asyncio.Task] = set()

        async def one(ev: Scheduled, due: int) -> None:
            try:
                await self._publish(ev, due, market)
            finally:
                window.release()

        for ev in events:
            due = t_start + int(ev.due_s * 1e9)
            await _sleep_until(due)
            await window.acquire()
            t = asyncio.get_running_loop().create_task(one(ev, due))
            in_flight.add(t)
            t.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)

    async def _publish(self, ev: Scheduled, due: int, market: SyntheticMarket) -> None:
        ids, say = self.ids, self.say
        src = ids[ev.publisher]
        data = market.make(ev.type, ev.symbol, due // 1_000_000)
        t_sent = clock_ns()
        if ev.publisher in self.down:
            self.pubs.append((f"not-sent:{src}:{ev.k}", src, -1, ev.type, ev.symbol, due, t_sent, 0, False,
                              self.down[ev.publisher]))
            return
        try:
            env = await self.bridges[ev.publisher].publish(ev.type, data, intended_ns=due)
            self.pubs.append((env.id, src, env.seq, ev.type, ev.symbol, due, t_sent, clock_ns(), True, ""))
            if say:
                say(f"[{(t_sent - self.t0) / 1e9:9.3f}s] {src} -> {ev.type} {ev.symbol} {env.id}")
        except PublishError as exc:
            env = exc.envelope
            self.pubs.append((env.id if env else f"failed:{src}:{ev.k}", src, env.seq if env else -1,
                              ev.type, ev.symbol, due, t_sent, 0, False, str(exc)))
            if say:
                say(f"[{(t_sent - self.t0) / 1e9:9.3f}s] {src} -x {ev.type}: {exc}")


    async def _redis_stats(self) -> dict:
        """Server-side facts for the loss accounting (bounded; best effort)."""
        stats: dict = {}
        client = Redis.from_url(self.url, socket_connect_timeout=3, socket_timeout=3)
        try:
            info = await client.info("stats")
            for k in ("client_output_buffer_limit_disconnections", "evicted_clients", "total_connections_received"):
                if k in info:
                    stats[k] = int(info[k])
        except Exception as exc:  # noqa: BLE001 - stats are extra facts, not the run
            stats["error"] = str(exc).split("\n")[0]
        finally:
            await client.aclose()
        if "client_output_buffer_limit_disconnections" not in stats and self.server is not None:
            # Redis < 7.2 has no counter: its log says it, one line per client cut off.
            try:
                text = self.server.logfile.read_text(errors="replace")
                stats["client_output_buffer_limit_disconnections"] = text.count("overcoming of output buffer limits")
                stats["output_buffer_source"] = "redis log"
            except OSError:
                pass
        return stats

    def _instance_rows(self) -> list[dict]:
        inst_rows = []
        for i, b in sorted(self.bridges.items()):
            m = b.metrics()
            for old in self.retired:  # a crashed and restarted instance: add its first life's counters
                if str(old.instance_id) == self.ids[i]:
                    om = old.metrics()
                    for k in ("published", "received", "self_filtered", "errors", "gaps", "duplicates",
                              "reconnects", "malformed", "handler_errors", "publish_errors", "source_restarts",
                              "transport_losses"):
                        m[k] = m.get(k, 0) + om.get(k, 0)
            inst_rows.append({k: m.get(k, 0) for k in INSTANCE_COLUMNS if k != "instance"} | {"instance": self.ids[i]})
        return inst_rows

    def outage_rows(self) -> list[tuple]:
        out = [(str(b.instance_id), o[0], o[1], o[2]) for b in [*self.retired, *self.bridges.values()] for o in b.outages]
        return out + self.crash_outages

    def _record(self, version, t0: int, t_end: int, fault_log: list, stats: dict, inst_rows: list[dict]) -> RunRecord:
        return build_record(self.sc, self.url, self.run_id, version, t0, t_end, self.pubs, self.deliveries,
                            inst_rows, fault_log, self.outage_rows(), stats)


def expected_counts(pubs: list[tuple], receivers: list[str]) -> dict[str, int]:
    """Distinct events each receiver should get: every ok publication but its own."""
    per_source: dict[str, int] = {}
    for p in pubs:
        if p[8]:
            per_source[p[1]] = per_source.get(p[1], 0) + 1
    total = sum(per_source.values())
    return {r: total - per_source.get(r, 0) for r in receivers}


def build_record(sc: Scenario, url: str, run_id: str, version: str | None, t0: int, t_end: int,
                 pubs: list[tuple], deliveries: list[tuple], inst_rows: list[dict], fault_log: list,
                 outages: list[tuple], stats: dict) -> RunRecord:
    """Raw lists from one or many processes -> one RunRecord (frames with the contract's dtypes)."""
    pub_df = frame([dict(zip(PUBLICATION_COLUMNS, p)) for p in pubs], PUBLICATION_COLUMNS)
    pub_df = pub_df.sort_values("t_intended", kind="stable").reset_index(drop=True)  # the schedule's order
    del_df = frame([dict(zip(DELIVERY_COLUMNS, d)) for d in deliveries], DELIVERY_COLUMNS)
    if sc.warmup_s > 0:
        warm_ids = set(pub_df.loc[pub_df["t_intended"] < t0, "id"])
        pub_df = pub_df[~pub_df["id"].isin(warm_ids)].reset_index(drop=True)
        del_df = del_df[~del_df["id"].isin(warm_ids)].reset_index(drop=True)
    scen = sc.to_dict()
    scen["redis_url"] = redact_url(url) if sc.redis_url else None
    if sc.topology != "mesh":  # analysis: who publishes, who is expected to receive
        ids = instance_ids(sc)
        pubs_i, recv_i = roles(sc)
        scen["publishers"] = [ids[i] for i in pubs_i]
        scen["receivers"] = [ids[i] for i in recv_i]
    env_info = environment(version)
    env_info["redis_url"] = redact_url(url)
    env_info["transport"] = sc.transport
    order = {name: k for k, name in enumerate(instance_ids(sc))}
    inst_rows = sorted(inst_rows, key=lambda r: order.get(r["instance"], len(order)))
    return RunRecord(
        run_id=run_id, scenario=scen, environment=env_info,
        publications=pub_df, deliveries=del_df, instances=frame(inst_rows, INSTANCE_COLUMNS),
        t0=t0, t_end=t_end,
        faults=frame([vars(x) if not isinstance(x, dict) else x for x in fault_log], FAULT_COLUMNS),
        outages=frame([dict(zip(OUTAGE_COLUMNS, o)) for o in outages], OUTAGE_COLUMNS),
        redis_stats=stats,
    )


def _run_sync(coro):
    """``asyncio.run``, also from inside a running loop (a Jupyter kernel): then in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def throwaway_server(sc: Scenario) -> RedisServer:
    """The throwaway redis-server a scenario asks for (persistence, output-buffer limit), or a local
    Redis Cluster (``cluster_masters``) or Sentinel setup (``sentinel``): same ``url`` and context manager."""
    if sc.cluster_masters:
        from .cluster import LocalCluster

        return LocalCluster(sc.cluster_masters, sc.cluster_replicas)
    if sc.sentinel:
        from .cluster import LocalSentinel

        return LocalSentinel()
    return RedisServer(appendonly=sc.redis_aof, pubsub_buffer_limit=sc.pubsub_buffer_limit)


def run_scenario(
    sc: Scenario,
    *,
    progress: bool | None = None,
    printer: Printer | None = None,
    save_to: str | None = "data/runs",
) -> RunRecord:
    """Synchronous wrapper: start a throwaway redis-server unless ``sc.redis_url`` is set,
    run, save the record under ``save_to`` (unless None) and return it."""
    if sc.agents and not sc.redis_url:
        raise ConfigError("agents: a run over agents needs redis_url (the Redis every agent can reach)")
    if sc.redis_url:
        rec = _run_sync(simulate(sc, redis_url=sc.redis_url, progress=progress, printer=printer))
    else:
        with throwaway_server(sc) as srv:
            rec = _run_sync(simulate(sc, redis_url=srv.url, progress=progress, printer=printer, server=srv))
            rec.environment["redis_url"] = "throwaway redis-server on " + srv.safe_url
    if save_to:
        rec.save(save_to)
    return rec


def check_reachable(url: str, timeout_s: float = 3.0) -> None:
    """Raise :class:`RedisUnavailable` (one line naming the redacted URL) unless PING answers."""

    async def ping() -> None:
        client = Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            await asyncio.wait_for(client.ping(), timeout_s * 2)
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        from .transports.pubsub import explain

        raise explain(exc, url) from None


__all__ = ["Scenario", "simulate", "run_scenario", "schedule", "instance_ids", "check_reachable"]
