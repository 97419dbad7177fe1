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
"""
from __future__ import annotations

from array import array
from collections.abc import Callable


def _zeros(code: str, n: int) -> array:
    return array(code, bytes(array(code).itemsize * n))


class Publications:
    """Preallocated publication rows; row ``k`` is the ``k``-th event of the hosted schedule."""

    def __init__(self, n: int, now_ns: Callable[[], int]) -> None:
        self.n = n
        self.now_ns = now_ns
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
        self.sources: list[str] = []
        self.types: list[str] = []
        self.symbols: list[str] = []
        self.errors: list[str] = [""]
        self._codes: dict[int, dict[str, int]] = {id(t): {} for t in (self.sources, self.types, self.symbols)}
        self.acked_by: list[int] = []      # per source index: acknowledged publications
        self.settled_by: list[int] = []    # per source index: rows whose outcome is known
        self.settled = 0

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

    def plan(self, k: int, src: int, typ: int, sym: int, due: int) -> None:
        self.src[k], self.typ[k], self.sym[k], self.t_intended[k] = src, typ, sym, due

    def ack(self, k: int, error) -> None:
        """The ``on_published`` callback: row ``k`` was acknowledged (``error`` None) or failed."""
        if self.done[k]:
            return
        self.done[k] = 1
        self.settled += 1
        self.settled_by[self.src[k]] += 1
        if error is None:
            self.t_acked[k] = self.now_ns()
            self.ok[k] = 1
            self.acked_by[self.src[k]] += 1
        else:
            self.fail(k, str(error), settle=False)

    def fail(self, k: int, why: str, settle: bool = True) -> None:
        if settle:
            if self.done[k]:
                return
            self.done[k] = 1
            self.settled += 1
            self.settled_by[self.src[k]] += 1
        try:
            self.err[k] = self.errors.index(why)
        except ValueError:
            self.err[k] = len(self.errors)
            self.errors.append(why)

    @property
    def published_by(self) -> dict[str, int]:
        return {s: self.acked_by[i] for i, s in enumerate(self.sources)}

    def lag_p99_ms(self) -> float | None:
        """p99 of (sent - due) over the rows sent so far, in ms (None before any)."""
        import numpy as np

        sent = np.frombuffer(self.t_sent, dtype=np.int64)
        due = np.frombuffer(self.t_intended, dtype=np.int64)
        mask = (sent > 0) & (due > 0)
        return float(np.percentile(sent[mask] - due[mask], 99)) / 1e6 if mask.any() else None

    def columns(self) -> dict[str, list]:
        """Plain lists in PUBLICATION_COLUMNS order (seq from the envelope id; -1 when none)."""
        srcs, types, syms, errs = self.sources, self.types, self.symbols, self.errors
        ids = [i if i is not None else "" for i in self.ids]
        seq = []
        for i, ok in zip(ids, self.ok):
            tail = i.rpartition(":")[2]
            seq.append(int(tail) if tail.isdigit() and not i.startswith(("not-sent:", "failed:")) else -1)
        return {
            "id": ids, "source": [srcs[i] for i in self.src], "seq": seq, "type": [types[i] for i in self.typ],
            "symbol": [syms[i] for i in self.sym], "t_intended": self.t_intended.tolist(),
            "t_sent": self.t_sent.tolist(), "t_acked": self.t_acked.tolist(), "ok": [bool(x) for x in self.ok],
            "error": [errs[i] for i in self.err],
        }


class Deliveries:
    """One receiver's deliveries; the object is the bridge handler (a plain function call)."""

    __slots__ = ("receiver", "now_ns", "n", "cap", "ids", "src", "typ", "seq", "t", "seen", "say", "t0")

    def __init__(self, receiver: str, now_ns: Callable[[], int], capacity: int, say=None, t0=None) -> None:
        self.receiver = receiver
        self.now_ns = now_ns
        self.n = 0
        self.cap = max(16, capacity)
        self.ids: list = [None] * self.cap
        self.src: list = [None] * self.cap
        self.typ: list = [None] * self.cap
        self.seq = _zeros("q", self.cap)
        self.t = _zeros("q", self.cap)
        self.seen: set | None = None        # distinct ids, once a restarted receiver may get one again
        self.say = say
        self.t0 = t0

    def __call__(self, env) -> None:
        t = self.now_ns()
        i = self.n
        if i == self.cap:
            self._grow()
        self.t[i] = t
        self.ids[i] = eid = env.id
        self.src[i] = env.source
        self.typ[i] = env.type
        self.seq[i] = env.seq if env.seq is not None else -1
        self.n = i + 1
        if self.seen is not None:
            self.seen.add(eid)
        if self.say is not None:
            self.say(f"[{(t - self.t0()) / 1e9:9.3f}s]   {self.receiver} <- {env.source} {env.type} {eid}")

    def _grow(self) -> None:
        extra = self.cap
        self.ids.extend([None] * extra)
        self.src.extend([None] * extra)
        self.typ.extend([None] * extra)
        self.seq.extend(_zeros("q", extra))
        self.t.extend(_zeros("q", extra))
        self.cap += extra

    def track_distinct(self) -> None:
        """From now on count distinct ids (a new bridge for this receiver may hand over again
        what its previous incarnation had: a Streams batch after a crash); one bridge never
        hands over an event twice, so until then every delivery is distinct."""
        if self.seen is None:
            self.seen = set(self.ids[:self.n])

    @property
    def distinct(self) -> int:
        return self.n if self.seen is None else len(self.seen)

    def columns(self) -> dict[str, list]:
        n = self.n
        return {"id": self.ids[:n], "source": [s if type(s) is str else str(s) for s in self.src[:n]],
                "receiver": [self.receiver] * n, "type": self.typ[:n], "seq": self.seq[:n].tolist(),
                "t_received": self.t[:n].tolist()}


