"""The wire rules of docs/architecture.md ("Loss detection in the bridge"), written here apart from
``fanout.sequencing``: what each receiver must count for a stream of messages, as the hostile case
(:mod:`benchmarks.chaos.hostile`) checks the bridges against it.

This is the one place to follow a changed wire contract (branch ``wire``: ``unsent``, ``suspicious``,
signed envelopes): change :func:`apply_rules` and :class:`Expect`, and the case re-measures.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Elem:
    """One envelope inside a message, as the wire rules see it."""

    source: str
    epoch: str | None
    seq: int | None
    id: str | None
    real: bool = False


@dataclass
class Expect:
    """One receiver's counters over the captured stream, by the wire rules."""

    malformed: int = 0
    self_forged: int = 0            # hostile envelopes under this receiver's own id
    gaps: int = 0
    gap_notices: int = 0
    duplicates: int = 0
    source_restarts: int = 0
    forged_delivered: dict[str, int] = field(default_factory=dict)   # kind -> handed to the handlers
    suppressed: set = field(default_factory=set)                     # real ids dropped as duplicates
    delivered: Counter = field(default_factory=Counter)              # id -> times handed over (None: no id)
    suppressed_by: dict[str, int] = field(default_factory=dict)      # forgery kind that caused it -> n


def apply_rules(state: dict, me: str, channel: str, e: Elem) -> tuple[str, int]:
    """One envelope at receiver ``me`` (docs/architecture.md, "Loss detection in the bridge"):
    ("self" | "deliver" | "first" | "restart" | "in order" | "gap" | "duplicate", missing)."""
    if e.source == me:
        return "self", 0
    if e.seq is None or e.epoch is None:
        return "deliver", 0
    key = (channel, e.source)
    st = state.get(key)
    if st is None:
        state[key] = [e.epoch, e.seq]
        return "first", 0
    if st[0] != e.epoch:
        st[0], st[1] = e.epoch, e.seq
        return "restart", 0
    if e.seq <= st[1]:
        return "duplicate", 0
    missing, st[1] = e.seq - st[1] - 1, e.seq
    return ("gap", missing) if missing else ("in order", 0)


def real_elem(raw: bytes) -> Elem | None:
    d = orjson.loads(raw)
    return Elem(d["source"], d["epoch"], d["seq"], d["id"], real=True) if isinstance(d, dict) else None


def expected(messages: list[tuple[str, bytes, Any]], receivers: list[str]) -> dict[str, Expect]:
    """Per receiver, over ``messages`` as (channel, raw bytes, what the driver sent or None for a
    message of the run): the driver's messages carry their envelopes (``elems``: an Elem, or None
    for one the bridge must count malformed) and their ``kind`` / ``label``."""
    out = {}
    for me in receivers:
        ex, state = Expect(), {}
        why: dict[tuple[str, str], str] = {}      # (channel, source) -> kind of the forgery that moved its state
        for ch, raw, sent in messages:
            elems = (real_elem(raw),) if sent is None else sent.elems
            for e in elems:
                if e is None:
                    ex.malformed += 1
                    continue
                what, missing = apply_rules(state, me, ch, e)
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
        out[me] = ex
    return out
