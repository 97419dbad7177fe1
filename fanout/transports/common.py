"""What every transport shares on top of the lean layer: the connection options a bridge's
config implies, a publishing connection that hands each reply to its token
(:class:`PubConn`), the server version check, and one-line errors for redis-py's (control plane).
"""
from __future__ import annotations

import asyncio
import collections
from typing import Any, Callable

import hiredis

from fanout.capabilities import check_info
from fanout.errors import AuthenticationFailed, RedisUnavailable
from fanout.redact import redact_url
from fanout.transports.base import PUBLISH_WINDOW, Subscriber
from fanout.transports.connection import open_connection
from fanout.transports.resp import RespProtocol

ReplyError = hiredis.ReplyError


def conn_options(cfg, **over) -> dict:
    """``open_connection`` keyword arguments for one of a bridge's connections."""
    kw: dict = {"connect_timeout_s": cfg.connect_timeout_s, "command_timeout_s": cfg.command_timeout_s,
                "client_name": f"fanout:{cfg.instance_id}"}
    if cfg.username is not None:
        kw["username"] = cfg.username
    if cfg.password is not None:
        kw["password"] = cfg.password
    kw.update(over)
    return kw


class PubConn:
    """One publishing connection. ``send(data, token)`` queues a packed command; its reply goes
    to ``on_result(token, reply, extra)`` (``reply`` is the value, a ``ReplyError`` or the
    ``ConnectionError`` the connection failed with), matched FIFO without a Future: the
    tokens wait in a deque beside the protocol's own. ``extra`` rides along when
    ``keep_extra`` (what a transport needs back, e.g. the payload to retry after MOVED)."""

    __slots__ = ("proto", "_tokens", "_extra", "_on_result", "name")

    def __init__(self, on_result: Callable[[Any, Any, Any], None], keep_extra: bool = False) -> None:
        self.proto: RespProtocol | None = None
        self._tokens: collections.deque = collections.deque()
        self._extra: collections.deque | None = collections.deque() if keep_extra else None
        self._on_result = on_result
        self.name = "?"

    async def open(self, url_or_params, cfg, **over) -> "PubConn":
        self.proto = await open_connection(url_or_params, on_reply=self._on_reply, window=PUBLISH_WINDOW,
                                           **conn_options(cfg, command_timeout_s=cfg.publish_timeout_s, **over))
        self.name = self.proto.name
        return self

    def _on_reply(self, _token: int, reply) -> None:
        extra = self._extra.popleft() if self._extra is not None else None
        self._on_result(self._tokens.popleft(), reply, extra)

    @property
    def up(self) -> bool:
        return self.proto is not None and self.proto.connected

    def send(self, data: bytes, token: Any, extra: Any = None, force: bool = False) -> bool:
        """Queue ``data``; False when the window is full. ``ConnectionError`` when down."""
        proto = self.proto
        if proto is None:
            raise ConnectionError("publisher not connected")
        if not proto.send_nowait(data, 0, force):
            return False
        self._tokens.append(token)
        if self._extra is not None:
            self._extra.append(extra)
        return True

    def can_send(self) -> bool:
        return self.proto is not None and self.proto.can_send()

    async def writable(self) -> None:
        if self.proto is None:
            raise ConnectionError("publisher not connected")
        await self.proto.writable()

    def call(self, *args) -> asyncio.Future:
        """A control-plane command on this connection (a Future; not subject to the window)."""
        if self.proto is None:
            raise ConnectionError("publisher not connected")
        return self.proto.call(*args)

    async def close(self) -> None:
        if self.proto is not None:
            await self.proto.close()

    def abort(self) -> None:
        if self.proto is not None:
            self.proto.abort()


class ProtoSubscriber(Subscriber):
    """A subscription on one connection (pub/sub, sharded; a Streams reader adds its loop)."""

    def __init__(self, proto: RespProtocol, heartbeats: tuple[str, ...] = (), where: Any = None) -> None:
        self._proto = proto
        self.heartbeats = heartbeats
        self._where = where  # its server (given when its CLIENT ID was asked: the output-buffer check)

    def clients(self) -> list[tuple[Any, int | None]]:
        return [] if self._where is None else [(self._where, self._proto.client_id)]

    async def wait_lost(self) -> str:
        return one_line(await self._proto.wait_closed())

    def last_alive_ns(self) -> int:
        return self._proto.last_alive_ns()

    def pause_reading(self) -> None:
        self._proto.pause_reading()

    def resume_reading(self) -> None:
        self._proto.resume_reading()

    def shrink_receive_buffer(self, nbytes: int) -> None:
        self._proto.set_receive_buffer(nbytes)

    async def close(self) -> None:
        await self._proto.close(timeout_s=1.0)

    def abort(self) -> None:
        self._proto.abort()


class SinglePublisher:
    """The publishing side of a transport that talks to one server over one :class:`PubConn`
    (``self._pub``; a never-opened one until connected): pub/sub and Streams. Down means
    ``ConnectionError``, never a silent False."""

    _pub: PubConn = PubConn(lambda *_: None)  # not connected: up is False, close/abort do nothing

    def _up(self) -> PubConn:
        pub = self._pub
        if not pub.up:
            raise (pub.proto.exception if pub.proto is not None else None) or ConnectionError("publisher not connected")
        return pub

    def can_send(self, channel: str) -> bool:
        return self._up().can_send()

    async def writable(self) -> None:
        await self._up().writable()

    async def close(self) -> None:
        await self._pub.close()

    def abort(self) -> None:
        self._pub.abort()


async def require_server(proto: RespProtocol, transport: str) -> None:
    """Raise :class:`~fanout.errors.ServerTooOld` unless the server on ``proto`` runs a version
    ``transport`` can use (``INFO server``, bounded by the connection's deadline)."""
    check_info(transport, await proto.call(b"INFO", b"server"), proto.name)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def explain(exc: BaseException, url: str) -> Exception:
    """A redis-py (control plane) error as fanout's one-line error naming the (redacted) URL."""
    from redis.exceptions import AuthenticationError, ResponseError

    safe = redact_url(url)
    msg = one_line(exc)
    if isinstance(exc, AuthenticationError) or (
        isinstance(exc, ResponseError) and ("WRONGPASS" in msg or "NOAUTH" in msg or "NOPERM" in msg)
    ):
        return AuthenticationFailed(f"Redis at {safe} refused the credentials: {msg}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RedisUnavailable(f"cannot reach Redis at {safe}: no answer in time")
    return RedisUnavailable(f"cannot reach Redis at {safe}: {msg}")
