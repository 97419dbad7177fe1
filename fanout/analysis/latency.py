"""Latency from a RunRecord: one sample per first delivery, statistics from every sample.

The headline is ``t_received − t_intended`` (from when the event was due, so publisher
back-pressure is not hidden); ``t_received − t_sent`` is reported beside it. Negative values are
counted and kept. Percentiles are ``numpy.percentile`` with ``method="linear"`` over the
nanosecond values, then divided by 1e6 (never rounded here).

**A percentile only where the samples carry it.** Percentile *q* is given only from
``TAIL_SAMPLES / (1 − q)`` samples on (:func:`min_samples`: p50 20, p95 200, p99 1,000, p99.9
10,000), so that at least ten samples lie beyond it; with fewer, a "p99.9" is only the largest
sample or two under another name. A percentile the samples do not carry is ``None``, and
``withheld`` says which and how many samples each would need. This is the one place the rule
lives; everything that shows a percentile asks :func:`carried` (or reads ``withheld``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fanout.lab.record import RunRecord
from fanout.percentiles import (  # noqa: F401  (the rule, re-exported where the statistics live)
    PERCENTILES, TAIL_SAMPLES, carried, label_of, min_samples, quantile_of, withheld,
)

LATENCY_SAMPLE_COLUMNS = ["receiver", "source", "id", "type", "t_received", "lat_ns", "lat_sent_ns", "lat_ms"]


def latency_stats(ns: np.ndarray) -> dict[str, Any]:
    """count, negative, avg/min/max and percentiles in ms (floats) from every sample; ``None`` when
    empty, and for a percentile the samples do not carry (``withheld``: key → samples it needs)."""
    ns = np.asarray(ns, dtype=np.int64)
    stats: dict[str, Any] = {"count": int(ns.size), "negative": int((ns < 0).sum())}
    if ns.size == 0:
        return stats | {"avg_ms": None, "min_ms": None, "max_ms": None} | dict.fromkeys(PERCENTILES) | {"withheld": {}}
    stats |= {"avg_ms": float(ns.mean()) / 1e6, "min_ms": float(ns.min()) / 1e6, "max_ms": float(ns.max()) / 1e6}
    held = withheld(int(ns.size))
    for key, q in PERCENTILES.items():
        stats[key] = None if key in held else float(np.percentile(ns, q, method="linear")) / 1e6
    stats["withheld"] = held
    return stats


def hist_stats(x) -> dict[str, Any]:
    """:func:`latency_stats` from a summary's :class:`~fanout.lab.summary.Latency` (merged
    HdrHistograms): count, negative, avg/min/max exact; percentiles from the histogram (within its
    3 significant digits of the exact nearest-rank value; negative samples count as 0 there),
    under the same rule of which ones the count carries."""
    stats: dict[str, Any] = {"count": int(x.count), "negative": int(x.negative)}
    if x.count == 0:
        return stats | {"avg_ms": None, "min_ms": None, "max_ms": None} | dict.fromkeys(PERCENTILES) | {"withheld": {}}
    stats |= {"avg_ms": x.sum_ns / x.count / 1e6, "min_ms": x.min_ns / 1e6, "max_ms": x.max_ns / 1e6}
    held = withheld(int(x.count))
    for key, q in PERCENTILES.items():
        stats[key] = None if key in held else min(x.hist.get_value_at_percentile(q), x.max_ns) / 1e6
    stats["withheld"] = held
    return stats


def raw_percentile_ms(ns, q: float) -> float | None:
    """Percentile ``q`` of ns values in ms whatever their number (``None`` when empty): for a
    judgement that screens on it, never for showing (shown percentiles follow :func:`carried`)."""
    a = np.asarray(ns, dtype=np.int64)
    return float(np.percentile(a, q, method="linear")) / 1e6 if a.size else None



def latency_samples(record: RunRecord) -> pd.DataFrame:
    """One row per first delivery (earliest ``t_received``) of an ok publication to an instance
    other than its publisher, with both latencies in ns and the headline one in ms."""
    pubs = record.publications.loc[record.publications["ok"], ["id", "source", "t_intended", "t_sent"]]
    firsts = (record.deliveries[["id", "receiver", "type", "t_received"]]
              .sort_values("t_received", kind="stable")
              .drop_duplicates(["id", "receiver"]))
    s = firsts.merge(pubs, on="id", how="inner")
    s = s[s["receiver"] != s["source"]].copy()
    s["lat_ns"] = (s["t_received"] - s["t_intended"]).astype("int64")
    s["lat_sent_ns"] = (s["t_received"] - s["t_sent"]).astype("int64")
    s["lat_ms"] = s["lat_ns"].astype("float64") / 1e6
    return s[LATENCY_SAMPLE_COLUMNS].sort_values("t_received", kind="stable").reset_index(drop=True)


def ms_quantiles(ns: pd.Series) -> dict[str, Any]:
    """p50, p99 and max of ns values, in ms, with ``count`` and ``withheld`` (a percentile the
    values do not carry is ``None``, as in :func:`latency_stats`)."""
    if ns.empty:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "count": 0, "withheld": {}}
    a = ns.to_numpy(dtype=np.int64)
    held = withheld(int(a.size), ("p50_ms", "p99_ms"))
    return {k: None if k in held else float(np.percentile(a, q, method="linear")) / 1e6
            for k, q in (("p50_ms", 50.0), ("p99_ms", 99.0))} | {
        "max_ms": float(a.max()) / 1e6, "count": int(a.size), "withheld": held}
