"""Loss and duplicate detection from ``seq`` and ``epoch``, per (channel, source, epoch), with
signals a forger cannot inflate (docs/wire-format.md, "Sequence numbers").

Sources compare by type and value (JavaScript ``===``): ``123`` and ``"123"`` are two sources.
State per (channel, source): the current epoch's :class:`EpochState` (``epoch``, ``last`` seq,
``jump``, ``ring``, ``older``, ``first_ms``) and up to ``MAX_EPOCHS - 1`` older epochs
(``older``), each tracked on its own. ``ring`` remembers events by seq and ``ns`` fingerprint, one
slot per ``seq % WINDOW``: the last taken in order (first half) and the last delivered behind the
stream's last seq (second half: a forged number taken first, then the real one). ``jump`` is None
(nothing pending) or a :class:`Jump`: a jump taken from ``origin`` awaiting confirmation, a
suspicious ``target`` not taken, and whether the next jump is ``free`` (after a resync). For a
message ``seq`` of a known epoch:

* ``seq == last + 1``: in order (the fast path; it also confirms a pending jump);
* ``seq > last + 1``: a jump. The seqs the publisher announced as never sent (``void``) that
  lie in the hole count as ``unsent``, the rest as ``gaps`` (a ``seq_gap`` notice). Bounded:
  a jump whose unexplained part is over ``MAX_GAP`` (or unsent part over ``MAX_UNSENT``), or
  that comes while an earlier jump is still unconfirmed, is ``suspicious`` and moves nothing;
  when the next message continues right after it, the tracker follows (no gap counted). Only
  the first message per (channel, source) after the receiver's own reconnect (``resync``) or
  from a signed fleet (``trusted``) may jump any distance;
* ``seq <= last``: a duplicate (dropped) only when it is the same event (an event with that seq
  and ``ns`` is remembered in ``ring``); anything else is delivered, counted ``suspicious`` and
  remembered (a forged or replayed seq never suppresses a real event), and a seq between
  a pending jump's origin and its target refutes the jump: the tracker follows the real stream
  again. With a signed fleet (``trusted``) every ``seq <= last`` is a duplicate.

A new epoch is a restart (``source_restarts``) when it starts plausibly low, else suspicious;
an older epoch that comes back is ``suspicious`` (it becomes current again, its own numbering
still checked). :meth:`SequenceTracker.check` answers with one int: 0 deliver, > 0 deliver and
tell of that many missing, :data:`DUPLICATE` drop. It counts into the bridge's counters.
"""
from __future__ import annotations

import logging
from array import array

from fanout.events import MAX_EPOCH_CHARS, MAX_SOURCE_CHARS, MAX_VOID_RANGES

log = logging.getLogger("fanout.bridge")

IN_ORDER = 0
DUPLICATE = -3   # already handed over: drop it
STALE = -4       # signed: an epoch this receiver no longer tracks, older than the current one: drop it (rejected)

#: the most ``gaps`` one message may add (beyond it: ``suspicious``), except after a reconnect
MAX_GAP = 1_000
#: the most ``unsent`` one message's ``void`` may add
MAX_UNSENT = 1_000_000
#: slots per (channel, source, epoch) remembering events (by seq % WINDOW) for exact duplicate checks
WINDOW = 64
_MASK = WINDOW - 1
#: epochs tracked per (channel, source), and sources per channel
MAX_EPOCHS = 4
MAX_SOURCES = 4_096

#: a remembered event is ``(seq & _SEQ_BITS) << 20 | ns`` (ns < 2^20): seq and fingerprint in one int64
_SEQ_BITS = (1 << 43) - 1
_RING = array("q", [-1]) * (2 * WINDOW)   # -1: no event


class Channel:
    """One channel's sources (``sources``: source -> state), its name and stream (the event
    type, or ``type.partition``), and its event type; ``latency`` and ``handling``: its type's
    delivery-latency and handler-duration histograms (:mod:`fanout.histograms`; None: not measured)."""

    __slots__ = ("name", "stream", "type", "sources", "verify", "latency", "handling")

    def __init__(self, name: str, stream: str, event_type: str | None) -> None:
        self.name, self.stream, self.type = name, stream, event_type
        self.sources: dict = {}
        self.verify = None          # with signing: this channel's bound verifier (fanout.signing.Bound.verify)
        self.latency = self.handling = None  # set by the bridge's Delivery (fanout.histograms lists)


def _stamp(obj: dict) -> int:
    ts = obj.get("timestamp")
    return ts if type(ts) is int else 0


