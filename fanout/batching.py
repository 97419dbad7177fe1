"""Publisher-side batching: several envelopes in one Redis message when the publisher is ahead.

Off by default (``BridgeConfig.batch_max = 1``). With ``batch_max > 1``, envelopes published to
one channel are collected and sent as one JSON array when ``batch_max`` are waiting, or when
``batch_delay_ms`` has passed since the first (0: at the end of the current event-loop turn, so
only events that were already queued together travel together and nothing waits on a timer).
The added delay is therefore bounded by ``batch_delay_ms`` and reported in the configuration.
Receivers unpack batches transparently (``events.decode_many``); sequence numbers stay per
(source, channel) and batches on a channel are sent in order, so per-source order holds.
Every ``publish()`` still returns only when Redis acknowledged its batch, and fails within
``publish_timeout_s`` otherwise.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from fanout.events import Envelope, encode, encode_batch


class _Batch:
    __slots__ = ("envs", "fut", "timer")

    def __init__(self, fut: asyncio.Future) -> None:
        self.envs: list[Envelope] = []
        self.fut = fut
        self.timer: asyncio.Handle | None = None


class Batcher:
    def __init__(self, publish: Callable[[str, bytes], Awaitable[None]], max_events: int, max_delay_s: float) -> None:
        self._publish = publish
        self._max = max_events
        self._delay = max_delay_s
        self._open: dict[str, _Batch] = {}

    def add(self, channel: str, env: Envelope) -> asyncio.Future:
        """Queue ``env``; the returned future resolves when its batch is acknowledged."""
        batch = self._open.get(channel)
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._open[channel] = _Batch(loop.create_future())
            batch.fut.add_done_callback(_retrieve)
            if self._delay > 0:
                batch.timer = loop.call_later(self._delay, self._flush, channel, batch)
            else:
                batch.timer = loop.call_soon(self._flush, channel, batch)
        batch.envs.append(env)
        if len(batch.envs) >= self._max:
            self._flush(channel, batch)
        return batch.fut

    def _flush(self, channel: str, batch: _Batch) -> None:
        if self._open.get(channel) is not batch:
            return  # already sent
        del self._open[channel]
        if batch.timer is not None:
            batch.timer.cancel()
        envs = batch.envs
        payload = encode(envs[0]) if len(envs) == 1 else encode_batch(envs)
        asyncio.get_running_loop().create_task(self._send(channel, payload, batch.fut))

    async def _send(self, channel: str, payload: bytes, fut: asyncio.Future) -> None:
        try:
            await self._publish(channel, payload)
        except BaseException as exc:  # noqa: BLE001 - handed to every publisher of the batch
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("publish cancelled"))
            if not isinstance(exc, Exception):
                raise
        else:
            if not fut.done():
                fut.set_result(None)


def _retrieve(fut: asyncio.Future) -> None:
    """Mark a batch's failure as seen even when every publisher already timed out."""
    if not fut.cancelled():
        fut.exception()
