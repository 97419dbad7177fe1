"""The bridge: one application instance's door to the fan-out.

    async with RedisEventBridge(BridgeConfig(url="redis://localhost:6379/0", instance_id="bot-1")) as bridge:
        bridge.on("ticker", handle_ticker)          # sync (called in place) or async; gets an Envelope
        bridge.on_gap(lambda notice: ...)           # told when data may have been missed
        await bridge.publish("trade", {...})        # returns the Envelope once Redis acknowledged it
        bridge.on_published(done)                   # the hot path: done(token, None | PublishError) ...
        bridge.publish_nowait("trade", {...}, token=k)   # ... returns at once (None: window full, counted
        await bridge.writable()                     #     in 'refused': wait here, then publish it again;
                                                    #     strict=True raises Backpressure instead)
        await bridge.flush()                        # every accepted publish settled (acked or failed)
        async for env in bridge.events("trade"):    # iterate, beside the callbacks (bounded, drop-oldest)
            ...
        bridge.metrics()                            # connected, published, received, ...
        bridge.histograms()                         # latency, publish and handler durations per type

What the bridge guarantees on top of the transport:

* **Self-filtering**: this bridge's own envelopes never reach a handler; they are counted as
  ``self_filtered`` (its own echo is recognised by its first bytes, unparsed). Another
  instance using the same ``instance_id`` (a different epoch) is counted in ``id_conflicts``,
  named in a warning and told to the gap callbacks (``GapNotice("id_conflict")``); its events
  are delivered. Ids compare by type and value (``123`` and ``"123"`` are two instances).
* **Loss visibility**: per (source, channel) — one channel per event type unless the sharded
  transport partitions it — ``seq`` must go up by one. A jump counts the missing events as
  ``gaps`` (lost after Redis accepted them) or, when the publisher announced them as never
  sent, ``unsent``, and tells the gap callbacks; an exact repeat counts a ``duplicate`` and is
  not delivered again; a new ``epoch`` is a restart of that source, not a loss. Implausible
  numbers are ``suspicious``, never millions of gaps (:mod:`fanout.sequencing`).
* **Signing** (``signing_keys``): the MAC covers the channel and the bytes; unsigned, wrongly
  signed or cross-channel copies are ``rejected`` before they are parsed, signed messages older
  than ``signed_max_age_s`` too (:mod:`fanout.signing`); an envelope whose type is not its
  channel's is rejected signed or not (``rejected_signature`` / ``_stale`` / ``_channel``).
* **Reconnect**: when the subscriber connection drops, the bridge reconnects with capped
  exponential backoff (with jitter) and resubscribes by itself, counting ``reconnects``.
* **Bounded publish, every failure counted**: the publishing connection has one deadline
  (``publish_timeout_s``): when Redis stops answering, every publish in flight fails with it
  (:class:`~fanout.errors.PublishError` from ``publish()``, or the ``on_published`` callback;
  its ``maybe_sent`` says whether Redis may have accepted it), counted in ``publish_errors``; a publish while Redis is down fails at once and the
  connection is reopened in the background. No task, Future or timer per ``publish_nowait``.
* **Robustness**: a malformed message or a raising handler is counted in ``errors`` and
  logged; the listener keeps going.
"""
from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from typing import Any, Callable

from fanout.config import BridgeConfig
from fanout.delivery import Delivery, EventStream, GapNotice
from fanout.errors import ConfigError, NotSubscriber, PublishError, RedisUnavailable
from fanout.events import Envelope, EnvelopeWriter
from fanout.heartbeat import Heartbeat
from fanout.histograms import Histogram, Histograms
from fanout.metrics import COUNTER_NAMES
from fanout.outbuf import OutputBufferCheck
from fanout.publishing import Publishing, one_line as _one_line
from fanout.redact import redact_text, redact_url
from fanout.signing import Signer
from fanout.transports import make_transport
from fanout.transports.base import Subscriber

log = logging.getLogger(__name__)

