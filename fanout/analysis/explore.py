"""A run to dig into from a notebook: every (event, receiver) with its fate, latency, losses with
their causes, outages and a time line — each a pandas DataFrame (times as UTC datetimes, latency in
ms). The :class:`~fanout.lab.record.RunRecord` methods (``rec.events()``, ``rec.latency()``,
``rec.losses()``, ``rec.outages()``, ``rec.timeline()``) call these through
:func:`fanout.lab.record.explore` (the lab never imports the analysis; see there why).

One query answers them all, run by DuckDB over the record's frames when its rows are in memory
and over its Parquet parts when they are not (a run recorded as parts: ``record.parts``), so a big
run is never loaded whole: the filters (receiver, source, type, time window) are pushed into the
scan, and only the rows asked for come back. The definitions are the analysis's
(:mod:`fanout.analysis.findings`): counting the statuses of ``events()`` gives ``analyse()``'s
delivered, missing, duplicates, self-received and unknown, per receiver; a missing event's
``cause`` is its loss account's (:func:`fanout.analysis.accounting.attributions`).

    import fanout.lab
    rec = fanout.lab.load_run("20261207-235837-partition")   # the example report's partition run
    rec.events(status="missing").groupby(["receiver", "cause"]).size()
    fanout.analysis.explore.events(rec, receiver="test-instance-1", since=2.0, until=3.0)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fanout.analysis.accounting import DEFAULT_BOUND_MS, account_losses, attributions
from fanout.errors import ConfigError
from fanout.lab.record import PUBLICATION_COLUMNS, RunRecord
from fanout.percentiles import carried

#: what each row of :func:`events` is
STATUSES = ("delivered", "late", "duplicate", "self", "unknown", "missing")
EVENT_COLUMNS = ["id", "source", "receiver", "type", "seq", "due", "sent", "received", "latency_ms",
                 "latency_sent_ms", "status", "cause"]
LATENCY_COLUMNS = ["receiver", "source", "type", "id", "received", "latency_ms", "latency_sent_ms"]
OUTAGE_VIEW_COLUMNS = ["instance", "down", "up", "duration_s", "reason"]
TIMELINE_COLUMNS = ["start", "deliveries", "missing", "p50_ms", "p99_ms", "reconnects"]
#: a delivery is never recorded this long before its event was due (clocks of one host, or agents'
#: offsets): the scan of deliveries starts this much before ``since``
SKEW_NS = 10_000_000_000
_PUB = ["id", "source", "type", "seq", "t_intended", "t_sent", "ok"]
_DEL = ["id", "source", "receiver", "type", "seq", "t_received"]


def receivers_of(record: RunRecord) -> list[str]:
    """The run's receivers as the analysis counts them: its instances, or the scenario's
    ``receivers`` among them."""
    names = [str(x) for x in record.instances["instance"]]
    chosen = (record.scenario or {}).get("receivers")
    return names if chosen is None else [n for n in names if n in {str(x) for x in chosen}]


def bound_ms(record: RunRecord) -> float:
    """The latency bound a delivery is *late* against: the scenario's ``max_avg_latency_ms``,
    else the analysis's default (:data:`fanout.analysis.accounting.DEFAULT_BOUND_MS`)."""
    return float((record.scenario or {}).get("max_avg_latency_ms") or DEFAULT_BOUND_MS)


def _names(value, what: str) -> list[str] | None:
    if value is None:
        return None
    out = [value] if isinstance(value, str) else [str(v) for v in value]
    if what == "status":
        bad = [s for s in out if s not in STATUSES]
        if bad:
            raise ConfigError(f"events(status=...): {bad[0]!r} is not a status; one of {', '.join(STATUSES)}")
    return out


def _ns(record: RunRecord, when, what: str) -> int | None:
    """``since``/``until`` as ns: seconds from the run's start (a number), or a datetime / ISO text
    (UTC when it names no zone)."""
    if when is None:
        return None
    if isinstance(when, (int, float, np.integer, np.floating)) and not isinstance(when, bool):
        return int(record.t0) + int(round(float(when) * 1e9))
    try:
        t = pd.Timestamp(when)
    except (ValueError, TypeError):
        raise ConfigError(f"{what}={when!r}: give seconds from the run's start, a datetime or ISO text") from None
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return int(t.value)


