"""The wire rules of docs/wire-format.md (v2: "What a receiver does with a message", "Sequence
numbers", "Bounds"), written here apart from ``fanout.sequencing`` and ``fanout.delivery``: what
each receiver must count for a stream of messages, as the hostile case
(:mod:`benchmarks.chaos.hostile`) checks the bridges against it.

This is the one place to follow a changed wire contract: change :func:`apply_rules`,
:class:`Receiver` and :class:`Expect`, and the case re-measures.

What it does not model (the hostile case sends none of it): ``void`` announcements (no publish
fails in that run), more than :data:`MAX_SOURCES` sources, over-long epochs or sources. The
receiver's own reconnects are modelled (:meth:`Receiver.resync`) for the property test
(``tests/test_sequencing.py``, hypothesis), though the hostile case checks there were none.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_GAP = 1_000        # the most gaps one message may add
WINDOW = 64            # seqs remembered per (channel, source, epoch) for the exact-copy check
MAX_EPOCHS = 4         # epochs tracked per (channel, source)
MAX_CONFLICTS = 8      # other epochs with a receiver's own id that are named one by one
MAX_SOURCES = 4_096


@dataclass(frozen=True)
class Elem:
    """One envelope inside a message, as the wire rules see it (``id``: derived, ``epoch:stream:seq``)."""

    source: Any
    epoch: str | None
    seq: int | None
    id: str | None
    real: bool = False
    ns: int = 0
    ts: int = 0            # timestamp, epoch ms
    type: str | None = None  # the envelope's type (None: not checked against the channel)


def derive_id(epoch: str | None, stream: str, seq: int | None) -> str | None:
    return None if epoch is None or seq is None else f"{epoch}:{stream}:{seq}"


@dataclass
class Expect:
    """One receiver's counters over the captured stream, by the wire rules."""

    malformed: int = 0
    self_forged: int = 0            # hostile envelopes counted self_filtered (own id and epoch, or an earlier life)
    gaps: int = 0
    gap_notices: int = 0
    duplicates: int = 0
    source_restarts: int = 0
    suspicious: int = 0
    id_conflicts: int = 0
    rejected: int = 0                   # the sum of the reasons below
    rejected_signature: int = 0         # signed: no valid signature for the channel it arrived on
    rejected_channel: int = 0           # an envelope whose type is not its channel's (signed or not)
    forged_delivered: dict[str, int] = field(default_factory=dict)   # kind -> handed to the handlers
    suppressed: set = field(default_factory=set)                     # real ids dropped as duplicates
    delivered: Counter = field(default_factory=Counter)              # id -> times handed over (None: no id)
    suppressed_by: dict[str, int] = field(default_factory=dict)      # forgery kind that caused it -> n


class _Stream:
    """One (channel, source, epoch): last seq, a pending jump, and the events remembered as (seq, ns),
    one per ``seq % WINDOW``: the last taken in order (``ring``) and the last delivered behind the
    last seq (``second``); None: no event."""

    def __init__(self, epoch: str, seq: int, ns: int, first_ms: int = 0) -> None:
        self.epoch, self.last, self.first_ms = epoch, seq, first_ms
        self.pending: tuple[int, int] | None = None       # (origin or -1, candidate or -1)
        self.free = False                                 # the receiver reconnected: the next jump may be any size
        self.ring: list[tuple | None] = [None] * WINDOW
        self.second: list[tuple | None] = [None] * WINDOW
        self.ring[seq % WINDOW] = (seq, ns)

    def take(self, seq: int, ns: int) -> None:
        self.last, self.pending, self.free = seq, None, False
        self.ring[seq % WINDOW] = (seq, ns)


class Receiver:
    """The per-receiver state the rules keep: (channel, source) -> (current stream, older ones)."""

    def __init__(self, me: Any, my_epoch: str | None, started_ms: int, trusted: bool = False) -> None:
        self.me, self.my_epoch, self.started_ms, self.trusted = me, my_epoch, started_ms, trusted
        self.streams: dict[tuple[str, Any], tuple[_Stream, list[_Stream]]] = {}
        self.sources: dict[str, int] = {}
        self.conflicts: set = set()
        self.suspicious = 0

    def resync(self) -> None:
        """This receiver reconnected: the next message of every stream may jump any distance."""
        for st, _older in self.streams.values():
            st.free = True


def _same(a, b) -> bool:
    return a == b and type(a) is type(b)


def apply_rules(rx: Receiver, channel: str, e: Elem) -> tuple[str, int]:
    """One parsed envelope at receiver ``rx``, in the order of the contract: own id (own epoch or
    an earlier life: "self"; else an id conflict, delivered), then the seq check: ("self" |
    "deliver" | "first" | "restart" | "in order" | "gap" | "duplicate", missing). Every
    ``suspicious`` signal is counted into ``rx.suspicious`` (a message may raise two). A signed
    receiver (``trusted``) answers "stale" for an epoch it does not track that is older than the
    stream's current one (dropped, ``rejected_stale``)."""
    if _same(e.source, rx.me):
        if e.epoch == rx.my_epoch or e.ts < rx.started_ms:
            return "self", 0
        if e.epoch not in rx.conflicts:
            if len(rx.conflicts) < MAX_CONFLICTS:
                rx.conflicts.add(e.epoch)
            else:
                rx.suspicious += 1
    if e.seq is None or e.epoch is None:
        return "deliver", 0
    key = (channel, e.source)
    entry = rx.streams.get(key)
    if entry is None:
        n = rx.sources.get(channel, 0)
        if n >= MAX_SOURCES:
            rx.suspicious += 1
            return "deliver", 0
        rx.sources[channel] = n + 1
        rx.streams[key] = (_Stream(e.epoch, e.seq, e.ns, e.ts), [])
        return "first", 0
    st, older = entry
    if st.epoch != e.epoch:
        i = next((i for i, o in enumerate(older) if o.epoch == e.epoch), None)
        if i is None:  # a new epoch: a restart when it starts plausibly low
            if rx.trusted and e.ts < st.first_ms:  # signed: an epoch not tracked, older than the current one
                return "stale", 0
            keep = [st, *older]
            while len(keep) > MAX_EPOCHS - 1:  # the least advanced goes (smallest last; of equals, the oldest)
                keep.remove(min(reversed(keep), key=lambda o: o.last))
            rx.streams[key] = (_Stream(e.epoch, e.seq, e.ns, e.ts), keep)
            if e.seq <= MAX_GAP + 1 or rx.trusted:
                return "restart", 0
            rx.suspicious += 1
            return "deliver", 0
        rx.suspicious += 1  # an older epoch came back: current again (in the slot the current had), then checked
        back, older[i] = older[i], st
        rx.streams[key] = (back, older)
        st = back
    return _seq(rx, st, e)


