"""The soak: the seed's top capacity row held for long (``scenarios/soak.yaml``), judged over time.

:func:`facts` puts, per soak run, the series (:func:`fanout.analysis.soak.soak_series`), the
slopes and the drift sentences (:func:`fanout.analysis.soak.soak_drift`) and the reconnects into
report.json (``facts.soak``); the section (:func:`fanout.report.sections.soak`), its tables here
and its figure (:mod:`fanout.report.plots_soak`) read only those.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from fanout.analysis.findings import _plain
from fanout.analysis.soak import (
    CPU_PREFIX,
    RSS_PREFIX,
    SOAK_INTERVAL_S,
    number,
    process_targets,
    reconnect_rows,
    soak_drift,
    soak_series,
    thresholds,
)
from fanout.report.runs import FULL_SOAK_MIN_S, SOAK_QUICK_S

#: the per-interval table shows at most this many rows (every k-th interval, and the worst p99's)
TABLE_ROWS = 30
#: the reconnects table lists at most this many (the count says how many there were)
RECONNECT_ROWS = 20
MIB = 1024 * 1024


def run_facts(run, entry: dict[str, Any]) -> dict[str, Any]:
    """One soak run's facts: ``entry`` is its run facts (:func:`fanout.report.facts.run_facts`)."""
    rec = run.record
    series = soak_series(rec, SOAK_INTERVAL_S)
    drift = soak_drift(series)
    procs = process_targets(series)
    rows = []
    for r in series.to_dict(orient="records"):
        row = {k: v for k, v in r.items() if not k.startswith((CPU_PREFIX, RSS_PREFIX))}
        row["rss_mib"] = {p: r[f"{RSS_PREFIX}{p}"] for p in procs}
        row["cpu_pct"] = {p: r[f"{CPU_PREFIX}{p}"] for p in procs}
        rows.append(row)
    recon = reconnect_rows(rec)
    sc = run.findings.scenario
    bots = int(entry.get("receivers") or 0)
    sampling = (rec.environment or {}).get("resource_sampling") or {}
    refused = {k: v for k, v in (sampling.get("client_list") or {}).items() if v != "ok"}
    omem = [r["omem_max_bytes"] for r in rows if r["omem_max_bytes"] is not None and r["omem_max_bytes"] >= 0]
    carried = [r for r in rows if r["p99_ms"] is not None and not _nan(r["p99_ms"])]
    worst = max(carried, key=lambda r: r["p99_ms"], default=None)
    file_duration = (run.changes.get("duration_s") or (None, None))[0] if run.changes else None
    shown = max(1, math.ceil(len(rows) / TABLE_ROWS))
    return _plain({
        "name": run.name, "run_id": rec.run_id, "transport": run.transport, "passed": entry["passed"],
        "duration_s": float(sc.get("duration_s") or 0), "file_duration_s": file_duration,
        "rate_per_s": sc.get("rate_per_s"), "bots": bots,
        "offered_deliveries_per_s": (sc.get("rate_per_s") or 0) * bots,
        "hosting": entry["hosting"], "interval_s": series.attrs.get("interval_s", SOAK_INTERVAL_S),
        "intervals": len(rows), "whole_intervals": int((series["span_s"] >= series.attrs.get("interval_s", 0)).sum()),
        "recorded_as_parts": _recorded_as_parts(rec),
        "sample_interval_s": sampling.get("interval_s"), "coarse_after_s": sampling.get("coarse_after_s"),
        "coarse_interval_s": sampling.get("coarse_interval_s"),
        "processes": procs, "series": rows, "table_every": shown,
        "slopes": drift.slopes, "drift": drift.drift, "drifting": [s["label"] for s in drift.drifting],
        "reconnects": recon.to_dict(orient="records"), "reconnects_total": len(recon),
        "omem_max_bytes": max(omem) if omem else None, "omem_max_mib": max(omem) / MIB if omem else None,
        "omem_refused": refused,
        "p99_worst_ms": worst["p99_ms"] if worst else None, "p99_worst_t_s": worst["t_s"] if worst else None,
        "deliveries": int(series["deliveries"].sum()),
        "missing": int(series["missing"].sum()),
    })


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def facts(rep, entries: list[dict]) -> dict[str, Any]:
    """report.json's ``facts.soak``: the rule's constants, the lengths, and one entry per soak run."""
    by_id = {e["run_id"]: e for e in entries}
    from fanout.lab.summary import SERIES_DIGITS
    from fanout.percentiles import min_samples

    return {"runs": [run_facts(r, by_id[r.record.run_id]) for r in rep.soaks], "thresholds": thresholds(),
            "quick_s": SOAK_QUICK_S, "full_min_s": FULL_SOAK_MIN_S, "full_min_min": FULL_SOAK_MIN_S / 60,
            "series_digits": SERIES_DIGITS, "p99_min_samples": min_samples(99.0), "reconnect_rows": RECONNECT_ROWS}