def _connect(record: RunRecord):
    """A DuckDB connection with the views ``p_all`` (publications) and ``d_all`` (deliveries):
    the record's frames when its rows are in memory (or it has no parts: then asking for them is
    the record's own one-line error for a summary-only archive), else its Parquet parts, the
    warmup's events left out as :func:`fanout.lab.record.load_run` leaves them out."""
    import duckdb

    con = duckdb.connect()
    if record.rows_loaded or record.parts is None:
        pubs, dels = record.publications, record.deliveries
        con.register("p_all", pd.DataFrame({c: pubs[c].astype(object) if c in ("id", "source", "type")
                                            else pubs[c] for c in _PUB}))
        con.register("d_all", pd.DataFrame({c: dels[c].astype(object) if c in ("id", "source", "receiver", "type")
                                            else dels[c] for c in _DEL}))
        return con
    warm = float((record.scenario or {}).get("warmup_s") or 0) > 0
    for view, name, cols in (("p_raw", "publications", _PUB), ("d_raw", "deliveries", _DEL)):
        files = sorted(str(f) for f in Path(record.parts).glob(f"{name}-*.parquet"))
        if files:
            con.read_parquet(files, union_by_name=True).select(", ".join(cols)).create_view(view)
        else:
            empty = pd.DataFrame({c: pd.Series([], dtype=("object" if PUBLICATION_COLUMNS.get(c) == "string" or
                                                            c in ("receiver",) else
                                                            "bool" if c == "ok" else "int64")) for c in cols})
            con.register(view, empty)
    t0 = int(record.t0)
    if warm:
        con.execute(f"CREATE VIEW p_all AS SELECT * FROM p_raw WHERE t_intended >= {t0}")
        con.execute(f"CREATE VIEW d_all AS SELECT * FROM d_raw WHERE id NOT IN "
                    f"(SELECT id FROM p_raw WHERE t_intended < {t0})")
    else:
        con.execute("CREATE VIEW p_all AS SELECT * FROM p_raw")
        con.execute("CREATE VIEW d_all AS SELECT * FROM d_raw")
    return con


