"""Exact accounting of lost events: every event an instance should have received and did not
is attributed, from evidence on that receiver's own path, to a cause — or counted unexplained.

Causes are of three kinds (``kind`` in the losses, ``by_kind``): **planned fault**, **unplanned
outage** (any other evidence-backed loss: the receiver's own disconnection, a trim, a dead agent,
reading held at the end) and **unexplained**. A fault run passes only when every loss is of the
first kind (:mod:`fanout.analysis.verdict`). Causes, in the order they are tried for each missing
``(event, receiver)``:

1. **trimmed from stream**: the Streams transport counted exactly how many entries were cut
   from under a receiver (``transport_losses`` in its metrics); that many of its missing
   events (the earliest) are attributed to trimming — of the planned kind when they were sent in
   a fault's window on that receiver.
2. **a planned fault acting on that receiver** (or on the server): the event was sent inside the
   fault's window *for that receiver*. A fault touches one instance (crash, slow consumer,
   latency, partition) or all of them (redis_restart, failovers). The window opens at the fault's
   start (less ``PRE_NS``, for what was in flight) and closes when the fault ended or, if later,
   when that receiver's own outages that began while the fault lasted (or as long again after it,
   or before that receiver was receiving on time again — a consumer still catching up after a slow
   spell: its first delivery after the fault within ``CAUGHT_UP_NS`` of its due time, from its own
   rows) were over, plus ``POST_NS``. An event outside
   that time but inside the reconnect gap of one of those outages (below) is the fault's too. A
   slow consumer's loss is named "cut off by output-buffer limit" when Redis reports (INFO, or its
   log on Redis < 7.2) that it disconnected a client for its output buffer.
3. **its agent died**: a receiver hosted by an agent that died mid-run (a multi-host run) loses
   everything after that, and its records with it.
4. **the receiver's own unplanned outage**: the event was sent while *that receiver* was
   disconnected — from its connection's last sign of life (the last data read from Redis), less
   ``PRE_NS`` for what was in flight, until it had resubscribed plus ``POST_NS`` (to the end of
   the run if it never did) — or it lies in the **gap that receiver saw on reconnect**: on the
   event's own stream (source, type), the last event the receiver got before it arrived before
   the outage began and the next one arrived after it (what the bridge's ``seq_gap`` notice on
   resubscribing spans: e.g. entries the server still held in its output buffer when it cut the
   client off). Another instance's outage — the publisher's included: an acknowledged PUBLISH
   does not pass through the publisher's subscription — never explains a receiver's loss.
5. **unread at the end, reading held**: the receiver's subscription had stopped reading for its
   async handlers' backlog (``held_since_ns`` in the record's instances) and was still held when
   the run ended; an event sent after the hold began was still waiting in Redis or the socket.
6. **unexplained**: anything else.

Every attributed loss names its evidence (``evidence``: the fault window, the outage by its row in
``record.outages``, or the reconnect gap). Events whose publish failed were never published: the
publisher was told (``PublishError``); they are expected nowhere and are listed as "not published".
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fanout.analysis.latency import latency_stats
from fanout.errors import ConfigError
from fanout.lab.record import RunRecord

PRE_NS = 50_000_000    # 50 ms before a fault or a last sign of life: events in flight when it struck
POST_NS = 50_000_000   # 50 ms after the receiver was back
#: a receiver is on time again after a fault at its first delivery this close to its due time
CAUGHT_UP_NS = 100_000_000
UNEXPLAINED = "unexplained"
TRIMMED = "trimmed from stream"
OUTPUT_BUFFER = "cut off by output-buffer limit"
OUTAGE = "lost during an unplanned outage"
HELD = "unread at the end: reading held for the handler backlog"
PLANNED = "planned fault"
OUTAGE_KIND = "unplanned outage"
KINDS = (PLANNED, OUTAGE_KIND, UNEXPLAINED)
#: the seed's latency bound (average below 100 ms), used where a run names none
DEFAULT_BOUND_MS = 100.0

LOSS_COLUMNS = ["receiver", "kind", "cause", "fault", "evidence", "count"]
FAULT_TABLE_COLUMNS = ["fault", "kind", "instance", "outage_s", "receivers", "sent_in_window", "delivered", "lost",
                       "recovered", "recovery_ms", "bound_ms", "window_n", "window_p50_ms", "window_p99_ms",
                       "window_max_ms", "late"]


@dataclass
class LossAccount:
    losses: pd.DataFrame                      # see LOSS_COLUMNS (count > 0 rows only)
    by_cause: dict[str, int]                  # cause -> count, over all receivers
    unexplained: int
    lost: int                                 # all missing events (attributed + unexplained)
    not_published: int                        # failed publications (expected nowhere)
    not_published_reasons: dict[str, int]
    faults: pd.DataFrame                      # one row per fault: see FAULT_TABLE_COLUMNS
    output_buffer_disconnections: int | None
    notes: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)   # kind (KINDS) -> count, kinds with losses only

    @property
    def planned_only(self) -> bool:
        """Every loss (if any) was a planned fault's, on the instance it targets, in its window."""
        return self.lost == self.by_kind.get(PLANNED, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_cause": self.by_cause, "by_kind": self.by_kind, "unexplained": self.unexplained,
            "lost": self.lost, "not_published": self.not_published,
            "not_published_reasons": self.not_published_reasons,
            "output_buffer_disconnections": self.output_buffer_disconnections,
            "losses": self.losses.to_dict(orient="records"),
            "faults": self.faults.to_dict(orient="records"),
        }


