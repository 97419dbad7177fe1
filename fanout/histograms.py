"""The bridge's own histograms: fixed log-linear buckets, preallocated counts, nothing per event.

Three histograms, each kept per event type (``bridge.histograms()`` returns a snapshot):

* ``delivery_latency``: from the time an event was **due** (the envelope's ``lag``: the simulator's
  open-loop schedule) or, without ``lag``, **sent** (``timestamp`` ms + ``ns``) to when this bridge
  hands it to its handlers (sync handlers are called then; async ones queued then). Both ends are
  ``time.time_ns()``, each on its own host: across hosts it includes their clock difference; a
  negative value (a receiver's clock behind the sender's) is counted as 0. A seed-format message
  (no ``ns``) is not measured (its millisecond timestamp cannot place it in a 50 µs bucket).
* ``publish_duration``: from ``publish_nowait`` (or ``publish``) queuing the envelope to Redis's
  acknowledgement (monotonic clock; an awaited ``publish`` held back by a full window includes its
  wait for room, a batched event its wait in the batch); failed publishes are not in it (they are
  ``publish_errors``), so its count equals ``published``.
* ``handler_duration``: each sync handler call (``bridge.on(type, fn)`` with a plain function, and
  ``events()`` queues), on the monotonic clock the slow-handler check already reads. Async
  handlers are not timed (their time in the handler task includes every await).

Buckets (:data:`BOUNDS_S`): upper bounds from 50 µs to 10 s, log-linear (1, 2, …, 9 × each power
of ten: 51 bounds, at most 100 % wide at the bottom of a decade, 11 % at its top), plus the
overflow (``+Inf``). A value equal to a bound falls in that bound's bucket (Prometheus's ``le``).
Each histogram is one preallocated list ``[bucket 0, …, bucket 50, overflow, sum]``: recording is
one ``bisect`` and two in-place additions, no object kept, no lock (one event loop writes).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

#: upper bounds (seconds) of the buckets: 50 µs, 60 µs, … 90 µs, 100 µs, 200 µs, … 9 s, 10 s
BOUNDS_S: tuple[float, ...] = tuple(
    [float(f"{m}e-5") for m in range(5, 10)]
    + [float(f"{m}e{e}") for e in range(-4, 1) for m in range(1, 10)]
    + [10.0])
#: the same bounds in integer nanoseconds (the latency clock's unit)
BOUNDS_NS: list[int] = [round(b * 1e9) for b in BOUNDS_S]
#: the same bounds as floats, for the monotonic clock's seconds (a list: bisect's fastest input)
_BOUNDS_S: list[float] = list(BOUNDS_S)
#: index of the overflow bucket (``+Inf``) and of the sum in a histogram's list
OVERFLOW = len(BOUNDS_S)
SUM = OVERFLOW + 1
#: which unit each histogram's sum is kept in (ns ints for wall-clock latency, float seconds otherwise)
KINDS: dict[str, str] = {"delivery_latency": "ns", "publish_duration": "s", "handler_duration": "s"}

index = bisect.bisect_left  # index(BOUNDS_NS, value) -> its bucket (value <= bound)


def new_counts() -> list:
    """One histogram's preallocated list: every bucket, the overflow, then the sum."""
    return [0] * (OVERFLOW + 1) + [0]


def record_s(counts: list, seconds: float) -> None:
    """Count one duration in seconds (off the receive path; the hot paths inline this)."""
    counts[index(_BOUNDS_S, seconds)] += 1
    counts[SUM] += seconds


@dataclass(frozen=True, slots=True)
class Histogram:
    """A snapshot of one histogram: ``counts[i]`` values fell in bucket ``i`` (``<= bounds[i]``;
    the last, ``counts[len(bounds)]``, above 10 s), ``count`` in all, ``sum`` seconds in all."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(le, values <= le), ..., (inf, count)]``: the Prometheus form."""
        out, run = [], 0
        for le, n in zip((*self.bounds, float("inf")), self.counts):
            run += n
            out.append((le, run))
        return out


def snapshot(counts: list, unit: str) -> Histogram:
    """A copy of one histogram's list as a :class:`Histogram` (read while nothing writes: the one loop)."""
    c = counts[:]  # one copy (one C call: consistent even when another thread reads it, e.g. an exporter)
    buckets, total = tuple(c[:SUM]), c[SUM]
    return Histogram(BOUNDS_S, buckets, sum(buckets), total / 1e9 if unit == "ns" else float(total))


class Histograms:
    """A bridge's histograms: ``name -> event type -> list`` (see :func:`new_counts`), made per type
    up front (and once for a type first seen later), so recording never allocates."""

    __slots__ = ("delivery_latency", "publish_duration", "handler_duration")

    def __init__(self, event_types) -> None:
        for name in KINDS:
            setattr(self, name, {t: new_counts() for t in event_types})

    def of(self, name: str, event_type: str) -> list:
        """The list for ``(name, event_type)``, made when first asked for (never on a hot path)."""
        table = getattr(self, name)
        h = table.get(event_type)
        if h is None:
            h = table[event_type] = new_counts()
        return h

    def snapshot(self) -> dict[str, dict[str, Histogram]]:
        return {name: {t: snapshot(c, unit) for t, c in getattr(self, name).items()} for name, unit in KINDS.items()}
