"""Control-plane calls the lab makes to the Redis under test (redis-py's public API, bounded)."""
from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, RedisError

from fanout import capabilities
from fanout.capabilities import ServerVersion
from fanout.errors import FanoutError

log = logging.getLogger(__name__)

#: every control-plane call: connect and answer within this
TIMEOUT_S = 3.0


def client(url: str, timeout_s: float = TIMEOUT_S) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)


async def confirm_subscriptions(url: str, channels: list[str], n: int, timeout_s: float) -> None:
    """Wait until Redis itself reports ``n`` subscribers on every channel (bounded). A user whose
    ACL refuses ``PUBSUB NUMSUB`` (a least-privilege pub/sub user) cannot ask: then the bridges'
    own SUBSCRIBE confirmations stand (``bridge.start`` returns once every channel is confirmed)."""
    c = client(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                counts = await _numsub(c, channels)
            except NoPermissionError:
                log.info("this Redis user may not run PUBSUB NUMSUB: the bridges' own subscribe confirmations stand")
                return
            if all(counts.get(ch, 0) >= n for ch in channels):
                return
            if time.monotonic() > deadline:
                raise FanoutError(f"subscriptions not confirmed within {timeout_s:g}s: Redis reports {counts}, "
                                  f"expected {n} on each")
            await asyncio.sleep(0.02)
    finally:
        await c.aclose()


async def _numsub(c: Redis, channels: list[str]) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in dict(await c.pubsub_numsub(*channels)).items()}


async def subscriber_counts(url: str, channels: list[str]) -> dict[str, int] | None:
    """``PUBSUB NUMSUB`` of each channel (pattern subscribers are not counted per channel by Redis);
    None when this user's ACL refuses the command (then nobody can tell)."""
    c = client(url)
    try:
        return await _numsub(c, channels)
    except NoPermissionError:
        log.info("this Redis user may not run PUBSUB NUMSUB: subscribers outside the run cannot be counted")
        return None
    finally:
        await c.aclose()


async def forget_stream_positions(url: str, keys: list[str]) -> None:
    """Drop saved stream positions (a run's instances are new; a crash *within* the run still resumes)."""
    c = client(url)
    try:
        if keys:
            await c.delete(*keys)
    finally:
        await c.aclose()


async def drop_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (``SCAN MATCH``, ``UNLINK``); return how many went."""
    pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix) + "*"
    c = client(url)
    try:
        n, batch = 0, []
        async for key in c.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                n += int(await c.unlink(*batch))
                batch = []
        if batch:
            n += int(await c.unlink(*batch))
        return n
    finally:
        await c.aclose()


async def server_identity(url: str) -> ServerVersion | None:
    """What ``INFO server`` says the server is (product, release, the Redis version it implements),
    or None when it does not answer (the run then says so)."""
    c = client(url)
    try:
        return capabilities.server_identity(await c.info("server"))
    except (RedisError, OSError) as exc:
        log.debug("INFO server failed: %s", exc)
        return None
    finally:
        await c.aclose()


async def redis_version(url: str) -> str | None:
    """The server's product and version as a run record states it (``"Redis 7.0.15"``,
    ``"Valkey 9.1.2 (implements Redis 7.2.4)"``), or None when it does not answer."""
    ident = await server_identity(url)
    return str(ident) if ident else None


async def redis_stats(url: str, server=None) -> dict:
    """Server-side facts for the loss accounting (bounded; an error is recorded, not raised)."""
    stats: dict = {}
    c = client(url)
    try:
        info = await c.info("stats")
        for k in ("client_output_buffer_limit_disconnections", "evicted_clients", "total_connections_received"):
            if k in info:
                stats[k] = int(info[k])
    except (RedisError, OSError) as exc:  # stats are extra facts, not the run
        stats["error"] = str(exc).split("\n")[0]
    finally:
        await c.aclose()
    if "client_output_buffer_limit_disconnections" not in stats and server is not None:
        # Redis < 7.2 has no counter: its log says it, one line per client cut off.
        try:
            text = server.logfile.read_text(errors="replace")
            stats["client_output_buffer_limit_disconnections"] = text.count("overcoming of output buffer limits")
            stats["output_buffer_source"] = "redis log"
        except OSError:
            pass
    return stats


def check_reachable(url: str, timeout_s: float = TIMEOUT_S) -> None:
    """Raise :class:`~fanout.errors.RedisUnavailable` (one line naming the redacted URL) unless PING answers."""
    from fanout.transports.pubsub import explain

    async def ping() -> None:
        c = client(url, timeout_s)
        try:
            await asyncio.wait_for(c.ping(), timeout_s * 2)
        finally:
            await c.aclose()

    try:
        asyncio.run(ping())
    except (RedisError, OSError, asyncio.TimeoutError, ValueError) as exc:  # every failure becomes one line
        raise explain(exc, url) from None