class Jump:
    """What is pending on a stream besides in-order messages (None when nothing is).

    ``origin``: the last seq before a jump that was *taken* (its gap counted) and is not confirmed
    yet (-1: none); ``target``: the seq of a suspicious jump that was *not* taken (-1: none); a
    message right after it is followed; ``free``: this receiver reconnected (or the channel was
    reset): the next jump may be any distance."""

    __slots__ = ("origin", "target", "free")

    def __init__(self, origin: int = -1, target: int = -1, free: bool = False) -> None:
        self.origin, self.target, self.free = origin, target, free

    def __repr__(self) -> str:
        return f"Jump(origin={self.origin}, target={self.target}, free={self.free})"


class EpochState:
    """One (channel, source, epoch): its ``last`` seq, the pending ``jump`` (None or :class:`Jump`),
    the ``ring`` of remembered events, the ``older`` epochs (only on the current one; None or a
    list of EpochState) and ``first_ms``, the timestamp of its first message seen here."""

    __slots__ = ("epoch", "last", "jump", "ring", "older", "first_ms")

    def __init__(self, epoch: str, seq: int, ns: int, older: list | None = None, first_ms: int = 0) -> None:
        ring = array("q", _RING)
        ring[seq & _MASK] = (seq & _SEQ_BITS) << 20 | ns
        self.epoch, self.last, self.jump, self.ring, self.older, self.first_ms = epoch, seq, None, ring, older, first_ms

    def take(self, seq: int, ns: int) -> None:
        """``seq`` is now the stream's last (in order, or the tracker follows it)."""
        self.last, self.jump = seq, None
        self.ring[seq & _MASK] = (seq & _SEQ_BITS) << 20 | ns

    def __repr__(self) -> str:
        return f"EpochState({self.epoch!r}, last={self.last}, jump={self.jump}, older={len(self.older or ())})"


def _stamp(obj: dict) -> int:
    ts = obj.get("timestamp")
    return ts if type(ts) is int else 0


def void_count(void, last: int, seq: int) -> int:
    """How many seqs strictly between ``last`` and ``seq`` the ``void`` ranges name (-1: malformed)."""
    if type(void) is not list or len(void) > MAX_VOID_RANGES:
        return -1
    n = 0
    for r in void:
        if type(r) is not list or len(r) != 2 or type(r[0]) is not int or type(r[1]) is not int:
            return -1
        lo, hi = max(r[0], last + 1), min(r[1], seq - 1)
        if hi >= lo:
            n += hi - lo + 1
    return min(n, seq - last - 1)


def _keep(epochs: list) -> list:
    """At most ``MAX_EPOCHS - 1`` older epochs: beyond, the least advanced goes (the smallest last
    seq; of equals, the oldest), so a flood of forged new epochs (each at seq 1) cannot push a
    live source's real epoch out (its replays would then look new)."""
    while len(epochs) > MAX_EPOCHS - 1:
        drop = len(epochs) - 1
        for k in range(len(epochs) - 2, -1, -1):
            if epochs[k].last < epochs[drop].last:
                drop = k
        del epochs[drop]
    return epochs


class Loud:
    """Counts a kind of message and says so at the 1st, 10th, 100th ... (a flood is one line per decade)."""

    __slots__ = ("_counts", "_name", "_next", "_who")

    def __init__(self, counts: dict, name: str, who: str) -> None:
        self._counts, self._name, self._who, self._next = counts, name, who, 1

    def __call__(self, why: str, *args) -> None:
        n = self._counts[self._name] = self._counts[self._name] + 1
        if n >= self._next:
            self._next *= 10
            log.warning("bridge %s: %s message #%d: " + why, self._who, self._name, n, *args)


