"""Publisher-side batching: several envelopes in one Redis message when the publisher is ahead.

Off by default (``BridgeConfig.batch_max = 1``). With ``batch_max > 1``, envelopes published to
one channel are collected and sent as one JSON array when ``batch_max`` are waiting, or when
``batch_delay_ms`` has passed since the first (0: at the end of the current event-loop turn, so
only events that were already queued together travel together and nothing waits on a timer).
The added delay is therefore bounded by ``batch_delay_ms`` and reported in the configuration.
Receivers unpack batches transparently (``events.parse_message``); sequence numbers stay per
(source, channel) and batches on a channel are sent in order, so per-source order holds.
Batches are a fanout-only extension: the seed's bridge reads one object per message, so
``compat="seed"`` refuses ``batch_max > 1``. With signing, a batch is signed as one message.

No task and no Future per batch: a batch is one command on the publishing connection whose
token is the :class:`Batch` itself; when Redis answers, the bridge settles every event in it
(its callback, or the Future of an awaiting ``publish()``). The one timer handle per open batch
(``call_soon`` or ``call_later``) is the only thing scheduled.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable


class Batch:
    """One batch on its way: the encoded envelopes and the token of each."""

    __slots__ = ("parts", "tokens", "handle")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.tokens: list[Any] = []
        self.handle: asyncio.Handle | None = None


class Batcher:
    """``add(channel, payload, token)``; ``send(channel, payload, batch)`` queues one message
    (past a full window: the bridge checked room before adding); ``failed(batch, exc)`` when
    the publishing side is down at flush time."""

    def __init__(self, send: Callable[[str, bytes, Batch], Any], failed: Callable[[Batch, Exception], None],
                 max_events: int, max_delay_s: float, seal: Callable[[bytes, str], bytes] | None = None) -> None:
        self._send = send
        self._seal = seal
        self._failed = failed
        self._max = max_events
        self._delay = max_delay_s
        self._open: dict[str, Batch] = {}

    def add(self, channel: str, payload: bytes, token: Any) -> None:
        batch = self._open.get(channel)
        if batch is None:
            batch = self._open[channel] = Batch()
            loop = asyncio.get_running_loop()
            batch.handle = (loop.call_later(self._delay, self._flush, channel, batch) if self._delay > 0
                            else loop.call_soon(self._flush, channel, batch))
        batch.parts.append(payload)
        batch.tokens.append(token)
        if len(batch.parts) >= self._max:
            self._flush(channel, batch)

    def _flush(self, channel: str, batch: Batch) -> None:
        if self._open.get(channel) is not batch:
            return  # already sent
        del self._open[channel]
        if batch.handle is not None:
            batch.handle.cancel()
            batch.handle = None
        parts = batch.parts
        payload = parts[0] if len(parts) == 1 else b"[" + b",".join(parts) + b"]"
        if self._seal is not None:  # signing: the batch as one message, for its channel (fanout.signing)
            payload = self._seal(payload, channel)
        try:
            self._send(channel, payload, batch)
        except ConnectionError as exc:
            self._failed(batch, exc)

    def flush_all(self) -> None:
        """Send every open batch now (closing)."""
        for channel, batch in list(self._open.items()):
            self._flush(channel, batch)

    def drop_all(self, exc: Exception) -> None:
        """Fail every open batch (the bridge is aborting)."""
        for channel, batch in list(self._open.items()):
            del self._open[channel]
            if batch.handle is not None:
                batch.handle.cancel()
            self._failed(batch, exc)
