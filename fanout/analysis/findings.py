"""Turn a :class:`~fanout.record.RunRecord` into facts: per-instance arithmetic, latency, verdict.

Pure functions over frames: nothing here prints, reads or writes files.

Definitions (the column contract is in docs/architecture.md):

* **published**: publications with ``ok``; the others are *publish failures*, expected nowhere.
  A failure whose outcome was unknown at the publisher (``PublishError.maybe_sent``: written,
  then no answer) may have reached Redis all the same: ``failed_delivered`` counts the delivery
  rows of failed publications, ``failed_delivered_events`` the failed publications delivered at
  least once (neither is *received*, *unknown* or *unexpected*).
* **receivers**: every instance in ``record.instances``, or the scenario's ``receivers`` list.
  A receiver *r* expects every ok publication whose source is not *r* (the seed's
  "total published − its own"); an instance that is not a receiver expects nothing.
* **received**: distinct expected ids a receiver got; **missing** = expected − received.
* **duplicate**: a second or later delivery row with the same ``(id, receiver)``.
* **self-received**: a delivery row whose ``source`` is its ``receiver``.
* **unknown**: delivery rows whose id is in no publication (should be 0).
* **unexpected**: ok events from others delivered to an instance that is not a receiver, plus
  rows delivered to an instance that is not in the run.
* **latency**: per first delivery of each ``(id, receiver)``, excluding self-deliveries, integer ns.
  See :mod:`fanout.analysis.latency`; the verdict's criteria are :mod:`fanout.analysis.verdict`.
  A percentile the samples do not carry is ``None`` (:func:`fanout.analysis.latency.carried`);
  ``lat_count`` per instance and ``count``/``withheld`` in ``latency`` say why.
* **loss_rate_upper_95**: when none of the ``expected`` deliveries is missing, the loss rate is
  below ``3 / expected`` at 95 % confidence (the rule of three); ``None`` when something was missing.
* **foreign**: deliveries from sources that are not part of the run (live traffic on a shared
  Redis): counted apart, never missing, duplicate or unknown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fanout.analysis.accounting import UNEXPLAINED, LossAccount, account_losses
from fanout.analysis.latency import (PERCENTILES, TAIL_SAMPLES, hist_stats, latency_samples, latency_stats,
                                     min_samples, ms_quantiles)
from fanout.analysis.verdict import Criterion, Thresholds, fault_verdict, seed_verdict
from fanout.analysis.frames import Tables, findings_tables
from fanout.cards import card, one_line
from fanout.formatting import percentile as fmt_pct
from fanout.lab.record import RunRecord

#: Above this many other instances the expected-formula is summarised, not spelled out.
MAX_FORMULA_TERMS = 8


@dataclass(repr=False)
class Findings:
    """Everything a report states about one run: what :func:`analyse` made of a
    :class:`~fanout.lab.record.RunRecord`.

    Main attributes:

    * ``status`` ("PASS"/"FAIL") and ``passed``; ``verdict``: one Criterion per check (name,
      passed, measured, threshold, judged);
    * ``overall``: the run's counts as a dict (published, expected, received, missing, duplicates,
      delivery_pct, …); ``per_instance``: the same per instance, a DataFrame;
    * ``latency`` / ``latency_sent``: from the due time / the actual send (ms; a percentile the
      samples do not carry is None);
    * ``losses``: every lost event attributed (:class:`~fanout.analysis.accounting.LossAccount`);
    * ``tables``: the tables above as DataFrames of typed values (:mod:`fanout.analysis.frames`);
    * ``run_id``, ``scenario``, ``environment``, ``thresholds``.

    Methods: :meth:`to_dict` (JSON-able, what ``fanout run --json`` prints).
    """

    run_id: str
    scenario: dict[str, Any]
    environment: dict[str, Any]
    thresholds: Thresholds
    per_instance: pd.DataFrame
    overall: dict[str, Any]
    latency: dict[str, Any]
    latency_sent: dict[str, Any]
    verdict: list[Criterion] = field(default_factory=list)
    losses: LossAccount | None = None

    @property
    def passed(self) -> bool:
        """All judged criteria passed (a criterion with ``judged=False`` is stated, not judged)."""
        return all(c.passed for c in self.verdict if c.judged)

    @property
    def status(self) -> str:
        """``PASS`` when every judged criterion passed, else ``FAIL``."""
        return "PASS" if self.passed else "FAIL"

    @property
    def tables(self) -> Tables:
        """The run's tables as DataFrames of typed values: ``per_instance``, ``latency``,
        ``per_instance_latency``, ``verdict``, ``losses``, ``faults`` (:mod:`fanout.analysis.frames`)."""
        return findings_tables(self)

    def _headline(self) -> dict[str, str]:
        o, lat = self.overall, self.latency
        n = lat.get("count")
        return {"delivered": f"{o['received']:,} of {o['expected']:,}", "missing": f"{o['missing']:,}",
                "duplicates": f"{o['duplicates']:,}",
                "p50": fmt_pct(lat.get("p50_ms"), n, "p50_ms", short=True),
                "p99": fmt_pct(lat.get("p99_ms"), n, "p99_ms", short=True)}

    def __repr__(self) -> str:
        h = self._headline()
        return one_line(f"<Findings {self.run_id}: {self.status}, delivered {h['delivered']}, missing {h['missing']}, "
                        f"duplicates {h['duplicates']}, p50 {h['p50']}, p99 {h['p99']}>")

    def _repr_html_(self) -> str:
        """The notebook's card: status, delivered of expected, missing, duplicates, p50/p99."""
        h, sc = self._headline(), self.scenario or {}
        failed = [c.name for c in self.verdict if c.judged and not c.passed]
        return card(self.run_id, [
            ("scenario", f"{sc.get('name', '?')} ({sc.get('transport', 'pubsub')})"),
            ("delivered", f"{h['delivered']} ({self.overall['delivery_pct']:.2f}%)"),
            ("missing", h["missing"]), ("duplicates", h["duplicates"]),
            ("latency p50 / p99", f"{h['p50']} / {h['p99']}"),
            ("not met", "; ".join(failed) if failed else None),
        ], status=self.status, kind="Findings")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: plain Python numbers, ``None`` for undefined values."""
        return _plain({
            "run_id": self.run_id,
            "status": self.status,
            "passed": self.passed,
            "scenario": self.scenario,
            "environment": self.environment,
            "thresholds": {"min_delivery_pct": self.thresholds.min_delivery_pct,
                           "max_avg_latency_ms": self.thresholds.max_avg_latency_ms},
            "overall": self.overall,
            "latency": self.latency,
            "latency_sent": self.latency_sent,
            "per_instance": self.per_instance.to_dict(orient="records"),
            "verdict": [{"name": c.name, "passed": c.passed, "measured": c.measured, "threshold": c.threshold,
                         "judged": c.judged} for c in self.verdict],
            "losses": self.losses.to_dict() if self.losses is not None else None,
            "percentile_rule": {"tail_samples": TAIL_SAMPLES,
                                "min_samples": {k: min_samples(q) for k, q in PERCENTILES.items()}},
        })


def _plain(value: Any) -> Any:
    """Recursively convert numpy/pandas scalars to Python ones; NaN and NA become ``None``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def _expected_formula(terms: list[int], total: int) -> str:
    """The seed's "65 + 61 = 126": what each other instance published, summed."""
    if not terms:
        return "0"
    if len(terms) > MAX_FORMULA_TERMS:
        return f"sum of {len(terms)} others = {total}"
    return f"{' + '.join(str(t) for t in terms)} = {total}"


