"""The recorder: every publication and every delivery of a run, as the simulator sees them,
in preallocated columns (``array`` for numbers, lists of references for strings that already
exist), never a dict or tuple per event.

* :class:`Publications`: one row per scheduled event, allocated up front (the schedule is
  known): the simulator fills ``t_sent`` and the id when it publishes, the bridge's
  ``on_published`` callback fills ``t_acked``/``ok`` (or the error) with the row as token.
* :class:`Deliveries`: one table per receiver, its handler appends (capacity from the
  schedule, doubled if ever exceeded).

``columns()`` of each gives the plain lists in the column order of
:data:`fanout.lab.record.PUBLICATION_COLUMNS` / :data:`~fanout.lab.record.DELIVERY_COLUMNS`
(what :func:`~fanout.lab.record.build_record` and the worker links take).

**Chunks and the summary.** Deliveries are held in chunks (at most :data:`CHUNK_ROWS` rows over
the receivers of this process, or :data:`CHUNK_S` seconds): when one fills or ages, every
receiver's chunk is closed at once: its rows go into the :class:`~fanout.lab.summary.Summary`
(numpy over the chunk's arrays, never a row at a time) and then either stay in memory (a run
saved nowhere, as before) or are written as a Parquet part of the run folder
(``parts/deliveries-<tag>-<n>.parquet``, by one writer thread, while the run goes on) and
dropped. Publication rows whose outcome is known are summarised (and written) the same way.
The handler's per-delivery work is a handful of stores into preallocated columns: no task,
Future, timer, dict or string per message (the event id is made from epoch, stream and seq
when a chunk is turned into columns).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from array import array
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from fanout.lab.summary import Summary

log = logging.getLogger(__name__)

#: a chunk (and a part) closes at this many delivery rows over the receivers of one process ...
CHUNK_ROWS = 1_000_000
#: ... or after this many seconds
CHUNK_S = 10.0
#: publication rows held at most when they are written as the run goes (a ring; ~50 MB)
RING_ROWS = 1 << 20


def _zeros(code: str, n: int) -> array:
    return array(code, bytes(array(code).itemsize * n))


class Publications:
    """Publication rows, row ``k`` the ``k``-th event of the hosted schedule, planned as the
    publishers reach it (:meth:`plan`).

    Rows live in columns of ``cap`` slots (a power of two), row ``k`` in slot ``k & mask``. Kept
    in memory (``ring=False``) the columns double when full; written as the run goes
    (``ring=True``: a parts folder) they are a ring of :data:`RING_ROWS` slots: a row's slot is
    reused once the row was written (the recorder makes room before a publisher plans over an
    unwritten row), so memory holds a ring, never the run."""

    def __init__(self, n: int, now_ns: Callable[[], int], *, ring: bool = False) -> None:
        self.n = 0                         # rows planned so far (the next row's k)
        self.ring = ring
        self.cap = 16
        while self.cap < min(max(n, 16), RING_ROWS):
            self.cap *= 2
        self.mask = self.cap - 1
        self.now_ns = now_ns
        self._alloc(self.cap)
        self.sources: list[str] = []
        self.types: list[str] = []
        self.symbols: list[str] = []
        self.errors: list[str] = [""]
        self._codes: dict[int, dict[str, int]] = {id(t): {} for t in (self.sources, self.types, self.symbols)}
        self.acked_by: list[int] = []      # per source index: acknowledged publications
        self.settled_by: list[int] = []    # per source index: rows whose outcome is known
        self.settled = 0
        self.freed = 0                     # rows [0, freed) written out: their slots may be reused

    def _alloc(self, n: int) -> None:
        self.ids: list = [None] * n
        self.src = _zeros("i", n)          # index into sources
        self.typ = _zeros("i", n)          # index into types
        self.sym = _zeros("i", n)          # index into symbols
        self.t_intended = _zeros("q", n)
        self.t_sent = _zeros("q", n)
        self.t_acked = _zeros("q", n)
        self.ok = _zeros("b", n)
        self.err = _zeros("i", n)          # index into errors; 0 = none
        self.done = _zeros("b", n)         # the outcome is known

    _COLS = ("ids", "src", "typ", "sym", "t_intended", "t_sent", "t_acked", "ok", "err", "done")

    def _grow(self) -> None:
        """Double the columns; the live rows ``[freed, n)`` move to their slots under the new mask."""
        lo, hi = self.freed, self.n
        live = {c: self._take(getattr(self, c), lo, hi) for c in self._COLS}
        self.cap *= 2
        self.mask = self.cap - 1
        self._alloc(self.cap)
        at = 0
        for s in self._slots(lo, hi):
            n = s.stop - s.start
            for c in self._COLS:
                getattr(self, c)[s] = live[c][at:at + n]
            at += n

    def code(self, table: list[str], value: str) -> int:
        """The index of ``value`` in ``table`` (sources, types, symbols), added when new."""
        codes = self._codes[id(table)]
        i = codes.get(value)
        if i is None:
            i = codes[value] = len(table)
            table.append(value)
            if table is self.sources:
                self.acked_by.append(0)
                self.settled_by.append(0)
        return i

    def room(self, k: int) -> bool:
        """Whether row ``k`` has a free slot (in memory: always, the columns grow)."""
        while k >= self.freed + self.cap and (not self.ring or self.cap < RING_ROWS):
            self._grow()
        return k < self.freed + self.cap

    def plan(self, k: int, src: int, typ: int, sym: int, due: int) -> int:
        """Row ``k`` is about to be published (its slot must be free: :meth:`room`); returns its slot."""
        j = k & self.mask
        self.src[j], self.typ[j], self.sym[j], self.t_intended[j] = src, typ, sym, due
        if k >= self.n:
            self.n = k + 1
        return j

    def ack(self, k: int, error) -> None:
        """The ``on_published`` callback: row ``k`` was acknowledged (``error`` None) or failed."""
        j = k & self.mask
        if self.done[j]:
            return
        self.done[j] = 1
        self.settled += 1
        self.settled_by[self.src[j]] += 1
        if error is None:
            self.t_acked[j] = self.now_ns()
            self.ok[j] = 1
            self.acked_by[self.src[j]] += 1
        else:
            self.fail(k, str(error), settle=False)

    def fail(self, k: int, why: str, settle: bool = True) -> None:
        j = k & self.mask
        if settle:
            if self.done[j]:
                return
            self.done[j] = 1
            self.settled += 1
            self.settled_by[self.src[j]] += 1
        try:
            self.err[j] = self.errors.index(why)
        except ValueError:
            self.err[j] = len(self.errors)
            self.errors.append(why)

    @property
    def published_by(self) -> dict[str, int]:
        return {s: self.acked_by[i] for i, s in enumerate(self.sources)}

    def lag_p99_ms(self) -> float | None:
        """p99 of (sent - due) over the rows sent so far (the ring's: the latest), in ms (None before any)."""
        import numpy as np

        sent = np.frombuffer(self.t_sent, dtype=np.int64)
        due = np.frombuffer(self.t_intended, dtype=np.int64)
        mask = (sent > 0) & (due > 0)
        return float(np.percentile(sent[mask] - due[mask], 99)) / 1e6 if mask.any() else None

    def _slots(self, lo: int, hi: int) -> list[slice]:
        """The slots of rows ``[lo, hi)``: one slice, or two where the ring wraps."""
        if hi <= lo:
            return []
        a, b = lo & self.mask, ((hi - 1) & self.mask) + 1
        return [slice(a, b)] if a < b else [slice(a, self.cap), slice(0, b)]

    def _take(self, col, lo: int, hi: int):
        parts = [col[s] for s in self._slots(lo, hi)]
        if not parts:
            return col[0:0]
        out = parts[0]
        for x in parts[1:]:
            out = out + x
        return out

    def columns(self, lo: int = 0, hi: int | None = None) -> dict[str, list]:
        """Plain lists in PUBLICATION_COLUMNS order for rows ``[lo, hi)`` (seq from the envelope
        id; -1 when none)."""
        return self.cut(lo, self.n if hi is None else hi)()

    def cut(self, lo: int, hi: int) -> Callable[[], dict[str, list]]:
        """Rows ``[lo, hi)`` copied out (quick: slices of arrays and lists) and a function that
        makes their columns (slow: a string per row), to be called on another thread."""
        t = self._take
        ids, src, typ, sym, err = (t(self.ids, lo, hi), t(self.src, lo, hi), t(self.typ, lo, hi),
                                   t(self.sym, lo, hi), t(self.err, lo, hi))
        ti, ts, ta, ok = t(self.t_intended, lo, hi), t(self.t_sent, lo, hi), t(self.t_acked, lo, hi), t(self.ok, lo, hi)
        srcs, types, syms, errs = list(self.sources), list(self.types), list(self.symbols), list(self.errors)

        def columns() -> dict[str, list]:
            idl = [i if i is not None else "" for i in ids]
            return {"id": idl, "source": [srcs[i] for i in src], "seq": [seq_of(i) for i in idl],
                    "type": [types[i] for i in typ], "symbol": [syms[i] for i in sym], "t_intended": ti.tolist(),
                    "t_sent": ts.tolist(), "t_acked": ta.tolist(), "ok": [bool(x) for x in ok],
                    "error": [errs[i] for i in err]}
        return columns

    def free(self, lo: int, hi: int) -> None:
        """Rows ``[lo, hi)`` were written out: their slots are cleared for reuse."""
        for s in self._slots(lo, hi):
            n = s.stop - s.start
            self.ids[s] = [None] * n
            self.done[s] = _zeros("b", n)
            self.ok[s] = _zeros("b", n)
            self.err[s] = _zeros("i", n)
            self.t_acked[s] = _zeros("q", n)
            self.t_sent[s] = _zeros("q", n)
            self.t_intended[s] = _zeros("q", n)   # 0: not planned (a slot of a row to come)
        self.freed = max(self.freed, hi)

    def settled_upto(self, lo: int) -> int:
        """The first row at or after ``lo`` whose outcome is not known yet (``n`` when all are)."""
        import numpy as np

        if lo >= self.n:
            return self.n
        at = lo
        for s in self._slots(lo, self.n):
            z = np.flatnonzero(np.frombuffer(self.done, dtype=np.int8)[s] == 0)
            if z.size:
                return at + int(z[0])
            at += s.stop - s.start
        return self.n

    def column(self, name: str, lo: int, hi: int):
        """A numeric column's rows ``[lo, hi)`` as a numpy array (a copy)."""
        import numpy as np

        col = getattr(self, name)
        dt = {"i": np.int32, "q": np.int64, "b": np.int8}[col.typecode]
        return np.concatenate([np.frombuffer(col, dtype=dt)[s] for s in self._slots(lo, hi)] or [np.empty(0, dt)])


def seq_of(eid: str) -> int:
    """The seq of a publication's id (``{epoch}:{stream}:{seq}``); -1 for one that never got a seq."""
    tail = eid.rpartition(":")[2]
    return int(tail) if tail.isdigit() and not eid.startswith(("not-sent:", "failed:")) else -1


class Deliveries:
    """One receiver's current chunk of deliveries; the object is the bridge handler (a plain
    function call). When the chunk is full, ``full`` (the recorder) closes every receiver's chunk."""

    __slots__ = ("receiver", "now_ns", "n", "cap", "max_cap", "src", "ep", "stm", "typ", "gid", "seq", "t", "ti", "lag",
                 "say", "t0", "full", "total", "summarised", "warm", "pool")

    def __init__(self, receiver: str, now_ns: Callable[[], int], capacity: int, say=None, t0=None,
                 full: Callable[["Deliveries"], None] | None = None) -> None:
        self.receiver = receiver
        self.now_ns = now_ns
        self.n = 0
        self.max_cap = max(16, capacity)        # the chunk closes at this many rows ...
        self.cap = min(self.max_cap, 4096)      # ... the columns grow to it as rows come
        #: one object per distinct source, epoch, type and stream: a row refers to these, so the
        #: strings each parsed message brings are freed at once, not kept a chunk long
        self.pool: dict = {}
        self.src: list = [None] * self.cap      # the envelope's source (str or int)
        self.ep: list = [None] * self.cap       # epoch
        self.stm: list = [None] * self.cap      # stream: the type, or type.partition
        self.typ: list = [None] * self.cap      # type
        self.gid: list = [None] * self.cap      # an id the envelope was given (None: derived)
        self.seq = _zeros("q", self.cap)        # -1: none
        self.t = _zeros("q", self.cap)          # t_received
        self.ti = _zeros("q", self.cap)         # when it was due, from the envelope (0: unknown)
        self.lag = _zeros("q", self.cap)        # sent − due, from the envelope (t_sent = ti + lag)
        self.say = say
        self.t0 = t0
        self.full = full
        self.total = 0                          # rows in closed chunks
        self.summarised = 0                     # rows of this chunk already in the summary
        self.warm = 0                           # rows left out of the summary as warmup

    def __call__(self, env) -> None:
        t = self.now_ns()
        i = self.n
        if i == self.cap:
            if self.full is None or self.cap < self.max_cap:
                self._grow()
            else:
                self.full(self)
                i = self.n
        self.t[i] = t
        pool = self.pool
        x = env[3]
        self.src[i] = pool.setdefault(x, x)
        x = env[5]
        self.ep[i] = pool.setdefault(x, x)
        x = env[0]
        self.typ[i] = typ = pool.setdefault(x, x)
        x = env[8]
        self.stm[i] = typ if x is None else pool.setdefault(x, x)
        self.gid[i] = env[9]
        seq = env[4]
        self.seq[i] = -1 if seq is None else seq
        ns, lag = env[6], env[7]
        if lag is None or ns is None:
            self.ti[i] = 0
        else:
            self.ti[i] = env[2] * 1_000_000 + ns - lag
            self.lag[i] = lag
        self.n = i + 1
        if self.say is not None:
            self.say(f"[{(t - self.t0()) / 1e9:9.3f}s]   {self.receiver} <- {env.source} {env.type} {env.id}")

    def _grow(self) -> None:
        extra = self.cap if self.full is None else min(self.cap, self.max_cap - self.cap)
        for col in (self.src, self.ep, self.stm, self.typ, self.gid):
            col.extend([None] * extra)
        for col in (self.seq, self.t, self.ti, self.lag):
            col.extend(_zeros("q", extra))
        self.cap += extra

    def cut(self) -> "Chunk":
        """The current chunk's rows (copied out) and an empty chunk to go on with."""
        n = self.n
        c = Chunk(self.receiver, self.src[:n], self.ep[:n], self.stm[:n], self.typ[:n], self.gid[:n],
                  self.seq[:n], self.t[:n])
        self.total += n
        self.n = self.summarised = 0
        for col in (self.src, self.ep, self.stm, self.typ, self.gid):  # drop the references
            col[:n] = _NONES[:n] if n <= len(_NONES) else [None] * n
        return c

    def columns(self) -> dict[str, list]:
        """The current chunk's rows in DELIVERY_COLUMNS order."""
        n = self.n
        return Chunk(self.receiver, self.src[:n], self.ep[:n], self.stm[:n], self.typ[:n], self.gid[:n],
                     self.seq[:n], self.t[:n]).columns()


_NONES = [None] * 65536


class Chunk:
    """Closed rows of one receiver, as recorded (turned into the record's columns on demand)."""

    __slots__ = ("receiver", "src", "ep", "stm", "typ", "gid", "seq", "t")

    def __init__(self, receiver, src, ep, stm, typ, gid, seq, t) -> None:
        self.receiver, self.src, self.ep, self.stm, self.typ, self.gid, self.seq, self.t = (
            receiver, src, ep, stm, typ, gid, seq, t)

    def __len__(self) -> int:
        return len(self.seq)

    def table(self):
        """The rows as an Arrow table in DELIVERY_COLUMNS order (ids made by Arrow)."""
        return _chunk_table(self)

    def columns(self) -> dict[str, list]:
        """DELIVERY_COLUMNS: the id as the envelope's (``Envelope.id``: given, else
        ``{epoch}:{stream}:{seq}``, None for a seed-format message)."""
        ids = [g if g is not None else (None if e is None or q < 0 else f"{e}:{s}:{q}")
               for g, e, s, q in zip(self.gid, self.ep, self.stm, self.seq)]
        return {"id": ids, "source": [s if type(s) is str else str(s) for s in self.src],
                "receiver": [self.receiver] * len(ids), "type": list(self.typ), "seq": self.seq.tolist(),
                "t_received": self.t.tolist()}


def merge_columns(tables: list[dict[str, list]], names) -> dict[str, list]:
    """Several column dicts (workers, receivers) as one, in ``names`` order."""
    out: dict[str, list] = {k: [] for k in names}
    for t in tables:
        for k in names:
            out[k].extend(t.get(k, ()))
    return out


class Recorder:
    """Every publication and delivery of the instances hosted in this process, in chunks, and
    their :class:`~fanout.lab.summary.Summary`.

    ``parts``: a folder to write closed chunks to as Parquet parts (None: keep them in memory);
    ``tag`` names this process's parts; ``t0``/``warmup``: rows due before ``t0()`` are warmup,
    left out of the summary (as :func:`~fanout.lab.record.build_record` leaves them out of the
    frames); ``own_offset``/``source_offsets``: this process's and each source's clock offset to
    the reference clock (agents), so the summary's latency is on one clock."""

    def __init__(self, now_ns: Callable[[], int], *, parts: str | os.PathLike | None = None, tag: str = "main",
                 t0: Callable[[], int] = lambda: 0, warmup: bool = False, chunk_rows: int = CHUNK_ROWS,
                 chunk_s: float = CHUNK_S, meta: dict | None = None) -> None:
        self.now_ns = now_ns
        self.pubs = Publications(0, now_ns)
        self.receivers: dict[str, Deliveries] = {}
        self.summary = Summary()
        self.parts = Path(parts) if parts is not None else None
        self.tag = tag
        self.t0 = t0
        self.warmup = warmup
        self.chunk_rows = chunk_rows
        self.chunk_s = chunk_s
        self.meta = meta
        self.own_offset = 0
        self.source_offsets: dict[str, int] = {}
        self.chunks: list[Chunk] = []          # closed chunks kept in memory (no parts folder)
        self.pubs_done = 0                      # publication rows [0, pubs_done) summarised
        self.pubs_written = 0                   # ... and [0, pubs_written) handed to the writer
        self.tick_s_max = 0.0
        self.n_parts = 0
        self.part_rows = 0                      # rows written to parts
        self.flush_s_max = 0.0                  # the longest close on the event loop's thread
        self.flush_s_total = 0.0
        self.closes = 0
        self._chunk_started = time.monotonic()
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        self._lock = threading.Lock()

    def plan(self, n: int = 0) -> Publications:
        """Publication rows for the hosted schedule (``n``: how many are known to come, a sizing
        hint): a ring when they are written as parts, else columns that grow."""
        self.pubs = Publications(n, self.now_ns, ring=self.parts is not None)
        self.pubs_done = self.pubs_written = 0
        return self.pubs

    def make_room(self, k: int) -> None:
        """Before a publisher plans row ``k``: when its ring slot still holds an unwritten row,
        close the chunk (the settled rows are written and their slots freed). A row still
        unsettled a whole ring ago is a fault of the run, said in one line."""
        if self.pubs.room(k):
            return
        self.close_chunk()
        if not self.pubs.room(k):
            raise RuntimeError(f"publication row {k}: row {k - self.pubs.cap} has no outcome yet, "
                               f"{self.pubs.cap:,} rows later (its publish never settled)")

    def handler(self, receiver: str, capacity: int = 1024, say: Callable[[str], None] | None = None,
                t0: Callable[[], int] = lambda: 0) -> Deliveries:
        """The bridge handler that records every delivery to ``receiver`` (one table per
        receiver, kept across a restart of its bridge: the summary counts what a new bridge
        hands over again as duplicates). Its chunk holds at most ``capacity`` rows."""
        d = self.receivers.get(receiver)
        if d is None:
            d = self.receivers[receiver] = Deliveries(receiver, self.now_ns, capacity, say, t0, self._full)
        return d

    # ------------------------------------------------------------------ counts
    def distinct(self, receiver: str) -> int:
        """Distinct events ``receiver`` got so far (warmup included): from the summary."""
        d = self.receivers.get(receiver)
        if d is None:
            return 0
        self._summarise(d)
        return self.summary.distinct(receiver) + d.warm

    @property
    def got(self) -> dict[str, int]:
        """Receiver -> distinct events received."""
        return {r: self.distinct(r) for r in self.receivers}

    @property
    def published_by(self) -> dict[str, int]:
        return self.pubs.published_by

    @property
    def n_deliveries(self) -> int:
        return sum(d.total + d.n for d in self.receivers.values())

    # ------------------------------------------------------------------ chunks
    def _summarise(self, d: Deliveries) -> None:
        """Rows of ``d``'s chunk not yet in the summary, into it (numpy, a chunk at a time)."""
        import numpy as np

        lo, hi = d.summarised, d.n
        if hi <= lo:
            return
        d.summarised = hi
        seq = np.frombuffer(d.seq, dtype=np.int64)[lo:hi].copy()
        t = np.frombuffer(d.t, dtype=np.int64)[lo:hi] + self.own_offset
        ti = np.frombuffer(d.ti, dtype=np.int64)[lo:hi].copy()
        ts = np.where(ti != 0, ti + np.frombuffer(d.lag, dtype=np.int64)[lo:hi], 0)
        src = np.array(d.src[lo:hi], dtype=object)
        cols = [src, np.array(d.ep[lo:hi], dtype=object), np.array(d.stm[lo:hi], dtype=object),
                np.array(d.typ[lo:hi], dtype=object), seq, t, ti, ts]
        if self.warmup:
            shift = self._offsets_of(src) - self.own_offset
            warm = (ti != 0) & (ti + shift < self.t0())
            if warm.any():
                d.warm += int(warm.sum())
                cols = [c[~warm] for c in cols]
        s, e, st, ty, q, tr, tint, tsent = cols
        self.summary.add_deliveries(d.receiver, s, e, st, ty, q, tr, tint, source_offsets=self.source_offsets,
                                    t_sent=tsent)

    def _offsets_of(self, src):
        import numpy as np

        if not self.source_offsets:
            return np.zeros(len(src), dtype=np.int64)
        return np.array([self.source_offsets.get(x if type(x) is str else str(x), 0) for x in src], dtype=np.int64)

    def _summarise_publications(self, upto: int) -> tuple[int, int]:
        """Publication rows ``[pubs_done, upto)`` into the summary; returns that range."""
        import numpy as np

        lo, p = self.pubs_done, self.pubs
        if upto <= lo:
            return lo, lo
        self.pubs_done = upto
        n = upto - lo
        seq = np.empty(n, dtype=np.int64)
        epoch = np.empty(n, dtype=object)
        stream = np.empty(n, dtype=object)
        for j, i in enumerate(p._take(p.ids, lo, upto)):  # ~1/(N-1) of the deliveries, a tick's worth at a time
            q = seq_of(i) if i else -1
            seq[j] = q
            if q >= 0:
                e, _, rest = i.partition(":")
                epoch[j], stream[j] = e, rest.rpartition(":")[0]
        src = np.array(p.sources, dtype=object)[p.column("src", lo, upto)]
        ok = p.column("ok", lo, upto).astype(bool)
        keep = slice(None)
        if self.warmup:
            keep = p.column("t_intended", lo, upto) >= self.t0()
        due, sent = p.column("t_intended", lo, upto), p.column("t_sent", lo, upto)
        # (lag and span are differences: the same on this process's clock as on the reference's)
        self.summary.add_publications(src[keep], epoch[keep], stream[keep], seq[keep], ok[keep], due[keep], sent[keep])
        return lo, upto

    def _full(self, d: Deliveries) -> None:
        self.close_chunk()

    def tick(self) -> None:
        """Called from the run's own loops a few times a second (never per message): what
        arrived since the last tick into the summary (small batches, so closing a chunk has
        little left to do on the event loop), and the chunk closed when it is :data:`CHUNK_S` old."""
        t = time.perf_counter()
        for d in self.receivers.values():
            self._summarise(d)
        self._summarise_publications(self.pubs.settled_upto(self.pubs_done))
        self.tick_s_max = max(self.tick_s_max, time.perf_counter() - t)
        if time.monotonic() - self._chunk_started >= self.chunk_s:
            self.close_chunk()

    def close_chunk(self, final: bool = False) -> None:
        """Every receiver's chunk into the summary, then to a part (or kept in memory); the
        publications whose outcome is known (all of them when ``final``) likewise."""
        t = time.perf_counter()
        self._chunk_started = time.monotonic()
        chunks = []
        for d in self.receivers.values():
            self._summarise(d)
            if d.n:
                chunks.append(d.cut())
        p = self.pubs
        self._summarise_publications(p.n if final else p.settled_upto(self.pubs_done))
        lo, hi = self.pubs_written, self.pubs_done
        if self.parts is None:
            self.chunks.extend(chunks)
        else:
            pub_cols = p.cut(lo, hi) if hi > lo else None
            if hi > lo:
                p.free(lo, hi)  # copied out to be written: the slots (and the strings) need not stay
                self.pubs_written = hi
            self._write(chunks, pub_cols)
        dt = time.perf_counter() - t
        self.closes += 1
        self.flush_s_total += dt
        self.flush_s_max = max(self.flush_s_max, dt)

    def _write(self, chunks: list[Chunk], pub_cols: Callable[[], dict] | None) -> None:
        if not chunks and pub_cols is None:
            return
        if self._writer is None:
            _arrow_types()
            self.parts.mkdir(parents=True, exist_ok=True)
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"parts-{self.tag}")
        k = self.n_parts
        self.n_parts += 1
        self.part_rows += sum(len(c) for c in chunks)
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._writer.submit(_write_part, self.parts, self.tag, k, chunks, pub_cols,
                                                 self._recording_meta()))

    def _recording_meta(self) -> dict | None:
        if self.meta is None:
            return None
        return {**self.meta, "t0": self.t0(), "warmup": self.warmup}

    def finish(self) -> None:
        """Close the last chunk (every publication with it) and wait for the parts to be written."""
        self.close_chunk(final=True)
        self.wait()

    def wait(self) -> None:
        for f in self._pending:
            f.result()
        self._pending = []
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def stats(self) -> dict:
        """How the recording went: chunks closed, parts written, time on the event loop's thread."""
        return {"chunk_rows": self.chunk_rows, "chunk_s": self.chunk_s, "closes": self.closes,
                "parts": self.n_parts, "part_rows": self.part_rows,
                "close_ms_max": round(self.flush_s_max * 1e3, 3), "close_ms_total": round(self.flush_s_total * 1e3, 3),
                "tick_ms_max": round(self.tick_s_max * 1e3, 3)}

    # ------------------------------------------------------------------ columns (kept in memory)
    def publication_columns(self) -> dict[str, list]:
        return self.pubs.columns()

    def delivery_columns(self) -> dict[str, list]:
        """Every delivery kept in memory (closed chunks and the current ones), receiver by receiver."""
        from fanout.lab.record import DELIVERY_COLUMNS

        tables = []
        for r, d in self.receivers.items():
            tables.extend(c.columns() for c in self.chunks if c.receiver == r)
            tables.append(d.columns())
        return merge_columns(tables, DELIVERY_COLUMNS)