@dataclass(frozen=True)
class Window:
    """Evidence that may explain a receiver's loss: a time span on its path, and the outages whose
    reconnect gaps count too (``gaps``: (t_down, t_up, outage label))."""

    label: str         # "partition on b", or the outage's text
    fault_kind: str    # the fault's kind, "" for an unplanned outage
    receiver: str
    start: int
    end: int
    evidence: str
    gaps: tuple[tuple[int, int, str], ...] = ()


def _reason(error: str) -> str:
    """A publish error, without what differs per event (channel, address), so alike ones group."""
    why = error.split(" failed: ", 1)[-1]
    why = re.sub(r"\(?'?\d+\.\d+\.\d+\.\d+'?[:,] ?\d+\)?", "<addr>", why)
    return why.strip()[:120]


def _cause(kind: str, cut_off: bool) -> str:
    if kind == "slow_consumer" and cut_off:
        return OUTPUT_BUFFER
    return f"lost during {kind}"


def _ended(o, record: RunRecord) -> int:
    return int(o.t_up) if int(o.t_up) else int(record.t_end)


def _outage_label(record: RunRecord, o) -> str:
    a, b = (int(o.t_down) - record.t0) / 1e9, (_ended(o, record) - record.t0) / 1e9
    return f"{o.instance} disconnected from Redis {a:.2f}–{b:.2f} s" + ("" if int(o.t_up) else " (never back)")


def _outage_ref(o, k: int) -> str:
    return f"outage {k} of {o.instance}"


def _due_times(record: RunRecord) -> pd.Series | None:
    """Each event's due time by id (what :func:`_caught_up` measures lateness from); None for a run
    without faults or publications (nothing to catch up after)."""
    if not (len(record.faults) and len(record.publications)):
        return None
    due = pd.Series(record.publications["t_intended"].to_numpy(), index=record.publications["id"])
    return due[~due.index.duplicated()]


def _caught_up(record: RunRecord, receiver: str, after: int, due: pd.Series | None) -> int:
    """When ``receiver`` was receiving on time again after ``after`` (ns): its first delivery after
    it within :data:`CAUGHT_UP_NS` of the event's due time — evidence on its own path that a slow
    spell's backlog was behind it; ``after`` itself when it has no such delivery before the run's end
    is not known (no rows), the end of the run when it never caught up."""
    if due is None or not len(record.deliveries):
        return after
    d = record.deliveries
    mine = d[(d["receiver"] == receiver) & (d["t_received"] > after)]
    if not len(mine):
        return int(record.t_end or after)
    late = mine["t_received"].to_numpy(dtype=np.int64) - mine["id"].map(due).fillna(0).to_numpy(dtype=np.int64)
    on_time = mine["t_received"].to_numpy(dtype=np.int64)[late <= CAUGHT_UP_NS]
    return int(on_time.min()) if on_time.size else int(record.t_end or after)


