"""A lean RESP2 connection: one ``asyncio.Protocol`` per socket, so fanout measures Redis, not Python.

* :func:`pack` packs one command (hiredis' C packer; a pure-Python one if hiredis lacks it).
* :class:`RespProtocol` feeds one ``hiredis.Reader`` and handles every complete reply of a
  read in one loop. Replies are matched to commands in FIFO order; a pending entry is either
  a Future (:meth:`~RespProtocol.call`, control plane) or an int token
  (:meth:`~RespProtocol.send_nowait`, fire-and-forget) whose reply, error reply or failure goes
  to the one ``on_reply(token, reply)`` callback. Nothing is allocated per fire-and-forget
  command but the packed bytes and two deque slots; commands queued in one event-loop turn
  leave in one ``transport.write``.
* Bounds: at most ``window`` replies pending (``send_nowait`` says False, ``writable()`` waits);
  one deadline timer per connection, armed when it opens and keeping itself (the oldest pending
  reply older than ``reply_timeout_s`` aborts the connection and fails everything pending; a
  command never arms a timer); an optional idle PING (one timer).
  When the connection ends, commands not yet written fail with :class:`NeverSent` (surely not
  run); those written before get the plain ``ConnectionError`` (their outcome is unknown).
* Reading paused (a slow consumer, a handler backlog): the deadline rests and the connection
  is probed, so a server that cut the client off is noticed although nothing is read; and
  :meth:`~RespProtocol.last_alive_ns` dates the last sign of life (:mod:`fanout.transports.liveness`).
* Subscriber mode (``on_message`` given): ``message``/``smessage``/``pmessage`` arrays go to
  ``on_message(channel, payload)`` straight from ``data_received``; (un)subscribe
  confirmations complete :meth:`~RespProtocol.subscribe`; a ``sunsubscribe``/``unsubscribe``
  nobody asked for (slot moved) goes to ``on_unsubscribed(channel)``.

Opening one (URL, TLS, AUTH, SELECT, CLIENT SETNAME) is :func:`fanout.transports.connection.open_connection`.
Callbacks run inside ``data_received``: they must be quick and must not raise (if one does,
the error is logged and the connection is failed, everything pending with it).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time

import hiredis

log = logging.getLogger(__name__)

_now = time.monotonic
_ReplyError = hiredis.ReplyError


from fanout.transports.frames import (  # noqa: E402,F401 (pack, _pack_py, NeverSent: the public names here)
    _CONFIRM_KINDS, _MESSAGE, _PMESSAGE, _SMESSAGE, _UNSUB_KINDS, CONFIRMS, Many as _Many, NeverSent,
    Probes as _Probes, Sub as _Sub, _pack_py, pack,
)
from fanout.transports.liveness import PAUSED_CHECK_S, Liveness  # noqa: E402,F401 (PAUSED_CHECK_S: public here)


def _unclaimed(token: int, reply) -> None:
    if isinstance(reply, Exception):
        log.debug("reply for token %s: %s (no on_reply callback)", token, reply)


class RespProtocol(Liveness, asyncio.Protocol):
    """One RESP2 connection. Pending entries: int token, Future, ``_Sub``, ``_Many``, ``_Probes``
    or ``None`` (health PING). Its timers: :class:`~fanout.transports.liveness.Liveness`."""

    def __init__(self, *, reply_timeout_s: float, window: int = 1000, on_reply=None, on_message=None,
                 on_unsubscribed=None, on_lost=None, health_interval_s: float | None = None,
                 health_timeout_s: float | None = None, name: str = "redis") -> None:
        if window < 1 or not reply_timeout_s > 0:
            raise ValueError("window must be >= 1 and reply_timeout_s > 0")
        self.name = name                                 # the (redacted) address, for messages
        self._window = window
        self._timeout = reply_timeout_s
        self._on_reply = on_reply or _unclaimed
        self._on_message = on_message
        self._on_unsubscribed = on_unsubscribed
        self._on_lost = on_lost
        self._health_interval = health_interval_s
        self._health_timeout = health_timeout_s or reply_timeout_s
        self._reader = hiredis.Reader()
        self._pending: collections.deque = collections.deque()
        self._sent: collections.deque[float] = collections.deque()   # send time of each pending entry
        self._buf: list[bytes] = []                      # packed commands of this loop turn
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exc: ConnectionError | None = None         # why the connection ended (first cause)
        self._flush_scheduled = False
        self._write_paused = False
        self._reading_paused = False
        self._draining = False                          # gone while paused: reading what arrived (liveness)
        self._waiter: asyncio.Future | None = None       # shared by every writable() caller
        self._drained: asyncio.Future | None = None      # close(): pending became empty
        self._lost_fut: asyncio.Future | None = None     # connection_lost ran
        self._deadline_h: asyncio.TimerHandle | None = None
        self._health_h: asyncio.TimerHandle | None = None
        self._ping_at: float | None = None
        self._last_rx = 0.0                              # monotonic time of the last data read
        self._resumed = 0.0                              # reading resumed (the health check's idle count)
        self._lost_called = False
        self.client_id: int | None = None                # the server's CLIENT ID, when asked (subscribe_on)

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self._transport = transport
        self._loop = loop = asyncio.get_running_loop()
        self._lost_fut = loop.create_future()
        self._last_rx = _now()
        self._arm_deadline()  # the connection's one deadline: it keeps itself from now on
        if self._health_interval:
            self._health_h = loop.call_later(self._health_interval, self._health_tick)

    def data_received(self, data: bytes) -> None:
        if not self._draining:  # (drained bytes are old: no sign of life)
            self._last_rx = _now()
        reader = self._reader
        reader.feed(data)
        gets = reader.gets
        pending, sent = self._pending, self._sent
        on_reply, on_message = self._on_reply, self._on_message
        sub = on_message is not None
        try:
            while True:
                reply = gets()
                if reply is False:
                    break
                if sub and type(reply) is list and reply:
                    kind = reply[0]
                    if kind == _MESSAGE or kind == _SMESSAGE:
                        on_message(reply[1], reply[2])
                        continue
                    if kind == _PMESSAGE:
                        on_message(reply[2], reply[3])
                        continue
                    if kind in _CONFIRM_KINDS:
                        self._confirm(kind, reply)
                        continue
                if not pending:
                    if self._transport is not None:  # (else a callback gave up on us: ignore the rest)
                        self._fail(self._unasked(reply))
                    return
                entry = pending.popleft()
                t_sent = sent.popleft()
                if type(entry) is int:
                    on_reply(entry, reply)
                elif type(entry) is _Many:
                    entry.add(reply)
                elif type(entry) is _Probes:         # a paused spell's PINGs: one reply each
                    entry.n -= 1
                    if entry.n:
                        pending.appendleft(entry)
                        sent.appendleft(t_sent)
                elif entry is not None:              # None: the health PING's answer
                    fut = entry if type(entry) is not _Sub else entry.fut
                    if not fut.done():
                        if isinstance(reply, _ReplyError):
                            fut.set_exception(reply)
                        else:
                            fut.set_result(reply)
        except hiredis.ProtocolError as exc:
            self._fail(ConnectionError(f"protocol error from {self.name}: {exc}"))
            return
        except Exception as exc:  # a callback raised: do not leave the FIFO half-consumed
            log.exception("handling a reply from %s failed", self.name)
            self._fail(ConnectionError(f"handling a reply from {self.name} failed: {exc!r}"))
            return
        if self._waiter is not None:
            self._wake()
        if self._drained is not None and not pending and not self._drained.done():
            self._drained.set_result(None)

    def _unasked(self, reply) -> ConnectionError:
        if isinstance(reply, _ReplyError):  # sent before any command: e.g. "-ERR max number of clients reached"
            return ConnectionError(f"{self.name} refused the connection: {reply}")
        return ConnectionError(f"{self.name} sent a reply nobody asked for: {reply!r:.80}")

    def eof_received(self):
        return False  # close the transport; connection_lost fails what is pending (cut off, if draining)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None  # already closed: nothing to abort
        self._fail(self._cut_off() if self._draining else
                   ConnectionError(f"connection to {self.name} lost: {exc or 'closed by the server'}".splitlines()[0]))
        if self._lost_fut is not None and not self._lost_fut.done():
            self._lost_fut.set_result(None)
        if self._on_lost is not None and not self._lost_called:
            self._lost_called = True
            self._on_lost(self._exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    # -- sending ---------------------------------------------------------------------------
    def send_nowait(self, data: bytes, token: int, force: bool = False) -> bool:
        """Queue one packed command whose reply goes to ``on_reply(token, reply)``.

        False (nothing queued) when the window is full or the transport paused writing:
        ``await writable()`` then (``force``: queue it anyway, for a caller that already
        checked :meth:`can_send` and must not hold the command back). Raises
        ``ConnectionError`` once the connection is gone."""
        if self._transport is None:
            raise self._gone()
        pending = self._pending
        if (len(pending) >= self._window or self._write_paused) and not force:
            return False
        self._enqueue(token, data)
        return True

    def can_send(self) -> bool:
        """Whether :meth:`send_nowait` would accept a command now."""
        return self._transport is not None and len(self._pending) < self._window and not self._write_paused

    def call_many(self, commands: list[bytes]) -> asyncio.Future:
        """Send packed commands in one write, now (with anything else queued this turn); the
        Future gets the list of their replies (an error reply in its place as
        ``hiredis.ReplyError``), or ``ConnectionError``."""
        if self._transport is None:
            raise self._gone()
        fut = self._loop.create_future()
        many = _Many(fut, len(commands))
        for data in commands:
            self._enqueue(many, data)
        self._flush()  # already one batch: no reason to wait for the end of the turn
        return fut

    def call(self, *args) -> asyncio.Future:
        """Send one command (not subject to the window: control plane); the Future gets its
        reply, its ``hiredis.ReplyError``, or ``ConnectionError``. Bounded by the deadline."""
        if self._transport is None:
            raise self._gone()
        fut = self._loop.create_future()
        self._enqueue(fut, pack(*args))
        return fut

    async def subscribe(self, command: bytes | str, channels) -> int:
        """``await subscribe(b"SSUBSCRIBE", [b"a", b"b"])``: send one (un)subscribe command and
        return (the server's subscription count) once every channel is confirmed. Bounded by
        ``reply_timeout_s`` (the connection is aborted past it); an error reply raises it."""
        cmd = command.encode() if isinstance(command, str) else bytes(command)
        kind = CONFIRMS.get(cmd.upper())
        chans = [c if isinstance(c, bytes) else str(c).encode() for c in channels]
        if kind is None or not chans:
            raise ValueError(f"subscribe() takes one of {sorted(c.decode() for c in CONFIRMS)} and channels")
        if self._on_message is None:
            raise ValueError("subscribe() needs a connection opened with on_message (subscriber mode)")
        if self._transport is None:
            raise self._gone()
        fut = self._loop.create_future()
        self._enqueue(_Sub(fut, kind, list(chans)), pack(cmd, *chans))
        return await fut

    async def writable(self) -> None:
        """Return when ``send_nowait`` would accept a command; raise ``ConnectionError`` when gone."""
        while True:
            if self._transport is None:
                raise self._gone()
            if len(self._pending) < self._window and not self._write_paused:
                return
            if self._waiter is None:
                self._waiter = self._loop.create_future()
            await asyncio.shield(self._waiter)  # one waiter's cancel must not cancel the others'

    def _enqueue(self, entry, data: bytes) -> None:
        self._pending.append(entry)
        self._sent.append(_now())
        self._buf.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        buf = self._buf
        if not buf or self._transport is None:
            buf.clear()
            return
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        self._transport.write(data)

    # -- receiving helpers -----------------------------------------------------------------
    def _confirm(self, kind: bytes, reply: list) -> None:
        pending = self._pending
        head = pending[0] if pending else None
        channel = reply[1]
        if type(head) is _Sub and head.kind == kind and channel in head.left:
            head.left.remove(channel)
            if not head.left:
                pending.popleft()
                self._sent.popleft()
                if not head.fut.done():
                    head.fut.set_result(reply[2])
        elif kind in _UNSUB_KINDS:  # not asked for: the server dropped it (e.g. its slot moved)
            if self._on_unsubscribed is not None:
                self._on_unsubscribed(channel)
            else:
                log.warning("%s unsubscribed us from %r", self.name, channel)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and (self._transport is None or (
                len(self._pending) < self._window and not self._write_paused)):
            self._waiter = None
            if not w.done():
                w.set_result(None)

    # -- ending ----------------------------------------------------------------------------
    def _gone(self) -> ConnectionError:
        return self._exc or ConnectionError(f"not connected to {self.name}")

    def _fail(self, exc: ConnectionError, polite: bool = False) -> None:
        """End the connection (abort, or close when ``polite``); fail every pending entry with
        the first cause: Futures get it, tokens get ``on_reply(token, exc)``; the entries whose
        command was never written get it as :class:`NeverSent`. Idempotent."""
        if self._exc is None:
            self._exc = exc
        exc = self._exc
        transport, self._transport = self._transport, None
        for h in (self._deadline_h, self._health_h):
            if h is not None:
                h.cancel()
        self._deadline_h = self._health_h = None
        unwritten = len(self._buf)  # the last pending entries: queued this turn, not yet written
        self._buf.clear()
        if transport is not None:
            transport.close() if polite else transport.abort()
        pending, on_reply = self._pending, self._on_reply
        self._sent.clear()
        written = len(pending) - unwritten
        never = NeverSent(str(exc)) if unwritten else exc
        while pending:
            entry = pending.popleft()
            why = exc if written > 0 else never
            written -= 1
            try:
                if type(entry) is int:
                    on_reply(entry, why)
                elif entry is not None and type(entry) is not _Probes:
                    fut = entry if type(entry) is not _Sub and type(entry) is not _Many else entry.fut
                    if not fut.done():
                        fut.set_exception(why)
            except Exception:  # noqa: BLE001 - one bad callback must not leave the rest pending
                log.exception("on_reply failed while failing the commands pending on %s", self.name)
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def abort(self) -> None:
        """Drop the connection at once, no goodbye (RST); everything pending fails."""
        self._fail(ConnectionError(f"connection to {self.name} aborted"))

    async def close(self, timeout_s: float = 1.0) -> None:
        """Polite close: let pending replies arrive, then FIN; all bounded by ``timeout_s``
        (then abort). Whatever is still pending fails with ``ConnectionError``."""
        if self._transport is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    if self._pending and not self._reading_paused:  # (paused: nothing can be answered)
                        self._drained = self._loop.create_future()
                        await self._drained
                    self._fail(ConnectionError(f"connection to {self.name} closed"), polite=True)
                    await asyncio.shield(self._lost_fut)
            except TimeoutError:
                pass
        self._fail(ConnectionError(f"connection to {self.name} closed"))
        if self._lost_fut is not None and not self._lost_fut.done():
            try:  # abort() reports connection_lost on the next loop turn
                await asyncio.wait_for(asyncio.shield(self._lost_fut), 0.1)
            except TimeoutError:
                pass

    async def wait_closed(self) -> ConnectionError:
        """Return (not raise) why the connection ended, once it has."""
        if self._lost_fut is not None:
            await asyncio.shield(self._lost_fut)
        return self._gone()

    # -- socket knobs ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._transport is not None

    @property
    def exception(self) -> ConnectionError | None:
        """Why the connection ended (None while it is up)."""
        return self._exc

    @property
    def pending(self) -> int:
        return len(self._pending)

    def get_extra_info(self, name: str, default=None):
        return self._transport.get_extra_info(name, default) if self._transport is not None else default

    def set_receive_buffer(self, nbytes: int) -> None:
        """SO_RCVBUF of the socket (the slow-consumer fault)."""
        sock = self.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, nbytes)

    def __repr__(self) -> str:
        state = "connected" if self._transport is not None else f"closed ({self._exc})"
        return f"<RespProtocol {self.name} {state}, {len(self._pending)} pending>"