def _q(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _list(values: list[str]) -> str:
    """A SQL list literal of strings."""
    return "[" + ", ".join(map(_q, values)) + "]"


def _in(col: str, values: list[str] | None) -> str:
    """``col IN (...)`` as literals, so that DuckDB pushes it into the Parquet scan (TRUE: no filter)."""
    if values is None:
        return "TRUE"
    return f"{col} IN ({', '.join(map(_q, values))})" if values else "FALSE"


def _build(record: RunRecord, *, receiver=None, source=None, type=None, since=None, until=None):
    """(connection, the view ``ev`` of every row :func:`events` gives, before causes)."""
    con = _connect(record)
    recv = receivers_of(record)
    want_r, want_s, want_t = _names(receiver, "receiver"), _names(source, "source"), _names(type, "type")
    lo, hi = _ns(record, since, "since"), _ns(record, until, "until")
    names = [str(x) for x in record.instances["instance"]]
    dead = [str(x) for x in ((record.environment or {}).get("dead_instances") or {})]
    bound = int(round(bound_ms(record) * 1e6))
    con.execute("CREATE TEMP TABLE known AS SELECT DISTINCT source FROM p_all "
                "UNION SELECT unnest(?::VARCHAR[]) UNION SELECT unnest(?::VARCHAR[])", [names, dead])
    # the filters go into the scans
    p_where = " AND ".join([_in("source", want_s), _in("type", want_t)])
    con.execute(f"CREATE TEMP VIEW p AS SELECT * FROM p_all WHERE {p_where}")
    d_where = " AND ".join([_in("receiver", want_r), _in("source", want_s), _in("type", want_t),
                            f"t_received >= {lo - SKEW_NS}" if lo is not None else "TRUE"])
    con.execute(f"CREATE TEMP VIEW d_scan AS SELECT id, source, receiver, type, seq, t_received "
                f"FROM d_all WHERE {d_where} AND source IN (SELECT source FROM known)")
    con.execute("CREATE TEMP VIEW d AS SELECT *, row_number() OVER (PARTITION BY id, receiver ORDER BY t_received) "
                "AS k FROM d_scan")
    rs = [r for r in recv if want_r is None or r in want_r]
    due_win = " AND ".join([f"p.t_intended >= {lo}" if lo is not None else "TRUE",
                            f"p.t_intended <= {hi}" if hi is not None else "TRUE"])
    any_win = " AND ".join([f"coalesce(due, received) >= {lo}" if lo is not None else "TRUE",
                            f"coalesce(due, received) <= {hi}" if hi is not None else "TRUE"])
    # (event, receiver) pairs that should have been delivered, with their first delivery (no window
    # function: what latency() and timeline() ask reads only this)
    con.execute(f"""
        CREATE TEMP VIEW expected AS
        WITH recv AS (SELECT unnest({_list(rs)}::VARCHAR[]) AS receiver),
        e AS (SELECT p.id, p.source, r.receiver, p.type, p.seq, p.t_intended AS due, p.t_sent AS sent
              FROM p JOIN recv r ON p.source <> r.receiver WHERE p.ok AND {due_win}),
        f AS (SELECT id, receiver, min(t_received) AS t_received FROM d_scan GROUP BY id, receiver)
        SELECT e.id, e.source, e.receiver, e.type, e.seq, e.due, e.sent, f.t_received AS received,
               CASE WHEN f.id IS NULL THEN 'missing' WHEN f.t_received - e.due > {bound} THEN 'late'
                    ELSE 'delivered' END AS status
        FROM e LEFT JOIN f ON f.id = e.id AND f.receiver = e.receiver""")
    # delivery rows that should not have been: a second or later of a pair, one's own, an unknown id
    con.execute(f"""
        CREATE TEMP VIEW extra AS
        WITH pa AS (SELECT id, min(t_intended) AS t_intended, min(CASE WHEN ok THEN t_sent END) AS t_sent
                    FROM p WHERE id IN (SELECT id FROM d_scan) GROUP BY id)
        SELECT d.id, d.source, d.receiver, d.type, d.seq, pa.t_intended AS due, pa.t_sent AS sent,
               d.t_received AS received,
               CASE WHEN d.k > 1 THEN 'duplicate' WHEN d.source = d.receiver THEN 'self' ELSE 'unknown' END AS status
        FROM d LEFT JOIN pa ON pa.id = d.id
        WHERE (d.k > 1 OR d.source = d.receiver OR (pa.id IS NULL AND NOT {_in("d.source", dead)}))
          AND {any_win}""")
    con.execute("CREATE TEMP VIEW ev AS SELECT * FROM expected UNION ALL SELECT * FROM extra")
    return con


def _frame(df: pd.DataFrame) -> pd.DataFrame:
    """ns columns → UTC datetimes and ms; the strings as pandas strings."""
    out = pd.DataFrame({c: df[c].astype("string") for c in ("id", "source", "receiver", "type")})
    out["seq"] = df["seq"].astype("Int64")
    for c in ("due", "sent", "received"):
        v = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        v = v.where(v > 0)
        out[c] = pd.to_datetime(v, unit="ns", utc=True)
    # differences of integer ns (as float64, ns since 1970 lose their last digits)
    rec, due, sent = (pd.to_numeric(df[c], errors="coerce").astype("Int64") for c in ("received", "due", "sent"))
    out["latency_ms"] = ((rec - due).where(due > 0).astype("Float64") / 1e6).astype("float64")
    out["latency_sent_ms"] = ((rec - sent).where(sent > 0).astype("Float64") / 1e6).astype("float64")
    out["status"] = df["status"].astype("string")
    return out


def events(record: RunRecord, *, receiver=None, source=None, type=None, status=None, since=None,
           until=None) -> pd.DataFrame:
    """One row per (event, receiver) that should have been delivered — ``delivered``, ``late``
    (latency from due above :func:`bound_ms`) or ``missing`` — and one per delivery row that
    should not have been: ``duplicate`` (a second or later row of an (event, receiver); the first
    row decides the pair's own status), ``self`` (a receiver's own event), ``unknown`` (an id no
    publication names). Deliveries from sources outside the run (foreign), of failed publications
    and to instances that are not receivers are not listed (the analysis counts them apart).

    Columns :data:`EVENT_COLUMNS`: ``due``/``sent``/``received`` UTC datetimes (NaT where there
    is none), ``latency_ms`` from due and ``latency_sent_ms`` from the send, ``cause`` the loss
    account's for a missing one (:func:`fanout.analysis.accounting.attributions`), else empty.
    Filters: ``receiver``, ``source``, ``type``, ``status`` (a name or a list), ``since``/``until``
    (seconds from the run's start, a datetime or ISO text) on the due time (the receive time for
    a delivery no publication names). Rows in due order."""
    statuses = _names(status, "status")
    con = _build(record, receiver=receiver, source=source, type=type, since=since, until=until)
    where = _in("status", statuses)
    df = con.execute(f"SELECT * FROM ev WHERE {where} ORDER BY coalesce(due, received), receiver, received, id").df()
    out = _frame(df)
    out["cause"] = pd.Series([""] * len(out), dtype="string")
    lost = out["status"] == "missing"
    if lost.any():
        # one receiver at a time: a run in parts holds one receiver's rows near its losses at most
        mine = df.loc[lost.to_numpy(), ["receiver", "sent"]]
        why = pd.concat([attributions(_for_receivers(record, [r], g["sent"].to_numpy(dtype=np.int64)), [r])
                         for r, g in mine.groupby("receiver", sort=True)], ignore_index=True)
        why = why.drop_duplicates(["receiver", "id"])
        cause = dict(zip(zip(why["receiver"].astype(str), why["id"].astype(str)), why["cause"].astype(str)))
        out.loc[lost, "cause"] = [cause.get((r, i), "") for r, i in
                                  zip(out.loc[lost, "receiver"].astype(str), out.loc[lost, "id"].astype(str))]
    return out[EVENT_COLUMNS].reset_index(drop=True)


def _for_receivers(record: RunRecord, who: list[str], lost_sent: np.ndarray) -> RunRecord:
    """The record to attribute ``who``'s losses on (``lost_sent``: when the lost events were sent).
    Rows in memory: the record. A run in parts: a record of ``who``'s deliveries only, read with
    filtered scans (a receiver's losses are attributed from evidence on its own path: its
    deliveries, the faults, the outages), with the publications sent within
    :data:`~fanout.analysis.accounting.NEIGHBOURHOOD_NS` of a lost event — what the analysis
    reads for a run analysed from its summary (:func:`~fanout.analysis.accounting.rows_near_losses`)
    — or, in a fault run (whose account reads every row), all of them."""
    import dataclasses

    import pyarrow.compute as pc

    from fanout.analysis.accounting import sent_near
    from fanout.lab.record import DELIVERY_COLUMNS, frame, scan_parts

    if record.rows_loaded or record.parts is None:
        return record
    where = pc.field("t_intended") >= int(record.t0) if float((record.scenario or {}).get("warmup_s") or 0) > 0 \
        else None
    if not len(record.faults):
        near = sent_near(lost_sent)
        if near is not None:
            where = near if where is None else where & near
    pubs = frame(scan_parts(record.parts, "publications", where), PUBLICATION_COLUMNS)
    pubs = pubs.sort_values("t_intended", kind="stable").reset_index(drop=True)
    dels = frame(scan_parts(record.parts, "deliveries", pc.field("receiver").isin(who) &
                            pc.field("id").isin(pubs["id"].astype(object).tolist())), DELIVERY_COLUMNS)
    return dataclasses.replace(record, publications=pubs, deliveries=dels, summary=None, parts=None)


def latency(record: RunRecord, *, receiver=None, source=None, type=None, since=None, until=None) -> pd.DataFrame:
    """Per delivered event (its first delivery; ``delivered`` or ``late`` in :func:`events`):
    :data:`LATENCY_COLUMNS`, latency in ms from due and from the send, in receive order. The
    samples :func:`fanout.analysis.latency.latency_samples` gives, as ms."""
    con = _build(record, receiver=receiver, source=source, type=type, since=since, until=until)
    df = con.execute("SELECT * FROM expected WHERE status IN ('delivered', 'late') ORDER BY received, receiver, id").df()
    return _frame(df)[LATENCY_COLUMNS].reset_index(drop=True)


def losses(record: RunRecord) -> pd.DataFrame:
    """The loss account's rows (:func:`fanout.analysis.accounting.account_losses` over the run's
    receivers): ``receiver, cause, kind, fault, count, evidence``."""
    acc = account_losses(record, receivers_of(record), bound_ms=bound_ms(record))
    cols = ["receiver", "cause", "kind", "fault", "count", "evidence"]
    out = acc.losses[cols].reset_index(drop=True)
    return out.astype({"count": "int64"})


def outages(record: RunRecord) -> pd.DataFrame:
    """``record.outages`` to read: ``instance``, ``down``/``up`` UTC datetimes (``up`` NaT when the
    instance never came back), ``duration_s`` (to the run's end when never back), ``reason``."""
    o = pd.DataFrame(record.outages)
    down = o["t_down"].astype("int64")
    up = o["t_up"].astype("int64")
    end = up.where(up > 0, int(record.t_end or 0))
    return pd.DataFrame({
        "instance": o["instance"].astype("string"),
        "down": pd.to_datetime(down, unit="ns", utc=True),
        "up": pd.to_datetime(up.where(up > 0).astype("Int64"), unit="ns", utc=True),
        "duration_s": ((end - down) / 1e9).astype("float64"),
        "reason": o["reason"].astype("string"),
    }, columns=OUTAGE_VIEW_COLUMNS).reset_index(drop=True)


def timeline(record: RunRecord, interval_s: float = 1.0) -> pd.DataFrame:
    """Per ``interval_s`` of the run from its start (t0) to its end: ``start`` (UTC),
    ``deliveries`` (events delivered, first deliveries, by receive time), ``missing`` (by due
    time), ``p50_ms``/``p99_ms`` of those deliveries' latency from due where the interval's
    samples carry them (:func:`fanout.percentiles.carried`; else NaN), ``reconnects`` (outages
    by the time they began). Aggregated in DuckDB: a run in parts is never loaded."""
    if not interval_s or float(interval_s) <= 0:
        raise ConfigError(f"timeline(interval_s={interval_s!r}): give a positive number of seconds")
    step = int(round(float(interval_s) * 1e9))
    t0 = int(record.t0)
    if not record.rows_loaded and record.parts is None and record.summary is not None:
        return _timeline_from_summary(record, step)
    con = _build(record)
    # one pass: a delivery in the interval it arrived in, a missing event in the one it was due in
    both = con.execute(f"""
        SELECT CAST(floor((CASE WHEN status = 'missing' THEN due ELSE received END - {t0}) / {step}) AS BIGINT) AS k,
               status = 'missing' AS lost, count(*) AS n,
               quantile_cont(received - due, 0.5) AS p50, quantile_cont(received - due, 0.99) AS p99
        FROM expected GROUP BY k, lost""").df()
    got, lost = both[~both["lost"].astype(bool)], both[both["lost"].astype(bool)]
    o = pd.DataFrame(record.outages)
    ups = ((o["t_down"].astype("int64") - t0) // step).value_counts() if len(o) else pd.Series(dtype="int64")
    last = max(int(record.t_end or t0) - t0, 0) // step
    ks = [int(k) for k in (*got["k"], *lost["k"], *ups.index) if k == k]
    first = min([0, *ks])
    last = max([last, *ks])
    idx = range(first, last + 1)
    n = dict(zip(got["k"].astype("int64"), got["n"].astype("int64")))
    p50 = dict(zip(got["k"].astype("int64"), got["p50"]))
    p99 = dict(zip(got["k"].astype("int64"), got["p99"]))
    miss = dict(zip(lost["k"].astype("int64"), lost["n"].astype("int64")))
    out = pd.DataFrame({
        "start": pd.to_datetime([t0 + k * step for k in idx], unit="ns", utc=True),
        "deliveries": [int(n.get(k, 0)) for k in idx],
        "missing": [int(miss.get(k, 0)) for k in idx],
        "p50_ms": [float(p50[k]) / 1e6 if carried(50, int(n.get(k, 0))) else np.nan for k in idx],
        "p99_ms": [float(p99[k]) / 1e6 if carried(99, int(n.get(k, 0))) else np.nan for k in idx],
        "reconnects": [int(ups.get(k, 0)) for k in idx],
    }, columns=TIMELINE_COLUMNS)
    return out


def _timeline_from_summary(record: RunRecord, step: int) -> pd.DataFrame:
    """A run archived with its summary alone: its per-interval series (:func:`fanout.analysis.soak.soak_series`,
    whole multiples of the summary's interval; ``deliveries`` there are first deliveries with a latency)."""
    from fanout.analysis.soak import soak_series
    from fanout.lab.summary import SERIES_NS

    if step % SERIES_NS:
        raise ConfigError(f"run {record.run_id} keeps only its summary: its timeline has intervals of a whole "
                          f"multiple of {SERIES_NS / 1e9:g} s (timeline(interval_s={SERIES_NS / 1e9:g}))")
    s = soak_series(record, step / 1e9)
    return pd.DataFrame({
        "start": pd.to_datetime(int(record.t0) + (s["t_s"] * 1e9).round().astype("int64"), unit="ns", utc=True),
        "deliveries": s["lat_count"].astype("int64"), "missing": s["missing"].astype("int64"),
        "p50_ms": s["p50_ms"].astype("float64"), "p99_ms": s["p99_ms"].astype("float64"),
        "reconnects": s["reconnects"].astype("int64"),
    }, columns=TIMELINE_COLUMNS).reset_index(drop=True)