def merge_columns(tables: list[dict[str, list]], names) -> dict[str, list]:
    """Several column dicts (workers, receivers) as one, in ``names`` order."""
    out: dict[str, list] = {k: [] for k in names}
    for t in tables:
        for k in names:
            out[k].extend(t.get(k, ()))
    return out


class Recorder:
    """Every publication and delivery of the instances hosted in this process."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        self.now_ns = now_ns
        self.pubs = Publications(0, now_ns)
        self.receivers: dict[str, Deliveries] = {}

    def plan(self, n: int) -> Publications:
        """Allocate the publication rows for ``n`` scheduled events."""
        self.pubs = Publications(n, self.now_ns)
        return self.pubs

    def handler(self, receiver: str, capacity: int = 1024, say: Callable[[str], None] | None = None,
                t0: Callable[[], int] = lambda: 0) -> Deliveries:
        """The bridge handler that records every delivery to ``receiver`` (one table per
        receiver, kept across a restart of its bridge)."""
        d = self.receivers.get(receiver)
        if d is None:
            d = self.receivers[receiver] = Deliveries(receiver, self.now_ns, capacity, say, t0)
        else:  # a restarted instance: its new bridge may repeat what the last one handed over
            d.track_distinct()
        return d

    @property
    def got(self) -> dict[str, int]:
        """Receiver -> distinct events received."""
        return {r: d.distinct for r, d in self.receivers.items()}

    @property
    def published_by(self) -> dict[str, int]:
        return self.pubs.published_by

    @property
    def n_deliveries(self) -> int:
        return sum(d.n for d in self.receivers.values())

    def publication_columns(self) -> dict[str, list]:
        return self.pubs.columns()

    def delivery_columns(self) -> dict[str, list]:
        from fanout.lab.record import DELIVERY_COLUMNS

        return merge_columns([d.columns() for d in self.receivers.values()], DELIVERY_COLUMNS)