def _count_by(series: pd.Series) -> dict[str, int]:
    """How often each value occurs."""
    return {str(k): int(v) for k, v in series.value_counts().items()}


def split_foreign(record: RunRecord) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(deliveries from the run's own instances, deliveries from *foreign* sources): instances
    that are not in the run and published nothing in it (live traffic on a shared Redis)."""
    d = record.deliveries
    known = {str(x) for x in record.instances["instance"]} | {str(x) for x in record.publications["source"]}
    known |= set((record.environment or {}).get("dead_instances") or {})
    mine = d["source"].isin(known)
    return d[mine], d[~mine]


def use_summary(record: RunRecord) -> bool:
    """Whether :func:`analyse` works from the run's summary (exact counts from the seq bitmaps,
    latency from the merged histograms) rather than from its rows: a record whose rows are not in
    memory (written as parts) and that has a summary and no fault plan (a fault run is short and
    its verdict reads rows in the faults' windows)."""
    return record.summary is not None and not record.rows_loaded and len(record.faults) == 0


def _counts_from_frames(record: RunRecord, names: list[str], dead_sources: list[str]) -> dict[str, Any]:
    pubs = record.publications
    ok = pubs[pubs["ok"]]
    d, foreign = split_foreign(record)
    distinct_by = _count_by(d.drop_duplicates(["id", "receiver"])["receiver"])
    samples = latency_samples(record)
    lat_by = {str(r): g.to_numpy() for r, g in samples.groupby("receiver")["lat_ns"]}
    total_ok = len(ok)
    return {
        "from": "rows", "published_by": _count_by(ok["source"]), "failed_by": _count_by(pubs.loc[~pubs["ok"], "source"]),
        "total_ok": total_ok, "publications": len(pubs),
        "got_by": _count_by(samples["receiver"]),
        "lat_of": lambda name: latency_stats(lat_by.get(name, np.empty(0, dtype=np.int64))),
        "rows_by": _count_by(d["receiver"]), "distinct_by": distinct_by,
        "self_by": _count_by(d.loc[d["source"] == d["receiver"], "receiver"]),
        "foreign_by": _count_by(foreign["receiver"]),
        "latency": latency_stats(samples["lat_ns"].to_numpy()),
        "latency_sent": latency_stats(samples["lat_sent_ns"].to_numpy()),
        "span_s": (int(ok["t_intended"].max()) - int(ok["t_intended"].min())) / 1e9 if total_ok else 0.0,
        "lag": ms_quantiles(ok["t_sent"] - ok["t_intended"]),
        "delivered_rows": len(d), "foreign": len(foreign),
        "foreign_sources": sorted(str(x) for x in foreign["source"].unique()),
        "duplicates": len(d) - sum(distinct_by.values()),
        "self_received": int((d["source"] == d["receiver"]).sum()),
        "unknown": int((~d["id"].isin(pubs["id"]) & ~d["source"].isin(dead_sources)).sum()),
        "from_dead_agents": int((~d["id"].isin(pubs["id"]) & d["source"].isin(dead_sources)).sum()),
        "stray": int((~d["receiver"].isin(names)).sum()),
        "failed_delivered": int(d["id"].isin(pubs.loc[~pubs["ok"], "id"]).sum()),
        "failed_delivered_events": int(pubs.loc[~pubs["ok"], "id"].isin(d["id"]).sum()),
    }


def _counts_from_summary(record: RunRecord, names: list[str], receivers: set[str],
                         dead_sources: list[str]) -> dict[str, Any]:
    """What :func:`_counts_from_frames` gives, from the summary alone (no row is read). Exact
    counts, except where noted: rows of an event no publication names (``unknown``,
    ``from_dead_agents``) and rows of failed publications (``failed_delivered``) are counted once
    per (event, receiver), their repeats among the duplicates."""
    s = record.summary
    per = {r["instance"]: r for r in s.instances(names, receivers, dead_sources)}
    known = set(names) | s.sources() | set(dead_sources)
    rows_by: dict[str, int] = {}
    distinct_by: dict[str, int] = {}
    self_by: dict[str, int] = {}
    foreign_by: dict[str, int] = {}
    foreign_sources: set[str] = set()
    unknown = dead = failed_rows = stray = 0
    failed_seen: dict[tuple, Any] = {}
    for k, b in s.received.items():
        r, src, rest = k[0], k[1], k[1:]
        n_rows = len(b) + s.duplicates.get(k, 0)
        if src not in known:
            foreign_by[r] = foreign_by.get(r, 0) + n_rows
            foreign_sources.add(src)
            continue
        if r not in names:
            stray += n_rows
        rows_by[r] = rows_by.get(r, 0) + n_rows
        distinct_by[r] = distinct_by.get(r, 0) + len(b)
        if src == r:
            self_by[r] = self_by.get(r, 0) + n_rows
        ok, bad = s.published.get(rest), s.failed.get(rest)
        named = len(b) - (b.intersection_cardinality(ok) if ok is not None else 0) \
            - (b.intersection_cardinality(bad) if bad is not None else 0)
        if src in dead_sources:
            dead += named
        else:
            unknown += named
        if bad is not None:
            failed_rows += b.intersection_cardinality(bad)
            seen = failed_seen.get(rest)
            failed_seen[rest] = (b & bad) if seen is None else (seen | (b & bad))
    for (r, src), n in s.unsequenced.items():
        if src not in known:
            foreign_by[r] = foreign_by.get(r, 0) + n
            foreign_sources.add(src)
            continue
        rows_by[r] = rows_by.get(r, 0) + n
        distinct_by[r] = distinct_by.get(r, 0) + 1
        self_by[r] = self_by.get(r, 0) + (n if src == r else 0)
        if src in dead_sources:
            dead += n
        else:
            unknown += n
    published_by, failed_by = s.published_by(), s.failed_by()
    total_ok = sum(published_by.values())
    lag = hist_stats(s.lag)
    return {
        "from": "summary", "published_by": published_by, "failed_by": failed_by, "total_ok": total_ok,
        "publications": total_ok + sum(failed_by.values()),
        "got_by": {n: p["received"] + p["unexpected"] for n, p in per.items()},
        "lat_of": lambda name: hist_stats(s.latency_of(name)),
        "rows_by": rows_by, "distinct_by": distinct_by, "self_by": self_by, "foreign_by": foreign_by,
        "latency": hist_stats(s.latency_of()), "latency_sent": hist_stats(s.sent),
        "span_s": (s.due_max - s.due_min) / 1e9 if total_ok else 0.0,
        "lag": {"p50_ms": lag["p50_ms"], "p99_ms": lag["p99_ms"], "max_ms": lag["max_ms"], "count": lag["count"],
                "withheld": {k: v for k, v in lag["withheld"].items() if k in ("p50_ms", "p99_ms")}},
        "delivered_rows": sum(rows_by.values()), "foreign": sum(foreign_by.values()),
        "foreign_sources": sorted(foreign_sources),
        "duplicates": sum(rows_by.values()) - sum(distinct_by.values()),
        "self_received": sum(self_by.values()),
        "unknown": unknown, "from_dead_agents": dead, "stray": stray, "failed_delivered": failed_rows,
        "failed_delivered_events": sum(len(b) for b in failed_seen.values()),
    }


def analyse(record: RunRecord, thresholds: Thresholds | None = None) -> Findings:
    """Per-instance arithmetic, latency statistics and the verdict for one run.

    ``record``: the run (:func:`fanout.lab.load_run` reads a saved one); its rows are read only
    when the run has no summary or had faults (a run with a summary is analysed from it).
    ``thresholds``: the pass marks; None: the scenario's ``min_delivery_pct`` / ``max_avg_latency_ms``.

    Returns the run's :class:`Findings` (``findings.status``, ``findings.tables``). Pure: nothing
    is printed, read from or written to disk beyond the record's own rows.
    """
    scenario = dict(record.scenario)
    th = thresholds if thresholds is not None else Thresholds.from_scenario(scenario)
    inst = record.instances.reset_index(drop=True)
    names = [str(x) for x in inst["instance"]]
    receivers = set(names) if scenario.get("receivers") is None else {str(x) for x in scenario["receivers"]}
    publishers = set(names) if scenario.get("publishers") is None else {str(x) for x in scenario["publishers"]}

    dead_sources = list((record.environment or {}).get("dead_instances") or {})
    if use_summary(record):
        c = _counts_from_summary(record, names, receivers, dead_sources)
    else:
        c = _counts_from_frames(record, names, dead_sources)
    published_by, failed_by, total_ok = c["published_by"], c["failed_by"], c["total_ok"]
    external = [s for s in published_by if s not in names]  # publishers outside record.instances
    got_by, lat_of = c["got_by"], c["lat_of"]
    rows_by, distinct_by, self_by, foreign_by = c["rows_by"], c["distinct_by"], c["self_by"], c["foreign_by"]

    rows = []
    for i, name in enumerate(names):
        is_receiver = name in receivers
        others = [published_by.get(n, 0) for n in names if n != name and n in publishers] + \
            [published_by[s] for s in external]
        expected = total_ok - published_by.get(name, 0) if is_receiver else 0
        received = got_by.get(name, 0) if is_receiver else 0
        unexpected = got_by.get(name, 0) - received
        duplicates = rows_by.get(name, 0) - distinct_by.get(name, 0)
        self_received = self_by.get(name, 0)
        lat = lat_of(name)
        rows.append({
            "instance": name,
            "role": "+".join(r for r, on in (("publisher", name in publishers), ("receiver", is_receiver)) if on)
                    or "none",
            "connected": bool(inst.at[i, "connected"]),
            "published": published_by.get(name, 0),
            "publish_failed": failed_by.get(name, 0),
            "expected": expected,
            "expected_formula": _expected_formula(others, expected) if is_receiver else "not a receiver",
            "received": received,
            "missing": expected - received,
            "duplicates": duplicates,
            "self_received": self_received,
            "unexpected": unexpected,
            "foreign": foreign_by.get(name, 0),
            "delivery_pct": 100.0 * received / expected if expected else 100.0,
            "errors": int(inst.at[i, "errors"]),
            "gaps": int(inst.at[i, "gaps"]),
            "reconnects": int(inst.at[i, "reconnects"]),
            "lat_count": lat["count"], "lat_avg_ms": lat["avg_ms"], "lat_p50_ms": lat["p50_ms"],
            "lat_p95_ms": lat["p95_ms"],
            "lat_p99_ms": lat["p99_ms"], "lat_max_ms": lat["max_ms"],
            "arithmetic_ok": received == expected and duplicates == 0 and self_received == 0 and unexpected == 0,
        })
    per_instance = _per_instance_frame(rows)

    latency, latency_sent = c["latency"], c["latency_sent"]
    duration_s = float(scenario["duration_s"]) if scenario.get("duration_s") else max(record.t_end - record.t0, 0) / 1e9
    expected_total = int(per_instance["expected"].sum())
    received_total = int(per_instance["received"].sum())
    span_s = c["span_s"]
    window_s = (record.t_end - record.t0) / 1e9 if record.t_end > record.t0 else duration_s
    lag = c["lag"]
    overall: dict[str, Any] = {
        "instances": len(names),
        "duration_s": duration_s,
        "published": total_ok,
        "publish_failed": c["publications"] - total_ok,
        "expected": expected_total,
        "received": received_total,
        "delivered_rows": c["delivered_rows"],
        # deliveries from sources outside the run (another application on the same channels): counted,
        # never missing, duplicate or unknown
        "foreign": c["foreign"],
        "foreign_sources": c["foreign_sources"],
        "delivery_pct": 100.0 * received_total / expected_total if expected_total else 100.0,
        "missing": expected_total - received_total,
        "duplicates": c["duplicates"],
        "self_received": c["self_received"],
        # deliveries of events no publication row names; those from instances whose agent died
        # (its publication records died with it) are counted apart
        "unknown": c["unknown"],
        "from_dead_agents": c["from_dead_agents"],
        "unexpected": int(per_instance["unexpected"].sum()) + c["stray"],
        "failed_delivered": c["failed_delivered"],
        "failed_delivered_events": c["failed_delivered_events"],
        "errors": int(inst["errors"].sum()),
        "gaps": int(inst["gaps"].sum()),
        # the wire's own signals (fanout.metrics): unsent = seqs a publisher announced it never got
        # into Redis; suspicious, rejected, id_conflicts = forged or conflicting traffic seen
        **{k: int(inst[k].sum()) if k in inst else 0 for k in ("unsent", "suspicious", "rejected", "id_conflicts")},
        "reconnects": int(inst["reconnects"].sum()),
        "negative_latencies": latency["negative"],
        "target_rate_per_s": float(scenario["rate_per_s"]) if scenario.get("rate_per_s") else None,
        # n events due over a span cover n - 1 intervals, so a perfect schedule gives the target exactly
        "achieved_rate_per_s": ((total_ok - 1) / span_s if total_ok >= 2 and span_s > 0
                                else total_ok / duration_s if duration_s > 0 else None),
        "deliveries_per_s": received_total / window_s if window_s > 0 else None,
        "schedule_lag_p50_ms": lag["p50_ms"],
        "schedule_lag_p99_ms": lag["p99_ms"],
        "schedule_lag_max_ms": lag["max_ms"],
        "schedule_lag_samples": lag["count"],
        "schedule_lag_withheld": {f"schedule_lag_{k}": v for k, v in lag["withheld"].items()},
        "loss_rate_upper_95": loss_rate_upper_95(expected_total - received_total, expected_total),
    }
    losses = account_losses(record, [n for n in names if n in receivers], bound_ms=th.max_avg_latency_ms)
    overall["analysed_from"] = c["from"]
    overall["unexplained"] = losses.unexplained
    overall["lost_by_kind"] = dict(losses.by_kind)
    # lost on receivers no planned fault targeted (a server-wide fault targets every one)
    targets = set(record.faults["instance"].astype(str)) if len(record.faults) else set()
    untouched = [] if "" in targets else [n for n in names if n not in targets]
    overall["lost_untouched"] = int(losses.losses.loc[losses.losses["receiver"].isin(untouched), "count"].sum())
    overall["faults"] = len(record.faults)
    attributed = losses.losses[losses.losses["kind"] != UNEXPLAINED].groupby("receiver")["count"].sum()
    per_instance["lost_attributed"] = [int(attributed.get(n, 0)) for n in per_instance["instance"]]
    malformed = int(inst["malformed"].sum()) if "malformed" in inst else 0
    handler_errors = int(inst["handler_errors"].sum()) if "handler_errors" in inst else 0
    overall["malformed"] = malformed
    overall["handler_errors"] = handler_errors
    verdict = (fault_verdict(per_instance, overall, latency, th, record, losses) if len(record.faults)
               else seed_verdict(per_instance, overall, latency, th))
    stopped = (record.environment or {}).get("interrupted")
    if stopped:  # a run stopped midway is never a pass, whatever its part shows
        verdict.insert(0, Criterion("Run completed", False, f"interrupted after {stopped['after_s']:g} s of "
                                    f"{stopped['of_s']:g} s", "the whole schedule"))
    return Findings(
        run_id=record.run_id, scenario=scenario, environment=dict(record.environment), thresholds=th,
        per_instance=per_instance, overall=overall, latency=latency, latency_sent=latency_sent,
        verdict=verdict, losses=losses,
    )


_PER_INSTANCE_DTYPES = {
    "instance": "string", "role": "string", "connected": "bool", "published": "int64", "publish_failed": "int64",
    "expected": "int64", "expected_formula": "string", "received": "int64", "missing": "int64",
    "duplicates": "int64", "self_received": "int64", "unexpected": "int64", "foreign": "int64",
    "delivery_pct": "float64",
    "errors": "int64", "gaps": "int64", "reconnects": "int64", "lat_count": "int64", "lat_avg_ms": "float64",
    "lat_p50_ms": "float64",
    "lat_p95_ms": "float64", "lat_p99_ms": "float64", "lat_max_ms": "float64", "arithmetic_ok": "bool",
}


def loss_rate_upper_95(missing: int, expected: int) -> float | None:
    """The rule of three: none of ``expected`` lost → the loss rate is below ``3 / expected`` at
    95 % confidence. ``None`` when something was lost or nothing was expected."""
    return 3.0 / expected if missing == 0 and expected > 0 else None


def _per_instance_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows to a frame with fixed columns and dtypes (missing latencies are NaN)."""
    return pd.DataFrame(rows, columns=list(_PER_INSTANCE_DTYPES)).astype(_PER_INSTANCE_DTYPES)


def _pct_change(a: float | None, b: float | None) -> str:
    """Relative change, the seed's "+21%" (whole percent; "0%" when unchanged)."""
    if a is None or b is None:
        return "n/a"
    if a == 0:
        return "0%" if b == 0 else "n/a"
    text = f"{(b - a) / a * 100:+.0f}%"
    return "0%" if text in ("+0%", "-0%") else text


def compare(a: Findings, b: Findings, labels: tuple[str, str] = ("3 Instances", "5 Instances")) -> pd.DataFrame:
    """The seed's "Comparative Analysis" table: display strings, index ``Metric``,
    columns the two labels and ``Difference``."""
    rows: list[tuple[str, str, str, str]] = []
    da, db = a.overall["delivery_pct"], b.overall["delivery_pct"]
    diff = f"{db - da:+.2f}%"
    rows.append(("Delivery Rate", f"{da:.2f}%", f"{db:.2f}%", "0%" if diff in ("+0.00%", "-0.00%") else diff))
    for label, key in (("Avg Latency", "avg_ms"), ("P95 Latency", "p95_ms"), ("P99 Latency", "p99_ms"),
                       ("Max Latency", "max_ms")):
        va, vb = a.latency[key], b.latency[key]
        sa, sb = (fmt_pct(f.latency[key], f.latency["count"], key, short=True) for f in (a, b))
        rows.append((label, sa, sb, _pct_change(va, vb) if "—" not in sa + sb else "n/a"))
    for label, key in (("Self-Received", "self_received"), ("Errors", "errors")):
        ca, cb = a.overall[key], b.overall[key]
        rows.append((label, str(ca), str(cb), "0" if ca == cb else f"{cb - ca:+d}"))
    return pd.DataFrame(rows, columns=["Metric", labels[0], labels[1], "Difference"]).set_index("Metric")