def _windows(record: RunRecord, receivers: list[str]) -> tuple[list[Window], dict[str, list[Window]]]:
    """(fault windows, per receiver its own outage windows). See the module doc, causes 2 and 4."""
    outages = list(record.outages.reset_index(drop=True).itertuples(index=False))
    numbered = {}  # per instance, its outages numbered in record order
    for o in outages:
        numbered.setdefault(str(o.instance), []).append(o)
    own: dict[str, list[Window]] = {}
    for who, rows in numbered.items():
        for k, o in enumerate(rows):
            ref = _outage_ref(o, k)
            own.setdefault(who, []).append(Window(
                _outage_label(record, o), "", who, int(o.t_down) - PRE_NS, _ended(o, record) + POST_NS,
                f"sent while {who} was disconnected ({ref})", ((int(o.t_down), _ended(o, record), ref),)))
    faults_out = []
    due = _due_times(record)
    for f in record.faults.sort_values("t_start", kind="stable").itertuples(index=False):
        touched = [str(f.instance)] if f.instance else receivers
        start, stop = int(f.t_start), int(f.t_end)
        label = f"{f.kind}" + (f" on {f.instance}" if f.instance else "")
        for r in touched:
            end, gaps = stop, []
            # the receiver's outages that began while the fault lasted, or as long again after it, or
            # before that receiver was on time again (a consumer still catching up), dated from their
            # last sign of life
            catching_up = max(stop + (stop - start), _caught_up(record, r, stop, due)) if numbered.get(r) else stop
            for k, o in enumerate(numbered.get(r, ())):
                if start - PRE_NS <= int(o.t_down) <= catching_up + POST_NS or \
                        int(o.t_down) < start <= _ended(o, record):
                    end = max(end, _ended(o, record))
                    gaps.append((int(o.t_down), _ended(o, record), _outage_ref(o, k)))
            faults_out.append(Window(label, str(f.kind), r, start - PRE_NS, end + POST_NS,
                                     f"sent in the fault's window on {r}", tuple(gaps)))
    return faults_out, own


def fault_windows(record: RunRecord, receivers: list[str]) -> list[tuple[str, str, str, int, int]]:
    """(fault label, kind, receiver, start_ns, end_ns) for every fault and receiver it touches."""
    return [(w.label, w.fault_kind, w.receiver, w.start, w.end) for w in _windows(record, receivers)[0]]


def recovery_windows(record: RunRecord, receivers: list[str]) -> list[tuple[str, int, int]]:
    """(receiver, start_ns, end_ns): each fault window (:func:`fault_windows`) stretched, for the
    receiver it touched, to when that receiver was on time again (its first delivery after the
    fault within :data:`CAUGHT_UP_NS` of its due time) — the backlog a slow spell leaves is the
    fault's delay too. A receiver that never caught up before the run ended keeps the fault's own
    window: its lateness afterwards is judged."""
    due = _due_times(record)
    out = []
    for w in _windows(record, receivers)[0]:
        back = _caught_up(record, w.receiver, w.end, due)
        on_time = record.t_end is None or back < int(record.t_end)
        out.append((w.receiver, w.start, max(w.end, back) if on_time else w.end))
    return out


def outage_windows(record: RunRecord) -> dict[str, list[tuple[str, int, int]]]:
    """Per instance, its observed disconnections as (description, start_ns, end_ns): from its last
    sign of life less PRE_NS to its resubscription plus POST_NS (the time part of cause 4; the
    reconnect gap may cover events sent before it)."""
    names = [str(x) for x in record.instances["instance"]]
    return {who: [(w.label, w.start, w.end) for w in ws] for who, ws in _windows(record, names)[1].items()}


def missing_deliveries(record: RunRecord, receivers: list[str]) -> dict[str, list[str]]:
    """Per receiver, the ids of acknowledged events from others it never got, in send order."""
    ok = record.publications.loc[record.publications["ok"], ["id", "source", "t_sent"]]
    expected = ok.merge(pd.DataFrame({"receiver": pd.Series(receivers, dtype="string")}), how="cross")
    expected = expected[expected["source"] != expected["receiver"]]
    got = record.deliveries[["id", "receiver"]].drop_duplicates()
    both = expected.merge(got, on=["id", "receiver"], how="left", indicator=True)
    gone = both[both["_merge"] == "left_only"].sort_values("t_sent", kind="stable")
    out: dict[str, list[str]] = {r: [] for r in receivers}
    for r, ids in gone.groupby("receiver", sort=False)["id"]:
        out[str(r)] = [str(x) for x in ids]
    return out


