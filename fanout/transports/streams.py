"""Redis Streams: XADD to ``{prefix}{type}``, XREAD BLOCK from a remembered position.

Publishing is ``XADD {prefix}{type} MAXLEN [~] N * d <envelope>`` (one field, ``d``; the
bridge encodes, the transport moves bytes; ``stream_maxlen <= 0`` means no MAXLEN).
Receiving is ``XREAD COUNT n BLOCK ms STREAMS k1 .. kN id1 .. idN`` on one dedicated
connection, from the last id handed over per stream. Self-filtering, seq gaps and
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
import math

from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError, ResponseError

try:  # hiredis' "no complete reply buffered yet" marker, to take buffered replies without a syscall
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH
except ImportError:  # pragma: no cover
    _NOT_ENOUGH = object()

from fanout.capabilities import require, server_version
from fanout.redact import redact_url
from fanout.transports.base import Loss, Subscriber, Transport
from fanout.transports.pipe import CommandPipe, abort_connection, set_receive_buffer
from fanout.transports.pubsub import connection_kwargs, explain, open_pipe

log = logging.getLogger(__name__)

_FIELD = b"d"
_ZERO = (0, 0)
#: entries per stream per XREAD (smaller batches let a catching-up reader share the loop)
READ_COUNT = 100
#: longest XREAD BLOCK; the subscriber connection's socket timeout is this + command_timeout_s
MAX_BLOCK_S = 1.0
#: own XADD ids remembered per stream while the reader has not passed them
OWN_IDS_CAP = 100_000

StreamId = tuple[int, int]


def parse_id(raw: bytes | str) -> StreamId:
    s = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


class StreamInfo:
    """What ``XINFO STREAM`` says about one stream, as far as the position arithmetic goes."""

    __slots__ = ("length", "added", "first", "last_generated")

    def __init__(self, length: int, added: int, last_generated: StreamId, first: StreamId | None) -> None:
        self.length = length
        self.added = added
        self.last_generated = last_generated
        self.first = first if length else None


_LENGTH, _ADDED, _LAST, _FIRST = b"length", b"entries-added", b"last-generated-id", b"first-entry"


def parse_info(reply) -> StreamInfo | None:
    """One ``XINFO STREAM`` reply (or its error) -> StreamInfo; None when there is no such stream."""
    if isinstance(reply, Exception):
        if isinstance(reply, ResponseError) and "no such key" in str(reply).lower():
            return None
        raise reply
    d = {reply[i]: reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    first = d.get(_FIRST)
    return StreamInfo(int(d[_LENGTH]), int(d[_ADDED]), parse_id(d[_LAST]), parse_id(first[0]) if first else None)


class StreamsSubscriber(Subscriber):
    """One XREAD connection; positions live in the transport so a new subscriber continues."""

    def __init__(self, transport: "StreamsTransport", conn, keys: list[str]) -> None:
        self._t = transport
        self._conn = conn
        self._keys = keys
        self._info = b"".join(pack("XINFO", "STREAM", k) for k in keys)
        self._xread: dict[int, bytes] = {}  # block ms -> the constant head of our XREAD

    async def read(self, timeout_s: float) -> list[tuple[str, bytes]]:
        t = self._t
        conn = self._conn
        # Coming back for more means the previous batch was handed over: it may be saved now.
        t._handed_over()
        if not conn.is_connected:
            raise ConnectionError("subscriber connection closed")
        block_ms = max(1, int(min(timeout_s, MAX_BLOCK_S) * 1000))
        keys = self._keys
        cmds: list[bytes] = []
        save = t._save_command()
        if save is not None:
            cmds.append(pack(*save[0]))
        head = self._xread.get(block_ms)
        if head is None:
            head = self._xread[block_ms] = pack("XREAD", "COUNT", READ_COUNT, "BLOCK", block_ms, "STREAMS", *keys,
                                                nargs=6 + 2 * len(keys))
        pos = t._pos
        cmds.append(head + _bulk(*[b"%d-%d" % pos[k][0] for k in keys]))
        # Redis runs these only once the XREAD has answered: the state of every stream right
        # after the read, with no extra round trip (see "Counting trimmed entries exactly").
        cmds.append(self._info)
        try:
            # One write, no await before it: a batch handed over is saved even if we crash next.
            await _send(conn, cmds, t.config.command_timeout_s)
            replies = await _replies(conn, len(cmds) - 1 + len(keys), block_ms / 1000 + t.config.command_timeout_s)
            if save is not None:
                _raise_error(replies[0])
                t._saved_ok(save[1])
            reply = _raise_error(replies[-1 - len(keys)])
            infos = [parse_info(r) for r in replies[-len(keys):]]
        except ResponseError as exc:
            raise ConnectionError(f"stream read failed: {str(exc).splitlines()[0]}") from exc
        except Exception as exc:  # RedisError, OSError, or a connection torn down under us
            raise ConnectionError(str(exc) or exc.__class__.__name__) from exc
        # No await from here on: positions move exactly when the batch is returned.
        batch: dict[str, list] = {}
        for key_raw, entries in reply or ():
            if entries:
                batch[key_raw.decode() if isinstance(key_raw, bytes) else key_raw] = entries
        if batch:
            t._outstanding = {}  # filled by _reconcile: what may be saved until it is handed over
        out: list[tuple[str, bytes]] = []
        for key, info in zip(keys, infos):
            entries = batch.get(key)
            if not entries:
                t._reconcile(key, info)  # trimmed or replaced while we waited: said now
                continue
            t._reconcile(key, info, [parse_id(e[0]) for e in entries])
            for _eid, fields in entries:
                out.append((key, _payload(fields)))
        return out

    def take_losses(self) -> list[Loss]:
        return self._t._take_losses()

    def shrink_receive_buffer(self, nbytes: int) -> None:
        # Nothing piles up in Redis for a stream reader that stops asking; kept for parity.
        set_receive_buffer(self._conn, nbytes)

    async def close(self) -> None:
        # The reader was cancelled, maybe with an XREAD reply still due: never reuse this
        # connection; the final position goes out on the publishing side or a short one.
        try:
            await asyncio.wait_for(self._conn.disconnect(nowait=True), 1.0)
        except Exception:
            self.abort()
        await self._t._save_now()

    def abort(self) -> None:
        abort_connection(self._conn)


def pack(*args, nargs: int | None = None) -> bytes:
    """One command in RESP (the subscriber's hot path; redis-py's packer is general and slow).
    ``nargs`` announces more arguments than given: the rest follow as :func:`_bulk`."""
    return b"*%d\r\n" % (len(args) if nargs is None else nargs) + _bulk(*args)


def _bulk(*args) -> bytes:
    out = []
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def _send(conn, data: list[bytes], timeout_s: float) -> None:
    """Write packed commands pipelined; the bytes reach the socket before the first await."""
    writer = conn._writer
    if writer is None or not conn.is_connected:
        raise ConnectionError("subscriber connection closed")
    writer.writelines(data)
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: on 3.11 it can swallow a cancel
            await writer.drain()
    except (TimeoutError, OSError) as exc:
        raise ConnectionError(f"cannot write to Redis: {exc or exc.__class__.__name__}") from exc


async def _replies(conn, n: int, timeout_s: float) -> list:
    """The next ``n`` replies (error replies as exception objects), all within ``timeout_s``
    (else the connection is useless: raise).

    With hiredis, straight from its reader (one timeout for the lot instead of redis-py's
    per-reply machinery: this is the subscriber's hot path); else through redis-py."""
    parser = conn._parser
    reader = getattr(parser, "_reader", None)
    out: list = []
    try:
        async with asyncio.timeout(timeout_s):
            if reader is None or not hasattr(parser, "read_from_socket"):  # pragma: no cover - no hiredis
                while len(out) < n:
                    try:
                        out.append(await conn.read_response(disable_decoding=True, timeout=math.inf))
                    except ResponseError as exc:
                        out.append(exc)
            else:
                while len(out) < n:
                    try:
                        r = reader.gets(False)
                    except Exception as exc:  # hiredis.ProtocolError: the stream is garbage
                        raise RedisConnectionError(f"bad reply from Redis: {exc}") from exc
                    if r is _NOT_ENOUGH or r is False:
                        await parser.read_from_socket()
                    else:
                        out.append(r)
    except TimeoutError:
        raise RedisConnectionError(f"no answer from Redis within {timeout_s:g}s") from None
    return out


def _raise_error(reply):
    if isinstance(reply, Exception):
        raise reply
    return reply


def _payload(fields) -> bytes:
    if not fields:
        return b""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == _FIELD:
            return fields[i + 1]
    return fields[1] if len(fields) > 1 else b""  # malformed: the bridge counts it


def _check_version(info, url: str) -> None:
    require("streams", server_version(info), redact_url(url))


class StreamsTransport(Transport):
    name = "streams"

    def __init__(self, config) -> None:
        super().__init__(config)
        self._pipe: CommandPipe | None = None
        self.pos_key = f"{config.key_prefix}pos:{config.instance_id}"
        # key -> [position id, accounted offset n]
        self._pos: dict[str, list] = {}
        self._loaded = False
        # per stream of the batch returned but not yet handed over: the position before it
        self._outstanding: dict[str, tuple] | None = None
        self._saved: dict[str, tuple] = {}  # what Redis acknowledged
        self._losses: list[Loss] = []
        self._resync: set[str] = set()
        self._own: dict[str, list[StreamId]] = {}  # sorted ids this instance XADDed, not yet passed
        self._aborted = False
        maxlen = config.stream_maxlen
        self._trim: tuple = ()
        if maxlen is not None and maxlen > 0:
            self._trim = ("MAXLEN", "~", int(maxlen)) if config.stream_maxlen_approx else ("MAXLEN", int(maxlen))

    # -- publishing --------------------------------------------------------------------
    async def connect_publisher(self) -> None:
        # One pipelined connection, like pub/sub: XADDs reach Redis (and get their ids) in
        # call order, so each source's seq numbers are in order in the stream.
        self._pipe = await open_pipe(self.config)
        if not self._version_checked:
            try:
                _check_version(await self._pipe.call("INFO", "server"), self.config.resolved_url())
            except BaseException:
                await self._pipe.close()
                self._pipe = None
                raise
            self._version_checked = True

    async def publish(self, channel: str, payload: bytes) -> None:
        assert self._pipe is not None, "publisher not connected"
        entry_id = await self._pipe.call("XADD", channel, *self._trim, "*", "d", payload)
        if self.config.enable_subscription and channel in self._pos:
            own = self._own.setdefault(channel, [])
            bisect.insort(own, parse_id(entry_id))
            if len(own) > OWN_IDS_CAP:
                del own[: len(own) - OWN_IDS_CAP]

    # -- subscribing -------------------------------------------------------------------
    async def open_subscriber(self, channels: list[str]) -> StreamsSubscriber:
        cfg = self.config
        pool = ConnectionPool.from_url(cfg.resolved_url(), protocol=2, **connection_kwargs(cfg))
        conn = pool.make_connection()
        conn.socket_timeout = cfg.command_timeout_s + MAX_BLOCK_S  # > any XREAD BLOCK we send
        try:
            async with asyncio.timeout(cfg.connect_timeout_s + cfg.command_timeout_s):
                await conn.connect()
            if not self._version_checked:  # XINFO STREAM's entries-added counts trims: Redis 7.0+
                async with asyncio.timeout(cfg.command_timeout_s):
                    await conn.send_command("INFO", "server", check_health=False)
                    info = await conn.read_response()
                _check_version(info, cfg.resolved_url())
                self._version_checked = True
            async with asyncio.timeout(cfg.command_timeout_s):
                await self._position(conn, channels)
        except BaseException as exc:
            try:
                await asyncio.wait_for(conn.disconnect(nowait=True), 1.0)
            except Exception:
                pass
            if isinstance(exc, (RedisError, OSError, TimeoutError)):
                raise explain(exc, cfg.resolved_url()) from None
            raise
        return StreamsSubscriber(self, conn, list(channels))

    _version_checked = False

    async def _position(self, conn, channels: list[str]) -> None:
        """Resolve (first open) or check (every open) the position of every stream, then save it."""
        cmds: list[bytes] = []
        load = not self._loaded
        if load:
            cmds.append(pack("HGETALL", self.pos_key))
        cmds.extend(pack("XINFO", "STREAM", k) for k in channels)
        await _send(conn, cmds, self.config.command_timeout_s)
        replies = await _replies(conn, len(cmds), self.config.command_timeout_s)
        saved: dict[str, tuple] = {}
        if load:
            saved = _parse_saved(_raise_error(replies[0]), channels)
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
        save = self._save_command()
        if save is not None:
            await _send(conn, [pack(*save[0])], self.config.command_timeout_s)
            _raise_error((await _replies(conn, 1, self.config.command_timeout_s))[0])
            self._saved_ok(save[1])

    # -- position arithmetic (see the module docstring) -------------------------------------
    def _reconcile(self, key: str, info: StreamInfo | None, batch: list[StreamId] | None = None) -> None:
        st = self._pos[key]
        pos, n = st
        k = len(batch) if batch else 0
        if info is None:
            if k:
                st[0] = batch[-1]
                st[1] = n + k
            if st[0] != _ZERO or st[1]:
                self._reset(key, "the stream no longer exists", None)
            return
        after = batch[-1] if k else pos
        if info.last_generated < after or info.added < n + k:
            self._reset(key, f"its ids/counter went backwards (last id {format_id(info.last_generated)}, "
                             f"{info.added} added; we were at {format_id(after)}, {n + k})", info)
            return
        removed = info.added - info.length
        first = info.first
        lost = 0
        resync = False
        if k:
            if first is not None and first < batch[0]:
                n_new = n + k  # something before the batch is still there: no hole
            else:
                j = k if first is None else bisect.bisect_left(batch, first)
                lost = removed - n - j
                n_new = removed + k - j
                resync = j == k
            new_pos = batch[-1]
        else:
            new_pos = pos
            if first is not None and first <= pos:
                n_new = n
            else:
                lost = removed - n
                n_new = removed
        if lost < 0:
            self._reset(key, f"its offsets do not add up ({removed} removed, {n} accounted)", info)
            return
        if k and self._outstanding is not None:
            self._outstanding[key] = (pos, n + lost)  # the hole is accounted for, the batch not yet
        st[0], st[1] = new_pos, n_new
        if lost:
            bound = first if first is not None else (info.last_generated[0], info.last_generated[1] + 1)
            own = self._own_between(key, pos, bound, batch)
            report = lost - own
            log.warning("%s: %d entries trimmed from %s before this instance read them (%d of them its own)",
                        self.pos_key, lost, key, own)
            if report > 0:
                self._losses.append(Loss(key, report, "trimmed"))
                if resync:
                    self._resync.add(key)
        self._prune_own(key, new_pos)

    def _reset(self, key: str, why: str, info: StreamInfo | None) -> None:
        log.warning("%s: stream %s was replaced (%s); reading the new one from its start", self.pos_key, key, why)
        self._pos[key] = [_ZERO, 0]
        self._own.pop(key, None)
        self._losses.append(Loss(key, 0, "stream_reset"))
        if info is not None:
            self._reconcile(key, info)  # entries of the new stream already trimmed

    def _own_between(self, key: str, lo: StreamId, hi: StreamId, batch: list[StreamId] | None) -> int:
        """How many of our own ids lie in (lo, hi) and not in ``batch``; they are forgotten."""
        own = self._own.get(key)
        if not own:
            return 0
        a = bisect.bisect_right(own, lo)
        b = bisect.bisect_left(own, hi)
        inside = own[a:b]
        if batch:
            got = set(batch)
            count = sum(1 for i in inside if i not in got)
        else:
            count = len(inside)
        del own[:b]
        return count

    def _prune_own(self, key: str, upto: StreamId) -> None:
        own = self._own.get(key)
        if own:
            del own[: bisect.bisect_right(own, upto)]

    # -- hand-over bookkeeping -------------------------------------------------------------
    def _handed_over(self) -> None:
        self._outstanding = None
        for key in self._resync:
            self._losses.append(Loss(key, 0, "trimmed"))
        self._resync.clear()

    def _take_losses(self) -> list[Loss]:
        out, self._losses = self._losses, []
        return out

    def _target(self) -> dict[str, tuple]:
        held = self._outstanding or {}
        return {k: held.get(k) or tuple(v) for k, v in self._pos.items()}

    def _save_command(self) -> tuple[tuple, dict] | None:
        """``(HSET command, what it saves)`` for the positions not yet in Redis, or None."""
        target = self._target()
        changed = {k: v for k, v in target.items() if self._saved.get(k) != v}
        if not changed:
            return None
        args: list = []
        for k, (sid, n) in changed.items():
            args += [k, format_id(sid), f"{k}|n", n]
        return ("HSET", self.pos_key, *args), changed

    def _saved_ok(self, changed: dict) -> None:
        self._saved.update(changed)

    async def _save_now(self) -> None:
        """Write the handed-over positions (close); bounded, best effort."""
        if self._aborted or not self._loaded:
            return
        save = self._save_command()
        if save is None:
            return
        cfg = self.config
        bound = min(cfg.command_timeout_s, 2.0)
        pipe, own = self._pipe, False
        if pipe is None:  # a subscribe-only bridge: one short connection
            pipe = CommandPipe(cfg.resolved_url(), bound, cfg.connect_timeout_s, **connection_kwargs(cfg))
            own = True
        try:
            await asyncio.wait_for(pipe.call(*save[0]), bound)
            self._saved_ok(save[1])
        except Exception as exc:
            log.warning("%s: could not save the stream position: %s", self.pos_key, str(exc).split("\n")[0])
        finally:
            if own:
                await pipe.close()

    # -- lifecycle -------------------------------------------------------------------------
    async def close(self) -> None:
        await self._save_now()
        if self._pipe is not None:
            await self._pipe.close()

    def abort(self) -> None:
        self._aborted = True
        if self._pipe is not None:
            self._pipe.abort()


def _parse_saved(reply, channels: list[str]) -> dict[str, tuple]:
    """HGETALL reply -> {stream key: (id, n)} for the streams we read; bad fields are ignored."""
    if not reply:
        return {}
    flat = {}
    for i in range(0, len(reply) - 1, 2):
        k = reply[i]
        v = reply[i + 1]
        flat[k.decode() if isinstance(k, bytes) else k] = v.decode() if isinstance(v, bytes) else v
    out: dict[str, tuple] = {}
    for key in channels:
        if key not in flat:
            continue
        try:
            out[key] = (parse_id(flat[key]), int(flat.get(f"{key}|n", 0)))
        except (TypeError, ValueError):
            log.warning("ignoring an unreadable saved position for %s: %r", key, flat[key])
    return out
