"""Exact accounting of lost events: every event an instance should have received and did not
is attributed to a cause, or counted as unexplained (which must be zero).

Causes, in the order they are tried for each missing ``(event, receiver)``:

1. **trimmed from stream**: the Streams transport counted exactly how many entries were cut
   from under a receiver (``transport_losses`` in its metrics); that many of its missing
   events are attributed to trimming.
2. **a named fault**: the event was sent inside the fault's window *for that receiver*. A
   fault touches one instance (crash, slow consumer, latency, partition) or all of them
   (redis_restart). The window opens at the fault's start (less ``PRE_NS``, for what was in
   flight) and closes when the fault ended or, if later, when the last of that receiver's own
   outages still going on when the fault struck or begun after it (and before the next fault
   touching it) was over (its resubscription), plus ``POST_NS``. (An outage starts at the
   connection's last sign of life, so one the fault caused may start just before it.) A slow consumer's
   loss is named "cut off by output-buffer limit" when Redis reports (INFO, or its log on
   Redis < 7.2) that it disconnected a client for its output buffer.
3. **its agent died**: a receiver hosted by an agent that died mid-run (a multi-host run) loses
   everything after that, and its records with it.
4. **an unplanned outage the bridges saw**: the event was sent while the receiver (or, failing
   that, its publisher) was disconnected from Redis — from the connection's last sign of life
   (the last data read from Redis, or, if earlier, the send time of the last event that receiver
   got before it: one ordered stream, so what came after it went down with the connection; less
   ``PRE_NS``; a bridge notices a silent server only a health check later) until it had resubscribed (plus ``POST_NS``; to the end of the run if it never
   did). A Redis that crashed or was restarted by someone else is explained this way.
5. **unread at the end, reading held**: the receiver's subscription had stopped reading for its
   async handlers' backlog (``held_since_ns`` in the record's instances) and was still held when
   the run ended; an event sent after the hold began was still waiting in Redis or the socket,
   not lost in transit.
6. **unexplained**: anything else.

Events whose publish failed were never published: the publisher was told (``PublishError``);
they are expected nowhere and are listed separately as "not published".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fanout.lab.record import RunRecord

PRE_NS = 50_000_000    # 50 ms before a fault: events in flight when it struck
POST_NS = 50_000_000   # 50 ms after the receiver was back
UNEXPLAINED = "unexplained"
TRIMMED = "trimmed from stream"
OUTPUT_BUFFER = "cut off by output-buffer limit"
OUTAGE = "lost during an unplanned outage"
HELD = "unread at the end: reading held for the handler backlog"

LOSS_COLUMNS = ["receiver", "cause", "fault", "count"]
FAULT_TABLE_COLUMNS = ["fault", "kind", "instance", "receivers", "sent_in_window", "delivered", "lost",
                       "recovered", "recovery_ms"]


@dataclass
class LossAccount:
    losses: pd.DataFrame                      # receiver, cause, fault, count (count > 0 rows only)
    by_cause: dict[str, int]                  # cause -> count, over all receivers
    unexplained: int
    lost: int                                 # all missing events (attributed + unexplained)
    not_published: int                        # failed publications (expected nowhere)
    not_published_reasons: dict[str, int]
    faults: pd.DataFrame                      # one row per fault: see FAULT_TABLE_COLUMNS
    output_buffer_disconnections: int | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_cause": self.by_cause, "unexplained": self.unexplained, "lost": self.lost,
            "not_published": self.not_published, "not_published_reasons": self.not_published_reasons,
            "output_buffer_disconnections": self.output_buffer_disconnections,
            "losses": self.losses.to_dict(orient="records"),
            "faults": self.faults.to_dict(orient="records"),
        }


def _reason(error: str) -> str:
    """A publish error, without what differs per event (channel, address), so alike ones group."""
    why = error.split(" failed: ", 1)[-1]
    why = re.sub(r"\(?'?\d+\.\d+\.\d+\.\d+'?[:,] ?\d+\)?", "<addr>", why)
    return why.strip()[:120]


def _cause(kind: str, cut_off: bool) -> str:
    if kind == "slow_consumer" and cut_off:
        return OUTPUT_BUFFER
    return f"lost during {kind}"


def fault_windows(record: RunRecord, receivers: list[str]) -> list[tuple[str, str, str, int, int]]:
    """(fault label, kind, receiver, start_ns, end_ns) for every fault and receiver it touches."""
    out = []
    outages = record.outages
    faults = list(record.faults.sort_values("t_start").itertuples(index=False))
    for k, f in enumerate(faults):
        touched = [str(f.instance)] if f.instance else receivers
        for r in touched:
            end = int(f.t_end)
            # the receiver's outages going on once this fault struck, and begun before the next fault
            # that touches it: a consumer still catching up after a slow spell may be cut off late
            nxt = next((int(g.t_start) for g in faults[k + 1:] if not g.instance or str(g.instance) == r),
                       int(record.t_end) + 1)
            ended = outages["t_up"].where(outages["t_up"] > 0, int(record.t_end))
            mine = outages[(outages["instance"] == r) & (ended >= int(f.t_start) - PRE_NS)
                           & (outages["t_down"] < nxt)]
            for o in mine.itertuples(index=False):
                end = max(end, int(o.t_up) if int(o.t_up) else int(record.t_end))
            label = f"{f.kind}" + (f" on {f.instance}" if f.instance else "")
            out.append((label, str(f.kind), r, int(f.t_start) - PRE_NS, end + POST_NS))
    return out


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


def outage_windows(record: RunRecord) -> dict[str, list[tuple[str, int, int]]]:
    """Per instance, its observed disconnections as (description, start_ns, end_ns), widened by
    PRE_NS / POST_NS, e.g. ``"test-instance-1 disconnected from Redis 4.02–7.31 s"``.

    A window opens at the earlier of the outage's start and the send time of the last event the
    instance received before it: a subscription is one ordered stream, so what was sent after that
    last event and never arrived went down with the connection (e.g. held in the server's output
    buffer when it cut the client off, while the client still read what had been written before)."""
    out: dict[str, list[tuple[str, int, int]]] = {}
    if record.outages.empty:
        return out
    sent = pd.Series(record.publications["t_sent"].to_numpy(), index=record.publications["id"].to_numpy())
    d = record.deliveries
    for o in record.outages.itertuples(index=False):
        up = int(o.t_up) if int(o.t_up) else int(record.t_end)
        down = int(o.t_down)
        got = d.loc[(d["receiver"] == o.instance) & (d["t_received"] <= down), "id"]
        last = sent.reindex(got.to_numpy()).max()  # NaN when it got nothing before the outage
        start = min(down, int(last)) if pd.notna(last) else down
        a, b = (down - record.t0) / 1e9, (up - record.t0) / 1e9
        text = f"{o.instance} disconnected from Redis {a:.2f}–{b:.2f} s" + ("" if int(o.t_up) else " (never back)")
        out.setdefault(str(o.instance), []).append((text, start - PRE_NS, up + POST_NS))
    return out


def account_losses(record: RunRecord, receivers: list[str] | None = None) -> LossAccount:
    """Attribute every missing (event, receiver) of ``record`` to a cause (see module doc)."""
    names = [str(x) for x in record.instances["instance"]]
    receivers = receivers if receivers is not None else names
    pubs = record.publications
    ok = pubs[pubs["ok"]]
    failed = pubs[~pubs["ok"]]
    reasons = failed["error"].astype(str).map(_reason)
    not_published_reasons = {str(k): int(v) for k, v in reasons.value_counts().items()}

    sent = dict(zip(ok["id"], ok["t_sent"]))
    src = dict(zip(ok["id"], ok["source"]))
    missing = missing_deliveries(record, receivers)

    stats = record.redis_stats or {}
    cut = stats.get("client_output_buffer_limit_disconnections")
    windows = fault_windows(record, receivers)
    outages = outage_windows(record)
    trimmed = dict(zip(record.instances["instance"], record.instances.get("transport_losses", pd.Series(dtype=int))))
    dead = dict((record.environment or {}).get("dead_instances") or {})
    held = dict(zip(record.instances["instance"], record.instances.get("held_since_ns", pd.Series(dtype=int))))
    rows: dict[tuple[str, str, str], int] = {}
    for r, ids in missing.items():
        left = sorted(ids, key=lambda e: sent[e])
        if r in dead:  # its agent died: nothing it should have received was recorded
            if left:
                rows[(r, f"agent {dead[r]} died", "")] = len(left)
            continue
        t = min(int(trimmed.get(r, 0) or 0), len(left))
        if t:
            rows[(r, TRIMMED, "")] = t
            # a trim removes the oldest entries: the earliest missing events are the trimmed ones
            left = left[t:]
        for eid in left:
            ts = int(sent[eid])
            hit = next((w for w in windows if w[2] == r and w[3] <= ts <= w[4]), None)
            if hit:
                key = (r, _cause(hit[1], bool(cut)), hit[0])
            else:
                seen = next((o for who in (r, str(src[eid])) for o in outages.get(who, ()) if o[1] <= ts <= o[2]),
                            None)
                since = int(held.get(r, 0) or 0)
                if seen:
                    key = (r, OUTAGE, seen[0])
                elif since and ts >= since - PRE_NS:
                    key = (r, HELD, f"{r} held reading from {(since - record.t0) / 1e9:.2f} s to the end")
                else:
                    key = (r, UNEXPLAINED, "")
            rows[key] = rows.get(key, 0) + 1
    losses = pd.DataFrame([{"receiver": r, "cause": c, "fault": f, "count": n} for (r, c, f), n in sorted(rows.items())],
                          columns=LOSS_COLUMNS)
    by_cause: dict[str, int] = {}
    for (_, c, _), n in rows.items():
        by_cause[c] = by_cause.get(c, 0) + n
    return LossAccount(
        losses=losses, by_cause=by_cause, unexplained=by_cause.get(UNEXPLAINED, 0),
        lost=sum(len(v) for v in missing.values()), not_published=len(failed),
        not_published_reasons=not_published_reasons, faults=_fault_table(record, receivers, windows, rows),
        output_buffer_disconnections=None if cut is None else int(cut),
    )


def _fault_table(record: RunRecord, receivers: list[str], windows, rows) -> pd.DataFrame:
    """Per fault: events sent in its window (to the receivers it touched), how many were
    delivered, lost, recovered (delivered only after the fault ended: Streams' catch-up), and
    the recovery time (fault end -> first delivery to every touched receiver after it).
    *Recovered* are events sent while the fault lasted that still arrived, after it ended."""
    d = record.deliveries
    ok = record.publications[record.publications["ok"]]
    first = d.drop_duplicates(["id", "receiver"])
    out = []
    for f in record.faults.itertuples(index=False):
        label = f"{f.kind}" + (f" on {f.instance}" if f.instance else "")
        mine = [w for w in windows if w[0] == label]
        sent_n = delivered_n = recovered_n = 0
        rec_ms = []
        for _, _, r, start, end in mine:
            in_win = ok[(ok["t_sent"] >= start) & (ok["t_sent"] <= end) & (ok["source"] != r)]
            got = first[(first["receiver"] == r) & first["id"].isin(in_win["id"])]
            sent_n += len(in_win)
            delivered_n += len(got)
            during = in_win[(in_win["t_sent"] >= int(f.t_start)) & (in_win["t_sent"] <= int(f.t_end))]["id"]
            recovered_n += int((got["id"].isin(during) & (got["t_received"] > int(f.t_end))).sum())
            after = first[(first["receiver"] == r) & (first["t_received"] > int(f.t_end))]["t_received"]
            if len(after):
                rec_ms.append((int(after.min()) - int(f.t_end)) / 1e6)
        lost = sum(n for (r, c, fl), n in rows.items() if fl == label)
        out.append({"fault": str(f.detail) or label, "kind": str(f.kind), "instance": str(f.instance) or "all",
                    "receivers": len(mine), "sent_in_window": sent_n, "delivered": delivered_n, "lost": lost,
                    "recovered": recovered_n, "recovery_ms": max(rec_ms) if rec_ms else None})
    return pd.DataFrame(out, columns=FAULT_TABLE_COLUMNS)