class SequenceTracker:
    __slots__ = ("_counts", "trusted", "prev_last", "channels", "flag")

    def __init__(self, counts: dict, trusted: bool = False, who: str = "?") -> None:
        self._counts = counts
        self.trusted = trusted          # a signed fleet: seqs cannot be forged
        self.prev_last = 0              # the seq before the last gap check() reported
        self.channels: dict[str, Channel] = {}
        self.flag = Loud(counts, "suspicious", who)

    def channel(self, name: str, stream: str | None = None, event_type: str | None = None) -> Channel:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = Channel(name, stream or name, event_type)
        return ch

    def check(self, ch: Channel, source, epoch: str, seq: int, ns: int, obj: dict) -> int:
        """Record ``seq`` (with its ``ns`` fingerprint) from ``source``; return IN_ORDER, DUPLICATE,
        STALE or the number of events missing before it (> 0)."""
        st = ch.sources.get(source)
        if st is None or st.epoch != epoch:
            st = self._epoch(ch, source, st, epoch, seq, ns, obj)
            if st is None:
                return IN_ORDER
            if st is STALE:
                return STALE
        if seq == st.last + 1:
            st.last = seq
            st.jump = None
            st.ring[seq & _MASK] = (seq & _SEQ_BITS) << 20 | ns
            return IN_ORDER
        return self._unusual(st, seq, ns, obj)

    def _epoch(self, ch: Channel, source, st: EpochState | None, epoch: str, seq: int, ns: int, obj: dict):
        """A first message, a new epoch or an older one coming back: the state to check it against,
        None when handled here (delivered), or STALE."""
        c = self._counts
        if len(epoch) > MAX_EPOCH_CHARS or (type(source) is str and len(source) > MAX_SOURCE_CHARS):
            self.flag("an epoch or source too long to track on %s (%d, %d characters)", ch.name, len(epoch),
                       len(str(source)))
            return None
        if st is None:
            if len(ch.sources) >= MAX_SOURCES:  # a flood of made-up sources: delivered, not tracked
                self.flag("more than %d sources on %s; %r is not tracked", MAX_SOURCES, ch.name, source)
                return None
            ch.sources[source] = EpochState(epoch, seq, ns, None, _stamp(obj))
            return None
        older = st.older
        if older:
            for i, o in enumerate(older):
                if o.epoch == epoch:
                    self.flag("epoch %s of %r on %s came back after a newer one", epoch, source, ch.name)
                    older[i] = st
                    st.older, o.older = None, older
                    ch.sources[source] = o
                    return o
        first_ms = _stamp(obj)
        if self.trusted and first_ms < st.first_ms:  # signed, not tracked, older than the current epoch: a replay
            return STALE
        if seq <= MAX_GAP + 1 or self.trusted:
            c["source_restarts"] += 1
        else:
            self.flag("%r on %s: a new epoch %s starting at seq %d", source, ch.name, epoch, seq)
        st.older = None
        ch.sources[source] = EpochState(epoch, seq, ns, _keep([st, *(older or ())]), first_ms)
        return None

    def _unusual(self, st: EpochState, seq: int, ns: int, obj: dict) -> int:
        c = self._counts
        last, jump = st.last, st.jump
        if seq <= last:
            ring, i, key = st.ring, seq & _MASK, (seq & _SEQ_BITS) << 20 | ns
            # the slot remembers the event (seq and ns), not just a position behind ``last``: a forged
            # jump ahead, confirmed by another forgery, cannot push real events out of it
            if ring[i] == key or ring[i + WINDOW] == key or self.trusted:
                return DUPLICATE
            self.flag("seq %d of epoch %s is behind %d and no copy of what was delivered", seq, st.epoch, last)
            ring[i + WINDOW] = key  # delivered: a copy of it is a duplicate too (the real one, after a forgery)
            if jump is not None and jump.origin >= 0 and seq > jump.origin:  # the stream continues before the jump
                st.take(seq, ns)
            return IN_ORDER
        void = obj.get("void")
        unsent = 0 if void is None else void_count(void, last, seq)
        if unsent < 0:
            self.flag("a malformed 'void' with seq %d of epoch %s", seq, st.epoch)
            unsent = 0
        missing = seq - last - 1 - unsent
        free = self.trusted or (jump is not None and jump.free)
        if not free and ((jump is not None and jump.origin >= 0) or missing > MAX_GAP or unsent > MAX_UNSENT):
            if jump is not None and jump.target >= 0 and seq == jump.target + 1:  # it goes on from there: follow
                st.take(seq, ns)
                return IN_ORDER
            self.flag("seq %d of epoch %s jumps from %d (over %d, or while a jump is unconfirmed)", seq, st.epoch, last,
                       MAX_GAP)
            if jump is None:
                st.jump = Jump(target=seq)
            else:
                jump.target = seq
            return IN_ORDER
        c["unsent"] += unsent
        c["gaps"] += missing
        st.take(seq, ns)
        st.jump = Jump(origin=last)
        self.prev_last = last
        return missing

    def resync(self, channel: str | None = None) -> None:
        """This receiver was disconnected (or ``channel``'s history reset): the next message
        from each source may jump any distance (counted as gaps: it is what was lost)."""
        chans = self.channels.values() if channel is None else [self.channels.get(channel)]
        for ch in chans:
            if ch is None:
                continue
            for st in ch.sources.values():
                if st.jump is None:
                    st.jump = Jump(free=True)
                else:
                    st.jump.free = True

    def last(self, source, channel: str) -> tuple[str, int] | None:
        """(epoch, last seq) of ``source``'s current epoch on ``channel``, or None."""
        ch = self.channels.get(channel)
        st = None if ch is None else ch.sources.get(source)
        return None if st is None else (st.epoch, st.last)

    def forget_channel(self, channel: str) -> None:
        """Restart every source's baseline on ``channel`` (a hole the transport already counted)."""
        ch = self.channels.get(channel)
        if ch is not None:
            ch.sources.clear()
