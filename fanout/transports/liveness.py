"""How a :class:`~fanout.transports.resp.RespProtocol` knows the server is still there: one
reply deadline, one health timer, and the probe while reading is paused (a mixin: the state
lives in the protocol, set up in its ``__init__``).

* **Deadline**: when the oldest pending reply is ``reply_timeout_s`` old, the connection is
  failed (everything pending with it). One timer per connection keeps itself from when the
  connection opens: while replies are pending it runs out exactly when the oldest is due, while
  none are it looks again every ``reply_timeout_s``; sending a command never arms a timer, however
  sparse the commands (a command sent while idle is seen at the next look, then timed exactly).
  While reading is paused no reply can be read, so the deadline rests; it counts again from the resume.
* **Health check** (``health_interval_s``): a connection silent that long is PINGed; no answer
  within ``health_timeout_s`` fails it.
* **Paused** (:meth:`Liveness.pause_reading`: a slow consumer, a handler backlog): the FIN of a
  server that cut the client off (e.g. its pub/sub output-buffer limit) waits behind the unread
  data it had sent, so nothing on this side changes: TCP stays ESTABLISHED and EOF is never
  read. So every ``PAUSED_CHECK_S`` (or the health interval, if shorter) the connection is
  *probed*: a PING is written (its reply waits behind the backlog, read after the resume; one
  pending entry however many) and the socket is asked whether the server is still there. A
  live server queues the reply; a server that closed the client answers the probe's bytes with
  a reset, which ``SO_ERROR`` (and on Linux ``TCP_INFO``'s state: CLOSE, or CLOSE_WAIT when
  its FIN did arrive) shows at the next check, or the next probe's write fails. The cut-off is
  thus noticed within about two checks, without reading (memory stays bounded).
* **Drained, then failed**: what the server had sent before it cut the client off is still in
  this host's receive buffer (the kernel hands it out before the reset or the FIN, bounded by
  the buffer's size). So a paused connection found gone is read to its end first — those
  events reach the handlers, they are not lost — and fails at its EOF (or after
  ``DRAIN_S``). The drained bytes do not count as a sign of life.
* :meth:`Liveness.last_alive_ns`: when data last came from the server, so an outage is dated
  from when the connection went silent, not from when that was noticed.
"""
from __future__ import annotations

import collections
import socket
import time

from fanout.transports.frames import _PING, Probes

_now = time.monotonic

#: while reading is paused, how often (at most) the connection is probed (see the module doc)
PAUSED_CHECK_S = 1.0
#: how long a paused connection found gone may take to hand over what this host had received
DRAIN_S = 2.0
_TCP_INFO = getattr(socket, "TCP_INFO", None)      # Linux
_TCP_ESTABLISHED = 1
_INET = (socket.AF_INET, socket.AF_INET6)


def peer_gone(sock) -> bool:
    """The socket says the server is gone (a reset, or its FIN), although nothing was read."""
    if sock is None:
        return False
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return True
        if _TCP_INFO is not None and sock.family in _INET:
            return sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 8)[0] != _TCP_ESTABLISHED
    except (OSError, TypeError, ValueError, AttributeError):  # not a socket that can say
        return False
    return False


class Liveness:
    """The deadline, health and paused-probe timers of one connection (mixed into RespProtocol)."""

    def _arm_deadline(self) -> None:
        """(Re)arm the connection's one deadline: when the oldest pending reply is due, or, with none
        pending, one ``reply_timeout_s`` from now (to look again)."""
        if self._reading_paused:  # no reply can be read: the deadline counts again from the resume
            return
        delay = self._sent[0] + self._timeout - _now() if self._sent else self._timeout
        self._deadline_h = self._loop.call_later(max(delay, 0.0), self._deadline_tick)

    def _deadline_tick(self) -> None:
        self._deadline_h = None
        if self._transport is None:
            return
        if self._sent and _now() - self._sent[0] >= self._timeout:
            self._fail(ConnectionError(f"no reply within {self._timeout:g}s from {self.name}"))
        else:
            self._arm_deadline()

    def _health_tick(self) -> None:
        self._health_h = None
        if self._transport is None:
            return
        if self._draining:
            self._fail(self._cut_off())  # the drain did not reach the EOF in time
            return
        if self._reading_paused:
            if peer_gone(self._transport.get_extra_info("socket")):
                self._drain()
                return
            self._probe()
            self._health_h = self._loop.call_later(self._paused_check(), self._health_tick)
            return
        now = _now()
        if self._ping_at is not None:
            if self._last_rx >= self._ping_at:
                self._ping_at = None
            elif now - self._ping_at >= self._health_timeout:
                self._fail(ConnectionError(f"no answer to PING within {self._health_timeout:g}s from {self.name}"))
                return
            else:  # look again at the bound, or sooner to resume the idle count once answered
                left = self._ping_at + self._health_timeout - now
                self._health_h = self._loop.call_later(min(left, self._health_interval), self._health_tick)
                return
        idle = now - max(self._last_rx, self._resumed)
        if idle < self._health_interval:
            delay = self._health_interval - idle
        else:
            self._enqueue(None, _PING)
            self._ping_at = now
            delay = min(self._health_timeout, self._health_interval)
        self._health_h = self._loop.call_later(delay, self._health_tick)

    def _cut_off(self) -> ConnectionError:
        return ConnectionError(f"connection to {self.name} lost: closed by the server while reading was paused")

    def _drain(self) -> None:
        """The server is gone: read what this host already received (bounded by the receive
        buffer, within DRAIN_S), then fail at the EOF."""
        self._draining = True
        self._reading_paused = False
        self._health_h = self._loop.call_later(DRAIN_S, self._health_tick)
        self._transport.resume_reading()

    def _paused_check(self) -> float:
        return min(self._health_interval, PAUSED_CHECK_S)

    def _probe(self) -> None:
        """Write one PING while reading is paused (its reply is read after the resume)."""
        pending = self._pending
        last = pending[-1] if pending else None
        if type(last) is Probes:
            last.n += 1
        else:
            pending.append(Probes())
            self._sent.append(_now())
        self._buf.append(_PING)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def last_alive_ns(self) -> int:
        """When (``time.time_ns()``) data last came from the server: its last sign of life."""
        return time.time_ns() - int((_now() - self._last_rx) * 1e9)

    def pause_reading(self) -> None:
        """Stop reading. The reply deadline rests (no reply can be read); with the health check
        on, the connection is probed instead of pinged (see the module doc)."""
        if self._transport is not None and not self._reading_paused and not self._draining:
            self._reading_paused = True
            self._ping_at = None
            if self._deadline_h is not None:
                self._deadline_h.cancel()
                self._deadline_h = None
            self._transport.pause_reading()
            if self._health_h is not None:
                self._health_h.cancel()
                self._health_h = self._loop.call_later(self._paused_check(), self._health_tick)

    def resume_reading(self) -> None:
        if self._transport is not None and self._reading_paused and not self._draining:
            self._reading_paused = False
            now = self._resumed = _now()
            if self._sent:  # what waited behind the backlog: its deadline starts now
                self._sent = collections.deque([now] * len(self._sent))
            if self._deadline_h is None:  # the one deadline rested while paused: it keeps itself again
                self._arm_deadline()
            if self._health_h is not None:
                self._health_h.cancel()
                self._health_h = self._loop.call_later(self._health_interval, self._health_tick)
            self._transport.resume_reading()
