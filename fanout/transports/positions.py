"""Stream positions and the exact count of trimmed entries (the arithmetic of
:mod:`fanout.transports.streams`' docstring, "Counting trimmed entries exactly"), apart from
the commands that move them. Pure: no I/O, tested on hand-made ``XINFO STREAM`` states.
"""
from __future__ import annotations

import bisect
import logging

import hiredis

from fanout.transports.base import Loss

log = logging.getLogger("fanout.transports.streams")

_ZERO = (0, 0)

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
        if isinstance(reply, hiredis.ReplyError) and "no such key" in str(reply).lower():
            return None
        raise reply
    d = {reply[i]: reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    first = d.get(_FIRST)
    return StreamInfo(int(d[_LENGTH]), int(d[_ADDED]), parse_id(d[_LAST]), parse_id(first[0]) if first else None)


class PositionBook:
    """Per stream key: ``[position id, accounted offset n]``, what was saved, the losses found,
    and the ids this instance XADDed itself (not its loss when trimmed)."""

    def __init__(self, pos_key: str) -> None:
        self.pos_key = pos_key
        # key -> [position id, accounted offset n]
        self._pos: dict[str, list] = {}
        self._loaded = False
        # per stream of the batch returned but not yet handed over: the position before it
        self._outstanding: dict[str, tuple] | None = None
        self._saved: dict[str, tuple] = {}  # what Redis acknowledged
        self._losses: list[Loss] = []
        self._resync: set[str] = set()
        self._own: dict[str, list[StreamId]] = {}  # sorted ids this instance XADDed, not yet passed

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

