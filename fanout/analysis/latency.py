"""Latency from a RunRecord: one sample per first delivery, statistics from every sample.

The headline is ``t_received − t_intended`` (from when the event was due, so publisher
back-pressure is not hidden); ``t_received − t_sent`` is reported beside it. Negative values are
counted and kept. Percentiles are ``numpy.percentile`` with ``method="linear"`` over the
nanosecond values, then divided by 1e6 (never rounded here).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fanout.lab.record import RunRecord

LATENCY_SAMPLE_COLUMNS = ["receiver", "source", "id", "type", "t_received", "lat_ns", "lat_sent_ns", "lat_ms"]

_PERCENTILES = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "p999_ms": 99.9}


def latency_stats(ns: np.ndarray) -> dict[str, Any]:
    """count, negative, avg/min/max and percentiles in ms (floats) from every sample; ``None`` when empty."""
    ns = np.asarray(ns, dtype=np.int64)
    stats: dict[str, Any] = {"count": int(ns.size), "negative": int((ns < 0).sum())}
    if ns.size == 0:
        return stats | {"avg_ms": None, "min_ms": None, "max_ms": None} | dict.fromkeys(_PERCENTILES)
    stats |= {"avg_ms": float(ns.mean()) / 1e6, "min_ms": float(ns.min()) / 1e6, "max_ms": float(ns.max()) / 1e6}
    for key, q in _PERCENTILES.items():
        stats[key] = float(np.percentile(ns, q, method="linear")) / 1e6
    return stats



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


def ms_quantiles(ns: pd.Series) -> dict[str, float | None]:
    """p50, p99 and max of ns values, in ms."""
    if ns.empty:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    a = ns.to_numpy(dtype=np.int64)
    return {"p50_ms": float(np.percentile(a, 50.0, method="linear")) / 1e6,
            "p99_ms": float(np.percentile(a, 99.0, method="linear")) / 1e6,
            "max_ms": float(a.max()) / 1e6}
