"""The one small interface every transport implements, on the lean connection layer
(:mod:`fanout.transports.resp`).

The bridge knows events (envelopes, self-filtering, sequence checks, handlers, reconnect
policy); a transport knows Redis commands. Both directions are push, not pull:

* **Publishing**: ``publish_nowait(channel, payload, token)`` queues one command on the
  publishing connection and returns at once (False: the in-flight window is full, ``await
  writable()``); its outcome goes to ``transport.on_ack(token, error_or_None)``, set by the
  bridge, exactly once per accepted token: acknowledged, error reply, or failed with the
  connection (the connection's one deadline fails everything in flight when Redis stops
  answering). ``ConnectionError`` from ``publish_nowait`` means the publishing side is down:
  ``connect_publisher()`` opens it again.
* **Receiving**: ``open_subscriber(channels, sink)`` returns once every channel is confirmed;
  from then on the transport calls ``sink.on_message(channel, payload)`` (both bytes) from the
  connection's ``data_received``, ``sink.on_loss(Loss)`` for what it knows was lost,
  ``sink.on_save_refused(why)`` when Redis refused to save its read position (Streams: an error
  reply, e.g. OOM; not a lost connection: reading goes on, the save is retried), and awaits
  ``sink.settle()`` where it must not run ahead of the application (Streams: before the next
  XREAD, so a position is saved only once its batch was handled). ``Subscriber.wait_lost()``
  returns why the subscription ended; the bridge then opens a new one.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

#: replies one publishing connection may have outstanding (a batch is one)
PUBLISH_WINDOW = 1000



@dataclass(slots=True)
class Loss:
    """Events a transport knows were lost before the bridge could see them."""

    channel: str
    count: int
    reason: str


class Sink(Protocol):
    """What a subscriber feeds (the bridge). A transport that knows when Redis took a message (a
    stream entry's id) sets ``stamp_ms`` to it before ``on_message`` (signed messages are judged
    stale from then); others leave it 0 (judged from when they are read)."""

    stamp_ms: int

    def on_message(self, channel: bytes, payload: bytes) -> None: ...
    def on_loss(self, loss: Loss) -> None: ...
    def on_save_refused(self, why: str) -> None: ...
    async def settle(self) -> None: ...


class Subscriber(abc.ABC):
    #: the channels (stream keys) on which this subscription reads its bridge's own heartbeats (heartbeat_s
    #: on: one, or one per node for sharded pub/sub); the bridge publishes one on each per beat
    heartbeats: tuple[str, ...] = ()

    def clients(self) -> list[tuple[Any, int | None]]:
        """``(where, client_id)`` of each subscribing connection: its server (a URL or connection
        parameters) and the ``CLIENT ID`` the server gave it, None if refused; asked only with the
        output-buffer check on (:mod:`fanout.outbuf`: pub/sub, sharded). Default: none known."""
        return []

    @abc.abstractmethod
    async def wait_lost(self) -> str:
        """Return why the subscription ended (connection lost, silent, slot moved ...)."""

    def last_alive_ns(self) -> int:
        """When (``time.time_ns()``) the server last sent something on this subscription: its
        last sign of life, where an outage begins (default: now)."""
        return time.time_ns()

    def pause_reading(self) -> None:
        """Fault injection (slow consumer): stop reading; the backlog builds up in Redis."""

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""

    def shrink_receive_buffer(self, nbytes: int) -> None:
        """Fault injection: cap the socket's kernel receive buffer, so a consumer that stops
        reading backs up into Redis quickly instead of into megabytes of kernel memory."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Unsubscribe and close politely (bounded)."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the connection at once, without a goodbye (a crash)."""


def _no_ack(token: Any, error: Exception | None) -> None:
    return None


class Transport(abc.ABC):
    name: str = "?"

    def __init__(self, config: Any) -> None:  # a fanout.config.BridgeConfig (which names the transports)
        self.config = config
        self.on_ack: Callable[[Any, Exception | None], None] = _no_ack
        #: the master Sentinel named last (set by the bridge; the config is frozen), or None
        self.master_url: str | None = None

    def url(self) -> str:
        """Where to connect: the master Sentinel named last, else the configured URL."""
        return self.master_url or self.config.resolved_url()

    @abc.abstractmethod
    async def connect_publisher(self) -> None:
        """Open (and check) the publishing side, or reopen what of it is down; raise
        :class:`~fanout.errors.RedisUnavailable` (one line) on a bad URL, credentials, a dead server."""

    @abc.abstractmethod
    def publish_nowait(self, channel: str, payload: bytes, token: Any, force: bool = False) -> bool:
        """Queue one message (see the module doc). ``force``: past a full window (a batch flush)."""

    @abc.abstractmethod
    def can_send(self, channel: str) -> bool:
        """Whether :meth:`publish_nowait` would accept a message for ``channel`` now."""

    @abc.abstractmethod
    async def writable(self) -> None:
        """Return when the window has room again; ``ConnectionError`` when the side is down."""

    @abc.abstractmethod
    async def open_subscriber(self, channels: list[str], sink: Sink) -> Subscriber:
        """Subscribe to ``channels``; return once the server has confirmed every one."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the publishing side (bounded)."""

    def abort(self) -> None:
        """Drop the publishing side at once (a crash). Default: nothing to drop."""
