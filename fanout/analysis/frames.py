"""The tables of a run's findings as DataFrames of typed values (``Findings.tables``): counts as
integers, latencies as float milliseconds (NaN where the samples do not carry a percentile),
flags as booleans. The report's display tables (:mod:`fanout.report.tables`) format these; a
notebook filters, sorts and plots them.

* ``per_instance`` — one row per instance: its arithmetic (published, expected, received, missing,
  duplicates, …), its latency and counters (``Findings.per_instance``);
* ``latency`` — one row per measure (``from intended send``: from the event's due time; ``from
  actual send``): ``count``, ``negative``, ``avg_ms``, ``min_ms``, ``p50_ms`` … ``max_ms``;
* ``per_instance_latency`` — per receiving instance: ``count``, ``avg_ms``, ``p50_ms``, ``p95_ms``,
  ``p99_ms``, ``max_ms``, ``errors``;
* ``verdict`` — one row per criterion: ``criterion``, ``passed``, ``judged``, ``measured``, ``threshold``;
* ``losses`` — every lost (receiver, cause) with its ``count`` (:mod:`fanout.analysis.accounting`);
* ``faults`` — one row per planned fault: its window, what was sent, delivered, lost, recovered.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pandas as pd

#: the latency statistics in the order the report shows them
LATENCY_KEYS = ("count", "negative", "avg_ms", "min_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")
LATENCY_ROWS = ("from intended send", "from actual send")
LOSS_DTYPES = {"receiver": "string", "kind": "string", "cause": "string", "fault": "string", "evidence": "string",
               "count": "int64"}
FAULT_DTYPES = {"fault": "string", "kind": "string", "instance": "string", "outage_s": "float64",
                "receivers": "Int64", "sent_in_window": "Int64", "delivered": "Int64", "lost": "Int64",
                "recovered": "Int64", "recovery_ms": "float64", "bound_ms": "float64", "window_n": "Int64",
                "window_p50_ms": "float64", "window_p99_ms": "float64", "window_max_ms": "float64", "late": "Int64"}


class Tables(Mapping):
    """Named DataFrames, each built when first asked for (``tables["latency"]``); its repr
    lists the names. A mapping: ``list(tables)``, ``tables.items()``, ``dict(tables)``."""

    def __init__(self, builders: dict[str, Callable[[], pd.DataFrame]], owner: str = "") -> None:
        self._builders = dict(builders)
        self._built: dict[str, pd.DataFrame] = {}
        self._owner = owner

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._builders:
            raise KeyError(f"no table {name!r}; the tables are: {', '.join(self._builders)}")
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)

    def __repr__(self) -> str:
        of = f" of {self._owner}" if self._owner else ""
        return f"<Tables{of}: {', '.join(self._builders)}>"[:199]


def typed(df: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """``df`` (a copy) with ``dtypes`` where its columns have them (None → NA); a column whose
    values do not convert keeps its own dtype."""
    out = df.copy()
    for col, dtype in dtypes.items():
        if col not in out.columns:
            continue
        try:
            out[col] = out[col].astype(dtype)
        except (TypeError, ValueError):
            pass
    return out


def latency_frame(latency: dict[str, Any], latency_sent: dict[str, Any]) -> pd.DataFrame:
    """The run's latency, one row per measure, statistics as columns (ms; NaN: not carried)."""
    rows = [{k: stats.get(k) for k in LATENCY_KEYS} for stats in (latency, latency_sent)]
    df = pd.DataFrame(rows, index=pd.Index(LATENCY_ROWS, name="measure"), columns=list(LATENCY_KEYS))
    df["count"] = df["count"].fillna(0).astype("int64")
    df["negative"] = df["negative"].fillna(0).astype("int64")
    return df.astype({k: "float64" for k in LATENCY_KEYS if k.endswith("_ms")})


def per_instance_latency_frame(per_instance: pd.DataFrame) -> pd.DataFrame:
    """Per instance: connected, its latency samples and statistics (ms), its errors."""
    p = per_instance
    return pd.DataFrame({
        "instance": p["instance"], "connected": p["connected"], "count": p["lat_count"], "avg_ms": p["lat_avg_ms"],
        "p50_ms": p["lat_p50_ms"], "p95_ms": p["lat_p95_ms"], "p99_ms": p["lat_p99_ms"], "max_ms": p["lat_max_ms"],
        "errors": p["errors"]}).reset_index(drop=True)


def verdict_frame(verdict) -> pd.DataFrame:
    """One row per criterion: its name, passed, judged (False: stated, not judged), the measured
    value and the threshold as the verdict words them."""
    return pd.DataFrame([{"criterion": c.name, "passed": bool(c.passed), "judged": bool(c.judged),
                          "measured": c.measured, "threshold": c.threshold} for c in verdict],
                        columns=["criterion", "passed", "judged", "measured", "threshold"]).astype(
        {"criterion": "string", "passed": "bool", "judged": "bool", "measured": "string", "threshold": "string"})


def findings_tables(f) -> Tables:
    """The tables of one run's :class:`~fanout.analysis.findings.Findings` (see the module)."""
    losses = f.losses
    return Tables({
        "per_instance": lambda: f.per_instance.copy(),
        "latency": lambda: latency_frame(f.latency, f.latency_sent),
        "per_instance_latency": lambda: per_instance_latency_frame(f.per_instance),
        "verdict": lambda: verdict_frame(f.verdict),
        "losses": lambda: typed(losses.losses if losses is not None else pd.DataFrame(columns=list(LOSS_DTYPES)),
                                LOSS_DTYPES),
        "faults": lambda: typed(losses.faults if losses is not None else pd.DataFrame(columns=list(FAULT_DTYPES)),
                                FAULT_DTYPES),
    }, owner=f.run_id)


__all__ = ["Tables", "typed", "findings_tables", "latency_frame", "per_instance_latency_frame", "verdict_frame",
           "LATENCY_KEYS", "LATENCY_ROWS"]