def _neighbours(record: RunRecord, receiver: str, ids: list[str]) -> pd.DataFrame:
    """For each missing id of ``receiver``: when it got the event before it (``prev``) and the one
    after it (``next``) on the same stream (source, type), in send order; NaN where there is none.
    What the bridge's reconnect ``seq_gap`` notice spans, read from the receiver's own deliveries."""
    ok = record.publications.loc[record.publications["ok"] & (record.publications["source"] != receiver),
                                 ["id", "source", "type", "t_sent"]]
    d = record.deliveries
    first = d.loc[d["receiver"] == receiver, ["id", "t_received"]].groupby("id", sort=False)["t_received"].min()
    s = ok.assign(got=ok["id"].map(first).astype("float64")).sort_values(["source", "type", "t_sent"], kind="stable")
    g = s.groupby(["source", "type"], sort=False)["got"]
    s["prev"] = g.transform(lambda x: x.ffill().shift(1))
    s["next"] = g.transform(lambda x: x.bfill().shift(-1))
    return s.set_index("id").loc[ids, ["t_sent", "prev", "next"]]


def _in_gap(prev: float, nxt: float, gaps) -> str | None:
    """The outage whose reconnect gap spans an event: the receiver got the one before it on its
    stream before the outage began and the next one after (``prev`` present: a gap needs an edge)."""
    if math.isnan(prev) or math.isnan(nxt):
        return None
    return next((ref for down, _up, ref in gaps if prev <= down < nxt), None)


#: rows read around each lost event of a run analysed from its summary (s each side of its send)
NEIGHBOURHOOD_NS = 60_000_000_000


def _from_summary(record: RunRecord) -> bool:
    return record.summary is not None and not record.rows_loaded and len(record.faults) == 0


def _not_published(record: RunRecord) -> dict[str, int]:
    """Failed publications by reason, from the rows (or, from a summary, the failed rows only)."""
    if _from_summary(record):
        if not record.summary.failed_by():
            return {}
        if record.parts is None:  # only the summary was kept: how many, not why
            return {"(reason not kept: only the run's summary was archived)": sum(record.summary.failed_by().values())}
        import pyarrow.compute as pc

        from fanout.lab.record import scan_parts

        err = scan_parts(record.parts, "publications", ~pc.field("ok") & (pc.field("t_intended") >= record.t0),
                         ["error"])["error"]
    else:
        err = record.publications.loc[~record.publications["ok"], "error"]
    return {str(k): int(v) for k, v in err.astype(str).map(_reason).value_counts().items()}


def _summary_missing(record: RunRecord, receivers: list[str], needed: str) -> list[str]:
    """The ids of every missing (event, receiver) of a run analysed from its summary (one per
    pair, from the seq bitmaps); a loss in a run archived without its rows is said in one line."""
    ids = [f"{e}:{st}:{q}" for r in receivers for (_, e, st, q) in record.summary.missing(r)]
    if ids and record.parts is None:
        raise ConfigError(f"run {record.run_id} lost {len(ids):,} deliveries and keeps only its summary: "
                          f"{needed} were not archived with it")
    return ids


def _missing_publications(record: RunRecord, ids: list[str], columns: list[str]) -> pd.DataFrame:
    """The publication rows of these events: a filtered scan of the parts."""
    import pyarrow.compute as pc

    from fanout.lab.record import scan_parts

    return scan_parts(record.parts, "publications", pc.field("id").isin(sorted(set(ids))), columns)


def missing_due_times(record: RunRecord, receivers: list[str]) -> np.ndarray:
    """When each missing (event, receiver) of the run was due (ns), one value per pair: from the
    summary's bitmaps and a filtered scan of the publications (a run analysed from its summary),
    else from the frames. Where in the run loss happened, for the time series."""
    if _from_summary(record):
        ids = _summary_missing(record, receivers, "the times they were due")
        if not ids:
            return np.empty(0, dtype=np.int64)
        p = _missing_publications(record, ids, ["id", "t_intended"])
        due = dict(zip(p["id"], p["t_intended"]))
    else:
        missing = missing_deliveries(record, receivers)
        ids = [i for r in receivers for i in missing.get(r, [])]
        pubs = record.publications
        due = dict(zip(pubs["id"], pubs["t_intended"]))
    return np.array([int(due[i]) for i in ids], dtype=np.int64)


