"""The publishing half of a bridge (:class:`Publishing`, mixed into
:class:`~fanout.bridge.RedisEventBridge`; its state is set up there).

Per ``publish_nowait``: the envelope's bytes from a constant per-stream header
(:class:`~fanout.events.EnvelopeWriter`) and one ``orjson.dumps`` of the data, the next seq,
and one command queued on the transport's publishing connection with the caller's token; no
task, Future, timer or dict. The answer comes back through ``transport.on_ack`` ->
:meth:`Publishing._on_ack`: counted, then handed to the ``on_published`` callback (or the
Future of an awaiting ``publish()``, or every event of a batch). The connection's one deadline
(``publish_timeout_s``) fails everything in flight when Redis stops answering; a publishing
side that is down is reopened by one background task, at most every ``reconnect_initial_s``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import hiredis
import orjson

from fanout.channels import partition_of
from fanout.errors import NotPublisher, PublishError, RedisUnavailable
from fanout.events import Envelope, EnvelopeWriter
from fanout.redact import redact_text

log = logging.getLogger("fanout.bridge")

_dumps, _write, _time_ns = orjson.dumps, EnvelopeWriter.write, time.time_ns


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


_one_line = one_line


class _Awaited:
    """The token of an awaiting ``publish()``: its Future."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut


