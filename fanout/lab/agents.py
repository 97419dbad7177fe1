"""One run over many hosts: agents that host instances, a coordinator that runs them, through Redis.

    host-a$ fanout agent --redis-url redis://redis.internal:6379/0 --name ws-host --role host
    host-b$ fanout agent --redis-url redis://redis.internal:6379/0 --name bots-b
    host-c$ fanout agent --redis-url redis://redis.internal:6379/0 --name bots-c
    any$    fanout run --agents 3 --topology host-bots --instances 5 --redis-url redis://redis.internal:6379/0

Everything goes through the Redis under test, so no other port needs to be open between hosts:

* an agent registers (``SADD fanout:agents NAME``, a hash of facts, and a heartbeat key that
  expires 3 s after its last refresh) and waits, bounded, for an assignment on its inbox list;
* the coordinator waits (bounded) for K live agents, hands out instance ids (the ``host`` agent
  gets the websocket-host in the host-bots topology), then runs the conversation of
  :mod:`fanout.processes` over one list per direction, refreshing its own heartbeat key;
* an agent exits when the run ends, or when the coordinator's heartbeat disappears.

**Clocks.** Latency across hosts needs one clock. Each side estimates its offset from Redis's
``TIME`` over several round trips and keeps the one with the smallest round trip: offset =
server time − the midpoint of the round trip, uncertainty = half that round trip (plus TIME's
1 µs resolution). Every time an agent reports is moved onto Redis's clock, and the coordinator
schedules on Redis's clock too. The offsets and their uncertainties are in the run record and
the report. A latency that is negative after correction is counted and reported, never dropped.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from fanout.errors import FanoutError, RedisUnavailable
from fanout.lab.options import DEFAULT, RunOptions
from fanout.lab.processes import Link, coordinate, serve
from fanout.lab.record import RunRecord
from fanout.lab.topology import assign
from fanout.redact import redact_url
from fanout.lab.scenario import Scenario, from_dict

log = logging.getLogger(__name__)

NS = "fanout:"
HEARTBEAT_TTL_MS = 3000
HEARTBEAT_EVERY_S = 1.0
COORDINATOR_TTL_MS = 5000
CLOCK_ROUND_TRIPS = 12


def _client(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)


async def estimate_offset(client: Redis, clock_ns, rounds: int = CLOCK_ROUND_TRIPS) -> tuple[int, int]:
    """(offset_ns, uncertainty_ns) of Redis's clock against ``clock_ns``: Redis ≈ local + offset."""
    best: tuple[int, int] | None = None
    for _ in range(rounds):
        t1 = clock_ns()
        sec, usec = await client.time()
        t2 = clock_ns()
        rtt = t2 - t1
        offset = (int(sec) * 1_000_000_000 + int(usec) * 1_000) - (t1 + t2) // 2
        if best is None or rtt // 2 < best[1]:
            best = (offset, rtt // 2 + 1_000)
    if best is None:
        raise FanoutError("estimate_offset needs at least one round trip")
    return best


class RedisLink(Link):
    """An agent as the coordinator sees it: an inbox list, an outbox list, a heartbeat key."""

    def __init__(self, name: str, hosted: list[int], client: Redis, run_id: str, info: dict) -> None:
        super().__init__(name, hosted, info=info)
        self.client = client
        self.inbox = f"{NS}agent:{name}:inbox"
        self.outbox = f"{NS}run:{run_id}:from:{name}"
        self.alive_key = f"{NS}agent:{name}:alive"

    async def send(self, msg: tuple) -> None:
        await self.client.rpush(self.inbox, orjson.dumps(msg))

    async def poll(self) -> tuple | None:
        raw = await self.client.lpop(self.outbox)
        return tuple(orjson.loads(raw)) if raw else None

    async def alive(self) -> bool:
        return bool(await self.client.exists(self.alive_key))

    def stop(self) -> None:
        pass


async def live_agents(client: Redis) -> dict[str, dict]:
    """Registered agents whose heartbeat is fresh, with what they said about themselves."""
    names = sorted(n.decode() for n in await client.smembers(f"{NS}agents"))
    out = {}
    for n in names:
        if await client.exists(f"{NS}agent:{n}:alive") and not await client.exists(f"{NS}agent:{n}:busy"):
            facts = await client.hgetall(f"{NS}agent:{n}")
            out[n] = {k.decode(): v.decode() for k, v in facts.items()}
    return out


async def run_with_agents(sc: Scenario, url: str, run_id: str, agents: int, *, options: RunOptions = DEFAULT,
                          progress=None) -> RunRecord:
    """The coordinator: wait for ``agents`` live agents, run ``sc`` over them, return one record."""
    wait_s = options.agent_wait_s
    clock_ns = options.now_ns
    if agents > sc.instances:
        raise FanoutError(f"--agents {agents} is more than --instances {sc.instances}: every agent needs an instance")
    client = _client(url)
    beat: asyncio.Task | None = None
    try:
        deadline = time.monotonic() + wait_s
        found: dict[str, dict] = {}
        while time.monotonic() < deadline:
            found = await live_agents(client)
            if len(found) >= agents:
                break
            await asyncio.sleep(0.2)
        else:
            raise FanoutError(f"only {len(found)} of {agents} agents registered at {redact_url(url)} within "
                              f"{wait_s:g}s ({', '.join(found) or 'none'}); start them with 'fanout agent "
                              f"--redis-url URL'")
        chosen = dict(list(found.items())[:agents])
        offset, unc = await estimate_offset(client, clock_ns)
        coord_key = f"{NS}run:{run_id}:coordinator"

        async def heartbeat() -> None:
            while True:
                await client.set(coord_key, b"1", px=COORDINATOR_TTL_MS)
                await asyncio.sleep(HEARTBEAT_EVERY_S)

        await client.set(coord_key, b"1", px=COORDINATOR_TTL_MS)
        beat = asyncio.create_task(heartbeat())
        plan = assign(sc, chosen)
        links: list[Link] = []
        for name, hosted in plan.items():
            link = RedisLink(name, hosted, client, run_id, info={k: v for k, v in chosen[name].items()
                                                                  if k in ("host", "pid", "role")})
            await client.delete(link.outbox)
            await client.set(f"{NS}agent:{name}:busy", run_id, px=int((sc.duration_s + 600) * 1000))
            await link.send(("assign", run_id, sc.to_dict(), hosted, url))
            links.append(link)
        rec = await coordinate(sc, url, run_id, links, progress=progress, tolerate_death=True,
                               now_ns=lambda: clock_ns() + offset, options=options)
        rec.environment["coordinator_clock"] = {"offset_ns": offset, "uncertainty_ns": unc}
        rec.environment["process_mode"] = f"agents ({len(links)})"
        dead = {ln.name: ln.dead for ln in links if ln.dead}
        if dead:
            rec.notes.append("agents lost during the run: " + "; ".join(f"{n} ({w})" for n, w in dead.items()))
        return rec
    except (OSError, ConnectionError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
    finally:
        if beat is not None:
            beat.cancel()
        try:
            await client.aclose()
        except (RedisError, OSError) as exc:  # the run's outcome is decided; a failed close changes nothing
            log.debug("closing the coordinator's connection: %s", exc)


async def agent_main(url: str, name: str | None = None, role: str = "any", *, wait_s: float = 600.0,
                     clock_skew_ns: int = 0, say=print) -> int:
    """``fanout agent``: register, wait for one assignment, run it, ship the records, exit.

    Returns 0 after a run, 1 when nothing was assigned within ``wait_s`` or the coordinator
    vanished. ``clock_skew_ns`` shifts this agent's clock (to test the clock correction)."""
    options = RunOptions(clock_skew_ns=clock_skew_ns)
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    client = _client(url)
    alive_key = f"{NS}agent:{name}:alive"
    inbox = f"{NS}agent:{name}:inbox"

    async def heartbeat() -> None:
        while True:
            await client.set(alive_key, b"1", px=HEARTBEAT_TTL_MS)
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {str(exc).splitlines()[0]}") from None
    if not await client.set(alive_key, b"1", px=HEARTBEAT_TTL_MS, nx=True):
        raise FanoutError(f"an agent named {name!r} is already registered and alive at {redact_url(url)}; "
                          f"give this one another --name")
    await client.delete(inbox, f"{NS}agent:{name}:busy")
    await client.hset(f"{NS}agent:{name}", mapping={"name": name, "host": socket.gethostname(), "pid": os.getpid(),
                                                    "role": role, "registered_ns": time.time_ns()})
    await client.sadd(f"{NS}agents", name)
    beat = asyncio.create_task(heartbeat())
    say(f"agent {name} ({role}) registered at {redact_url(url)}; waiting up to {wait_s:g}s for a run")
    try:
        got = None
        deadline = time.monotonic() + wait_s
        while got is None and time.monotonic() < deadline:
            got = await client.blpop([inbox], timeout=1)
        if got is None:
            say(f"agent {name}: no run was assigned within {wait_s:g}s; exiting")
            return 1
        msg = orjson.loads(got[1])
        if msg[0] != "assign":
            say(f"agent {name}: unexpected message {msg[0]!r}; exiting")
            return 1
        _, run_id, scenario, hosted, run_url = msg
        sc = from_dict(scenario)
        outbox = f"{NS}run:{run_id}:from:{name}"
        coord_key = f"{NS}run:{run_id}:coordinator"
        clock = await estimate_offset(client, options.now_ns)
        say(f"agent {name}: run {run_id}, instances {hosted}, clock offset {clock[0] / 1e6:+.3f} ms "
            f"± {clock[1] / 1e6:.3f} ms")

        async def send(m) -> None:
            await client.rpush(outbox, orjson.dumps(m))

        async def recv(timeout_s: float):
            end = time.monotonic() + timeout_s
            while time.monotonic() < end:
                got = await client.blpop([inbox], timeout=1)
                if got is not None:
                    return tuple(orjson.loads(got[1]))
                if not await client.exists(coord_key):
                    raise FanoutError(f"the coordinator of run {run_id} is gone")
            raise FanoutError(f"no message from the coordinator within {timeout_s:g}s")

        async def watch() -> None:
            while await client.exists(coord_key):
                await asyncio.sleep(HEARTBEAT_EVERY_S)

        work = asyncio.create_task(serve(sc, run_url or url, hosted, send, recv, clock=clock, options=options, run_id=run_id))
        watcher = asyncio.create_task(watch())
        done, _ = await asyncio.wait([work, watcher], return_when=asyncio.FIRST_COMPLETED)
        if watcher in done and not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            say(f"agent {name}: the coordinator of run {run_id} disappeared; exiting")
            return 1
        watcher.cancel()
        work.result()
        say(f"agent {name}: run {run_id} finished; records shipped")
        return 0
    finally:
        beat.cancel()
        try:
            await client.srem(f"{NS}agents", name)
            await client.delete(alive_key, f"{NS}agent:{name}", f"{NS}agent:{name}:busy")
            await client.aclose()
        except (RedisError, OSError) as exc:  # best effort on the way out: the keys expire anyway
            log.debug("agent %s: deregistering failed: %s", name, exc)
