"""Redis Streams: XADD to ``{prefix}{type}``, XREAD BLOCK from a remembered position.

Publishing is ``XADD {prefix}{type} MAXLEN [~] N * d <envelope>`` (one field, ``d``; the
bridge encodes, the transport moves bytes; ``stream_maxlen <= 0`` means no MAXLEN).
Receiving is ``XREAD COUNT n BLOCK ms STREAMS k1 .. kN id1 .. idN`` on one dedicated
connection, from the last id handed over per stream, in a loop (one task per subscriber) that
hands every entry to the bridge and waits for its async handlers before the next XREAD. Self-filtering, seq gaps and
duplicates stay the bridge's job (from the envelope), exactly as with pub/sub.

Position
--------
Per instance, ``HSET {prefix}pos:{instance_id}`` holds, per stream key ``K``:
``K`` = the id of the last entry handed to the bridge, and ``K|n`` = that stream's
*accounted offset* (see below). The write is batched: the positions of a batch are sent
in one HSET pipelined in front of the next XREAD, i.e. once the bridge has come back for
more (so the batch has been handed over). ``close()`` writes the final position (bounded);
``abort()`` writes nothing (a crash). A crash (or a close) in the middle of handling a
batch resumes *before* that batch: at most one batch is delivered again to the new
incarnation (at-least-once across a crash, never a silent loss).

A save Redis refuses with an error reply (``-OOM command not allowed when used memory >
'maxmemory'`` under ``maxmemory-policy noeviction``, which still serves XREAD; a NOPERM) is no
lost connection: the reader logs it once, counts it (``sink.on_save_refused``: the bridge's
``position_save_errors``), reads and hands over on, and sends the save again with the first XREAD
``SAVE_RETRY_S`` later, until Redis takes it (then it says so). Meanwhile a crash resumes from the
last position Redis accepted: more is delivered again, nothing is skipped (an instance whose very
first save was refused has none: it starts afresh, at "$").

* First start (no saved position): "$", resolved at subscribe time to the stream's
  ``last-generated-id`` (``0-0`` when the stream does not exist) and saved at once, so
  "subscribed" means "sees everything XADDed after ``open_subscriber`` returned", and an
  instance that crashes right after starting still resumes from there.
* Restart with the same ``instance_id``: resume from the saved position.
* Reconnect (the bridge reopens the subscriber): continue from the in-memory position.

Counting trimmed entries exactly
--------------------------------
Redis 7 numbers every entry ever added to a stream: the *offset* of an entry is how many
entries had been added up to and including it (``XINFO STREAM`` -> ``entries-added`` is
the offset of ``last-generated-id``). MAXLEN only ever removes the oldest entries, so the
entries gone from a stream are exactly offsets ``1 .. R`` with ``R = entries-added -
length``, and the first entry still there has offset ``R + 1``.

Alongside the position id ``P`` we keep ``n``, the offset up to which every entry has been
accounted for (handed over, or counted as lost). It is exact from the start: "$" resolves
to ``(last-generated-id, entries-added)``, read together by one ``XINFO STREAM``; a stream
that does not exist yet is ``(0-0, 0)``.

Every XREAD is sent with one ``XINFO STREAM`` per stream pipelined behind it (same write).
Redis runs them the moment the XREAD answers (a blocked client's next commands wait for
it), so each read cycle (at most ``MAX_BLOCK_S`` apart, still one round trip) also yields
``R``, the first entry ``F`` and ``entries-added`` of every stream, checked before anything
is handed over (about 4 us of Redis time per stream; a Lua script returning only those
numbers was tried: five times the Redis time per read):

* a stream with no new entries: if ``F`` is after ``P`` (or the stream is empty),
  ``lost = R - n`` and ``n = R``; if ``F <= P`` nothing after ``P`` has gone.
* a stream that returned ``e1..ek``: if ``F < e1`` nothing was trimmed in front of the
  batch and ``n += k``. Otherwise ``j`` batch entries are already gone too (``j`` = how many
  are ``< F``): ``lost = R - n - j``, ``n = R + k - j``. Exact although XINFO runs just after
  the XREAD, because trimming only ever removes a prefix and ``e1..ek`` were consecutive
  when read. Only if a whole batch was trimmed in between (a reader more than MAXLEN
  behind) does the exact count include entries *after* the batch too; we then also tell the
  bridge to restart its seq baselines once more before the next batch (a zero-count
  ``trimmed`` loss) so those are not counted twice.
* (re)subscribe: the same check.

``n`` is saved with ``P``, so a restarted instance counts exactly what was trimmed while it
was away. Entries this transport itself XADDed (their ids are remembered, in memory) are
not reported: an instance does not miss its own events. The report is
``Loss(channel, count, "trimmed")`` from ``take_losses()``, always before the entries that
follow the hole; the bridge counts it in ``gaps`` and sends ``GapNotice("trimmed")``.

Limits of the exact count: entries removed with XDEL (we never do) count as trimmed; own
entries that a *previous incarnation* XADDed after its last saved position and that were
then trimmed are counted (the new process cannot know they were its own).

Redis lost the stream (restart without persistence, FLUSHALL, DEL)
-------------------------------------------------------------------
If the stream is gone while we had a position, or its ``last-generated-id`` is below our
position, or ``entries-added`` went backwards (below ``n`` + the batch, or the offsets
above do not add up), it is a *new* stream: the position restarts at ``0-0``/``0``, so
entries of the new stream are read from its start and none is skipped even when its ids
are below the old position (new ids are usually larger, as they come from the clock, but a
server with a clock behind would otherwise leave us stuck). How much the old stream held
that we never read cannot be known from Redis; it is reported as
``Loss(channel, 0, "stream_reset")`` (a ``GapNotice``, so it is never silent) and counted
by the bridge from the envelope ``seq`` of the next event from each source (its baselines
are kept for this reason). Entries of the new stream already trimmed are ``trimmed``. The
check runs on every (re)subscribe and every read cycle, so a reader never stays blocked on
a position the stream will never reach. What cannot be told apart from a genuine history:
a replaced stream whose counter has already passed ours and that has trimmed more than
``n`` entries before we look (then it is read on from ``P``, and ids are clock-based).

A malformed entry (no ``d`` field) is handed over anyway (its first value, else ``b""``),
so the bridge counts it as malformed instead of the reader crashing.

Needs Redis >= 7.0 (``entries-added``); an ACL user needs ``xadd xread xinfo hset hgetall``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time

import hiredis

from fanout.transports.base import Transport
from fanout.transports.common import ProtoSubscriber, PubConn, SinglePublisher, conn_options, one_line, require_server
from fanout.transports.connection import open_connection
from fanout.transports.positions import (  # noqa: F401 (re-exported: the arithmetic's names)
    _ZERO, PositionBook, StreamId, StreamInfo, _parse_saved, format_id, parse_id, parse_info,
)
from fanout.transports.resp import RespProtocol

log = logging.getLogger(__name__)

_pack = hiredis.pack_command
_FIELD = b"d"
#: entries per stream per XREAD (smaller batches let a catching-up reader share the loop)
READ_COUNT = 100
#: longest XREAD BLOCK; the reader connection's reply deadline is this + command_timeout_s
MAX_BLOCK_S = 1.0
#: own XADD ids remembered per stream while the reader has not passed them
OWN_IDS_CAP = 100_000
#: heartbeats kept in an instance's heartbeat stream (MAXLEN ~)
BEAT_MAXLEN = 100
#: after Redis refused a position save (an error reply), the next try waits this long (reading goes on)
SAVE_RETRY_S = 1.0


def pack(*args) -> bytes:
    return _pack(tuple(a if isinstance(a, (bytes, int, float)) and not isinstance(a, bool) else str(a)
                       for a in args))


def _raise_error(reply):
    if isinstance(reply, Exception):
        raise ConnectionError(f"stream read failed: {one_line(reply)}")
    return reply


def _payload(fields) -> bytes:
    if not fields:
        return b""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == _FIELD:
            return fields[i + 1]
    return fields[1] if len(fields) > 1 else b""  # malformed: the bridge counts it


class StreamsSubscriber(ProtoSubscriber):
    """One XREAD connection and its loop; positions live in the transport so a new subscriber continues."""

    def __init__(self, transport: "StreamsTransport", proto: RespProtocol, keys: list[str], sink) -> None:
        super().__init__(proto)
        self._t = transport
        self._keys = keys
        self._key_of = {k.encode(): k for k in keys}
        self._sink = sink
        self._info = [pack("XINFO", "STREAM", k) for k in keys]
        block = max(1, int(min(MAX_BLOCK_S, transport.config.health_check_interval_s) * 1000))
        beat = transport._beat_key
        # its own heartbeat stream, read last in the same XREAD (its position in memory only: never saved,
        # never reconciled, a trimmed heartbeat is no loss)
        self.heartbeats = (beat,) if beat is not None else ()
        self._beat = beat.encode() if beat is not None else None
        self._xread = ("XREAD", "COUNT", READ_COUNT, "BLOCK", block, "STREAMS", *keys, *self.heartbeats)
        self._go = asyncio.Event()
        self._go.set()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="fanout-streams-reader")

    async def _loop(self) -> str:
        try:
            while True:
                if not self._go.is_set():
                    await self._go.wait()
                await self._sink.settle()  # the last batch's async handlers are done: it is handed over
                await self._cycle()
        except ConnectionError as exc:  # RedisUnavailable too; a torn-down or silent connection
            self._proto.abort()
            return one_line(exc)

    async def _cycle(self) -> None:
        t, keys = self._t, self._keys
        t._handed_over()  # coming back for more: the previous batch may be saved now
        cmds: list[bytes] = []
        save = t._save_due()
        if save is not None:
            cmds.append(pack(*save[0]))
        pos = t._pos
        ids = [b"%d-%d" % pos[k][0] for k in keys]
        if self._beat is not None:
            ids.append(t._beat_pos)
        cmds.append(pack(*self._xread, *ids))
        # Redis runs these only once the XREAD has answered: the state of every stream right
        # after the read, with no extra round trip (see "Counting trimmed entries exactly").
        cmds.extend(self._info)
        # One write: a batch handed over is saved even if we crash next.
        replies = await self._proto.call_many(cmds)
        if save is not None:
            if isinstance(replies[0], Exception):  # an error reply (OOM ...): Redis still reads, so do we
                t._save_refused(replies[0], self._sink)
            else:
                t._save_done(save[1])
        reply = _raise_error(replies[-1 - len(keys)])
        try:
            infos = [parse_info(r) for r in replies[-len(keys):]]
        except hiredis.ReplyError as exc:
            raise ConnectionError(f"stream read failed: {one_line(exc)}") from None
        # No await from here on: positions move exactly when the batch is handed over.
        batch: dict[str, list] = {}
        beats = None
        for key_raw, entries in reply or ():
            if entries:
                if key_raw == self._beat:
                    beats = entries
                    t._beat_pos = entries[-1][0]
                    continue
                batch[self._key_of.get(key_raw) or key_raw.decode()] = entries
        if batch:
            t._outstanding = {}  # filled by _reconcile: what may be saved until it is handed over
        out: list[tuple[bytes, list]] = []
        for key, info in zip(keys, infos):
            entries = batch.get(key)
            if not entries:
                t._reconcile(key, info)  # trimmed or replaced while we waited: said now
                continue
            t._reconcile(key, info, [parse_id(e[0]) for e in entries])
            out.append((key.encode(), entries))
        sink = self._sink
        for loss in t._take_losses():
            sink.on_loss(loss)
        for key_b, entries in out:
            for eid, fields in entries:
                # when Redis took it (the id's milliseconds): a signed entry is judged stale from then
                sink.stamp_ms = int(eid[:eid.find(b"-")])
                sink.on_message(key_b, _payload(fields))
        sink.stamp_ms = 0
        for _eid, fields in beats or ():  # (the bridge knows the key: a heartbeat, never an event)
            sink.on_message(self._beat, _payload(fields))

    async def wait_lost(self) -> str:
        return await asyncio.shield(self._task)

    def pause_reading(self) -> None:
        self._go.clear()

    def resume_reading(self) -> None:
        self._go.set()

    async def close(self) -> None:
        # The loop may be cancelled with an XREAD reply still due: never reuse this connection;
        # the final position goes out on the publishing side or a short one.
        self.abort()
        await asyncio.wait({self._task}, timeout=1.0)
        await self._t._save_now()

    def abort(self) -> None:
        self._task.cancel()
        super().abort()


class StreamsTransport(PositionBook, SinglePublisher, Transport):
    name = "streams"

    def __init__(self, config) -> None:
        Transport.__init__(self, config)
        PositionBook.__init__(self, f"{config.key_prefix}pos:{config.instance_id}")
        self._aborted = False
        self._version_checked = False
        self._refused = 0            # position saves Redis refused in a row (0: the last one was taken)
        self._retry_at = 0.0         # monotonic: no save before this after a refusal
        self._xadd: dict[str, tuple] = {}
        maxlen = config.stream_maxlen
        self._trim: tuple = ()
        if maxlen is not None and maxlen > 0:
            self._trim = ((b"MAXLEN", b"~", b"%d" % int(maxlen)) if config.stream_maxlen_approx
                          else (b"MAXLEN", b"%d" % int(maxlen)))
        #: heartbeat_s on: this instance's own heartbeat stream (kept short) and where its reader is in it
        self._beat_key: str | None = None
        self._beat_pos = b"$"
        if config.heartbeat_s and config.enable_subscription:
            key = self._beat_key = config.heartbeat_channel()
            self._xadd[key] = (b"XADD", key.encode(), b"MAXLEN", b"~", b"%d" % BEAT_MAXLEN, b"*", _FIELD)

    # -- publishing --------------------------------------------------------------------
    async def connect_publisher(self) -> None:
        # One pipelined connection, like pub/sub: XADDs reach Redis (and get their ids) in
        # order, so each source's seq numbers are in order in the stream.
        if self._pub.up:
            return
        pub = await PubConn(self._result, keep_extra=True).open(self.url(), self.config)
        if not self._version_checked:  # XINFO STREAM's entries-added counts trims: Redis 7.0+
            try:
                await require_server(pub.proto, "streams")
            except BaseException:
                pub.abort()
                raise
            self._version_checked = True
        self._pub = pub

    def _result(self, token, reply, channel) -> None:
        if type(reply) is bytes:  # the entry id
            if self.config.enable_subscription and channel in self._pos:
                own = self._own.setdefault(channel, [])
                bisect.insort(own, parse_id(reply))
                if len(own) > OWN_IDS_CAP:
                    del own[: len(own) - OWN_IDS_CAP]
            self.on_ack(token, None)
        else:
            self.on_ack(token, reply)

    def publish_nowait(self, channel: str, payload: bytes, token, force: bool = False) -> bool:
        pub = self._up()
        head = self._xadd.get(channel)
        if head is None:
            head = self._xadd[channel] = (b"XADD", channel.encode(), *self._trim, b"*", _FIELD)
        return pub.send(_pack(head + (payload,)), token, channel, force)

    # -- subscribing -------------------------------------------------------------------
    async def open_subscriber(self, channels: list[str], sink) -> StreamsSubscriber:
        cfg = self.config
        proto = await open_connection(self.url(), **conn_options(
            cfg, command_timeout_s=cfg.command_timeout_s + MAX_BLOCK_S))  # > any XREAD BLOCK we send
        try:
            if not self._version_checked:
                await require_server(proto, "streams")
                self._version_checked = True
            await self._position(proto, channels, sink)
            if self._beat_key is not None and self._beat_pos == b"$":  # first open: from its end now
                info = parse_info((await proto.call_many([pack("XINFO", "STREAM", self._beat_key)]))[0])
                self._beat_pos = b"%d-%d" % info.last_generated if info is not None else b"0-0"
        except hiredis.ReplyError as exc:
            proto.abort()
            raise ConnectionError(f"stream positions on {proto.name}: {one_line(exc)}") from None
        except BaseException:
            proto.abort()
            raise
        return StreamsSubscriber(self, proto, list(channels), sink)

    async def _position(self, proto: RespProtocol, channels: list[str], sink) -> None:
        """Resolve (first open) or check (every open) the position of every stream, then save it
        (a save Redis refuses is retried by the reader: it does not stop the subscription)."""
        cmds: list[bytes] = []
        load = not self._loaded
        if load:
            cmds.append(pack("HGETALL", self.pos_key))
        cmds.extend(pack("XINFO", "STREAM", k) for k in channels)
        replies = await proto.call_many(cmds)
        saved: dict[str, tuple] = {}
        if load:
            if isinstance(replies[0], Exception):
                raise replies[0]
            saved = _parse_saved(replies[0], channels)
        infos = [parse_info(r) for r in replies[-len(channels):]]
        for key, info in zip(channels, infos):
            if key in self._pos:
                self._reconcile(key, info)
            elif key in saved:
                self._pos[key] = list(saved[key])
                self._saved[key] = saved[key]
                log.info("%s: resuming %s from %s", self.pos_key, key, format_id(saved[key][0]))
                self._reconcile(key, info)
            elif info is None:
                self._pos[key] = [_ZERO, 0]
            else:
                self._pos[key] = [info.last_generated, info.added]
        self._loaded = True
        save = self._save_due()
        if save is not None:
            try:
                await proto.call(*save[0])
            except hiredis.ReplyError as exc:
                self._save_refused(exc, sink)
            else:
                self._save_done(save[1])

    # -- saving the position -----------------------------------------------------------------
    def _save_due(self) -> tuple[tuple, dict] | None:
        """The position save to send now: None when nothing moved, or while a refused one waits."""
        if self._refused and time.monotonic() < self._retry_at:
            return None
        return self._save_command()

    def _save_refused(self, exc: BaseException, sink) -> None:
        """Redis answered the save with an error reply: counted each time, said once per spell."""
        self._refused += 1
        self._retry_at = time.monotonic() + SAVE_RETRY_S
        sink.on_save_refused(one_line(exc))
        if self._refused == 1:
            log.warning("bridge %s: Redis refused to save the read position %s (%s); reading goes on, "
                        "retried every %g s", self.config.instance_id, self.pos_key, one_line(exc), SAVE_RETRY_S)
        else:
            log.debug("%s: position save refused again (%d in a row): %s", self.pos_key, self._refused,
                      one_line(exc))

    def _save_done(self, changed: dict) -> None:
        self._saved_ok(changed)
        if self._refused:
            log.info("bridge %s: read position %s saved again, after %d refused save(s)",
                        self.config.instance_id, self.pos_key, self._refused)
            self._refused = 0

    async def _save_now(self) -> None:
        """Write the handed-over positions (close); bounded, best effort."""
        if self._aborted or not self._loaded:
            return
        save = self._save_command()
        if save is None:
            return
        cfg = self.config
        bound = min(cfg.command_timeout_s, 2.0)
        proto, own = (self._pub.proto if self._pub.up else None), False
        try:
            if proto is None:  # a subscribe-only bridge: one short connection
                proto = await open_connection(self.url(), **conn_options(cfg, command_timeout_s=bound))
                own = True
            await asyncio.wait_for(proto.call(*save[0]), bound)
            self._save_done(save[1])
        except (ConnectionError, hiredis.ReplyError, TimeoutError) as exc:
            log.warning("%s: could not save the stream position: %s", self.pos_key, one_line(exc))
        finally:
            if own and proto is not None:
                await proto.close(timeout_s=bound)

    # -- lifecycle -------------------------------------------------------------------------
    async def close(self) -> None:
        await self._save_now()
        await super().close()

    def abort(self) -> None:
        self._aborted = True
        super().abort()