class Publishing:
    def on_published(self, callback: Callable[[Any, PublishError | None], Any]) -> None:
        """``callback(token, None)`` when Redis acknowledged a ``publish_nowait``, or
        ``callback(token, PublishError)`` when it failed; exactly once per accepted event."""
        self._on_published = callback

    # -- publishing --------------------------------------------------------------------
    def _check_publisher(self) -> None:
        if not self.config.enable_publishing:
            raise NotPublisher(f"instance {self._id_str} was built with enable_publishing=False; it cannot publish")
        if self._closed or not self._started:
            raise PublishError(f"instance {self._id_str}: publish on a bridge that is not started (use 'async with')")

    def _route(self, event_type: str, data: Any):
        r = self._routes.get(event_type)
        if r is None:
            head = self._writer.head
            if self.config.shard_partitions > 1:  # seq per channel (partition): each one's numbers contiguous
                r = [(ch, f"{event_type}.{p}", head(event_type, f"{event_type}.{p}"))
                     for p, ch in enumerate(self.config.channels(event_type))]
            else:
                r = (self.config.channel(event_type), event_type, head(event_type, event_type))
            self._routes[event_type] = r
        if type(r) is list:
            return r[partition_of(data.get("symbol") if type(data) is dict else None, len(r))]
        return r

    def _encode(self, event_type: str, data: Any, intended_ns: int | None):
        channel, stream, head = self._route(event_type, data)
        try:
            body = _dumps(data)
        except TypeError as exc:  # orjson.JSONEncodeError: nothing sent, no seq used
            self._counts["errors"] += 1
            raise PublishError(f"instance {self._id_str}: the {event_type} event's data is not JSON: {exc}") from None
        seq = self._seq.get(stream, 0) + 1
        self._seq[stream] = seq
        ts_ns = _time_ns()
        return channel, stream, seq, ts_ns, _write(head, seq, ts_ns, intended_ns, body)

    def publish_nowait(self, event_type: str, data: Any, *, token: Any = None,
                       intended_ns: int | None = None) -> str | None:
        """Queue one event and return its envelope id at once; the outcome goes to the
        :meth:`on_published` callback. None: the in-flight window is full, nothing was sent
        (``await writable()``, then call again). Raises :class:`~fanout.errors.PublishError`
        (counted; its seq is used, so receivers see the gap) while the publishing side is down."""
        if not self._connected_pub or self._closed:
            self._check_publisher()
        channel, stream, seq, ts_ns, payload = self._encode(event_type, data, intended_ns)
        t = self._transport
        try:
            if self._batcher is None:
                if not t.publish_nowait(channel, payload, token):
                    self._seq[stream] = seq - 1
                    return None
            elif t.can_send(channel):
                self._batcher.add(channel, payload, token)
            else:
                self._seq[stream] = seq - 1
                return None
        except ConnectionError as exc:
            err = PublishError(str(self._failed(channel, exc)))
            err.envelope_id = f"{self.epoch}:{stream}:{seq}"  # its seq is used: receivers see the gap
            raise err from None
        return f"{self.epoch}:{stream}:{seq}"

    async def writable(self) -> None:
        """Return when :meth:`publish_nowait` has room again (bounded by ``publish_timeout_s``;
        reopens a publishing side that is down); raise :class:`~fanout.errors.PublishError`."""
        self._check_publisher()
        try:
            async with asyncio.timeout(self.config.publish_timeout_s):
                try:
                    await self._transport.writable()
                except ConnectionError:
                    await self._reopen()
        except TimeoutError:
            raise PublishError(f"instance {self._id_str}: no room to publish on {self.config.safe_url} "
                               f"within {self.config.publish_timeout_s:g}s") from None
        except (ConnectionError, RedisUnavailable) as exc:
            raise PublishError(redact_text(f"publish on {self.config.safe_url} failed: {_one_line(exc)}")) from None

    async def publish(self, event_type: str, data: Any, *, intended_ns: int | None = None) -> Envelope:
        """Publish one event; return the envelope once Redis acknowledged it. Fails within
        ``publish_timeout_s`` (plus ``batch_delay_ms`` when batching) with PublishError.

        ``intended_ns`` is the time the event was due (open-loop load); it travels as ``ti_ns``."""
        self._check_publisher()
        channel, stream, seq, ts_ns, payload = self._encode(event_type, data, intended_ns)
        env = Envelope(type=event_type, data=data, timestamp=ts_ns // 1_000_000, source=self.instance_id,
                       seq=seq, epoch=self.epoch, id=f"{self.epoch}:{stream}:{seq}", ts_ns=ts_ns, ti_ns=intended_ns)
        loop = asyncio.get_running_loop()
        aw = _Awaited(loop.create_future())
        t, limit = self._transport, self.config.publish_timeout_s
        deadline = loop.time() + limit
        try:
            while True:
                try:
                    if self._batcher is None:
                        if t.publish_nowait(channel, payload, aw):
                            break
                    elif t.can_send(channel):
                        self._batcher.add(channel, payload, aw)
                        break
                    async with asyncio.timeout_at(deadline):  # only when held back: full window
                        await t.writable()
                except ConnectionError:
                    async with asyncio.timeout_at(deadline):  # down: reopen it, bounded
                        await self._reopen()
            await aw.fut  # bounded by the connection's deadline (publish_timeout_s)
        except TimeoutError:
            raise self._publish_failed(env, channel, f"no answer within {limit:g}s") from None
        except (ConnectionError, OSError, RedisUnavailable) as exc:
            raise self._publish_failed(env, channel, self._why(exc)) from None
        except hiredis.ReplyError as exc:  # an error reply (NOPERM, MOVED twice, CLUSTERDOWN ...)
            raise self._publish_failed(env, channel, _one_line(exc)) from None
        return env

    def _why(self, exc: BaseException) -> str:
        msg = _one_line(exc)
        if msg.startswith("no reply within"):
            return f"no answer within {self.config.publish_timeout_s:g}s"
        return msg

    def _publish_failed(self, env: Envelope | None, channel: str | None, why: str) -> PublishError:
        """Count one failed publish, say it (loudly once per outage), reopen in the background."""
        self._counts["errors"] += 1
        self._counts["publish_errors"] += 1
        first = self._connected_pub
        self._connected_pub = False
        where = f"publish to {channel} on" if channel else "publish on"
        msg = redact_text(f"{where} {self.config.safe_url} failed: {why}")
        self.last_error = msg
        log.log(logging.WARNING if first else logging.DEBUG, "bridge %s: %s", self._id_str, msg)
        if not self._closed:
            self._kick_publisher()
        # The sequence number was used: receivers will see a gap, which is the truth.
        err = PublishError(msg)
        err.envelope = env
        return err

    def _failed(self, channel: str | None, exc: BaseException) -> PublishError:
        if exc is self._last_exc and self._last_err is not None:  # one connection failure, many events
            self._counts["errors"] += 1
            self._counts["publish_errors"] += 1
            if not self._closed:
                self._kick_publisher()
            return self._last_err
        err = self._publish_failed(None, channel, self._why(exc))
        self._last_exc, self._last_err = exc, err
        return err

    def _on_ack(self, token: Any, error: Exception | None) -> None:
        """The transport's answer for one accepted message (an event or a batch of them)."""
        if type(token) is _Awaited:
            self._settle(token, error)
        elif self._batcher is not None and type(token) is self._batch_type:
            for tok in token.tokens:
                self._settle(tok, error)
        else:
            self._settle(token, error)

    def _settle(self, token: Any, error: Exception | None) -> None:
        if error is None:
            self._counts["published"] += 1
            self._connected_pub = True
            if type(token) is _Awaited:
                if not token.fut.done():
                    token.fut.set_result(None)
            elif self._on_published is not None:
                self._on_published(token, None)
        elif type(token) is _Awaited:  # the awaiting publish() counts and explains it
            if not token.fut.done():
                token.fut.set_exception(error)
        else:
            err = self._failed(None, error)
            if self._on_published is not None:
                self._on_published(token, err)

    def _send_batch(self, channel: str, payload: bytes, batch) -> None:
        self._transport.publish_nowait(channel, payload, batch, force=True)

    def _batch_failed(self, batch, exc: Exception) -> None:
        self._on_ack(batch, exc)

    def _kick_publisher(self) -> None:
        if self._pub_task is None or self._pub_task.done():
            self._pub_task = asyncio.get_running_loop().create_task(self._reopen_publisher(),
                                                                    name=f"fanout-publisher-{self._id_str}")

    async def _reopen(self) -> None:
        """Wait for the publishing side to be reopened (one attempt); raise why it was not."""
        self._kick_publisher()
        exc = await asyncio.shield(self._pub_task)
        if exc is not None:
            raise exc

    async def _reopen_publisher(self) -> Exception | None:
        """One attempt at reopening the publishing side, at most every ``reconnect_initial_s``;
        returns (not raises) why it failed."""
        wait = self._pub_tried + self.config.reconnect_initial_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._pub_tried = time.monotonic()
        try:
            if self.config.sentinels:
                await self._follow_master()
            await self._transport.connect_publisher()
        except (RedisUnavailable, ConnectionError, OSError) as exc:
            log.debug("bridge %s: publisher not reopened: %s", self._id_str, redact_text(_one_line(exc)))
            return exc
        self._connected_pub = True
        return None

