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
from typing import Callable

from redis.asyncio import Redis

from .bridge import BridgeConfig, RedisEventBridge
from .errors import FanoutError, PublishError, RedisUnavailable
from .market import SyntheticMarket
from .record import (
    DELIVERY_COLUMNS,
    INSTANCE_COLUMNS,
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
        out.append(Scheduled(k, t, rng.randrange(sc.instances), rng.choice(sc.event_types), rng.choice(sc.symbols)))
        k += 1
    return out


def instance_ids(sc: Scenario) -> list[str]:
    return [f"test-instance-{i}" for i in range(sc.instances)]


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
    wait = (due_ns - time.time_ns()) / 1e9
    if wait > SPIN_S:
        await asyncio.sleep(wait - SPIN_S)
    while time.time_ns() < due_ns:
        await asyncio.sleep(0)


async def simulate(
    sc: Scenario,
    *,
    redis_url: str | None = None,
    progress: bool | None = None,
    printer: Printer | None = None,
    run_id: str | None = None,
) -> RunRecord:
    """Run ``sc`` against Redis at ``redis_url`` (or ``sc.redis_url``) and return its record."""
    url = redis_url or sc.redis_url
    if not url:
        raise FanoutError("simulate() needs a Redis URL: pass redis_url, or use run_scenario() for a throwaway server")
    run_id = run_id or new_run_id(sc)
    ids = instance_ids(sc)
    plan = schedule(sc)
    say = printer if (printer and sc.verbose) else None

    bridges = [
        RedisEventBridge(BridgeConfig(url=url, instance_id=i, event_types=sc.event_types,
                                      transport=sc.transport, key_prefix=sc.key_prefix))
        for i in ids
    ]
    deliveries: list[tuple] = []
    seen: set[tuple[str, str]] = set()
    now_ns = time.time_ns

    for b in bridges:
        rid = str(b.instance_id)

        def on_event(env, rid=rid):
            t = now_ns()
            src = env.source if type(env.source) is str else str(env.source)
            deliveries.append((env.id, src, rid, env.type, env.seq if env.seq is not None else -1, t))
            seen.add((env.id, rid))
            if say:
                say(f"[{(t - t0) / 1e9:9.3f}s]   {rid} <- {src} {env.type} {env.id}")

        b.on("*", on_event)

    try:
        results = await asyncio.gather(*(b.start() for b in bridges), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        if sc.transport == "pubsub":
            await _confirm_subscriptions(url, [bridges[0].config.channel(t) for t in sc.event_types],
                                         len(bridges), SUBSCRIBE_CONFIRM_TIMEOUT_S)
        version = await redis_version(url)
        market = SyntheticMarket(random.Random(sc.seed + 1), symbols=sc.symbols)
        pubs: list[tuple] = []
        total_s = sc.warmup_s + sc.duration_s
        bar = _Progress(progress, total_s, sc.name)
        t_start = now_ns() + 20_000_000  # first event due 20 ms from now
        t0 = t_start + int(sc.warmup_s * 1e9)
        last_tick = 0.0
        try:
            for ev in plan:
                due = t_start + int(ev.due_s * 1e9)
                await _sleep_until(due)
                b = bridges[ev.publisher]
                data = market.make(ev.type, ev.symbol, due // 1_000_000)
                t_sent = now_ns()
                try:
                    env = await b.publish(ev.type, data, intended_ns=due)
                    t_ack = now_ns()
                    pubs.append((env.id, ids[ev.publisher], env.seq, ev.type, ev.symbol, due, t_sent, t_ack, True, ""))
                    if say:
                        say(f"[{(t_sent - t0) / 1e9:9.3f}s] {ids[ev.publisher]} -> {ev.type} {ev.symbol} {env.id}")
                except PublishError as exc:
                    env = exc.envelope
                    pubs.append((env.id if env else f"failed:{ev.k}", ids[ev.publisher], env.seq if env else -1,
                                 ev.type, ev.symbol, due, t_sent, 0, False, str(exc)))
                    if say:
                        say(f"[{(t_sent - t0) / 1e9:9.3f}s] {ids[ev.publisher]} -x {ev.type}: {exc}")
                el = (now_ns() - t_start) / 1e9
                if el - last_tick >= 0.25:
                    last_tick = el
                    bar.update(el, len(pubs), len(deliveries))
            # drain: until every expected delivery arrived, or the bound
            expected = {(p[0], r) for p in pubs if p[8] for r in ids if r != p[1]}
            deadline = time.monotonic() + sc.drain_timeout_s
            while time.monotonic() < deadline and not expected <= seen:
                await asyncio.sleep(0.01)
            bar.update(total_s, len(pubs), len(deliveries))
        finally:
            bar.close()
        t_end = now_ns()
        inst_rows = []
        for b in bridges:
            m = b.metrics()
            inst_rows.append({k: m.get(k, 0) for k in INSTANCE_COLUMNS if k != "instance"} | {"instance": str(b.instance_id)})
    finally:
        await asyncio.gather(*(b.close() for b in bridges), return_exceptions=True)

    pub_df = frame([dict(zip(PUBLICATION_COLUMNS, p)) for p in pubs], PUBLICATION_COLUMNS)
    del_df = frame([dict(zip(DELIVERY_COLUMNS, d)) for d in deliveries], DELIVERY_COLUMNS)
    if sc.warmup_s > 0:
        warm_ids = set(pub_df.loc[pub_df["t_intended"] < t0, "id"])
        pub_df = pub_df[~pub_df["id"].isin(warm_ids)].reset_index(drop=True)
        del_df = del_df[~del_df["id"].isin(warm_ids)].reset_index(drop=True)
    scen = sc.to_dict()
    scen["redis_url"] = redact_url(url) if (sc.redis_url or redis_url) else None
    env_info = environment(version)
    env_info["redis_url"] = redact_url(url)
    return RunRecord(
        run_id=run_id, scenario=scen, environment=env_info,
        publications=pub_df, deliveries=del_df, instances=frame(inst_rows, INSTANCE_COLUMNS),
        t0=t0, t_end=t_end,
    )


def run_scenario(
    sc: Scenario,
    *,
    progress: bool | None = None,
    printer: Printer | None = None,
    save_to: str | None = "data/runs",
) -> RunRecord:
    """Synchronous wrapper: start a throwaway redis-server unless ``sc.redis_url`` is set,
    run, save the record under ``save_to`` (unless None) and return it."""

    async def go(url: str, throwaway: bool) -> RunRecord:
        rec = await simulate(sc, redis_url=url, progress=progress, printer=printer)
        if throwaway:
            rec.environment["redis_url"] = "throwaway redis-server on " + redact_url(url)
        return rec

    if sc.redis_url:
        rec = asyncio.run(go(sc.redis_url, False))
    else:
        with RedisServer() as srv:
            rec = asyncio.run(go(srv.url, True))
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