def _write_part(folder: Path, tag: str, k: int, chunks: list[Chunk], pub_cols: Callable[[], dict] | None,
                meta: dict | None) -> None:
    """One part (on the writer thread): the chunks' deliveries and the publications as Parquet
    files, each written under a temporary name and renamed, so a reader never sees half a part.
    Arrow builds the columns (the ids with Arrow's string functions, which let go of the GIL), so
    the event loop's thread is held back as little as possible."""
    import pyarrow as pa

    if meta is not None and not (folder / "recording.json").exists():
        tmp = folder / f".recording-{tag}.json"
        tmp.write_text(json.dumps(meta, default=str) + "\n")
        os.replace(tmp, folder / "recording.json")
    tables = []
    if chunks:
        tables.append(("deliveries", pa.concat_tables([c.table() for c in chunks])))
    if pub_cols is not None:
        from fanout.lab.record import PUBLICATION_COLUMNS

        cols = pub_cols()
        tables.append(("publications", pa.table({c: pa.array(cols[c], type=_ARROW[t]) for c, t in
                                                  PUBLICATION_COLUMNS.items()})))
    for name, table in tables:
        final = folder / f"{name}-{tag}-{k:05d}.parquet"
        tmp = folder / f".{final.name}.tmp"
        write_table(table, tmp)
        os.replace(tmp, final)