def sent_near(times_ns) -> Any:
    """A Parquet filter (pyarrow expression) for the rows sent within :data:`NEIGHBOURHOOD_NS` of any
    of ``times_ns`` (overlapping spans merged), or None when there are none: what reading only the
    rows near some losses scans."""
    import pyarrow.compute as pc

    spans: list[list[int]] = []
    for x in np.sort(np.asarray(times_ns, dtype=np.int64)).tolist():
        if spans and x - NEIGHBOURHOOD_NS <= spans[-1][1]:
            spans[-1][1] = x + NEIGHBOURHOOD_NS
        else:
            spans.append([x - NEIGHBOURHOOD_NS, x + NEIGHBOURHOOD_NS])
    near = None
    for a, b in spans:
        w = (pc.field("t_sent") >= a) & (pc.field("t_sent") <= b)
        near = w if near is None else near | w
    return near


def rows_near_losses(record: RunRecord, receivers: list[str]) -> RunRecord | None:
    """A run analysed from its summary: which events each receiver missed comes from the seq
    bitmaps; to attribute them, the rows around them are read — publications sent within
    :data:`NEIGHBOURHOOD_NS` of a lost event, and every delivery of those events — as a record of
    those rows alone (None when nothing was lost). Memory follows the losses, not the run."""
    import dataclasses

    import pyarrow.compute as pc

    from fanout.lab.record import DELIVERY_COLUMNS, PUBLICATION_COLUMNS, frame, scan_parts

    ids = _summary_missing(record, receivers, "the rows that would attribute them")
    if not ids:
        return None
    near = sent_near(_missing_publications(record, ids, ["t_sent"])["t_sent"].to_numpy(dtype=np.int64))
    pubs = frame(scan_parts(record.parts, "publications", near & (pc.field("t_intended") >= record.t0)),
                 PUBLICATION_COLUMNS).sort_values("t_intended", kind="stable").reset_index(drop=True)
    dels = frame(scan_parts(record.parts, "deliveries", pc.field("id").isin(pubs["id"].astype(object).tolist())),
                 DELIVERY_COLUMNS)
    out = dataclasses.replace(record, publications=pubs, deliveries=dels, summary=None)
    out.notes = [*record.notes, f"losses attributed from the rows within {NEIGHBOURHOOD_NS / 1e9:g} s of each "
                 f"lost event ({len(pubs):,} publications, {len(dels):,} deliveries)"]
    return out


ATTRIBUTION_COLUMNS = ["receiver", "id", "kind", "cause", "fault", "evidence"]


