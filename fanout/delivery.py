"""The receiving half of a bridge: raw messages in, envelopes to handlers out.

A transport calls :meth:`Delivery.on_message` from the connection's ``data_received`` with
the channel and payload bytes. Per message, in this order and nothing more:

1. **own echo**: a payload starting with this bridge's own header bytes
   (:attr:`~fanout.events.EnvelopeWriter.own_prefix`) is counted ``self_filtered`` and dropped
   unparsed (a batch of its own: counted per envelope, by the prefix);
2. with signing keys: the signature over the channel and the exact bytes (:mod:`fanout.signing`,
   one bound HMAC per channel); a message without a valid one is counted ``rejected``
   (``rejected_signature``) and dropped unparsed;
3. one ``orjson.loads`` (:func:`~fanout.events.parse_message`), a few type checks
   (:func:`~fanout.events.envelope_from`); malformed input is counted, never raised;
   an envelope whose ``type`` is not its channel's is ``rejected`` (``rejected_channel``), signed
   or not (handlers are chosen by the type); with signing keys, one older (or newer) than
   ``signed_max_age_s`` is ``rejected`` (``rejected_stale``): for a stream entry, measured from
   the time Redis took it (its id), else from when it is read; on pub/sub, one stamped before the
   subscription began (less ``signed_max_skew_s``) is a replay, ``rejected_stale`` too;
4. a message with this bridge's ``source`` (compared by type and value) is its own when the
   epoch is its own or it was sent before this bridge started (an earlier life of this id);
   otherwise another instance uses the same id: ``id_conflicts`` (once per epoch, a warning and
   a ``GapNotice("id_conflict")``), and its events are delivered: they are not this bridge's;
5. the seq/epoch check per (channel, source, epoch) (:mod:`fanout.sequencing`): a duplicate is
   dropped, a gap counted, unsent and suspicious messages counted;
6. the handlers: sync ones called right here (no coroutine, no task); async ones, detected once
   at :meth:`add_handler`, run in order by one long-lived task (:meth:`settle` waits for it);
   past ``ASYNC_BACKLOG`` queued the subscription stops reading until half of it is done.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from fanout.errors import MalformedMessage
from fanout.events import Envelope, batch_items, envelope_from, parse_message
from fanout.histograms import BOUNDS_NS as _BOUNDS_NS, _BOUNDS_S, index as _index
from fanout.sequencing import STALE, Loud, SequenceTracker

log = logging.getLogger("fanout.bridge")
_perf = time.perf_counter
_wall = time.time
_now_ns = time.time_ns
_FIRST_S = _BOUNDS_S[0]

#: async handler calls that may wait before the subscription stops reading
ASYNC_BACKLOG = 10_000
#: other instances (epochs) using this bridge's id that are named one by one; beyond: suspicious
MAX_CONFLICTS = 8


@dataclass(frozen=True, slots=True)
class GapNotice:
    """Told to ``on_gap`` callbacks: data from ``source`` on ``type`` may have been missed.

    ``reason`` is ``"seq_gap"`` (``missing`` events counted from the sequence numbers),
    ``"reconnect"`` (the subscriber was disconnected; pub/sub cannot know how many were lost
    until the next event from each source arrives), ``"id_conflict"`` (another instance, of
    ``epoch``, publishes with this bridge's instance id: ``source``), or a transport's own
    reason (``"trimmed"`` for a stream whose history was cut).
    """

    reason: str
    source: str | None = None
    type: str | None = None
    missing: int = 0
    epoch: str | None = None
    last_seq: int | None = None
    next_seq: int | None = None


class Rejections:
    """``rejected`` by reason (``signature``, ``channel``, ``stale``): each reason counted on its own and
    in the total, said at the 1st, 10th, 100th ... of each reason."""

    __slots__ = ("_counts", "signature", "channel", "stale")

    def __init__(self, counts: dict, who: str) -> None:
        self._counts = counts
        self.signature = _Reason(counts, "rejected_signature", who)
        self.channel = _Reason(counts, "rejected_channel", who)
        self.stale = _Reason(counts, "rejected_stale", who)


class _Reason(Loud):
    __slots__ = ()

    def __call__(self, why: str, *args) -> None:
        self._counts["rejected"] += 1
        Loud.__call__(self, why, *args)


def is_async(fn: Callable) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


class Delivery:
    def __init__(self, bridge, own_prefix: bytes, channels: list[tuple[str, str, str]], signer=None) -> None:
        """``channels``: (channel, stream, event type) of every channel subscribed."""
        self._bridge = bridge
        self._id = bridge._id_str
        self._own_id = bridge.instance_id
        self._own_type = type(bridge.instance_id)
        self._epoch = bridge.epoch
        self.started_ms = 0                      # set by the bridge when it starts
        self._counts = bridge._counts
        self._hist = bridge._hist if bridge.config.histograms else None
        self._own = own_prefix
        # its own batches (only a batching bridge makes them): counted per envelope, unparsed
        self._own_batch = b"[" + own_prefix if bridge.config.batch_max > 1 else None
        self._sequence = SequenceTracker(bridge._counts, trusted=signer is not None, who=self._id)
        self._check = self._sequence.check
        self._signer = signer
        self._chan = {c.encode(): self._channel(c, stream, t) for c, stream, t in channels}
        self._chan_type = {c: t for c, _, t in channels}
        self._verify = signer is not None
        #: signed messages older (or newer) than this are stale (ms; 0: no check, unsigned)
        max_age = getattr(bridge.config, "signed_max_age_s", None)
        self._max_age_ms = int(max_age * 1000) if signer is not None and max_age else 0
        #: set by a transport that knows when Redis took the message (a stream entry's id, ms); else 0
        self.stamp_ms = 0
        #: with signing, a message stamped before this (wall ms: the latest (re)subscription less the
        #: skew allowed) came from before the subscription began; set by the bridge as it subscribes
        self.since_ms = 0.0
        self._rejected = Rejections(bridge._counts, self._id)
        #: a sync handler call longer than this held the reader: said (once per decade) and counted
        self._slow_s = getattr(bridge.config, "slow_handler_s", 0.1)
        self._slow = Loud(bridge._counts, "slow_handlers", self._id)
        self._bad = Loud(bridge._counts, "malformed", self._id)
        self._conflicts: dict = {}               # epoch -> True: other instances seen with this id
        self._sync: dict[str, list] = {}
        self._async: dict[str, list] = {}
        self._any_sync: list = []
        self._any_async: list = []
        self._dispatch: dict[str, tuple] = {}       # type -> (sync handlers, async handlers)
        self._dispatch_other: tuple = ((), ())
        self._gap_sync: list = []
        self._gap_async: list = []
        self._queue: collections.deque = collections.deque()   # (callables, argument, is_handler)
        self._runner: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._held = False                                      # reading stopped for the backlog
        #: heartbeat channel (bytes) -> what takes its messages (fanout.heartbeat; set per subscription). Looked
        #: up only for a channel that is no event channel: the events' path does not change
        self.beats: dict[bytes, Callable[[bytes], None]] = {}

    # -- registration ------------------------------------------------------------------
    def add_handler(self, event_type: str, handler: Callable) -> None:
        into = (self._any_async if is_async(handler) else self._any_sync) if event_type == "*" else \
            (self._async if is_async(handler) else self._sync).setdefault(event_type, [])
        into.append(handler)
        types = set(self._sync) | set(self._async)
        self._dispatch = {t: (tuple(self._sync.get(t, ())) + tuple(self._any_sync),
                              tuple(self._async.get(t, ())) + tuple(self._any_async)) for t in types}
        self._dispatch_other = (tuple(self._any_sync), tuple(self._any_async))

    def add_gap_callback(self, callback: Callable) -> None:
        (self._gap_async if is_async(callback) else self._gap_sync).append(callback)

    # -- the hot path ------------------------------------------------------------------
    def on_message(self, channel: bytes, payload: bytes) -> None:
        if payload.startswith(self._own):
            self._counts["self_filtered"] += 1
            return
        if self._own_batch is not None and payload.startswith(self._own_batch):
            self._counts["self_filtered"] += payload.count(self._own)
            return
        ch = self._chan.get(channel)
        if ch is None:
            beat = self.beats.get(channel)
            if beat is not None:  # the bridge's own heartbeat channel: never an event, never counted as one
                beat(payload)
                return
            name = channel.decode(errors="replace")
            ch = self._chan[channel] = self._channel(name, name, self._chan_type.get(name))
        if self._verify and not ch.verify(payload):
            self._rejected.signature("unsigned or not validly signed for %s (starts %r)", ch.name, payload[:60])
            return
        try:
            obj = parse_message(payload)
        except MalformedMessage as exc:
            self._malformed(ch.name, exc)
            return
        if type(obj) is dict:
            self._one(ch, obj, payload)
        else:
            for o in batch_items(obj):
                self._one(ch, o, payload)

    def _one(self, ch, obj: dict, raw: bytes) -> None:
        counts = self._counts
        try:
            env = envelope_from(obj, raw, ch.stream)
        except MalformedMessage as exc:
            self._malformed(ch.name, exc)
            return
        if env[0] != ch.type and ch.type is not None:
            self._rejected.channel("a %r envelope on %s (the channel of %r)", env[0], ch.name, ch.type)
            return
        if self._max_age_ms:
            age = (self.stamp_ms or _wall() * 1000.0) - env[2]   # ms (a float: no big-int division per message)
            if age > self._max_age_ms or age < -self._max_age_ms:
                self._rejected.stale("a signed %s event stamped %d ms from %s on %s (over signed_max_age_s)",
                                     env[0], age, "its arrival in Redis" if self.stamp_ms else "now", ch.name)
                return
            if not self.stamp_ms and env[2] < self.since_ms:  # pub/sub delivers nothing sent before it subscribed
                self._rejected.stale("a signed %s event on %s stamped before this subscription began (less "
                                     "signed_max_skew_s): a replay", env[0], ch.name)
                return
        src = env[3]  # the tuple's fields by index on this path: source, seq, epoch, ns, type (events.Envelope)
        if src == self._own_id and type(src) is self._own_type and self._is_own(env):
            counts["self_filtered"] += 1
            return
        seq, epoch = env[4], env[5]
        if seq is not None and epoch is not None:
            ns = env[6]
            missing = self._check(ch, src, epoch, seq, 0 if ns is None else ns, obj)
            if missing:
                if missing < 0:
                    if missing == STALE:
                        self._rejected.stale("a signed event of %r's forgotten epoch %s on %s (older than its "
                                             "current epoch)", src, epoch, ch.name)
                    else:
                        counts["duplicates"] += 1
                    return
                self.notify(GapNotice(reason="seq_gap", source=src, type=env[0], missing=missing, epoch=epoch,
                                      last_seq=self._sequence.prev_last, next_seq=seq))
        counts["received"] += 1
        lat = ch.latency  # delivery latency: due (lag) or send time -> now, in ns (fanout.histograms)
        if lat is not None:
            ns = env[6]
            if ns is not None:  # (a seed-format message has only its ms timestamp: not measured)
                lag = env[7]
                d = _now_ns() - env[2] * 1_000_000 - ns + (lag or 0)
                if d < 0:  # this host's clock behind the sender's
                    d = 0
                lat[_index(_BOUNDS_NS, d)] += 1
                lat[-1] += d
        sync, asyn = self._dispatch.get(env[0], self._dispatch_other)
        hd = ch.handling
        for h in sync:
            t0 = _perf()
            try:
                r = h(env)
            except Exception as exc:  # noqa: BLE001 - a raising handler is counted, the listener goes on
                self._handler_failed(h, env, exc)
                continue
            finally:
                dt = _perf() - t0
                if hd is not None:
                    hd[0 if dt <= _FIRST_S else _index(_BOUNDS_S, dt)] += 1  # (most calls: the first bucket)
                    hd[-1] += dt
                if dt > self._slow_s:
                    self._held_reader(h, env, dt)
            if r is not None and inspect.isawaitable(r):  # a plain function that returned a coroutine
                self._later((_awaitable,), r, True)
        if asyn:
            self._later(asyn, env, True)

    def _channel(self, name: str, stream: str, event_type: str | None):
        ch = self._sequence.channel(name, stream, event_type)
        if event_type is not None and self._hist is not None:  # (a channel of no known type: not measured)
            ch.latency = self._hist.of("delivery_latency", event_type)
            ch.handling = self._hist.of("handler_duration", event_type)
        if self._signer is not None:
            ch.verify = self._signer.bind(name).verify   # the channel fed into the HMAC once, here
        return ch

    def _is_own(self, env: Envelope) -> bool:
        """A message with this bridge's source: its own (True), or another instance's."""
        epoch = env.epoch
        if epoch == self._epoch or env.timestamp < self.started_ms:
            return True  # this bridge (its keys in another order), or an earlier life of this id
        if epoch not in self._conflicts:
            if len(self._conflicts) >= MAX_CONFLICTS:
                self._sequence.flag("yet another epoch (%s) with this bridge's own id %r", epoch, self._own_id)
                return False
            self._conflicts[epoch] = True
            self._counts["id_conflicts"] += 1
            log.warning("bridge %s: another instance publishes with this bridge's instance id %r (its epoch %s, "
                        "ours %s); give every instance its own id. Its events are delivered (they are not ours).",
                        self._id, self._own_id, epoch, self._epoch)
            self.notify(GapNotice(reason="id_conflict", source=env.source, type=env.type, epoch=epoch))
        return False

    def lost(self) -> None:
        """The subscription was lost: the next event from each source tells how many were missed."""
        self._sequence.resync()

    # -- losses and notices ------------------------------------------------------------
    def on_loss(self, loss) -> None:
        """A loss the transport counted itself (e.g. a trimmed stream), before what follows it."""
        if loss.reason == "trimmed":
            # Counted exactly by the transport (all sources together): restart this channel's seq
            # baselines so the next event from each source does not count the same hole again.
            self._sequence.forget_channel(loss.channel)
            if not loss.count:
                return
        else:  # e.g. stream_reset: the next event from each source tells how many, any distance
            self._sequence.resync(loss.channel)
        self._counts["transport_losses"] += loss.count
        self._counts["gaps"] += loss.count
        self.notify(GapNotice(reason=loss.reason, type=self._chan_type.get(loss.channel), missing=loss.count))

    def on_save_refused(self, why: str) -> None:
        """Redis refused to save the read position (the transport logs it, reads on, retries): counted."""
        self._counts["position_save_errors"] += 1
        self._counts["errors"] += 1

    def notify(self, notice: GapNotice) -> None:
        for cb in self._gap_sync:
            try:
                r = cb(notice)
            except Exception:  # noqa: BLE001 - counted and logged with the traceback
                self._counts["errors"] += 1
                log.exception("bridge %s: gap callback raised", self._id)
                continue
            if r is not None and inspect.isawaitable(r):
                self._later((_awaitable,), r, False)
        if self._gap_async:
            self._later(tuple(self._gap_async), notice, False)

    # -- async handlers: one task, in order ---------------------------------------------
    def _later(self, fns: tuple, arg: Any, is_handler: bool) -> None:
        self._queue.append((fns, arg, is_handler))
        if self._runner is None:
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
            self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"fanout-handlers-{self._id}")
        self._idle.clear()
        self._wake.set()
        if not self._held and len(self._queue) > ASYNC_BACKLOG:
            self._held = True
            self._bridge._hold_reading(True)

    async def _run(self) -> None:
        q = self._queue
        while True:
            if not q:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            fns, arg, is_handler = q[0]
            for fn in fns:
                try:
                    await fn(arg)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - counted and logged with the reason
                    if is_handler:
                        self._handler_failed(fn, arg, exc)
                    else:
                        self._counts["errors"] += 1
                        log.exception("bridge %s: gap callback raised", self._id)
            q.popleft()
            if self._held and len(q) <= ASYNC_BACKLOG // 2:
                self._held = False
                self._bridge._hold_reading(False)

    async def settle(self) -> None:
        """Return once every async handler call queued so far has finished."""
        if self._queue and self._idle is not None:
            await self._idle.wait()

    async def stop(self) -> None:
        """Cancel the async handlers' task (closing); bounded."""
        task, self._runner = self._runner, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
        self._queue.clear()

    def abort(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        self._queue.clear()

    # -- bookkeeping -------------------------------------------------------------------
    def _malformed(self, name: str, exc: MalformedMessage) -> None:
        self._counts["errors"] += 1
        self._bridge.last_error = f"{name}: {exc}"
        self._bad("dropped on %s: %s", name, exc)

    def _held_reader(self, handler: Callable, env: Envelope, took_s: float) -> None:
        self._slow("sync handler %s held the reader %.3f s on a %s event (over slow_handler_s=%g): every "
                   "subscription stops reading meanwhile; make it 'async def' (it then runs in the bridge's "
                   "handler task) or hand the work off", getattr(handler, "__qualname__", handler), took_s,
                   getattr(env, "type", "?"), self._slow_s)

    def _handler_failed(self, handler: Callable, env: Envelope, exc: Exception) -> None:
        self._counts["errors"] += 1
        self._counts["handler_errors"] += 1
        self._bridge.last_error = f"handler {getattr(handler, '__name__', handler)!s} raised {exc!r}"
        log.error("bridge %s: handler raised on %s event %s: %r", self._id, getattr(env, "type", "?"),
                  getattr(env, "id", "?"), exc, exc_info=exc)


async def _awaitable(aw) -> None:
    await aw


class EventStream:
    """``async for env in bridge.events("trade")``: the events of one type (or "*"), through a bounded
    queue fed in place by the reader (a sync handler: no task, no Future per event).

    Overflow policy: **drop the oldest**. When ``maxsize`` events wait, the oldest is dropped for the
    new one (market data: the latest is what counts), counted in ``events_dropped`` and said at the
    1st, 10th, 100th ... drop. The reader never waits for the iterator. Iteration ends when the
    bridge closes, after what was queued has been taken."""

    __slots__ = ("type", "_q", "_max", "_waiter", "_closed", "_dropped")

    def __init__(self, event_type: str, maxsize: int, counts: dict, who: str) -> None:
        self.type = event_type
        self._q: collections.deque = collections.deque()
        self._max = maxsize
        self._waiter: asyncio.Future | None = None
        self._closed = False
        self._dropped = Loud(counts, "events_dropped", who)

    def __call__(self, env: Envelope) -> None:  # the handler
        q = self._q
        if len(q) >= self._max:
            q.popleft()
            self._dropped("events(%r) full (maxsize %d): the oldest dropped", self.type, self._max)
        q.append(env)
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> Envelope:
        while not self._q:
            if self._closed:
                raise StopAsyncIteration
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._q.popleft()

    def __len__(self) -> int:
        return len(self._q)

    def close(self) -> None:
        """End the iteration once what is queued was taken (the bridge closed)."""
        self._closed = True
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)
