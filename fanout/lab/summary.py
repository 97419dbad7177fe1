"""Summaries that merge: what the verdict needs of a run, kept online, exact, and small.

A :class:`Summary` holds, for the instances one process hosts (or, merged, for a whole run):

* per **(receiver, source, epoch, stream)**: the set of seqs that receiver was handed, as a
  compressed bitmap (``pyroaring.BitMap``), and how many rows repeated a seq already in it
  (duplicates, counted on insert);
* per **(source, epoch, stream)**: the seqs whose publish was acknowledged and those that failed
  (plus, per source, failed publishes that never got a seq);
* per **(receiver, event type)**: latency ``t_received − t_intended`` (as
  :mod:`fanout.analysis.latency` defines it: the first delivery of each event, from another
  instance) in an HdrHistogram (1 µs – 60 s, 3 significant digits), with the exact count, sum,
  min, max and the number of negative values beside it.

**How an event is identified.** On the wire and in the record an event is
``{epoch}:{stream}:{seq}`` (``docs/wire-format.md``): ``epoch`` is one bridge life of a source
(a restarted instance publishes under a new epoch, its seqs starting again at 1), ``stream`` the
event type or ``type.partition`` for a sharded partition, ``seq`` contiguous per (source, epoch,
stream). The summary's key is exactly that, with the source beside it: a restart or a partition
is a stream of its own, never a gap or a duplicate. Rows without a seq (a seed-format sender's, id
``None``) are counted per (receiver, source) as ``unsequenced``.

**Merging** (:meth:`Summary.merge`) is exact: bitmaps are OR'd and, for a receiver whose
deliveries were split over two parts, the seqs in both count as duplicates
(``dups = dups_a + dups_b + |a ∩ b|``), which is what one process would have counted; histograms
add. Latency is exact under merge when each receiver lives in one part (the lab's rule: a
receiver is hosted by one process); were one receiver's first delivery of an event in two parts,
both would be latency samples.

**Online vs frames.** The recorder fills a summary from its chunks of rows
(:meth:`add_deliveries`, :meth:`add_publications`: numpy arrays, never a row at a time) with
latency from the envelope's due time (``lag``); :meth:`Summary.from_record` makes one from a
record's frames (old runs, and the tests' oracle) with latency from the publication rows. The two
agree, except that online latency also includes the first delivery of an event whose publish was
reported failed and still arrived (``failed_delivered``, after a fault): the receiver cannot know
the publisher's outcome when it records.

:meth:`to_bytes` / :meth:`from_bytes` ship a summary from a worker or an agent (and ``summary.bin``
beside a saved run's ``run.json``).
"""
from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from hdrh.histogram import HdrHistogram
from pyroaring import BitMap

#: the histograms' range and precision (ns): 1 µs to 60 s, 3 significant digits
HIST_LOWEST_NS = 1_000
HIST_HIGHEST_NS = 60_000_000_000
HIST_DIGITS = 3
#: the time series' interval (ns) and its latency histograms' precision: 2 significant digits
#: (a tenth of the memory of 3; a trading day of 10 s intervals stays a few MB)
SERIES_NS = 10_000_000_000
SERIES_DIGITS = 2

_MAGIC = b"FOSUM1\n"
_MAX_SEQ = 2**32 - 1

Key = tuple[str, str, str, str]       # (receiver, source, epoch, stream)
Stream = tuple[str, str, str]         # (source, epoch, stream)


def new_histogram(digits: int = HIST_DIGITS) -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_NS, HIST_HIGHEST_NS, digits)


def record_many(h: HdrHistogram, ns: np.ndarray) -> None:
    """Record every value of ``ns`` (integers in ``[0, highest trackable]``) into ``h`` at once:
    the counts index of each value computed as HdrHistogram's ``record_value`` does, added with
    ``numpy.bincount`` (the same histogram as recording them one by one)."""
    v = np.asarray(ns, dtype=np.int64)
    if v.size == 0:
        return
    _, exp = np.frexp((v | h.sub_bucket_mask).astype(np.float64))  # exp = bit length (exact below 2^53)
    bucket = exp.astype(np.int64) - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub = v >> (bucket + h.unit_magnitude)
    idx = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub - h.sub_bucket_half_count
    counts = np.ctypeslib.as_array(h.counts)
    counts += np.bincount(idx, minlength=h.counts_len)[:h.counts_len].astype(counts.dtype)
    h.total_count += int(v.size)
    h.min_value = min(h.min_value, int(v.min()))
    h.max_value = max(h.max_value, int(v.max()))