def write_table(table, path: Path) -> None:
    """An Arrow table as :func:`fanout.lab.record.write_parquet` writes a frame: zstd, strings
    dictionary-encoded, integers delta-encoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    strings = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    ints = {f.name: "DELTA_BINARY_PACKED" for f in table.schema if pa.types.is_integer(f.type)}
    pq.write_table(table, path, compression="zstd", use_dictionary=strings, column_encoding=ints)


def _strings(values: list):
    """A list of str (or None) as an Arrow string array; ids of another type (an int source) as text."""
    import pyarrow as pa

    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid, TypeError):
        return pa.array([v if v is None or type(v) is str else str(v) for v in values], type=pa.string())


def _chunk_table(c: "Chunk"):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(c.seq)
    seq = pa.array(np.frombuffer(c.seq, dtype=np.int64).copy())
    ep, stm = _strings(c.ep), _strings(c.stm)
    derived = pc.binary_join_element_wise(ep, stm, pc.cast(seq, pa.string()), ":")
    derived = pc.if_else(pc.less(seq, 0), pa.scalar(None, pa.string()), derived)
    ids = derived
    if any(g is not None for g in c.gid):
        ids = pc.coalesce(_strings(c.gid), derived)
    return pa.table({"id": ids, "source": _strings(c.src), "receiver": pa.array([c.receiver] * n, type=pa.string()),
                     "type": _strings(c.typ), "seq": seq,
                     "t_received": pa.array(np.frombuffer(c.t, dtype=np.int64).copy())})


_ARROW: dict = {}


def _arrow_types() -> None:
    import pyarrow as pa

    _ARROW.update({"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_(), "float64": pa.float64()})
