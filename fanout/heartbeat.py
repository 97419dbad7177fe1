"""Liveness end to end: a subscribing bridge's heartbeat (``BridgeConfig.heartbeat_s``, off by default).

A connection that answers PING may still deliver nothing (after a Sentinel failover the subscriber
can be left on the old master, answering, while every publish goes to the new one). PING proves the
connection; only a message that makes the whole trip proves the path. So, every ``heartbeat_s``,
the bridge publishes a small heartbeat on each channel its subscription reads its own heartbeats on
(:attr:`fanout.transports.base.Subscriber.heartbeats`: ``{prefix}_heartbeat:{instance_id}`` on
pub/sub; one per node for sharded pub/sub, in the slot of one of that node's channels; its own
heartbeat stream for Streams, read in the same XREAD) and expects it back:

* a heartbeat Redis **acknowledged** that is not back (nor any later one on that channel) within
  ``HEARTBEAT_BOUND x heartbeat_s`` while the subscription's connection is still up (answering PING:
  the health check fails a silent one first) marks the subscription **stale**: counted in
  ``stale_subscriptions``, said in one warning line (the reconnect's), and the subscription is
  dropped and opened again on a new connection through the reconnect path (``reconnects``, an
  outage dated from the last heartbeat that came back, ``GapNotice("reconnect")``; on pub/sub what
  was lost shows as ``gaps`` when each source's next event arrives);
* while reading is paused or held (a slow consumer, a handler backlog) nothing can come back:
  nothing is expected until reading resumes; a heartbeat whose publish failed is not expected
  either (the publishing side's failure is counted where it belongs).

Heartbeats never reach a handler, the gap callbacks or any count of events: the receiving side
routes them by channel before anything else looks at them (:class:`fanout.delivery.Delivery`
``beats``), so the events' path is unchanged. One timer per bridge (``loop.call_later``), nothing
per message. A subscribe-only bridge opens its transport's publishing side for its heartbeats
(its user needs to publish on ``{prefix}_heartbeat:*``).

The wire form (docs/wire-format.md, "Heartbeats"): ``{"heartbeat":n,"source":id,"epoch":e,
"timestamp":ms}``; a heartbeat of another epoch (an earlier life of this id) does not count.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time

import orjson

from fanout.config import HEARTBEAT_BOUND

log = logging.getLogger("fanout.bridge")


class Beat:
    """One heartbeat channel of the current subscription; also the publish token of its heartbeats."""

    __slots__ = ("channel", "back", "times", "pending_n", "pending_ns")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.back = 0            # the highest heartbeat number that came back
        #: (number, send time ns) of each heartbeat the connection took and Redis has not answered yet
        self.times: collections.deque[tuple[int, int]] = collections.deque()
        self.pending_n = 0       # the oldest acknowledged heartbeat not back (0: none)
        self.pending_ns = 0      # ... and when it was sent


class Heartbeat:
    """The heartbeat of one bridge: its timer, its channels, what came back."""

    def __init__(self, bridge) -> None:
        self._bridge = bridge
        self.interval_s = float(bridge.config.heartbeat_s)
        self.bound_ns = int(HEARTBEAT_BOUND * self.interval_s * 1e9)
        self._beats: list[Beat] = []
        self._timer: asyncio.TimerHandle | None = None
        self._n = 0
        ident = (orjson.dumps(bridge.instance_id) + b',"epoch":' + orjson.dumps(bridge.epoch)).replace(b"%", b"%%")
        self._head = b'{"heartbeat":%d,"source":' + ident + b',"timestamp":%d}'
        #: when (``time.time_ns()``) one of its own heartbeats last came back (the subscription's start until then)
        self.last_ns = 0
        self._refused_said = False

    # -- the subscription ----------------------------------------------------------------
    def follow(self, sub) -> None:
        """A (new) subscription is confirmed: expect heartbeats on its channels from now on."""
        self._beats = [Beat(c) for c in sub.heartbeats]
        self._bridge._rx.beats = {b.channel.encode(): self._taker(b) for b in self._beats}
        if not self.last_ns:
            self.last_ns = time.time_ns()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._tick)

    def _taker(self, beat: Beat):
        def take(payload: bytes) -> None:
            self._back(beat, payload)
        return take

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._beats = []

    # -- the timer -----------------------------------------------------------------------
    def _tick(self) -> None:
        self._timer = None
        b = self._bridge
        if b._closed:
            return
        self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._tick)
        sub = b._subscriber
        if sub is None or not b._connected_sub:
            return  # reconnecting: the next subscription brings its own channels
        if b._paused or b._held:  # nothing can come back while reading waits: expect nothing meanwhile
            for beat in self._beats:
                beat.pending_n = 0
            return
        now = time.time_ns()
        for beat in self._beats:
            if beat.pending_n and now - beat.pending_ns > self.bound_ns:
                self._stale(beat, now)
                return
        self._n += 1
        payload = self._head % (self._n, now // 1_000_000)
        for beat in self._beats:
            try:
                if not b._transport.publish_nowait(beat.channel, payload, beat, True):
                    continue
            except ConnectionError:  # the publishing side is down: reopen it; nothing expected back
                b._kick_publisher()
                return
            beat.times.append((self._n, now))

    def _stale(self, beat: Beat, now: int) -> None:
        b = self._bridge
        b._counts["stale_subscriptions"] += 1
        why = (f"stale: its heartbeat on {beat.channel} not back within {HEARTBEAT_BOUND * self.interval_s:g} s "
               "while the connection answers")
        self._beats = []
        b._rx.beats = {}
        b._stale(why, self.last_ns)

    # -- publish outcomes and echoes -----------------------------------------------------
    def acked(self, beat: Beat, error: Exception | None) -> None:
        """Redis's answer to one heartbeat (in order per channel): only an acknowledged one is expected back."""
        if not beat.times:
            return
        n, t = beat.times.popleft()
        if error is None:
            if not beat.pending_n and beat.back < n:
                beat.pending_n, beat.pending_ns = n, t
        elif not self._refused_said and not isinstance(error, ConnectionError):
            self._refused_said = True  # e.g. NOPERM: said once; no heartbeat is expected, none is missed
            log.warning("bridge %s: Redis refused a heartbeat on %s (%s); the subscription's path is not proven "
                        "while it does", self._bridge._id_str, beat.channel, str(error).splitlines()[0])

    def _back(self, beat: Beat, payload: bytes) -> None:
        try:
            obj = orjson.loads(payload)
            n = obj["heartbeat"]
            if obj.get("epoch") != self._bridge.epoch or type(n) is not int:
                return  # an earlier life's (a stream read from before this start), or not ours
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if n > beat.back:
            beat.back = n
        if beat.pending_n and n >= beat.pending_n:
            beat.pending_n = 0
        self.last_ns = time.time_ns()