@dataclass
class Latency:
    """One (receiver, type)'s latency samples: the histogram and what it holds exactly."""

    hist: HdrHistogram = field(default_factory=new_histogram)
    #: delivery rows this holds the latency of (the time series' buckets count every row here)
    rows: int = 0
    count: int = 0
    sum_ns: int = 0
    negative: int = 0
    over: int = 0            # above the histogram's range (recorded at its top)
    min_ns: int | None = None
    max_ns: int | None = None

    def add(self, ns: np.ndarray) -> None:
        ns = np.asarray(ns, dtype=np.int64)
        if ns.size == 0:
            return
        self.count += int(ns.size)
        self.sum_ns += int(ns.sum())
        self.negative += int((ns < 0).sum())
        self.over += int((ns > HIST_HIGHEST_NS).sum())
        lo, hi = int(ns.min()), int(ns.max())
        self.min_ns = lo if self.min_ns is None else min(self.min_ns, lo)
        self.max_ns = hi if self.max_ns is None else max(self.max_ns, hi)
        record_many(self.hist, np.clip(ns, 0, HIST_HIGHEST_NS))

    def merge(self, other: "Latency") -> None:
        self.rows += other.rows
        if other.count == 0:
            return
        self.hist.add(other.hist)
        self.count += other.count
        self.sum_ns += other.sum_ns
        self.negative += other.negative
        self.over += other.over
        self.min_ns = other.min_ns if self.min_ns is None else min(self.min_ns, other.min_ns)
        self.max_ns = other.max_ns if self.max_ns is None else max(self.max_ns, other.max_ns)


def _groups(*cols: np.ndarray) -> tuple[np.ndarray, list[tuple], list[np.ndarray]]:
    """Rows grouped by the values of ``cols`` (object arrays): (order, group keys, the row
    indices of each group in row order). Hashing in pandas' C code, not a Python loop per row."""
    import pandas as pd

    n = len(cols[0])
    if n == 0:
        return np.empty(0, dtype=np.int64), [], []
    code = np.zeros(n, dtype=np.int64)
    uniques = []
    for c in cols:
        k, u = pd.factorize(np.asarray(c, dtype=object), use_na_sentinel=False)
        code = code * len(u) + k
        uniques.append([None if x is None or (not isinstance(x, str) and pd.isna(x)) else x for x in u])
    order = np.argsort(code, kind="stable")
    sc = code[order]
    cuts = np.flatnonzero(np.diff(sc)) + 1
    starts = np.concatenate(([0], cuts))
    keys = []
    for s in starts:
        c = int(sc[s])
        parts = []
        for u in reversed(uniques):
            c, r = divmod(c, len(u))
            parts.append(u[r])
        keys.append(tuple(reversed(parts)))
    return order, keys, np.split(order, cuts)


def _str(x: Any) -> str:
    return x if type(x) is str else ("" if x is None else str(x))


