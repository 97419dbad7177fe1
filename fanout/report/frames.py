"""A report's tables as DataFrames of typed values (``Report.tables``), built from ``rep.facts``
(what report.json keeps), so they hold the numbers the report's text tables show:

* ``runs`` — one row per run: its outcome counts, rates and latency (the facts' scalar fields);
* ``scenarios`` — one row per configuration (scenario and capacity roles) over its repeated runs:
  runs, passed, delivered of expected, p50/p99 as the median over the runs and their range;
* ``faults`` — one row per fault and transport over its repeated runs: lost per run and its
  median and range, the loss per second of fault per receiver, recovery, lateness;
* ``comparisons`` — one row per comparison pair and metric (:mod:`fanout.report.compare`'s columns);
* ``capacity`` — one row per capacity-planning row: the seed's claim and what was measured.

Counts are integers, rates and milliseconds floats (NaN: no number), flags booleans (NA: not
judged). Each per-run list (``run_ids``, ``lost_per_run``) stays a list in its cell.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fanout.analysis.frames import Tables

#: the spread of a metric over repeated runs becomes these columns (``p99_ms_median`` …)
SPREAD = ("median", "min", "max")


def _dtype(values: list) -> str | None:
    """The dtype a column of these Python values reads as (None: keep object)."""
    vals = [v for v in values if v is not None and not (isinstance(v, float) and v != v)]
    some_missing = len(vals) < len(values)
    if not vals:
        return "float64"
    if all(isinstance(v, bool) for v in vals):
        return "boolean" if some_missing else "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return "Int64" if some_missing else "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return "float64"
    if all(isinstance(v, str) for v in vals):
        return "string"
    return None


def records_frame(records: Sequence[dict], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Dicts → a frame whose columns have the dtypes their values read as (ints, floats, bools,
    strings; None → NA), in ``columns``' order (default: the keys of the first record)."""
    cols = list(columns) if columns is not None else list(records[0]) if records else []
    data = {c: [r.get(c) for r in records] for c in cols}
    df = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in data.items()}, columns=cols)
    for c, v in data.items():
        dtype = _dtype(v)
        if dtype is not None:
            df[c] = df[c].astype(dtype) if dtype != "float64" else pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def _spread(g: dict, key: str) -> dict:
    sp = g.get(key) or {}
    return {f"{key}_{s}": sp.get(s) for s in SPREAD}


def runs_frame(entries: Sequence[dict]) -> pd.DataFrame:
    """One row per run: every scalar field of its facts entry, and its load state."""
    rows = [{**{k: v for k, v in e.items() if not isinstance(v, (dict, list))},
             "load_state": (e.get("load") or {}).get("state"),
             "over_capacity": (e.get("load") or {}).get("over_capacity")} for e in entries]
    return records_frame(rows)


def scenarios_frame(groups: Sequence[dict]) -> pd.DataFrame:
    """One row per configuration over its repeated runs (what the scenarios table shows)."""
    rows = [{"scenario": g["name"], "role": g["role"], "transport": g["transport"], "instances": g["instances"],
             "target_rate_per_s": g["target_rate_per_s"], "runs": g["runs"], "passed": g["passed"],
             "expected": g["expected"], "delivered": g["delivered"], "exactly_once": g["exactly_once"],
             **_spread(g, "p50_ms"), **_spread(g, "p99_ms"),
             "latency_samples_max": (g.get("latency_samples") or {}).get("max"), "run_ids": list(g["run_ids"])}
            for g in groups]
    cols = ["scenario", "role", "transport", "instances", "target_rate_per_s", "runs", "passed", "expected",
            "delivered", "exactly_once", *(f"{k}_{s}" for k in ("p50_ms", "p99_ms") for s in SPREAD),
            "latency_samples_max", "run_ids"]
    df = records_frame(rows, cols)
    if "latency_samples_max" in df and str(df["latency_samples_max"].dtype) == "float64" and len(df):
        df["latency_samples_max"] = df["latency_samples_max"].round().astype("Int64")
    return df


def faults_frame(groups: Sequence[dict]) -> pd.DataFrame:
    """One row per fault and transport over its repeated runs (what the failover table shows)."""
    rows = [{"fault": g["fault"] or g["name"], "transport": g["transport"], "runs": g["runs"], "passed": g["passed"],
             "expected": g["expected"], "delivered": g["delivered"],
             "lost_per_run": [None if v is None else int(v) for v in g["lost"]["values"]],
             **_spread(g, "lost"), **_spread(g, "lost_per_outage_s"), **_spread(g, "recovery_ms"),
             **_spread(g, "late_max_ms"), "outage_s": g.get("outage_s"), "run_ids": list(g["run_ids"])}
            for g in groups]
    cols = ["fault", "transport", "runs", "passed", "expected", "delivered", "lost_per_run",
            *(f"{k}_{s}" for k in ("lost", "lost_per_outage_s", "recovery_ms", "late_max_ms") for s in SPREAD),
            "outage_s", "run_ids"]
    return records_frame(rows, cols)


def comparisons_frame(pairs: Sequence[dict]) -> pd.DataFrame:
    """One row per comparison pair and metric, the pair's label as ``scenario``."""
    from fanout.report.compare import COLUMNS

    rows = [dict(r, scenario=pair["label"]) for pair in pairs for r in pair["rows"]]
    return records_frame(rows, COLUMNS)


def capacity_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """One row per capacity-planning row: the seed's claim, what was measured, the load state."""
    out = [{**{k: v for k, v in d.items() if not isinstance(v, (dict, list))},
            "load_state": (d.get("load") or {}).get("state"),
            "over_capacity": (d.get("load") or {}).get("over_capacity"),
            "processes": (d.get("hosting") or {}).get("processes")} for d in rows]
    cols = list(dict.fromkeys(k for d in out for k in d))
    return records_frame(out, cols)


def report_tables(rep) -> Tables:
    """The report-level tables of a :class:`~fanout.report.context.Report` (see the module)."""
    def groups() -> list[dict]:
        return rep.facts["repeats"]["groups"]

    return Tables({
        "runs": lambda: runs_frame(rep.facts["runs"]),
        "scenarios": lambda: scenarios_frame([g for g in groups() if g["role"] in ("scenario", "capacity")]),
        "faults": lambda: faults_frame([g for g in groups() if g["faulted"]]),
        "comparisons": lambda: comparisons_frame(rep.facts["comparisons"]["pairs"]),
        "capacity": lambda: capacity_frame(rep.facts["capacity"]),
    }, owner="the report")


__all__ = ["report_tables", "records_frame", "runs_frame", "scenarios_frame", "faults_frame", "comparisons_frame",
           "capacity_frame"]