def _seq(rx: Receiver, st: _Stream, e: Elem) -> tuple[str, int]:
    seq, last = e.seq, st.last
    if seq == last + 1:
        st.take(seq, e.ns)
        return "in order", 0
    if seq <= last:
        if rx.trusted or (seq, e.ns) in (st.ring[seq % WINDOW], st.second[seq % WINDOW]):
            return "duplicate", 0
        rx.suspicious += 1
        st.second[seq % WINDOW] = (seq, e.ns)
        if st.pending is not None and st.pending[0] >= 0 and seq > st.pending[0]:
            st.take(seq, e.ns)  # the real stream goes on before the jump's target: follow it
        return "deliver", 0
    missing = seq - last - 1
    if not (rx.trusted or st.free) and ((st.pending is not None and st.pending[0] >= 0) or missing > MAX_GAP):
        if st.pending is not None and st.pending[1] >= 0 and seq == st.pending[1] + 1:
            st.take(seq, e.ns)  # it goes on from the unconfirmed jump: follow it
            return "in order", 0
        rx.suspicious += 1
        st.pending = (-1 if st.pending is None else st.pending[0], seq)
        return "deliver", 0
    st.last, st.pending, st.free = seq, (last, -1), False
    st.ring[seq % WINDOW] = (seq, e.ns)
    return "gap", missing


def real_elem(raw: bytes, channel: str, prefix: str = "ws:") -> Elem | None:
    """A message of the run (a v2 envelope) as an Elem."""
    d = orjson.loads(raw)
    if not isinstance(d, dict):
        return None
    stream = channel[len(prefix):]
    return Elem(d["source"], d["epoch"], d["seq"], derive_id(d["epoch"], stream, d["seq"]), real=True,
                ns=d.get("ns", 0), ts=d.get("timestamp", 0), type=d.get("type"))


def expected(messages: list[tuple[str, bytes, Any]], receivers: list[str], epochs: dict[str, str],
             started_ms: int, *, signed: bool = False, prefix: str = "ws:") -> dict[str, Expect]:
    """Per receiver, over ``messages`` as (channel, raw bytes, what the driver sent or None for a
    message of the run): the driver's messages carry their envelopes (``elems``: an Elem, or None
    for one the bridge must count malformed), their ``kind`` / ``label`` and ``signed_ok`` (a
    byte-exact copy of a validly signed message). ``epochs``: each receiver's own epoch;
    ``started_ms``: a time before every message of the run and after every bridge started.

    ``signed``: the bridges hold a key the driver does not: a message that does not start with a
    receiver's own header bytes and is not a copy of a signed one on the channel it was signed for
    is ``rejected`` (signature), unparsed. Signed or not, a parsed envelope whose type is not its
    channel's is ``rejected`` (channel), before the own-id and seq rules. (Every message of the run
    is fresh: nothing is stale.)"""
    out = {}
    for me in receivers:
        ex, rx = Expect(), Receiver(me, epochs.get(me), started_ms, trusted=signed)
        own = b'{"source":' + orjson.dumps(me) + b',"epoch":' + orjson.dumps(epochs.get(me)) + b","
        why: dict[tuple[str, Any], str] = {}      # (channel, source) -> kind of the forgery that moved its state
        for ch, raw, sent in messages:
            if raw.startswith(own):
                ex.self_forged += sent is not None
                continue
            if signed and sent is not None and not sent.signed_ok:
                ex.rejected += 1
                ex.rejected_signature += 1
                continue
            elems = (real_elem(raw, ch, prefix),) if sent is None else sent.elems
            for e in elems:
                if e is None:
                    ex.malformed += 1
                    continue
                if e.type is not None and e.type != ch[len(prefix):]:
                    ex.rejected += 1
                    ex.rejected_channel += 1
                    continue
                what, missing = apply_rules(rx, ch, e)
                if what == "self":
                    ex.self_forged += not e.real
                    continue
                if what == "gap":
                    ex.gaps += missing
                    ex.gap_notices += 1
                elif what == "restart":
                    ex.source_restarts += 1
                elif what == "duplicate":
                    ex.duplicates += 1
                    if e.real:
                        ex.suppressed.add(e.id)
                        k = why.get((ch, e.source), "?")
                        ex.suppressed_by[k] = ex.suppressed_by.get(k, 0) + 1
                    continue
                ex.delivered[e.id] += 1
                if not e.real:
                    ex.forged_delivered[sent.kind] = ex.forged_delivered.get(sent.kind, 0) + 1
                if what in ("gap", "in order", "restart", "first") and e.seq is not None:
                    why[(ch, e.source)] = "real" if e.real else sent.label
        ex.suspicious, ex.id_conflicts = rx.suspicious, len(rx.conflicts)
        out[me] = ex
    return out