def _attribute(record: RunRecord, receivers: list[str]):
    """(the record the losses were attributed on, missing ids per receiver, the fault windows,
    per missing (event, receiver) ``(receiver, id, (receiver, kind, cause, fault, evidence))``);
    None when a run analysed from its summary lost nothing. See the module doc."""
    if _from_summary(record):
        near = rows_near_losses(record, receivers)
        if near is None:  # nothing lost: nothing to attribute, no row read
            return None
        record = near
    missing = missing_deliveries(record, receivers)

    cut = _cut_off(record)
    fault_wins, own = _windows(record, receivers)
    trimmed = dict(zip(record.instances["instance"], record.instances.get("transport_losses", pd.Series(dtype=int))))
    dead = dict((record.environment or {}).get("dead_instances") or {})
    held = dict(zip(record.instances["instance"], record.instances.get("held_since_ns", pd.Series(dtype=int))))
    out: list[tuple[str, str, tuple[str, str, str, str, str]]] = []

    for r, ids in missing.items():
        if not ids:
            continue
        if r in dead:  # its agent died: nothing it should have received was recorded
            key = (r, OUTAGE_KIND, f"agent {dead[r]} died", "", f"agent {dead[r]} stopped reporting")
            out.extend((r, eid, key) for eid in ids)
            continue
        nb = _neighbours(record, r, ids)
        near = dict(zip(ids, zip(nb["t_sent"].astype("int64").tolist(), nb["prev"].astype("float64").tolist(),
                                 nb["next"].astype("float64").tolist())))
        mine = [w for w in fault_wins if w.receiver == r]
        t = min(int(trimmed.get(r, 0) or 0), len(ids))
        for eid in ids[:t]:  # a trim removes the oldest entries: the earliest missing events are the trimmed ones
            ts = near[eid][0]
            hit = next((w for w in mine if w.start <= ts <= w.end), None)
            out.append((r, eid, (r, PLANNED, TRIMMED, hit.label, "trim count, sent in the fault's window") if hit
                        else (r, OUTAGE_KIND, TRIMMED, "", "trim count (transport_losses)")))
        since = int(held.get(r, 0) or 0)
        for eid in ids[t:]:
            ts, prev, nxt = near[eid]
            hit = next((w for w in mine if w.start <= ts <= w.end), None)
            if hit:
                out.append((r, eid, (r, PLANNED, _cause(hit.fault_kind, bool(cut)), hit.label, hit.evidence)))
                continue
            gap = next(((w, ref) for w in mine if (ref := _in_gap(prev, nxt, w.gaps))), None)
            if gap:
                out.append((r, eid, (r, PLANNED, _cause(gap[0].fault_kind, bool(cut)), gap[0].label,
                                     f"in the gap seen on reconnect ({gap[1]})")))
                continue
            seen = next((w for w in own.get(r, ()) if w.start <= ts <= w.end), None)
            if seen:
                out.append((r, eid, (r, OUTAGE_KIND, OUTAGE, seen.label, seen.evidence)))
                continue
            gap = next(((w, ref) for w in own.get(r, ()) if (ref := _in_gap(prev, nxt, w.gaps))), None)
            if gap:
                out.append((r, eid, (r, OUTAGE_KIND, OUTAGE, gap[0].label, f"in the gap seen on reconnect ({gap[1]})")))
            elif since and ts >= since - PRE_NS:
                out.append((r, eid, (r, OUTAGE_KIND, HELD, f"{r} held reading from {(since - record.t0) / 1e9:.2f} s "
                                     "to the end", "held_since_ns in the record's instances")))
            else:
                out.append((r, eid, (r, UNEXPLAINED, UNEXPLAINED, "", "")))
    return record, missing, fault_wins, out


def attributions(record: RunRecord, receivers: list[str] | None = None) -> pd.DataFrame:
    """One row per missing (event, receiver): ``receiver, id, kind, cause, fault, evidence`` — the
    loss account (:func:`account_losses`) event by event (its ``losses`` are these rows counted)."""
    names = [str(x) for x in record.instances["instance"]]
    done = _attribute(record, receivers if receivers is not None else names)
    if done is None:
        return pd.DataFrame(columns=ATTRIBUTION_COLUMNS)
    rows = [(r, eid, *key[1:]) for r, eid, key in done[3]]
    return pd.DataFrame(rows, columns=ATTRIBUTION_COLUMNS)


def account_losses(record: RunRecord, receivers: list[str] | None = None,
                   bound_ms: float | None = None) -> LossAccount:
    """Attribute every missing (event, receiver) of ``record`` to a cause (see module doc).
    ``bound_ms``: the latency bound the fault table counts late deliveries against (default: the
    scenario's ``max_avg_latency_ms``, else :data:`DEFAULT_BOUND_MS`). A record analysed from
    its summary reads only the rows around its losses (:func:`rows_near_losses`)."""
    names = [str(x) for x in record.instances["instance"]]
    receivers = receivers if receivers is not None else names
    not_published_reasons = _not_published(record)
    not_published = sum(not_published_reasons.values())
    done = _attribute(record, receivers)
    if done is None:
        return LossAccount(
            losses=pd.DataFrame(columns=LOSS_COLUMNS), by_cause={}, unexplained=0, lost=0,
            not_published=not_published, not_published_reasons=not_published_reasons,
            faults=pd.DataFrame(columns=FAULT_TABLE_COLUMNS),
            output_buffer_disconnections=_cut_off(record), by_kind={})
    record, missing, fault_wins, attributed = done
    cut = _cut_off(record)
    rows: dict[tuple[str, str, str, str, str], int] = {}
    for _r, _eid, key in attributed:
        rows[key] = rows.get(key, 0) + 1
    losses = pd.DataFrame([dict(zip(LOSS_COLUMNS, (*k, n))) for k, n in sorted(rows.items())], columns=LOSS_COLUMNS)
    by_cause: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for (_, kind, cause, _, _), n in rows.items():
        by_cause[cause] = by_cause.get(cause, 0) + n
        by_kind[kind] = by_kind.get(kind, 0) + n
    if bound_ms is None:
        bound_ms = float(record.scenario.get("max_avg_latency_ms") or DEFAULT_BOUND_MS)
    return LossAccount(
        losses=losses, by_cause=by_cause, unexplained=by_kind.get(UNEXPLAINED, 0),
        lost=sum(len(v) for v in missing.values()), not_published=not_published,
        not_published_reasons=not_published_reasons,
        faults=_fault_table(record, fault_wins, rows, bound_ms),
        output_buffer_disconnections=cut, by_kind=by_kind,
    )


