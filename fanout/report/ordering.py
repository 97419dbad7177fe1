"""How often a receiver got an event after one that was due later (the ordering limitation)."""
from __future__ import annotations

from typing import Any

import numpy as np

from fanout.analysis import latency_samples
from fanout.analysis.latency import min_samples

#: a run's per-instance p50s "follow the dispatch order" when they correlate with the instances'
#: places at least this strongly (Pearson r); below it the caption says they do not
DISPATCH_R_MIN = 0.9


def ordering_stats(record) -> dict[str, int]:
    """Per receiver, deliveries in the order its handler ran; an event is out of order when an
    earlier delivery (same grouping) was due after it. Counted within one publisher and one
    channel (``same_channel``: Redis keeps these in order), within one publisher across its
    channels (``same_publisher``), and across all publishers (``any_publisher``)."""
    s = latency_samples(record)
    if s.empty:
        return {"deliveries": 0, "same_channel": 0, "same_publisher": 0, "any_publisher": 0}
    due = record.publications.loc[record.publications["ok"], ["id", "t_intended"]]
    s = s.merge(due, on="id", how="left").sort_values(["receiver", "t_received"], kind="stable")

    def late(keys: list[str]) -> int:
        prev = s.groupby(keys, sort=False)["t_intended"].transform(lambda x: x.cummax().shift())
        return int((s["t_intended"] < prev).sum())

    return {"deliveries": len(s), "same_channel": late(["receiver", "source", "type"]),
            "same_publisher": late(["receiver", "source"]), "any_publisher": late(["receiver"])}


def dispatch_order(record) -> dict[str, Any] | None:
    """How far an instance's latency depends on its place in the order the receivers get each event.

    One event loop (or one Redis connection per instance served in turn) hands an event to its
    receivers one after another, so the receiver whose handler runs later sees a later time: the
    per-instance latency distributions are staggered. Measured from the run's rows: each event's
    receivers ranked by ``t_received`` (place 0: the first to get it), each instance's mean place
    over the events it got and its p50 latency; ``us_per_place`` is the least-squares slope of the
    p50s against the places (µs), ``r`` their correlation, ``gap_us`` the median time between two
    consecutive receivers of one event. ``None`` with fewer than three receivers whose samples
    carry a p50 (two points make no slope worth stating)."""
    s = latency_samples(record)
    if s.empty:
        return None
    s = s.assign(place=s.groupby("id")["t_received"].rank(method="first") - 1)
    per = s.groupby("receiver").agg(place=("place", "mean"), p50_ns=("lat_ns", "median"), n=("id", "size"))
    per = per[per["n"] >= min_samples(50.0)].sort_values("place")
    if len(per) < 3 or per["place"].nunique() < 2:
        return None
    p50_us = per["p50_ns"].to_numpy(dtype=float) / 1e3
    places = per["place"].to_numpy(dtype=float)
    slope = float(np.polyfit(places, p50_us, 1)[0])
    r = float(np.corrcoef(places, p50_us)[0, 1]) if np.ptp(p50_us) > 0 else 0.0
    # times relative to the first delivery: a groupby diff works in float64, exact only below 2**53 ns
    rel = s.assign(t=s["t_received"] - int(s["t_received"].min())).sort_values(["id", "t"], kind="stable")
    gaps = rel.groupby("id")["t"].diff().dropna()
    return {"instances": [{"instance": str(name), "place": float(row.place), "p50_ms": float(row.p50_ns) / 1e6,
                           "samples": int(row.n)} for name, row in per.iterrows()],
            "receivers": len(per), "first": str(per.index[0]), "last": str(per.index[-1]),
            "us_per_place": slope, "r": r, "r_min": DISPATCH_R_MIN, "follows_order": r >= DISPATCH_R_MIN,
            "spread_us": float(p50_us[-1] - p50_us[0]), "p50_range_us": float(np.ptp(p50_us)),
            "gap_us": float(gaps.median()) / 1e3 if len(gaps) else None}


__all__ = ["ordering_stats", "dispatch_order", "DISPATCH_R_MIN"]