#: metrics()' output-buffer fields while the check is off (fanout.outbuf)
OUTPUT_BUFFER_OFF = {"output_buffer_bytes": None, "output_buffer_max_bytes": None, "output_buffer_limit_bytes": None,
                     "output_buffer_warnings": 0, "output_buffer_warned_ns": 0, "output_buffer_samples": 0,
                     "output_buffer_check": "off"}

Handler = Callable[[Envelope], Any]

#: receive buffer (bytes) given back to a subscriber socket when a paused reader resumes
RESTORED_RCVBUF = 4 * 1024 * 1024

__all__ = ["GapNotice", "RedisEventBridge", "RESTORED_RCVBUF"]


class RedisEventBridge(Publishing):
    """Publish market events to Redis and hand every other instance's events to handlers."""

    def __init__(self, config: BridgeConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = BridgeConfig(**kwargs)
        elif kwargs:
            raise TypeError("give a BridgeConfig or keyword arguments, not both")
        self.config = config
        self.instance_id = config.instance_id
        self._id_str = str(config.instance_id)
        self.epoch = secrets.token_hex(4)
        self._counts = dict.fromkeys(COUNTER_NAMES, 0)
        self._error_types: dict[str, int] = {}           # failed publishes by kind (publish_error_types())
        self._hist = Histograms(config.event_types)     # latency and durations (fanout.histograms)
        self._writer = EnvelopeWriter(config.instance_id, self.epoch)
        self._transport = make_transport(config)
        self._transport.on_ack = self._on_ack
        self.signer = Signer(config.signing_keys) if config.signing_keys else None
        subscribed = []                                  # (channel, stream, type)
        for t in config.event_types:
            chans = config.channels(t)
            subscribed += [(c, t if len(chans) == 1 else f"{t}.{p}", t) for p, c in enumerate(chans)]
        self._channels = [c for c, _, _ in subscribed]
        self._rx = Delivery(self, self._writer.own_prefix, subscribed, self.signer)
        self._batcher = None
        if config.batch_max > 1:
            from fanout.batching import Batcher

            self._batcher = Batcher(self._send_batch, self._batch_failed, config.batch_max,
                                    config.batch_delay_ms / 1000, seal=None if self.signer is None else self.signer.sign)
        self._routes: dict[str, Any] = {}                # type -> Route, or a list of them per partition
        self._free: list = []                            # pooled publishing.Sent
        self._streams: list[EventStream] = []          # events() iterators, ended at close
        self._on_published: tuple[Callable[[Any, PublishError | None], Any], ...] = ()
        self._inflight = 0                               # accepted publishes not yet settled (flush())
        self._flushed: asyncio.Future | None = None      # what flush() waits on
        self._refusing = False                           # in a burst of refusals (until one is accepted)
        self._refused_at = -1e9                          # when a burst was last said (monotonic s)
        self._last_exc: BaseException | None = None      # the last publish failure and its PublishError
        self._last_err: PublishError | None = None
        self._refused_said: str | None = None           # the refusal (error reply) last logged loudly
        self._connected_pub = False
        self._connected_sub = False
        self._subscriber: Subscriber | None = None
        self._supervisor: asyncio.Task | None = None
        self._pub_task: asyncio.Task | None = None      # reopening the publishing side
        self._pub_tried = 0.0
        self._reconnect_allowed = asyncio.Event()
        self._reconnect_allowed.set()
        self._paused = False
        self._held = False
        self._held_since_ns = 0      # when reading stopped for the handler backlog (0: reading)
        #: [t_lost_ns (its last sign of life), t_restored_ns (0 while still down), reason] per lost subscription
        self.outages: list[list] = []
        self._started = False
        self._closed = False
        self.last_error: str | None = None
        #: heartbeat_s on and subscribing: the heartbeat (fanout.heartbeat), else None
        self._beat = Heartbeat(self) if config.heartbeat_s and config.enable_subscription else None
        self._follow_task: asyncio.Task | None = None   # sentinel: finding the master again
        self._follow_lock = asyncio.Lock()
        self._followed_at = 0.0
        self._obuf = None                               # the output-buffer check (fanout.outbuf), when on
        self._obuf_task: asyncio.Task | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> "RedisEventBridge":
        """Connect, and when subscribing, return only once every channel is confirmed."""
        if self._started:
            return self
        self._started = True
        self._rx.started_ms = time.time_ns() // 1_000_000
        try:
            if self.config.sentinels:
                self._transport.master_url = await self.config.discover_master()
            if self._publishes:
                await self._transport.connect_publisher()
                self._connected_pub = True
            if self.config.enable_subscription:
                self._rx.since_ms = (time.time() - self.config.signed_max_skew_s) * 1000.0
                self._subscriber = await self._transport.open_subscriber(self._channels, self._rx)
                self._connected_sub = True
                if self._beat is not None:
                    self._beat.follow(self._subscriber)
                self._supervisor = asyncio.get_running_loop().create_task(
                    self._supervise(), name=f"fanout-subscription-{self._id_str}")
                if self.config.output_buffer_check_s is not None:
                    self._obuf = OutputBufferCheck(self.config, lambda: self._subscriber, self._id_str)
                    self._obuf_task = asyncio.get_running_loop().create_task(
                        self._obuf.run(), name=f"fanout-output-buffer-{self._id_str}")
        except BaseException:
            await self.close()
            raise
        log.info("bridge %s connected to %s (%s, epoch %s)", self._id_str, self.safe_url,
                 self.config.transport, self.epoch)
        return self

    async def close(self) -> None:
        """Send what is batched, unsubscribe and close every connection; bounded, idempotent."""
        if self._closed:
            return
        self._closed = True
        self._reconnect_allowed.set()
        if self._beat is not None:
            self._beat.stop()
        if self._batcher is not None:
            self._batcher.flush_all()
        for task in (self._follow_task, self._pub_task, self._supervisor, self._obuf_task):
            if task is not None:
                task.cancel()
                await asyncio.wait({task}, timeout=2.0)
        await self._rx.stop()
        for stream in self._streams:
            stream.close()
        if self._subscriber is not None:
            await self._subscriber.close()
            self._subscriber = None
        await self._transport.close()
        self._connected_pub = self._connected_sub = False

    def abort(self) -> None:
        """Die without a goodbye (a crash): drop every connection, stop reading, unsubscribe nothing."""
        self._closed = True
        if self._beat is not None:
            self._beat.stop()
        for task in (self._follow_task, self._pub_task, self._supervisor, self._obuf_task):
            if task is not None:
                task.cancel()
        self._rx.abort()
        for stream in self._streams:
            stream.close()
        if self._batcher is not None:
            self._batcher.drop_all(ConnectionError("the bridge was aborted"))
        if self._subscriber is not None:
            self._subscriber.abort()
            self._subscriber = None
        self._transport.abort()
        self._connected_pub = self._connected_sub = False

    async def __aenter__(self) -> "RedisEventBridge":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- registration ------------------------------------------------------------------
    def _check_subscriber(self, what: str, event_type: str | None = None) -> None:
        if not self.config.enable_subscription:
            raise NotSubscriber(f"{what}: instance {self._id_str} was built with enable_subscription=False; "
                                "its handlers would never run")
        if event_type is not None and event_type != "*" and event_type not in self.config.event_types:
            raise ConfigError(f"{what}: this bridge subscribes to {', '.join(self.config.event_types)} only")

    def on(self, event_type: str, handler: Handler) -> Handler:
        """Call ``handler(envelope)`` for each event of ``event_type`` ("*" for every type).
        A plain function is called right where the message is read (one that takes longer than
        ``slow_handler_s`` is said and counted in ``slow_handlers``: all reading waits for it); a
        coroutine function runs in order in the bridge's one handler task."""
        self._check_subscriber(f"on({event_type!r})", event_type)
        if not callable(handler):
            raise TypeError(f"on({event_type!r}): {handler!r} is not callable")
        self._rx.add_handler(event_type, handler)
        return handler

    def on_gap(self, callback: Callable[[GapNotice], Any]) -> None:
        """Call ``callback(GapNotice)`` whenever data may have been missed."""
        self._check_subscriber("on_gap()")
        self._rx.add_gap_callback(callback)

    def events(self, event_type: str = "*", maxsize: int = 1000) -> EventStream:
        """``async for env in bridge.events("trade")``: the events of one type ("*": every type), beside
        the callbacks. A bounded queue (``maxsize``) fed in place by the reader; when it is full the
        **oldest is dropped** for the new one and counted in ``events_dropped`` (the reader never
        waits for a slow iterator). Iteration ends when the bridge closes."""
        self._check_subscriber(f"events({event_type!r})", event_type)
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigError(f"events: maxsize must be a whole number >= 1, got {maxsize!r}")
        stream = EventStream(event_type, maxsize, self._counts, self._id_str)
        self._streams.append(stream)
        self._rx.add_handler(event_type, stream)
        return stream

    # -- receiving ---------------------------------------------------------------------
    @property
    def _publishes(self) -> bool:
        """Whether this bridge has a publishing side: it publishes, or it sends heartbeats."""
        return self.config.enable_publishing or self._beat is not None

    @property
    def last_heartbeat_ns(self) -> int:
        """When (``time.time_ns()``) one of its own heartbeats last came back (until the first did: when its
        subscription was first confirmed); 0 with the heartbeat off (``heartbeat_s``) or before it started."""
        return self._beat.last_ns if self._beat is not None else 0

    def _stale(self, why: str, since_ns: int) -> None:
        """The heartbeat found the subscription stale (fanout.heartbeat): resubscribe on a new connection,
        the outage dated from ``since_ns`` (the last heartbeat back)."""
        if self._closed:
            return
        if self._supervisor is not None:
            self._supervisor.cancel()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(why, since_ns), name=f"fanout-subscription-{self._id_str}")

    async def _supervise(self, stale: str | None = None, since_ns: int = 0) -> None:
        """The subscription's one task: wait until it is lost, then reconnect (at once: found stale)."""
        if stale is not None:
            await self._reconnect(stale, since_ns)
        while not self._closed:
            sub = self._subscriber
            why = await sub.wait_lost() if sub is not None else "not subscribed"
            if self._closed:
                return
            await self._reconnect(why)

    async def _reconnect(self, why: str, since_ns: int = 0) -> None:
        self._connected_sub = False
        self._rx.lost()
        now = time.time_ns()
        sub = self._subscriber
        # the outage began at the connection's last sign of life, not when it was noticed (a PING
        # unanswered, a probe reset): what was sent in between went nowhere; a stale one's (answering
        # PING, delivering nothing) at the last heartbeat that came back
        began = since_ns or (sub.last_alive_ns() if sub is not None else now)
        outage = [min(now, began), 0, redact_text(why)]
        self.outages.append(outage)
        if sub is not None:
            sub.abort()
            self._subscriber = None
        log.warning("bridge %s lost its subscription (%s; silent for %.2f s); reconnecting", self._id_str,
                    outage[2], (now - outage[0]) / 1e9)
        delay = self.config.reconnect_initial_s
        attempt = 0
        while not self._closed:
            await self._reconnect_allowed.wait()
            if self._closed:
                return
            attempt += 1
            try:
                if self.config.sentinels:
                    await self._follow_master()
                self._rx.since_ms = (time.time() - self.config.signed_max_skew_s) * 1000.0
                sub = await self._transport.open_subscriber(self._channels, self._rx)
            except (RedisUnavailable, ConnectionError, OSError, TimeoutError) as exc:
                log.debug("reconnect attempt %d failed: %s", attempt, redact_text(_one_line(exc)))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.config.reconnect_max_s)
                continue
            if self._closed:
                sub.abort()
                return
            self._subscriber = sub
            if self._paused or self._held:
                sub.pause_reading()
            self._connected_sub = True
            outage[1] = time.time_ns()
            self._counts["reconnects"] += 1
            if self._beat is not None:
                self._beat.follow(sub)
            log.info("bridge %s resubscribed after %d attempt(s)", self._id_str, attempt)
            self._rx.notify(GapNotice(reason="reconnect"))
            return

    async def _follow_master(self) -> None:
        """Sentinel: ask where the master is now; when it moved, reopen the publishing side there.
        Called before each resubscribe and each reopening of the publisher (at most every 0.2 s)."""
        async with self._follow_lock:
            wait = self._followed_at + 0.2 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._followed_at = time.monotonic()
            t = self._transport
            old = t.master_url
            new = t.master_url = await self.config.discover_master()
            if new != old and self._publishes and not self._closed:
                log.warning("bridge %s: Sentinel names a new master %s; publishing there", self._id_str,
                            redact_url(new))
                await self._transport.close()
                try:
                    await self._transport.connect_publisher()
                    self._connected_pub = True
                except (RedisUnavailable, ConnectionError, OSError) as exc:
                    t.master_url = old  # try again at the next failure
                    log.debug("bridge %s: publisher not reopened: %s", self._id_str, exc)

    def hold_reconnect(self) -> None:
        """Fault-injection hook: keep this bridge disconnected until :meth:`release_reconnect`."""
        self._reconnect_allowed.clear()

    def release_reconnect(self) -> None:
        self._reconnect_allowed.set()

    def pause_reading(self, receive_buffer: int | None = None) -> None:
        """Fault-injection hook: stop reading (a slow consumer); Redis buffers, then may cut us off.

        ``receive_buffer`` caps the subscriber socket's kernel buffer (bytes) so the backlog
        lands in Redis's output buffer rather than in the kernel."""
        self._paused = True
        if self._subscriber is not None:
            if receive_buffer:
                self._subscriber.shrink_receive_buffer(receive_buffer)
            self._subscriber.pause_reading()

    def resume_reading(self) -> None:
        self._paused = False
        if self._subscriber is not None:
            # a capped buffer would throttle the catch-up to a trickle (small TCP window)
            self._subscriber.shrink_receive_buffer(RESTORED_RCVBUF)
            if not self._held:
                self._subscriber.resume_reading()

    def _hold_reading(self, hold: bool) -> None:
        """Async handlers are this far behind: stop (or resume) reading."""
        self._held = hold
        self._held_since_ns = time.time_ns() if hold else 0
        if self._subscriber is not None:
            if hold:
                self._subscriber.pause_reading()
            elif not self._paused:
                self._subscriber.resume_reading()

    # -- observability -----------------------------------------------------------------
    def resolved_url(self) -> str:
        """Where this bridge connects: the master Sentinel named last, else the configured URL."""
        return self._transport.url()

    @property
    def safe_url(self) -> str:
        """:meth:`resolved_url` without its password."""
        return redact_url(self.resolved_url())

    @property
    def connected(self) -> bool:
        pub_ok = self._connected_pub or not self.config.enable_publishing
        sub_ok = self._connected_sub or not self.config.enable_subscription
        return self._started and not self._closed and pub_ok and sub_ok

    def metrics(self) -> dict[str, Any]:
        """The seed's monitoring fields and ours: a fresh plain dict."""
        m: dict[str, Any] = {"instance_id": self.instance_id, "connected": self.connected}
        m.update(self._counts)
        m["subscriptions"] = len(self._channels) if self._connected_sub else 0
        m["transport"] = self.config.transport
        m["epoch"] = self.epoch
        m["last_error"] = self.last_error
        m["held_since_ns"] = self._held_since_ns
        if self._obuf is not None:
            m.update(self._obuf.fields())
        else:
            m.update(OUTPUT_BUFFER_OFF)
        return m

    def histograms(self) -> dict[str, dict[str, Histogram]]:
        """A snapshot of the bridge's own histograms, per event type (a fresh copy: nothing here
        changes the bridge's): ``delivery_latency`` (due or send time -> handed to the handlers),
        ``publish_duration`` (handed to the connection -> Redis acknowledged) and ``handler_duration``
        (each sync handler call), each a :class:`~fanout.histograms.Histogram` with buckets from
        50 µs to 10 s (``bounds``, ``counts``, ``count``, ``sum`` in seconds). What each measures and
        leaves out: :mod:`fanout.histograms`."""
        return self._hist.snapshot()

    def __repr__(self) -> str:
        return f"RedisEventBridge({self._id_str!r}, {self.safe_url}, {self.config.transport})"