def _cut_off(record: RunRecord) -> int | None:
    cut = (record.redis_stats or {}).get("client_output_buffer_limit_disconnections")
    return None if cut is None else int(cut)


def _fault_table(record: RunRecord, windows: list[Window], rows, bound_ms: float) -> pd.DataFrame:
    """Per fault: events sent in its window (to the receivers it touched), how many were
    delivered, lost, recovered (delivered only after the fault ended: Streams' catch-up), the
    recovery time (fault end -> first delivery to every touched receiver after it), and how late
    what did arrive was: latency (due time -> handler) of those deliveries, and how many came later
    than ``bound_ms``. *Recovered* are events sent while the fault lasted that still arrived, after it ended."""
    d = record.deliveries
    ok = record.publications[record.publications["ok"]]
    first = d.sort_values("t_received", kind="stable").drop_duplicates(["id", "receiver"])
    due = dict(zip(ok["id"], ok["t_intended"]))
    out = []
    for f in record.faults.itertuples(index=False):
        label = f"{f.kind}" + (f" on {f.instance}" if f.instance else "")
        mine = [w for w in windows if w.label == label]
        sent_n = delivered_n = recovered_n = 0
        rec_ms, lat = [], []
        for w in mine:
            in_win = ok[(ok["t_sent"] >= w.start) & (ok["t_sent"] <= w.end) & (ok["source"] != w.receiver)]
            got = first[(first["receiver"] == w.receiver) & first["id"].isin(in_win["id"])]
            sent_n += len(in_win)
            delivered_n += len(got)
            lat.append(got["t_received"].to_numpy(dtype=np.int64) - got["id"].map(due).to_numpy(dtype=np.int64))
            during = in_win[(in_win["t_sent"] >= int(f.t_start)) & (in_win["t_sent"] <= int(f.t_end))]["id"]
            recovered_n += int((got["id"].isin(during) & (got["t_received"] > int(f.t_end))).sum())
            after = first[(first["receiver"] == w.receiver) & (first["t_received"] > int(f.t_end))]["t_received"]
            if len(after):
                rec_ms.append((int(after.min()) - int(f.t_end)) / 1e6)
        lost = sum(n for (_r, _k, _c, fl, _e), n in rows.items() if fl == label)
        ns = np.concatenate(lat) if lat else np.empty(0, dtype=np.int64)
        st = latency_stats(ns)
        out.append({"fault": str(f.detail) or label, "kind": str(f.kind), "instance": str(f.instance) or "all",
                    "outage_s": (int(f.t_end) - int(f.t_start)) / 1e9, "receivers": len(mine), "sent_in_window": sent_n, "delivered": delivered_n, "lost": lost,
                    "recovered": recovered_n, "recovery_ms": max(rec_ms) if rec_ms else None,
                    "bound_ms": bound_ms, "window_n": int(ns.size), "window_p50_ms": st["p50_ms"],
                    "window_p99_ms": st["p99_ms"], "window_max_ms": st["max_ms"],
                    "late": int((ns > bound_ms * 1e6).sum())})
    return pd.DataFrame(out, columns=FAULT_TABLE_COLUMNS)
