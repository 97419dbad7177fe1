"""The publishing half of a bridge (:class:`Publishing`, mixed into
:class:`~fanout.bridge.RedisEventBridge`; its state is set up there).

Per ``publish_nowait``: the envelope's bytes from a constant per-type header
(:class:`~fanout.events.EnvelopeWriter`) and one ``orjson.dumps`` of the data, the next seq of
its stream (:class:`Route`), the signature when signing, and one command queued on the
transport's publishing connection with a pooled :class:`Sent` (the caller's token, the
stream, the seq) as its token; no task, Future, timer or dict. The answer comes back through
``transport.on_ack`` -> :meth:`Publishing._on_ack`: counted, then handed to the
``on_published`` callback (or the Future of an awaiting ``publish()``, or every event of a
batch). The connection's one deadline (``publish_timeout_s``) fails everything in flight when
Redis stops answering; a publishing side that is down is reopened by one background task, at
most every ``reconnect_initial_s``.

Every seq that failed (raised at once, or failed in flight) is *void*: the next envelopes on
that stream carry ``"void":[[first,last],...]`` until one of them was acknowledged and
``VOID_HOLD_S`` more seconds passed (receivers that were reconnecting meanwhile still hear
it), so receivers count those events as ``unsent``, not as transit ``gaps``.

Every :class:`~fanout.errors.PublishError` says what is known of its publish (:func:`outcome`):
``maybe_sent`` when the command had been written to the connection and then went unanswered or
the connection died (Redis may have run it: a receiver may get the event although its seq is
void), not when it never left (never handed to the connection, or :class:`NeverSent`: queued but
not yet written when the connection ended) nor when Redis answered with an error reply (``refused``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import hiredis
import orjson

from fanout.channels import partition_of
from fanout.errors import Backpressure, ConfigError, NotPublisher, PublishError, RedisUnavailable
from fanout.events import MAX_VOID_RANGES, Envelope, EnvelopeWriter, void_json
from fanout.heartbeat import Beat
from fanout.histograms import _BOUNDS_S, index as _index
from fanout.redact import redact_text
from fanout.transports.frames import NeverSent

log = logging.getLogger("fanout.bridge")

_dumps, _write, _time_ns, _perf = orjson.dumps, EnvelopeWriter.write, time.time_ns, time.perf_counter

#: how long void seqs are still announced after an envelope carrying them was acknowledged
VOID_HOLD_S = 10.0
#: refused publishes (a full window) are said once per burst, at most this often
REFUSED_QUIET_S = 10.0
#: distinct error types kept in ``publish_error_types()``; any further one is counted as ``_OTHER``
MAX_ERROR_TYPES = 16


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


_one_line = one_line


def error_type(exc: BaseException) -> str:
    """A failed publish's kind, low-cardinality (OpenTelemetry's ``error.type``): ``timeout`` when Redis did
    not answer within the bound, else the exception's class name (``ConnectionResetError``, ``NeverSent``,
    ``ReplyError`` ...)."""
    if isinstance(exc, TimeoutError) or (isinstance(exc, ConnectionError) and str(exc).startswith("no reply within")):
        return "timeout"
    return exc.__class__.__name__


def outcome(exc: BaseException, handed: bool = True) -> tuple[bool, bool]:
    """``(maybe_sent, refused)`` of a publish that failed with ``exc``. ``handed``: it had been
    queued on the publishing connection (else it surely never left); then an error reply means
    Redis refused it, :class:`NeverSent` that the connection ended before writing it, and any other
    failure (no answer in time, the connection lost) that Redis may have run it."""
    if isinstance(exc, hiredis.ReplyError):
        return False, True
    return handed and not isinstance(exc, NeverSent), False


class VoidRange:
    """Seqs ``first`` … ``last`` of one stream that never reached Redis (or are not known to have),
    announced in the next envelopes: ``carrier`` is the first envelope seq that carried the range as
    it is now (-1: not carried yet), ``acked_at`` when such an envelope was acknowledged (monotonic
    s; 0: not yet). Kept until ``VOID_HOLD_S`` after ``acked_at``."""

    __slots__ = ("first", "last", "carrier", "acked_at")

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last, self.carrier, self.acked_at = first, last, -1, 0.0

    def __repr__(self) -> str:
        return f"VoidRange({self.first}, {self.last}, carrier={self.carrier}, acked_at={self.acked_at})"


class Route:
    """One stream (an event type, or one partition of it): its channel, header, seq and the
    :class:`VoidRange` s it announces (``void``, and their wire form ``void_json``)."""

    __slots__ = ("channel", "stream", "head", "seq", "void", "void_json", "sign", "took")

    def __init__(self, channel: str, stream: str, head: bytes, sign=None, took: list | None = None) -> None:
        self.channel, self.stream, self.head = channel, stream, head
        self.took = took            # its type's publish-duration histogram (fanout.histograms)
        self.sign = sign            # signing one event per message: this channel's bound signer (fanout.signing)
        self.seq = 0
        self.void: list[VoidRange] = []
        self.void_json = b""

    def carry(self, seq: int) -> bytes:
        """The ``void`` field for envelope ``seq`` (which now carries every range)."""
        for r in self.void:
            if r.carrier < 0:
                r.carrier = seq
        return self.void_json

    def add_void(self, seq: int) -> None:
        """``seq`` never reached Redis (or is not known to have). Ranges that come to touch are
        joined ([1,1] and [3,3] plus 2 is [1,3]), so only separate holes spend ``MAX_VOID_RANGES``."""
        v = self.void  # sorted by first, disjoint and never adjacent
        for i, r in enumerate(v):
            if r.first <= seq <= r.last:
                return
            if r.last == seq - 1:  # grown (announced again until acknowledged), joined to the next if it touches
                if i + 1 < len(v) and v[i + 1].first == seq + 1:
                    r.last = v[i + 1].last
                    del v[i + 1]
                else:
                    r.last = seq
                r.carrier, r.acked_at = -1, 0.0
                break
            if r.first == seq + 1:  # (no range ends at seq - 1: it would have come first)
                r.first, r.carrier, r.acked_at = seq, -1, 0.0
                break
        else:
            v.append(VoidRange(seq, seq))
            v.sort(key=_first)
            if len(v) > MAX_VOID_RANGES:  # the oldest: receivers will count them as gaps
                del v[0]
        self._encode()

    def acked(self, seq: int) -> None:
        """Envelope ``seq`` reached Redis: the ranges it carried are announced; drop old ones."""
        now = time.monotonic()
        keep = []
        for r in self.void:
            if r.carrier >= 0 and seq >= r.carrier and not r.acked_at:
                r.acked_at = now
            if not r.acked_at or now - r.acked_at < VOID_HOLD_S:
                keep.append(r)
        if len(keep) != len(self.void):
            self.void = keep
            self._encode()

    def _encode(self) -> None:
        self.void_json = void_json([(r.first, r.last) for r in self.void])


def _first(r: VoidRange) -> int:
    return r.first


class Sent:
    """A message on its way (pooled: no allocation per event): the caller's token, stream, seq and
    when it was handed to the connection (``t``, monotonic s: the publish-duration histogram)."""

    __slots__ = ("token", "route", "seq", "t")

    def __init__(self) -> None:
        self.token: Any = None
        self.route: Route | None = None
        self.seq = 0
        self.t = 0.0


class _Awaited:
    """The token of an awaiting ``publish()``: its Future."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut


class Publishing:
    def on_published(self, callback: Callable[[Any, PublishError | None], Any]) -> Callable:
        """Add ``callback``: ``callback(token, None)`` when Redis acknowledged a ``publish_nowait``, or
        ``callback(token, PublishError)`` when it failed; exactly once per accepted event. Callbacks
        add up, like :meth:`on` (each is called, in the order added); returns ``callback``."""
        if not callable(callback):
            raise TypeError(f"on_published: {callback!r} is not callable")
        self._on_published = (*self._on_published, callback)
        return callback

    async def flush(self) -> None:
        """Return when every publish accepted so far is settled: acknowledged by Redis or failed (its
        ``on_published`` callbacks called, its ``publish()`` answered). Open batches are sent first.
        Bounded: what Redis does not answer fails within ``publish_timeout_s``."""
        if self._batcher is not None:
            self._batcher.flush_all()
        while self._inflight > 0:
            if self._flushed is None or self._flushed.done():
                self._flushed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._flushed)

    def _refuse(self, strict: bool) -> None:
        """The in-flight window is full: count it, say it once per burst (until a publish is accepted
        again); ``strict``: raise."""
        n = self._counts["refused"] = self._counts["refused"] + 1
        if not self._refusing:
            self._refusing = True
            now = time.monotonic()
            if now - self._refused_at >= REFUSED_QUIET_S:
                self._refused_at = now
                log.warning("bridge %s: publish refused: the in-flight window is full (publish_nowait returned None: "
                            "nothing sent; await writable() and publish again, or use strict=True); %d refused so "
                            "far (metrics()['refused']; said once per burst, at most every %g s)", self._id_str, n,
                            REFUSED_QUIET_S)
        if strict:
            raise Backpressure(f"instance {self._id_str}: the in-flight window is full; "
                               "await writable() and publish it again")

    # -- publishing --------------------------------------------------------------------
    def _check_publisher(self) -> None:
        if not self.config.enable_publishing:
            raise NotPublisher(f"instance {self._id_str} was built with enable_publishing=False; it cannot publish")
        if self._closed:
            raise PublishError(f"instance {self._id_str}: publish on a closed bridge (it was closed or aborted)")
        if not self._started:
            raise PublishError(f"instance {self._id_str}: publish on a bridge that is not started (use 'async with')")

    def _route(self, event_type: str, data: Any) -> Route:
        r = self._routes.get(event_type)
        if r is None:  # (once per type) a type nobody here subscribes to goes to a channel nobody reads
            if event_type not in self.config.event_types:
                raise ConfigError(f"publish({event_type!r}): this bridge's event types are "
                                  f"{', '.join(self.config.event_types)} (BridgeConfig.event_types)")
            head = self._writer.head(event_type)
            signer = self.signer if self._batcher is None else None  # batches are signed whole, by the Batcher

            def sign(channel: str):
                return None if signer is None else signer.bind(channel).sign

            if self.config.shard_partitions > 1:  # seq per channel (partition): each one's numbers contiguous
                took = self._hist.of("publish_duration", event_type) if self.config.histograms else None
                r = [Route(ch, f"{event_type}.{p}", head, sign(ch), took)
                     for p, ch in enumerate(self.config.channels(event_type))]
            else:
                ch = self.config.channel(event_type)
                r = Route(ch, event_type, head, sign(ch),
                          self._hist.of("publish_duration", event_type) if self.config.histograms else None)
            self._routes[event_type] = r
        if type(r) is list:
            return r[partition_of(data.get("symbol") if type(data) is dict else None, len(r))]
        return r

    def _encode(self, event_type: str, data: Any, intended_ns: int | None):
        r = self._route(event_type, data)
        try:
            body = _dumps(data)
        except TypeError as exc:  # orjson.JSONEncodeError: nothing sent, no seq used
            self._counts["errors"] += 1
            raise PublishError(f"instance {self._id_str}: the {event_type} event's data is not JSON: {exc}") from None
        seq = r.seq = r.seq + 1
        ts_ns = _time_ns()
        payload = _write(r.head, seq, ts_ns, intended_ns, body, r.carry(seq) if r.void else b"")
        if r.sign is not None:
            payload = r.sign(payload)
        return r, seq, ts_ns, payload

    def _sent(self, token: Any, r: Route, seq: int) -> Sent:
        free = self._free
        s = free.pop() if free else Sent()
        s.token, s.route, s.seq, s.t = token, r, seq, _perf()
        return s

    def publish_nowait(self, event_type: str, data: Any, *, token: Any = None,
                       intended_ns: int | None = None, strict: bool = False) -> str | None:
        """Queue one event and return its envelope id at once; the outcome goes to the
        :meth:`on_published` callbacks. None: the in-flight window is full, nothing was sent
        (counted in ``refused``, said once per burst; ``await writable()``, then call again); with
        ``strict=True`` that raises :class:`~fanout.errors.Backpressure` instead. Raises
        :class:`~fanout.errors.PublishError` (counted; its seq is void: announced to receivers as
        unsent) while the publishing side is down."""
        if not self._connected_pub or self._closed:
            self._check_publisher()
        r, seq, _, payload = self._encode(event_type, data, intended_ns)
        free = self._free
        s = free.pop() if free else Sent()  # (Publishing._sent, inlined: the hot path)
        s.token, s.route, s.seq, s.t = token, r, seq, _perf()
        t = self._transport
        try:
            if self._batcher is None:
                if not t.publish_nowait(r.channel, payload, s):
                    r.seq = seq - 1
                    s.token = None
                    self._free.append(s)
                    self._refuse(strict)
                    return None
            elif t.can_send(r.channel):
                self._batcher.add(r.channel, payload, s)
            else:
                r.seq = seq - 1
                s.token = None
                self._free.append(s)
                self._refuse(strict)
                return None
        except ConnectionError as exc:  # the publishing side is down: nothing was queued
            s.token = None
            self._free.append(s)
            r.add_void(seq)
            err = PublishError(self._failed(r.channel, exc, handed=False).reason)
            err.envelope_id = f"{self.epoch}:{r.stream}:{seq}"
            raise err from None
        self._inflight += 1
        if self._refusing:
            self._refusing = False
        return f"{self.epoch}:{r.stream}:{seq}"

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
            raise PublishError(f"instance {self._id_str}: no room to publish on {self.safe_url} "
                               f"within {self.config.publish_timeout_s:g}s") from None
        except (ConnectionError, RedisUnavailable) as exc:
            raise PublishError(redact_text(f"publish on {self.safe_url} failed: {_one_line(exc)}")) from None

    async def publish(self, event_type: str, data: Any, *, intended_ns: int | None = None) -> Envelope:
        """Publish one event; return the envelope once Redis acknowledged it. Fails within
        ``publish_timeout_s`` (plus ``batch_delay_ms`` when batching) with PublishError.

        ``intended_ns`` is the time the event was due (open-loop load); it travels as ``lag``."""
        self._check_publisher()
        r, seq, ts_ns, payload = self._encode(event_type, data, intended_ns)
        env = Envelope(event_type, data, ts_ns // 1_000_000, self.instance_id, seq, self.epoch, None, ts_ns,
                       intended_ns, r.stream)
        loop = asyncio.get_running_loop()
        aw = _Awaited(loop.create_future())
        s = self._sent(aw, r, seq)
        t, limit, channel = self._transport, self.config.publish_timeout_s, r.channel
        deadline = loop.time() + limit
        sent = False
        try:
            while True:
                try:
                    if self._batcher is None:
                        if t.publish_nowait(channel, payload, s):
                            break
                    elif t.can_send(channel):
                        self._batcher.add(channel, payload, s)
                        break
                    async with asyncio.timeout_at(deadline):  # only when held back: full window
                        await t.writable()
                except ConnectionError:
                    async with asyncio.timeout_at(deadline):  # down: reopen it, bounded
                        await self._reopen()
            sent = True
            self._inflight += 1
            await aw.fut  # bounded by the connection's deadline (publish_timeout_s)
        except BaseException as exc:
            if not sent:  # never handed over: its seq is void (once sent, _settle did it)
                s.token = None
                self._free.append(s)
                r.add_void(seq)
            if isinstance(exc, TimeoutError):  # held back (no room, reopening) until the deadline: never sent
                raise self._publish_failed(env, channel, f"no answer within {limit:g}s", outcome(exc, False),
                                           "timeout") from None
            if isinstance(exc, (ConnectionError, OSError, RedisUnavailable)):
                raise self._publish_failed(env, channel, self._why(exc), outcome(exc, sent), error_type(exc)) from None
            if isinstance(exc, hiredis.ReplyError):  # an error reply (NOPERM, MOVED twice, CLUSTERDOWN ...)
                raise self._publish_failed(env, channel, _one_line(exc), outcome(exc), error_type(exc)) from None
            raise
        return env

    def _why(self, exc: BaseException) -> str:
        msg = _one_line(exc)
        if msg.startswith("no reply within"):
            return f"no answer within {self.config.publish_timeout_s:g}s"
        return msg

    def publish_error_types(self) -> dict[str, int]:
        """Failed publishes by kind (:func:`error_type`): a fresh dict whose values add up to
        ``metrics()['publish_errors']``; at most :data:`MAX_ERROR_TYPES` kinds, any further one counted as
        ``_OTHER``. Kept only on the error path (nothing per successful publish)."""
        return dict(self._error_types)

    def _count_error_type(self, etype: str) -> None:
        kinds = self._error_types
        if etype not in kinds and len(kinds) >= MAX_ERROR_TYPES:
            etype = "_OTHER"
        kinds[etype] = kinds.get(etype, 0) + 1

    def _publish_failed(self, env: Envelope | None, channel: str | None, why: str,
                        known: tuple[bool, bool] = (False, False), etype: str = "_OTHER") -> PublishError:
        """Count one failed publish (and its kind, ``etype``: :func:`error_type`), say it (loudly once per
        outage, or per refusal until a publish is acknowledged), reopen in the background. ``known``: its
        :func:`outcome`, ``(maybe_sent, refused)``: an error reply is Redis's answer on a connection that is
        up, so it leaves ``connected`` alone."""
        self._counts["errors"] += 1
        self._counts["publish_errors"] += 1
        self._count_error_type(etype)
        where = f"publish to {channel} on" if channel else "publish on"
        msg = redact_text(f"{where} {self.safe_url} failed: {why}")
        if known[1]:
            first = msg != self._refused_said
            self._refused_said = msg
        else:
            first = self._connected_pub
            self._connected_pub = False
        self.last_error = msg
        # The sequence number is void: the next envelopes on its stream announce it to receivers.
        err = PublishError(msg, maybe_sent=known[0], refused=known[1])
        err.envelope = env
        log.log(logging.WARNING if first else logging.DEBUG, "bridge %s: %s", self._id_str, err)
        if not self._closed:
            self._kick_publisher()
        return err

    def _failed(self, channel: str | None, exc: BaseException, handed: bool = True) -> PublishError:
        known = outcome(exc, handed)
        last = self._last_err
        if exc is self._last_exc and last is not None and (last.maybe_sent, last.refused) == known:
            self._counts["errors"] += 1  # one connection failure, many events
            self._counts["publish_errors"] += 1
            self._count_error_type(error_type(exc))
            if not self._closed:
                self._kick_publisher()
            return last
        err = self._publish_failed(None, channel, self._why(exc), known, error_type(exc))
        self._last_exc, self._last_err = exc, err
        return err

    def _on_ack(self, token: Any, error: Exception | None) -> None:
        """The transport's answer for one accepted message (an event or a batch of them)."""
        if type(token) is Sent:
            self._settle(token, error)
        elif type(token) is Beat:  # a heartbeat (fanout.heartbeat): no event, no count
            self._beat.acked(token, error)
        else:  # a batch: every event in it
            for s in token.tokens:
                self._settle(s, error)

    def _settle(self, s: Sent, error: Exception | None) -> None:
        token, r, seq, t0 = s.token, s.route, s.seq, s.t
        s.token = s.route = None
        self._free.append(s)
        n = self._inflight = self._inflight - 1
        if not n and self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)
        if error is None:
            self._counts["published"] += 1
            took = r.took
            if took is not None:  # publish duration: handed to the connection -> acknowledged
                dt = _perf() - t0
                took[_index(_BOUNDS_S, dt)] += 1
                took[-1] += dt
            self._connected_pub = True
            if self._refused_said is not None:  # Redis takes publishes again: the next refusal is news
                self._refused_said = None
            if r.void:
                r.acked(seq)
            if type(token) is _Awaited:
                if not token.fut.done():
                    token.fut.set_result(None)
            else:
                for cb in self._on_published:
                    cb(token, None)
            return
        r.add_void(seq)
        if type(token) is _Awaited:  # the awaiting publish() counts and explains it
            if not token.fut.done():
                token.fut.set_exception(error)
        else:
            err = self._failed(None, error)
            for cb in self._on_published:
                cb(token, err)

    def _send_batch(self, channel: str, payload: bytes, batch) -> None:
        self._transport.publish_nowait(channel, payload, batch, force=True)

    def _batch_failed(self, batch, exc: Exception) -> None:
        # a batch that could not be queued (the side is down) or was dropped (abort): it never left
        self._on_ack(batch, exc if isinstance(exc, NeverSent) else NeverSent(str(exc)))

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

