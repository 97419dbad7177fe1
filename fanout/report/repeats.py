"""Repeated runs summarised: one number per run per metric, and across the runs of one
configuration (one scenario name) their median and spread.

A run on a shared machine varies more from one run to the next than within itself, so the report
states each configuration's statistics over its repeated runs (``fanout report --repeat K``; full
mode runs each K = 5 times, interleaved) — the median and the range of the per-run numbers, never
a pooled sample — and a fault's loss both per run and as a rate: events lost per second of the
fault's window per receiver it touched, at the run's rate (a number that carries over to another
outage length and fleet size). Everything here is read from the runs' facts (report.json)."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

#: the per-run metrics summarised across a configuration's runs (key in the spread dict, what it is)
METRICS = (("p50_ms", "p50 latency (ms)"), ("p99_ms", "p99 latency (ms)"), ("lost", "lost events"),
           ("lost_pct", "lost (% of expected)"), ("recovery_ms", "recovery after the fault (ms)"),
           ("late_max_ms", "latency of the latest event sent during the fault (ms)"),
           ("lost_per_outage_s", "lost per second of fault per receiver"))


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"values": per run (None where the run has no number), "n", "median", "min", "max"}``;
    the summary over the runs that have a number (Nones when none has)."""
    vals = [float(v) for v in values if v is not None]
    return {"values": [None if v is None else float(v) for v in values], "n": len(vals),
            "median": statistics.median(vals) if vals else None, "min": min(vals) if vals else None,
            "max": max(vals) if vals else None}


def lost_per_outage_s(entry: dict) -> float | None:
    """Events lost per second of a fault's window per receiver it touched (a fault run's loss in
    units that carry over: × outage seconds × receivers ≈ what another outage loses at this rate);
    None for a run without a timed fault."""
    secs = sum(float(f.get("outage_s") or 0.0) * int(f.get("receivers") or 0) for f in entry.get("faults") or [])
    if not secs:
        return None
    return sum(int(f.get("lost") or 0) for f in entry["faults"]) / secs


def per_run(entry: dict) -> dict[str, Any]:
    """One number per metric for one run (its facts entry)."""
    late = (entry.get("lateness") or {}).get("window_max_ms")
    return {"p50_ms": entry.get("latency_p50_ms"), "p99_ms": entry.get("latency_p99_ms"),
            "lost": int(entry.get("lost") or 0), "lost_pct": float(entry.get("lost_pct") or 0.0),
            "recovery_ms": entry.get("recovery_ms") if entry.get("faulted") else None,
            "late_max_ms": late if entry.get("faulted") else None,
            "lost_per_outage_s": lost_per_outage_s(entry) if entry.get("faulted") else None}


def groups(entries: Sequence[dict]) -> list[dict[str, Any]]:
    """One group per configuration (scenario name), in the order of first appearance: its runs
    (ids, rounds, passed), its load, and each metric's :func:`spread` over the runs."""
    by: dict[str, list[dict]] = {}
    for e in entries:
        by.setdefault(e["name"], []).append(e)
    out = []
    for name, runs in by.items():
        first = runs[0]
        nums = [per_run(e) for e in runs]
        out.append({
            "name": name, "role": first.get("role"), "transport": first.get("transport"),
            "fault": first.get("fault") if first.get("faulted") else None, "faulted": bool(first.get("faulted")),
            "instances": first.get("instances"), "receivers": first.get("receivers"),
            "target_rate_per_s": first.get("target_rate_per_s"), "runs": len(runs),
            "run_ids": [e["run_id"] for e in runs], "passed": sum(1 for e in runs if e.get("passed")),
            "expected": sum(int(e.get("expected") or 0) for e in runs),
            "delivered": sum(int(e.get("delivered") or 0) for e in runs),
            "exactly_once": sum(1 for e in runs if e.get("exactly_once")),
            "latency_samples": spread([e.get("latency_samples") for e in runs]),
            "outage_s": sum(float(f.get("outage_s") or 0.0) for f in first.get("faults") or []) or None,
            **{key: spread([n[key] for n in nums]) for key, _what in METRICS},
        })
    return out


def facts(entries: Sequence[dict], rounds: int) -> dict[str, Any]:
    """``report.json``'s ``repeats``: how many times each configuration ran (``k``: the most runs
    of one name; ``rounds``: what the report was asked for) and every group."""
    gs = groups(entries)
    repeated = [g for g in gs if g["role"] != "soak"]
    return {"rounds": int(rounds), "k_min": min((g["runs"] for g in repeated), default=0),
            "k_max": max((g["runs"] for g in repeated), default=0), "groups": gs,
            "metrics": {k: what for k, what in METRICS}}


__all__ = ["spread", "per_run", "groups", "facts", "lost_per_outage_s", "METRICS"]