class Summary:
    """Per-instance accounting and latency of a run (or a part of one), mergeable exactly."""

    def __init__(self) -> None:
        self.received: dict[Key, BitMap] = {}
        self.duplicates: dict[Key, int] = {}
        self.unsequenced: dict[tuple[str, str], int] = {}      # (receiver, source) -> rows without seq
        self.published: dict[Stream, BitMap] = {}
        self.failed: dict[Stream, BitMap] = {}
        self.failed_unsequenced: dict[str, int] = {}           # source -> failed publishes without a seq
        self.latency: dict[tuple[str, str], Latency] = {}       # (receiver, type)
        self._distinct: dict[str, int] = {}                     # receiver -> distinct (id) deliveries
        #: the time series: per interval of t_received (index ``t // SERIES_NS`` on the run's
        #: clock) the delivery rows and the latency of the first deliveries, over all receivers
        self.series: dict[int, Latency] = {}
        #: latency from the send (``t_received − t_sent``) of the same first deliveries, all receivers
        self.sent = Latency()
        #: the schedule lag of acknowledged publications (``t_sent − t_intended``) and the span
        #: of their due times (ns; 0 when none)
        self.lag = Latency()
        self.due_min = 0
        self.due_max = 0
        self.sent_max = 0

    # ------------------------------------------------------------------ filling
    def add_deliveries(self, receiver: str, source, epoch, stream, type_, seq, t_received, t_intended,
                       source_offsets: dict[str, int] | None = None, t_sent=None) -> None:
        """A chunk of one receiver's deliveries, in the order they were handed over (arrays or
        lists of equal length; ``t_intended`` 0 where unknown: no latency sample). A seq already
        in the receiver's bitmap (from an earlier chunk or earlier in this one) is a duplicate;
        the first delivery of each event from another source is a latency sample.
        ``source_offsets``: ns added to ``t_intended`` per source (its clock → the reference clock);
        ``t_sent``: when each was sent, on the source's clock (0 where unknown: no sample of the
        latency from the send)."""
        receiver = _str(receiver)
        seq = np.asarray(seq, dtype=np.int64)
        n = seq.size
        if n == 0:
            return
        t_received = np.asarray(t_received, dtype=np.int64)
        t_intended = np.asarray(t_intended, dtype=np.int64)
        self._series_rows(t_received)
        src = np.asarray(source, dtype=object)
        _, keys, rows = _groups(src, np.asarray(epoch, dtype=object), np.asarray(stream, dtype=object))
        lat_rows: list[np.ndarray] = []
        lat_shift: list[np.ndarray] = []
        for (s, e, st), idx in zip(keys, rows):
            s = _str(s)
            q = seq[idx]
            if e is None or (q < 0).any():
                self.unsequenced[(receiver, s)] = self.unsequenced.get((receiver, s), 0) + int(idx.size)
                continue
            key = (receiver, s, _str(e), _str(st))
            bm = self.received.get(key)
            if bm is None:
                bm = self.received[key] = BitMap()
                self.duplicates[key] = 0
            before = len(bm)
            fresh = BitMap(q.astype(np.uint32))
            new = fresh - bm if before else fresh
            bm |= fresh
            added = len(bm) - before
            self.duplicates[key] += int(idx.size) - added
            self._distinct[receiver] = self._distinct.get(receiver, 0) + added
            if s == receiver or added == 0:
                continue
            if added == idx.size:  # no repeat at all: every row is a first delivery
                first = idx
            else:
                uniq, at = np.unique(q, return_index=True)  # earliest row of each seq
                keep = np.isin(uniq, np.asarray(new.to_array(), dtype=np.int64), assume_unique=True)
                first = np.sort(idx[at[keep]])
            first = first[t_intended[first] != 0]
            lat_rows.append(first)
            lat_shift.append(np.full(first.size, (source_offsets or {}).get(s, 0), dtype=np.int64))
        if lat_rows:
            first = np.concatenate(lat_rows)
            shift = np.concatenate(lat_shift)
            lat = t_received[first] - (t_intended[first] + shift)
            if t_sent is not None:
                ts = np.asarray(t_sent, dtype=np.int64)[first]
                known = ts != 0
                self.sent.add(t_received[first][known] - (ts[known] + shift[known]))
            types = np.asarray(type_, dtype=object)[first]
            _, tkeys, trows = _groups(types)
            for (t,), ix in zip(tkeys, trows):
                self.latency.setdefault((receiver, _str(t)), Latency()).add(lat[ix])
            b = t_received[first] // SERIES_NS
            for k in np.unique(b).tolist():
                self._bucket(k).add(lat[b == k])

    def _bucket(self, k: int) -> Latency:
        x = self.series.get(k)
        if x is None:
            x = self.series[k] = Latency(new_histogram(SERIES_DIGITS))
        return x

    def _series_rows(self, t_received: np.ndarray) -> None:
        b = t_received // SERIES_NS
        lo = int(b.min())
        for off, n in enumerate(np.bincount(b - lo).tolist()):
            if n:
                self._bucket(lo + off).rows += n

    def add_publications(self, source, epoch, stream, seq, ok, t_intended=None, t_sent=None) -> None:
        """Settled publications (arrays): acknowledged (``ok``) or failed; ``seq`` < 0 (or no
        epoch) for a failed publish that never got a seq. With ``t_intended`` and ``t_sent``:
        the schedule lag and the due-time span of the acknowledged ones."""
        seq = np.asarray(seq, dtype=np.int64)
        if seq.size == 0:
            return
        ok = np.asarray(ok, dtype=bool)
        if t_intended is not None and ok.any():
            due = np.asarray(t_intended, dtype=np.int64)[ok]
            self.lag.add(np.asarray(t_sent, dtype=np.int64)[ok] - due)
            lo, hi = int(due.min()), int(due.max())
            self.due_min = lo if not self.due_min else min(self.due_min, lo)
            self.due_max = max(self.due_max, hi)
            self.sent_max = max(self.sent_max, int(np.asarray(t_sent, dtype=np.int64)[ok].max()))
        _, keys, rows = _groups(np.asarray(source, dtype=object), np.asarray(epoch, dtype=object),
                                np.asarray(stream, dtype=object))
        for (s, e, st), idx in zip(keys, rows):
            s = _str(s)
            q, good = seq[idx], ok[idx]
            unseq = (q < 0) | (e is None) | (e == "")
            if unseq.any():
                self.failed_unsequenced[s] = self.failed_unsequenced.get(s, 0) + int((unseq & ~good).sum())
            k = (s, _str(e), _str(st))
            for table, mask in ((self.published, good & ~unseq), (self.failed, ~good & ~unseq)):
                if mask.any():
                    table.setdefault(k, BitMap()).update(q[mask].astype(np.uint32))

    # ------------------------------------------------------------------ merging and shipping
    def merge(self, other: "Summary") -> "Summary":
        """Add ``other`` into this summary (exact; see the module doc) and return self."""
        for k, bm in other.received.items():
            mine = self.received.get(k)
            if mine is None:
                self.received[k] = BitMap(bm)
                self.duplicates[k] = other.duplicates.get(k, 0)
                self._distinct[k[0]] = self._distinct.get(k[0], 0) + len(bm)
            else:
                both = mine.intersection_cardinality(bm)
                self.duplicates[k] = self.duplicates.get(k, 0) + other.duplicates.get(k, 0) + both
                self._distinct[k[0]] = self._distinct.get(k[0], 0) + len(bm) - both
                mine |= bm
        for k, n in other.unsequenced.items():
            self.unsequenced[k] = self.unsequenced.get(k, 0) + n
        for mine, theirs in ((self.published, other.published), (self.failed, other.failed)):
            for k, bm in theirs.items():
                if k in mine:
                    mine[k] |= bm
                else:
                    mine[k] = BitMap(bm)
        for s, n in other.failed_unsequenced.items():
            self.failed_unsequenced[s] = self.failed_unsequenced.get(s, 0) + n
        for k, lat in other.latency.items():
            self.latency.setdefault(k, Latency()).merge(lat)
        for k, x in other.series.items():
            self._bucket(k).merge(x)
        self.sent.merge(other.sent)
        self.lag.merge(other.lag)
        if other.due_min:
            self.due_min = other.due_min if not self.due_min else min(self.due_min, other.due_min)
        self.due_max = max(self.due_max, other.due_max)
        self.sent_max = max(self.sent_max, other.sent_max)
        return self

    @classmethod
    def merged(cls, parts: Iterable["Summary"]) -> "Summary":
        out = cls()
        for p in parts:
            out.merge(p)
        return out

    def to_bytes(self) -> bytes:
        """A compact, portable form: a JSON header (keys, counts, blob lengths) and the bitmaps'
        portable serialisation and the histograms' V2 encoding after it."""
        blobs: list[bytes] = []

        def blob(b: bytes) -> int:
            blobs.append(b)
            return len(b)

        def bm(b: BitMap) -> int:
            b.run_optimize()
            return blob(b.serialize())

        def lat(x: Latency) -> list:
            return [x.rows, x.count, x.sum_ns, x.negative, x.over, x.min_ns, x.max_ns, blob(x.hist.encode())]

        head = {
            "v": 2,
            "received": [[*k, self.duplicates.get(k, 0), bm(b)] for k, b in self.received.items()],
            "unsequenced": [[*k, n] for k, n in self.unsequenced.items()],
            "published": [[*k, bm(b)] for k, b in self.published.items()],
            "failed": [[*k, bm(b)] for k, b in self.failed.items()],
            "failed_unsequenced": self.failed_unsequenced,
            "latency": [[*k, x.count, x.sum_ns, x.negative, x.over, x.min_ns, x.max_ns, blob(x.hist.encode())]
                        for k, x in self.latency.items()],
            "series": [[k, *lat(x)] for k, x in sorted(self.series.items())],
            "sent": lat(self.sent), "lag": lat(self.lag), "due": [self.due_min, self.due_max, self.sent_max],
        }
        h = orjson.dumps(head)
        return _MAGIC + struct.pack("<I", len(h)) + h + b"".join(blobs)

    @classmethod
    def from_bytes(cls, data: bytes | str) -> "Summary":
        if isinstance(data, str):
            data = base64.b64decode(data)
        if not data.startswith(_MAGIC):
            raise ValueError("not a fanout summary (bad magic)")
        at = len(_MAGIC)
        (n,) = struct.unpack_from("<I", data, at)
        at += 4
        head = orjson.loads(data[at:at + n])
        at += n
        mv = memoryview(data)

        def take(size: int) -> bytes:
            nonlocal at
            b = bytes(mv[at:at + size])
            at += size
            return b

        s = cls()
        for *k, dups, size in head["received"]:
            key = tuple(k)
            b = s.received[key] = BitMap.deserialize(take(size))
            s.duplicates[key] = dups
            s._distinct[key[0]] = s._distinct.get(key[0], 0) + len(b)
        for r, src, cnt in head["unsequenced"]:
            s.unsequenced[(r, src)] = cnt
        for name in ("published", "failed"):
            table = getattr(s, name)
            for *k, size in head[name]:
                table[tuple(k)] = BitMap.deserialize(take(size))
        s.failed_unsequenced = dict(head["failed_unsequenced"])
        for r, t, count, total, neg, over, lo, hi, size in head["latency"]:
            h = HdrHistogram.decode(take(size))
            s.latency[(r, t)] = Latency(h, 0, count, total, neg, over, lo, hi)
        def lat(rows, count, total, neg, over, lo, hi, size) -> Latency:
            return Latency(HdrHistogram.decode(take(size)), rows, count, total, neg, over, lo, hi)

        for k, *x in head.get("series", ()):  # v1 summaries have none of these
            s.series[k] = lat(*x)
        if "sent" in head:
            s.sent, s.lag = lat(*head["sent"]), lat(*head["lag"])
            s.due_min, s.due_max, *rest = head["due"]
            s.sent_max = rest[0] if rest else s.due_max
        return s

    def to_wire(self) -> str:
        """:meth:`to_bytes` as base64 text (through JSON links: agents)."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    # ------------------------------------------------------------------ reading
    def distinct(self, receiver: str) -> int:
        """Distinct events (ids) ``receiver`` was handed so far, any source (rows without an id
        count as one, as they do in the frames)."""
        return self._distinct.get(receiver, 0) + any(n for (r, _), n in self.unsequenced.items() if r == receiver)

    def rows(self, receiver: str) -> int:
        """Delivery rows of ``receiver`` (distinct + duplicates + id-less)."""
        return (sum(len(b) + self.duplicates.get(k, 0) for k, b in self.received.items() if k[0] == receiver)
                + sum(n for (r, _), n in self.unsequenced.items() if r == receiver))

    def sources(self) -> set[str]:
        """Every source that published in the run (acknowledged or not)."""
        return {k[0] for k in self.published} | {k[0] for k in self.failed} | set(self.failed_unsequenced)

    def published_by(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (s, _, _), b in self.published.items():
            out[s] = out.get(s, 0) + len(b)
        return out

    def failed_by(self) -> dict[str, int]:
        out: dict[str, int] = dict(self.failed_unsequenced)
        for (s, _, _), b in self.failed.items():
            out[s] = out.get(s, 0) + len(b)
        return {s: n for s, n in out.items() if n}

    def instances(self, names: list[str], receivers: Iterable[str] | None = None,
                  dead: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Per instance, the arithmetic :func:`fanout.analysis.analyse` does on the frames:
        ``published``, ``publish_failed``, ``expected``, ``received``, ``missing``,
        ``duplicates``, ``self_received``, ``unexpected``, ``foreign``, ``lat_count``.
        ``receivers``: the scenario's receivers (None: every instance); ``dead``: instances whose
        agent died (their deliveries are not foreign)."""
        receivers = set(names) if receivers is None else {str(r) for r in receivers}
        known = set(names) | self.sources() | {str(d) for d in dead}
        published_by, failed_by = self.published_by(), self.failed_by()
        total_ok = sum(published_by.values())
        out = []
        for name in names:
            rows = distinct = self_rows = foreign = got = 0
            for k, b in self.received.items():
                if k[0] != name:
                    continue
                n_rows = len(b) + self.duplicates.get(k, 0)
                if k[1] not in known:
                    foreign += n_rows
                    continue
                rows += n_rows
                distinct += len(b)
                if k[1] == name:
                    self_rows += n_rows
                else:
                    ok = self.published.get(k[1:])
                    if ok is not None:
                        got += b.intersection_cardinality(ok)
            unseq = 0
            for (r, s), n in self.unsequenced.items():
                if r != name:
                    continue
                if s not in known:
                    foreign += n
                    continue
                rows += n
                unseq += n
                if s == name:
                    self_rows += n
            distinct += 1 if unseq else 0
            is_receiver = name in receivers
            expected = total_ok - published_by.get(name, 0) if is_receiver else 0
            received = got if is_receiver else 0
            out.append({
                "instance": name, "published": published_by.get(name, 0), "publish_failed": failed_by.get(name, 0),
                "expected": expected, "received": received, "missing": expected - received,
                "duplicates": rows - distinct, "self_received": self_rows, "unexpected": got - received,
                "foreign": foreign,
                "lat_count": sum(x.count for (r, _), x in self.latency.items() if r == name),
            })
        return out

    def missing(self, receiver: str) -> list[tuple[str, str, str, int]]:
        """The acknowledged events from others ``receiver`` never got: (source, epoch, stream, seq),
        from the bitmaps (published − received), by stream then seq."""
        out = []
        for k, ok in sorted(self.published.items()):
            if k[0] == receiver:
                continue
            got = self.received.get((receiver, *k))
            gone = ok - got if got is not None else ok
            out.extend((k[0], k[1], k[2], int(q)) for q in gone)
        return out

    def missing_ids(self, receiver: str) -> list[str]:
        """:meth:`missing` as event ids (``{epoch}:{stream}:{seq}``)."""
        return [f"{e}:{st}:{q}" for _, e, st, q in self.missing(receiver)]

    def latency_of(self, receiver: str | None = None, type_: str | None = None) -> Latency:
        """The merged latency of one receiver, one type, both or everything."""
        out = Latency()
        for (r, t), x in self.latency.items():
            if (receiver is None or r == receiver) and (type_ is None or t == type_):
                out.merge(x)
        return out

    def latency_ms(self, receiver: str | None = None, type_: str | None = None,
                   percentiles: Iterable[float] = (50.0, 95.0, 99.0, 99.9)) -> dict[str, Any]:
        """count, negative, avg/min/max (exact) and ``percentiles`` (``{q: ms}``, from the merged
        histograms: within 3 significant digits of the exact nearest-rank value) in ms. Every
        percentile asked for is given: which ones a count carries is the analysis's rule
        (:func:`fanout.analysis.latency.carried`)."""
        x = self.latency_of(receiver, type_)
        if x.count == 0:
            return {"count": 0, "negative": 0, "avg_ms": None, "min_ms": None, "max_ms": None,
                    "percentiles": {float(q): None for q in percentiles}}
        return {"count": x.count, "negative": x.negative, "avg_ms": x.sum_ns / x.count / 1e6,
                "min_ms": x.min_ns / 1e6, "max_ms": x.max_ns / 1e6,
                "percentiles": {float(q): x.hist.get_value_at_percentile(q) / 1e6 for q in percentiles}}

    def last_p99_ms(self) -> float | None:
        """p99 latency (ms) of the last closed interval of the time series (None before one closed
        with a sample)."""
        if len(self.series) < 2:
            return None
        x = self.series[sorted(self.series)[-2]]
        return x.hist.get_value_at_percentile(99.0) / 1e6 if x.count else None

    def series_frame(self, t0: int = 0):
        """The time series as a frame, one row per interval of :data:`SERIES_NS` that saw a
        delivery: ``t_s`` (the interval's start, s after ``t0``), ``deliveries`` (rows),
        ``lat_count`` (first deliveries with a latency), ``p50_ms``/``p99_ms`` (from the
        interval's histogram, 2 significant digits; NaN where it holds no sample), ``max_ms``."""
        import pandas as pd

        rows = []
        for k, x in sorted(self.series.items()):
            has = x.count > 0
            rows.append({"t_s": (k * SERIES_NS - t0) / 1e9, "deliveries": x.rows, "lat_count": x.count,
                         "p50_ms": x.hist.get_value_at_percentile(50.0) / 1e6 if has else float("nan"),
                         "p99_ms": x.hist.get_value_at_percentile(99.0) / 1e6 if has else float("nan"),
                         "max_ms": x.max_ns / 1e6 if has else float("nan")})
        return pd.DataFrame(rows, columns=["t_s", "deliveries", "lat_count", "p50_ms", "p99_ms", "max_ms"])

    # ------------------------------------------------------------------ from frames
    @classmethod
    def from_record(cls, record) -> "Summary":
        """The summary of a record's frames (an old run's, or the oracle in tests): the same as
        the recorder keeps online, with latency from the publication rows."""
        return cls.from_frames(record.publications, record.deliveries)

    @classmethod
    def from_frames(cls, publications, deliveries, *, count_publications: bool = True) -> "Summary":
        """From frames; ``count_publications=False``: the publications only give the deliveries'
        due times (a part that holds some receivers' deliveries, as a worker's summary does)."""
        import pandas as pd

        s = cls()
        p = publications
        if count_publications:
            pseq = p["seq"].to_numpy(dtype=np.int64)
            epoch, stream = _split_ids(p["id"], pseq)
            s.add_publications(p["source"].astype(object).to_numpy(), epoch, stream, pseq, p["ok"].to_numpy(dtype=bool),
                               p["t_intended"].to_numpy(dtype=np.int64), p["t_sent"].to_numpy(dtype=np.int64))
        if len(deliveries) == 0:
            return s
        ok = p.loc[p["ok"], ["id", "t_intended", "t_sent"]].drop_duplicates("id")
        d = deliveries.assign(_row=np.arange(len(deliveries)))
        d = d.sort_values("t_received", kind="stable")
        ti = d["id"].map(pd.Series(ok["t_intended"].to_numpy(), index=ok["id"].to_numpy())).fillna(0)
        ts = d["id"].map(pd.Series(ok["t_sent"].to_numpy(), index=ok["id"].to_numpy())).fillna(0)
        d = d.assign(_ti=ti.astype("int64"), _ts=ts.astype("int64"))
        for r, g in d.groupby("receiver", sort=False):
            gseq = g["seq"].to_numpy(dtype=np.int64)
            e, st = _split_ids(g["id"], gseq)
            s.add_deliveries(str(r), g["source"].astype(object).to_numpy(), e, st, g["type"].astype(object).to_numpy(),
                             gseq, g["t_received"].to_numpy(dtype=np.int64), g["_ti"].to_numpy(dtype=np.int64),
                             t_sent=g["_ts"].to_numpy(dtype=np.int64))
        return s


def _split_ids(ids, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, stream) of ``{epoch}:{stream}:{seq}`` ids (object arrays; None where a row has no
    seq, or its id is not of that form)."""
    import pandas as pd

    ids = pd.Series(ids, dtype=object).reset_index(drop=True)
    if len(ids) == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=object)
    head = ids.where(seq >= 0).astype(object)
    parts = head.str.rpartition(":")
    prefix = parts[0].where(head.notna())
    tail_ok = parts[2] == pd.Series(seq).astype(str)
    first = prefix.str.partition(":")
    good = head.notna() & tail_ok & (first[1] == ":")
    epoch = first[0].where(good, None).to_numpy(dtype=object)
    stream = first[2].where(good, None).to_numpy(dtype=object)
    return epoch, stream


def event_id(epoch: str, stream: str, seq: int) -> str:
    return f"{epoch}:{stream}:{seq}"
