"""The bridge: one application instance's door to the fan-out.

    async with RedisEventBridge(BridgeConfig(url="redis://localhost:6379/0", instance_id="bot-1")) as bridge:
        bridge.on("ticker", handle_ticker)          # sync or async; gets an Envelope
        bridge.on_gap(lambda notice: ...)           # told when data may have been missed
        await bridge.publish("trade", {...})        # returns the Envelope it sent
        bridge.metrics()                            # connected, published, received, ...

What the bridge guarantees on top of the transport:

* **Self-filtering**: an envelope whose ``source`` is this bridge's ``instance_id`` never
  reaches a handler; it is counted as ``self_filtered``.
* **Loss visibility**: per (source, channel) — one channel per event type unless the sharded
  transport partitions it — ``seq`` must go up by one. A jump counts the
  missing events as ``gaps`` and tells the gap callbacks; a repeat counts a ``duplicate`` and
  is not delivered again; a new ``epoch`` is a restart of that source, not a loss.
* **Reconnect**: when the subscriber connection drops, the bridge reconnects with capped
  exponential backoff (with jitter) and resubscribes by itself, counting ``reconnects``.
* **Bounded publish**: a publish while Redis is down or hung fails within
  ``publish_timeout_s`` with :class:`~fanout.errors.PublishError`, counted in ``errors``.
* **Robustness**: a malformed message or a raising handler is counted in ``errors`` and
  logged; the listener keeps going.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from fanout.channels import partition_of
from fanout.config import BridgeConfig
from fanout.errors import ConfigError, FanoutError, MalformedMessage, NotPublisher, PublishError, RedisUnavailable
from fanout.events import Envelope, decode_many, encode
from fanout.metrics import COUNTER_NAMES
from fanout.redact import redact_text, redact_url
from fanout.sequencing import DUPLICATE, RESTART, SequenceTracker
from fanout.transports import make_transport
from fanout.transports.base import Subscriber

log = logging.getLogger(__name__)

Handler = Callable[[Envelope], Any]


@dataclass(frozen=True, slots=True)
class GapNotice:
    """Told to ``on_gap`` callbacks: data from ``source`` on ``type`` may have been missed.

    ``reason`` is ``"seq_gap"`` (``missing`` events counted from the sequence numbers),
    ``"reconnect"`` (the subscriber was disconnected; pub/sub cannot know how many were lost
    until the next event from each source arrives), or a transport's own reason
    (``"trimmed"`` for a stream whose history was cut).
    """

    reason: str
    source: str | None = None
    type: str | None = None
    missing: int = 0
    epoch: str | None = None
    last_seq: int | None = None
    next_seq: int | None = None


#: receive buffer (bytes) given back to a subscriber socket when a paused reader resumes
RESTORED_RCVBUF = 4 * 1024 * 1024



class RedisEventBridge:
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
        self._transport = make_transport(config)
        self._batcher = None
        if config.batch_max > 1:
            from fanout.batching import Batcher

            self._batcher = Batcher(self._transport.publish, config.batch_max, config.batch_delay_ms / 1000)
        self._handlers: dict[str, list[Handler]] = {}
        self._any_handlers: list[Handler] = []
        self._gap_callbacks: list[Callable[[GapNotice], Any]] = []
        self._seq: dict[str, int] = {}
        self._sequence = SequenceTracker()
        self._counts = dict.fromkeys(COUNTER_NAMES, 0)
        self._connected_pub = False
        self._connected_sub = False
        self._subscriber: Subscriber | None = None
        self._reader: asyncio.Task | None = None
        self._reconnect_allowed = asyncio.Event()
        self._reconnect_allowed.set()
        self._reading_allowed = asyncio.Event()
        self._reading_allowed.set()
        #: [t_lost_ns, t_restored_ns (0 while still down), reason] per lost subscription
        self.outages: list[list] = []
        self._started = False
        self._closed = False
        self.last_error: str | None = None
        self._channels = [c for t in config.event_types for c in config.channels(t)]
        self._chan_type = {c: t for t in config.event_types for c in config.channels(t)}
        self._part_channels: dict[str, list[str]] = {}  # sharded, partitioned: type -> its channels
        self._follow_task: asyncio.Task | None = None   # sentinel: finding the master again
        self._follow_lock = asyncio.Lock()
        self._followed_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> "RedisEventBridge":
        """Connect, and when subscribing, return only once every channel is confirmed."""
        if self._started:
            return self
        self._started = True
        try:
            if self.config.sentinels:
                await self.config.discover_master()
            if self.config.enable_publishing:
                await self._transport.connect_publisher()
                self._connected_pub = True
            if self.config.enable_subscription:
                self._subscriber = await self._transport.open_subscriber(self._channels)
                self._connected_sub = True
                self._reader = asyncio.create_task(self._read_loop(), name=f"fanout-reader-{self._id_str}")
        except BaseException:
            await self.close()
            raise
        log.info("bridge %s connected to %s (%s, epoch %s)", self._id_str, self.config.safe_url,
                 self.config.transport, self.epoch)
        return self

    async def close(self) -> None:
        """Unsubscribe and close every connection; bounded, idempotent."""
        if self._closed:
            return
        self._closed = True
        self._reconnect_allowed.set()
        self._reading_allowed.set()
        if self._follow_task is not None:
            self._follow_task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
            except (asyncio.CancelledError, asyncio.TimeoutError, Exception):
                pass
        if self._subscriber is not None:
            await self._subscriber.close()
            self._subscriber = None
        await self._transport.close()
        self._connected_pub = self._connected_sub = False

    def abort(self) -> None:
        """Die without a goodbye (a crash): drop every connection, stop reading, unsubscribe nothing."""
        self._closed = True
        if self._follow_task is not None:
            self._follow_task.cancel()
        if self._reader is not None:
            self._reader.cancel()
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
    def on(self, event_type: str, handler: Handler) -> Handler:
        """Call ``handler(envelope)`` for each event of ``event_type`` ("*" for every type)."""
        if event_type == "*":
            self._any_handlers.append(handler)
        else:
            if event_type not in self.config.event_types:
                raise ConfigError(
                    f"on({event_type!r}): this bridge subscribes to {', '.join(self.config.event_types)} only"
                )
            self._handlers.setdefault(event_type, []).append(handler)
        return handler

    def on_gap(self, callback: Callable[[GapNotice], Any]) -> None:
        """Call ``callback(GapNotice)`` whenever data may have been missed."""
        self._gap_callbacks.append(callback)

    # -- publishing --------------------------------------------------------------------
    async def publish(self, event_type: str, data: Any, *, intended_ns: int | None = None) -> Envelope:
        """Publish one event; return the envelope sent. Bounded by ``publish_timeout_s``.

        ``intended_ns`` is the time the event was due (open-loop load); it travels as ``ti_ns``.
        """
        if not self.config.enable_publishing:
            raise NotPublisher(f"instance {self._id_str} was built with enable_publishing=False; it cannot publish")
        if self._closed or not self._started:
            raise PublishError(f"instance {self._id_str}: publish on a bridge that is not started (use 'async with')")
        parts = self.config.shard_partitions
        if parts > 1:  # seq per channel (partition): each channel's numbers stay contiguous
            chans = self._part_channels.get(event_type) or self._part_channels.setdefault(
                event_type, self.config.channels(event_type))
            part = partition_of(data.get("symbol") if type(data) is dict else None, parts)
            channel, stream = chans[part], f"{event_type}.{part}"
        else:
            channel, stream = self.config.channel(event_type), event_type
        seq = self._seq.get(stream, 0) + 1
        self._seq[stream] = seq
        ts_ns = time.time_ns()
        env = Envelope(
            type=event_type, data=data, timestamp=ts_ns // 1_000_000, source=self.instance_id,
            seq=seq, epoch=self.epoch, id=f"{self.epoch}:{stream}:{seq}", ts_ns=ts_ns, ti_ns=intended_ns,
        )
        try:
            async with asyncio.timeout(self.config.publish_timeout_s):  # no extra task, unlike wait_for
                if self._batcher is not None:
                    await asyncio.shield(self._batcher.add(channel, env))
                else:
                    await self._transport.publish(channel, encode(env))
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise self._publish_failed(env, channel, f"no answer within {self.config.publish_timeout_s:g}s") from exc
        except FanoutError:
            raise
        except Exception as exc:  # ConnectionError, OSError, redis-py's RedisError family
            raise self._publish_failed(env, channel, str(exc).split("\n")[0] or exc.__class__.__name__) from exc
        self._counts["published"] += 1
        self._connected_pub = True
        return env

    def _publish_failed(self, env: Envelope, channel: str, why: str) -> PublishError:
        self._counts["errors"] += 1
        self._counts["publish_errors"] += 1
        first = self._connected_pub  # say it loudly once per outage, quietly after that
        self._connected_pub = False
        msg = redact_text(f"publish to {channel} on {self.config.safe_url} failed: {why}")
        self.last_error = msg
        log.log(logging.WARNING if first else logging.DEBUG, "bridge %s: %s", self._id_str, msg)
        if self.config.sentinels and (self._follow_task is None or self._follow_task.done()) and not self._closed:
            self._follow_task = asyncio.get_running_loop().create_task(self._follow_master())
        # The sequence number was used: receivers will see a gap, which is the truth.
        err = PublishError(msg)
        err.envelope = env
        return err

    # -- receiving ---------------------------------------------------------------------
    async def _read_loop(self) -> None:
        timeout = min(1.0, self.config.health_check_interval_s)
        while not self._closed:
            if not self._reading_allowed.is_set():
                await self._reading_allowed.wait()
            sub = self._subscriber
            try:
                if sub is None:
                    raise ConnectionError("not subscribed")
                batch = await sub.read(timeout)
                for loss in sub.take_losses():
                    self._transport_loss(loss)
                for channel, payload in batch:
                    await self._on_message(channel, payload)
            except asyncio.CancelledError:
                raise
            except (ConnectionError, OSError, RedisUnavailable) as exc:
                if self._closed:
                    return
                await self._reconnect(str(exc))

    async def _reconnect(self, why: str) -> None:
        self._connected_sub = False
        outage = [time.time_ns(), 0, redact_text(why)]
        self.outages.append(outage)
        if self._subscriber is not None:
            self._subscriber.abort()
            self._subscriber = None
        log.warning("bridge %s lost its subscription (%s); reconnecting", self._id_str, outage[2])
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
                self._subscriber = await self._transport.open_subscriber(self._channels)
            except (RedisUnavailable, ConnectionError, OSError, asyncio.TimeoutError) as exc:
                log.debug("reconnect attempt %d failed: %s", attempt, redact_text(str(exc)))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.config.reconnect_max_s)
                continue
            self._connected_sub = True
            outage[1] = time.time_ns()
            self._counts["reconnects"] += 1
            log.info("bridge %s resubscribed after %d attempt(s)", self._id_str, attempt)
            await self._notify(GapNotice(reason="reconnect"))
            return

    async def _follow_master(self) -> None:
        """Sentinel: ask where the master is now; when it moved, reopen the publishing side there.
        Called before each resubscribe and (in the background, at most every 0.2 s) after a failed publish."""
        async with self._follow_lock:
            wait = self._followed_at + 0.2 - time.monotonic()
            if wait > 0 and asyncio.current_task() is self._follow_task:
                await asyncio.sleep(wait)
            self._followed_at = time.monotonic()
            old = self.config.discovered_url
            try:
                new = await self.config.discover_master()
            except RedisUnavailable as exc:
                if asyncio.current_task() is not self._follow_task:
                    raise
                log.debug("bridge %s: %s", self._id_str, exc)
                return
            if new != old and self.config.enable_publishing and not self._closed:
                log.warning("bridge %s: Sentinel names a new master %s; publishing there", self._id_str,
                            redact_url(new))
                await self._transport.close()
                try:
                    await self._transport.connect_publisher()
                    self._connected_pub = True
                except (RedisUnavailable, ConnectionError, OSError) as exc:
                    self.config.discovered_url = old  # try again at the next failure
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
        if receive_buffer and self._subscriber is not None:
            self._subscriber.shrink_receive_buffer(receive_buffer)
        self._reading_allowed.clear()

    def resume_reading(self) -> None:
        if self._subscriber is not None:
            # a capped buffer would throttle the catch-up to a trickle (small TCP window)
            self._subscriber.shrink_receive_buffer(RESTORED_RCVBUF)
        self._reading_allowed.set()

    async def _on_message(self, channel: str, payload: bytes) -> None:
        try:
            envs = decode_many(payload)
        except MalformedMessage as exc:
            self._malformed(channel, exc)
            return
        for env in envs:
            if isinstance(env, MalformedMessage):
                self._malformed(channel, env)
            else:
                await self._on_envelope(channel, env)

    def _malformed(self, channel: str, exc: MalformedMessage) -> None:
        self._counts["errors"] += 1
        self._counts["malformed"] += 1
        self.last_error = f"{channel}: {exc}"
        log.warning("bridge %s: dropped a message on %s: %s", self._id_str, channel, exc)

    async def _on_envelope(self, channel: str, env: Envelope) -> None:
        src = env.source if type(env.source) is str else str(env.source)
        if src == self._id_str:
            self._counts["self_filtered"] += 1
            return
        if env.seq is not None and env.epoch is not None:
            # seq is per (source, channel): one channel per type unless partitioned
            verdict = self._sequence.check(src, channel, env.epoch, env.seq)
            if verdict > 0:
                self._counts["gaps"] += verdict
                await self._notify(GapNotice(reason="seq_gap", source=src, type=env.type, missing=verdict,
                                             epoch=env.epoch, last_seq=env.seq - verdict - 1, next_seq=env.seq))
            elif verdict == DUPLICATE:
                self._counts["duplicates"] += 1
                return
            elif verdict == RESTART:
                self._counts["source_restarts"] += 1
        self._counts["received"] += 1
        handlers = self._handlers.get(env.type)
        if handlers:
            for h in handlers:
                await self._call(h, env)
        for h in self._any_handlers:
            await self._call(h, env)

    async def _call(self, handler: Handler, env: Envelope) -> None:
        try:
            r = handler(env)
            if inspect.isawaitable(r):
                await r
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._counts["errors"] += 1
            self._counts["handler_errors"] += 1
            self.last_error = f"handler {getattr(handler, '__name__', handler)!s} raised {exc!r}"
            log.exception("bridge %s: handler raised on %s event %s", self._id_str, env.type, env.id)

    def _transport_loss(self, loss) -> None:
        t = self._chan_type.get(loss.channel)
        if loss.reason == "trimmed":
            # Counted exactly by the transport (all sources together): restart this type's seq
            # baselines so the next event from each source does not count the same hole again.
            self._sequence.forget_channel(loss.channel)
            if not loss.count:
                return
        self._counts["transport_losses"] += loss.count
        self._counts["gaps"] += loss.count
        asyncio.get_running_loop().create_task(self._notify(
            GapNotice(reason=loss.reason, type=t, missing=loss.count)))

    async def _notify(self, notice: GapNotice) -> None:
        for cb in self._gap_callbacks:
            try:
                r = cb(notice)
                if inspect.isawaitable(r):
                    await r
            except Exception:
                self._counts["errors"] += 1
                log.exception("bridge %s: gap callback raised", self._id_str)

    # -- observability -----------------------------------------------------------------
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
        return m

    def __repr__(self) -> str:
        return f"RedisEventBridge({self._id_str!r}, {self.config.safe_url}, {self.config.transport})"



