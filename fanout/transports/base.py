"""The one small interface every transport implements.

The bridge knows events (envelopes, self-filtering, sequence checks, handlers, reconnect
policy); a transport knows Redis commands. A transport has one publishing side and opens
subscribers; a subscriber hands back raw ``(channel, payload)`` pairs and raises
``ConnectionError`` when its connection is gone, after which the bridge opens a new one.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from fanout.capabilities import check_info


@dataclass(slots=True)
class Loss:
    """Events a transport knows were lost before the bridge could see them."""

    channel: str
    count: int
    reason: str


class Subscriber(abc.ABC):
    @abc.abstractmethod
    async def read(self, timeout_s: float) -> list[tuple[str, bytes]]:
        """Wait at most ``timeout_s`` for messages; ``[]`` when none came.

        Raises ``ConnectionError`` when the connection is lost or stops answering.
        """

    def take_losses(self) -> list[Loss]:
        """Losses the transport detected itself (e.g. a trimmed stream); cleared on read."""
        return []

    def shrink_receive_buffer(self, nbytes: int) -> None:
        """Fault injection: cap the socket's kernel receive buffer, so a consumer that stops
        reading backs up into Redis quickly instead of into megabytes of kernel memory."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Unsubscribe and close politely (bounded)."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the connection at once, without a goodbye (a crash)."""


class Transport(abc.ABC):
    name: str = "?"

    def __init__(self, config: Any) -> None:  # a fanout.config.BridgeConfig (which names the transports)
        self.config = config

    @abc.abstractmethod
    async def connect_publisher(self) -> None:
        """Open (and check) the publishing connection; raise on bad URL or credentials."""

    @abc.abstractmethod
    async def publish(self, channel: str, payload: bytes) -> None:
        """Send one message; raise on failure (the bridge bounds the time)."""

    @abc.abstractmethod
    async def open_subscriber(self, channels: list[str]) -> Subscriber:
        """Subscribe to ``channels``; return once the server has confirmed every one."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the publishing side (bounded)."""

    def abort(self) -> None:
        """Drop the publishing side at once (a crash). Default: nothing to drop."""

    #: whether this transport has checked the server's version yet (once is enough)
    _server_checked = False

    async def check_server(self, conn, url: str) -> None:
        """Once per transport: ``INFO server`` on ``conn`` (a connected redis-py async Connection),
        then :func:`fanout.capabilities.check_info` for this transport, so a server too old for it
        raises :class:`~fanout.errors.ServerTooOld` (one line) instead of an unknown command later."""
        if self._server_checked:
            return
        await conn.send_command("INFO", "server", check_health=False)
        check_info(self.name, await conn.read_response(), url)
        self._server_checked = True
