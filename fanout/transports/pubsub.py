"""Redis pub/sub: PUBLISH to ``{prefix}{type}``, SUBSCRIBE on one dedicated connection.

Fire-and-forget: a subscriber that is not connected when a message is published never
sees it (the bridge's sequence check makes the loss visible). The subscriber talks to one
redis-py ``Connection`` directly (hiredis parsing, no hidden reconnects): when the
connection drops, ``read`` raises and the bridge decides how to reconnect and counts it.
"""
from __future__ import annotations

import asyncio
import time

from redis.asyncio.connection import ConnectionPool
from redis.backoff import NoBackoff
from redis.asyncio.retry import Retry
from redis.exceptions import AuthenticationError, RedisError, ResponseError

try:  # hiredis' "no complete reply buffered yet" marker, for draining without a syscall
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH
except ImportError:  # pragma: no cover
    _NOT_ENOUGH = False

from fanout.errors import AuthenticationFailed, RedisUnavailable
from fanout.redact import redact_url
from fanout.transports.base import Subscriber, Transport
from fanout.transports.pipe import CommandPipe, abort_connection, set_receive_buffer

_MESSAGE = b"message"
_PONG = b"pong"


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def connection_kwargs(config) -> dict:
    """redis-py keyword arguments shared by every connection a bridge opens."""
    kw: dict = {
        "socket_connect_timeout": config.connect_timeout_s,
        "socket_timeout": config.command_timeout_s,
        "retry": _no_retry(),
        "client_name": f"fanout:{config.instance_id}",
    }
    if config.username is not None:
        kw["username"] = config.username
    if config.password is not None:
        kw["password"] = config.password
    return kw


def explain(exc: BaseException, url: str) -> Exception:
    """Turn a redis-py error into fanout's one-line error naming the (redacted) URL."""
    safe = redact_url(url)
    msg = str(exc).split("\n")[0]
    if isinstance(exc, AuthenticationError) or (
        isinstance(exc, ResponseError) and ("WRONGPASS" in msg or "NOAUTH" in msg or "NOPERM" in msg)
    ):
        return AuthenticationFailed(f"Redis at {safe} refused the credentials: {msg}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RedisUnavailable(f"cannot reach Redis at {safe}: no answer in time")
    return RedisUnavailable(f"cannot reach Redis at {safe}: {msg or exc.__class__.__name__}")


async def open_pipe(cfg, url: str | None = None) -> CommandPipe:
    """A publishing CommandPipe to ``url`` (default: the config's), checked with a PING;
    a bad URL or bad credentials raise fanout's one-line error."""
    url = url or cfg.resolved_url()
    pipe = CommandPipe(url, cfg.command_timeout_s, cfg.connect_timeout_s, **connection_kwargs(cfg))
    try:
        await asyncio.wait_for(pipe.call("PING"), cfg.connect_timeout_s + cfg.command_timeout_s)
    except (RedisError, OSError, ConnectionError, asyncio.TimeoutError) as exc:
        await pipe.close()
        raise explain(exc, url) from None
    return pipe


class PubSubSubscriber(Subscriber):
    """One SUBSCRIBE connection. ``read`` returns [(channel, payload), ...]."""

    def __init__(self, conn, health_interval_s: float, health_timeout_s: float) -> None:
        self._conn = conn
        self._health_interval = health_interval_s
        self._health_timeout = health_timeout_s
        self._last_rx = time.monotonic()
        self._ping_sent: float | None = None

    async def read(self, timeout_s: float) -> list[tuple[str, bytes]]:
        conn = self._conn
        if not conn.is_connected:
            raise ConnectionError("subscriber connection closed")
        try:
            resp = await conn.read_response(timeout=timeout_s, disconnect_on_error=True, disable_decoding=True)
        except (RedisError, OSError) as exc:
            raise ConnectionError(str(exc) or exc.__class__.__name__) from exc
        now = time.monotonic()
        if resp is None:
            if not conn.is_connected:
                raise ConnectionError("subscriber connection closed")
            # Idle: make sure Redis is still there (a paused or partitioned server sends no FIN).
            if self._ping_sent is not None:
                if now - self._ping_sent > self._health_timeout:
                    raise ConnectionError(f"no answer to PING within {self._health_timeout:g}s")
            elif now - self._last_rx > self._health_interval:
                try:
                    await conn.send_command("PING", check_health=False)
                except (RedisError, OSError) as exc:
                    raise ConnectionError(str(exc)) from exc
                self._ping_sent = now
            return []
        self._last_rx = now
        self._ping_sent = None
        out: list[tuple[str, bytes]] = []
        self._take(resp, out)
        # Drain whatever hiredis already has buffered, without waiting.
        parser = conn._parser
        while True:
            try:
                more = parser._reader.gets() if hasattr(parser, "_reader") and parser._reader else False
            except Exception:  # pragma: no cover - protocol error: let the next read raise
                break
            if more is _NOT_ENOUGH or more is False or more is None:
                break
            self._take(more, out)
        return out

    @staticmethod
    def _take(resp, out: list) -> None:
        if isinstance(resp, list) and len(resp) == 3 and resp[0] == _MESSAGE:
            ch = resp[1]
            out.append((ch.decode() if isinstance(ch, bytes) else ch, resp[2]))
        # subscribe confirmations and pongs carry no events

    def shrink_receive_buffer(self, nbytes: int) -> None:
        set_receive_buffer(self._conn, nbytes)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._conn.disconnect(), 2.0)
        except Exception:
            self.abort()

    def abort(self) -> None:
        abort_connection(self._conn)


class PubSubTransport(Transport):
    name = "pubsub"

    def __init__(self, config) -> None:
        super().__init__(config)
        self._pipe: CommandPipe | None = None

    async def connect_publisher(self) -> None:
        self._pipe = await open_pipe(self.config)

    async def publish(self, channel: str, payload: bytes) -> None:
        assert self._pipe is not None, "publisher not connected"
        await self._pipe.call("PUBLISH", channel, payload)

    async def open_subscriber(self, channels: list[str]) -> PubSubSubscriber:
        cfg = self.config
        pool = ConnectionPool.from_url(cfg.resolved_url(), protocol=2, **connection_kwargs(cfg))
        conn = pool.make_connection()
        try:
            await asyncio.wait_for(conn.connect(), cfg.connect_timeout_s + cfg.command_timeout_s)
            await conn.send_command("SUBSCRIBE", *channels, check_health=False)
            pending = set(channels)
            deadline = time.monotonic() + cfg.command_timeout_s
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise asyncio.TimeoutError()
                resp = await conn.read_response(timeout=left, disable_decoding=False)
                if resp is None:
                    continue
                if isinstance(resp, list) and resp and resp[0] in (b"subscribe", "subscribe"):
                    ch = resp[1].decode() if isinstance(resp[1], bytes) else resp[1]
                    pending.discard(ch)
        except BaseException as exc:
            try:
                await asyncio.wait_for(conn.disconnect(nowait=True), 1.0)
            except Exception:
                pass
            if isinstance(exc, (RedisError, OSError, asyncio.TimeoutError)):
                raise explain(exc, cfg.resolved_url()) from None
            raise
        return PubSubSubscriber(conn, cfg.health_check_interval_s, cfg.health_check_timeout_s)

    async def close(self) -> None:
        if self._pipe is not None:
            await self._pipe.close()

    def abort(self) -> None:
        if self._pipe is not None:
            self._pipe.abort()