# ------------------------------------------------------------------ tables (display strings from facts)


def _num(v, digits: int = 2, sign: bool = False) -> str:
    if v is None or _nan(v):
        return "n/a"
    text = f"{abs(v):,.{digits}f}"
    return (("+" if v >= 0 else "−") if sign else ("" if v >= 0 else "−")) + text


def slopes_table(k: dict) -> pd.DataFrame:
    """One row per series fitted: slope per hour, its 95 % interval, the change over the run, the reading."""
    recs = []
    for s in k["slopes"]:
        unit = s["unit"]
        fitted = s["slope_per_h"] is not None
        recs.append({"series": s["label"], "intervals": s["n"],
                     "slope per hour": f"{number(s['slope_per_h'], True)} {unit}/h" if fitted else "n/a",
                     "95 % interval": f"{number(s['lo_per_h'], True)} to {number(s['hi_per_h'], True)}" if fitted
                     else "n/a",
                     "change over the run": f"{number(s['change'], True)} {unit}" if fitted else "n/a",
                     "mean": f"{number(s['mean'])} {unit}" if s["mean"] is not None else "n/a",
                     "reading": s["reading"]})
    return pd.DataFrame(recs)


def series_table(k: dict) -> pd.DataFrame:
    """Every ``table_every``-th interval (and the one with the worst p99), a column per measure."""
    rows = k["series"]
    keep = set(range(0, len(rows), k["table_every"]))
    keep |= {i for i, r in enumerate(rows) if k["p99_worst_t_s"] is not None and r["t_s"] == k["p99_worst_t_s"]}
    keep |= {i for i, r in enumerate(rows) if r.get("missing") or r.get("reconnects")}  # never skipped
    recs = []
    for i in sorted(keep):
        r = rows[i]
        rss = [v for v in r["rss_mib"].values() if v is not None]
        recs.append({"t (s)": _num(r["t_s"], 1), "deliveries/s": _num(r["deliveries_per_s"], 0),
                     "p50 (ms)": _pctl(r, "p50_ms"), "p99 (ms)": _pctl(r, "p99_ms"),
                     "max (ms)": _num(r["max_ms"], 3),
                     "RSS, largest process (MiB)": _num(max(rss), 1) if rss else "n/a",
                     "Redis memory (MiB)": _num(r["redis_mib"], 2),
                     "Redis CPU %": _num(r["redis_cpu_pct"], 1),
                     "largest output buffer (KiB)": "not readable" if r["omem_max_bytes"] == -1
                     else _num(None if r["omem_max_bytes"] is None else r["omem_max_bytes"] / 1024, 1),
                     "reconnects": r["reconnects"], "missing": r.get("missing", 0)})
    return pd.DataFrame(recs)


def _pctl(r: dict, key: str) -> str:
    """A percentile cell: the number, or ``— (n=…)`` where the interval's samples do not carry it."""
    from fanout.formatting import percentile

    if not r["lat_count"]:
        return "n/a"
    shown = percentile(r[key], r["lat_count"], key, short=True)
    return shown if shown.startswith("—") else _num(r[key], 3)


def _recorded_as_parts(rec) -> bool:
    """Whether the run wrote its rows as parts while it went (its recorder's stats say so; an
    archive may keep the summary and not the parts themselves)."""
    stats = (rec.environment or {}).get("recorder") or {}
    per = stats.values() if stats and all(isinstance(v, dict) for v in stats.values()) else [stats]
    return rec.parts is not None or any(int((v or {}).get("parts") or 0) > 0 for v in per)


def reconnects_table(k: dict) -> pd.DataFrame:
    return pd.DataFrame([{"instance": r["instance"], "down at (s)": _num(r["t_down_s"], 3),
                          "up at (s)": _num(r["t_up_s"], 3) if r["t_up_s"] is not None else "never",
                          "why": r["why"]} for r in k["reconnects"][:RECONNECT_ROWS]])


__all__ = ["facts", "run_facts", "slopes_table", "series_table", "reconnects_table", "TABLE_ROWS", "RECONNECT_ROWS"]
