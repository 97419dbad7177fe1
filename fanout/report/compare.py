"""Two runs (or two reports' runs) side by side: each metric, the delta, its 95 % interval, and
whether B regressed beyond the stated threshold (``fanout compare A B``; the report's
comparisons use the same rows).

B *regresses* on a latency statistic when it is more than ``threshold_pct`` higher than A's
**and** the interval of the difference lies above zero (a difference within noise never
fails; a percentile either run's samples do not carry is not compared at all, see
:func:`fanout.analysis.latency.carried`); on delivery when its delivery rate is more than
``max_delivery_drop`` percentage points below A's; and when A passed its verdict and B did not.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fanout import formatting as fmt
from fanout.analysis import latency_samples
from fanout.analysis.latency import carried, quantile_of
from fanout.report.stats import diff_interval, within_noise

LATENCY_METRICS = (("avg", "avg_ms", "average latency (ms)"), ("p50", "p50_ms", "p50 latency (ms)"),
                   ("p99", "p99_ms", "p99 latency (ms)"))
THRESHOLD_PCT = 20.0
MAX_DELIVERY_DROP = 0.5
COLUMNS = ["scenario", "metric", "A", "B", "delta", "delta_pct", "ci_low", "ci_high", "reading", "regressed"]


@dataclass(frozen=True)
class Comparison:
    rows: pd.DataFrame
    threshold_pct: float
    max_delivery_drop: float
    unmatched: tuple[str, ...] = ()

    @property
    def regressed(self) -> bool:
        return bool(self.rows["regressed"].any()) if len(self.rows) else False


def latency_ms(run) -> np.ndarray:
    """Headline latency samples (ms from due time), in arrival order."""
    return latency_samples(run.record)["lat_ms"].to_numpy()


def compare_pair(a, b, *, threshold_pct: float = THRESHOLD_PCT, max_delivery_drop: float = MAX_DELIVERY_DROP,
                 label: str | None = None) -> list[dict]:
    """The rows for one pair of :class:`~fanout.report.runs.ScenarioRun`."""
    label = label or (a.name if a.name == b.name else f"{a.name} → {b.name}")
    la, lb = latency_ms(a), latency_ms(b)
    rows = []
    da, db = a.findings.overall["delivery_pct"], b.findings.overall["delivery_pct"]
    drop = da - db
    rows.append({"scenario": label, "metric": "delivery (%)", "A": da, "B": db, "delta": db - da,
                 "delta_pct": None, "ci_low": None, "ci_high": None,
                 "reading": "exact counts" if drop <= max_delivery_drop else "lower",
                 "regressed": drop > max_delivery_drop})
    for stat, key, name in LATENCY_METRICS:
        va, vb = a.findings.latency.get(key), b.findings.latency.get(key)
        q = quantile_of(key)
        if q is not None and not carried(q, min(len(la), len(lb))):
            n = min(len(la), len(lb))
            rows.append({"scenario": label, "metric": name,
                         "A": fmt.percentile(None, len(la), key, short=True) if not carried(q, len(la)) else va,
                         "B": fmt.percentile(None, len(lb), key, short=True) if not carried(q, len(lb)) else vb,
                         "delta": None, "delta_pct": None, "ci_low": None, "ci_high": None,
                         "reading": fmt.percentile(None, n, key), "regressed": False})
            continue
        delta, lo, hi = diff_interval(la, lb, stat)
        rel = (vb - va) / va * 100.0 if va and vb is not None else None
        noise = within_noise(lo, hi)
        reading = "within noise" if noise else ("higher" if (delta or 0) > 0 else "lower")
        rows.append({"scenario": label, "metric": name, "A": va, "B": vb, "delta": delta, "delta_pct": rel,
                     "ci_low": lo, "ci_high": hi, "reading": reading,
                     "regressed": bool(not noise and rel is not None and rel > threshold_pct and (lo or 0) > 0)})
    rows.append({"scenario": label, "metric": "verdict", "A": a.findings.status, "B": b.findings.status,
                 "delta": None, "delta_pct": None, "ci_low": None, "ci_high": None,
                 "reading": "same" if a.findings.passed == b.findings.passed else "changed",
                 "regressed": a.findings.passed and not b.findings.passed})
    return rows


def compare_sets(a_runs: Sequence, b_runs: Sequence, *, threshold_pct: float = THRESHOLD_PCT,
                 max_delivery_drop: float = MAX_DELIVERY_DROP) -> Comparison:
    """Runs matched by scenario name (one run each side: matched whatever their names)."""
    if len(a_runs) == 1 and len(b_runs) == 1:
        pairs, unmatched = [(a_runs[0], b_runs[0])], ()
    else:
        by_b = {r.name: r for r in b_runs}
        pairs = [(a, by_b[a.name]) for a in a_runs if a.name in by_b]
        unmatched = tuple(sorted({r.name for r in a_runs} ^ set(by_b)))
    rows = [row for a, b in pairs for row in compare_pair(a, b, threshold_pct=threshold_pct,
                                                          max_delivery_drop=max_delivery_drop)]
    return Comparison(pd.DataFrame(rows, columns=COLUMNS), threshold_pct, max_delivery_drop, unmatched)


def comparison_pairs(runs: Sequence) -> list[tuple]:
    """The seed's 3 vs 5 instances (standard vs stress), and each scenario against itself on
    another transport (``standard`` vs ``standard-streams``)."""
    by = {r.name: r for r in runs}
    pairs = []
    if "standard" in by and "stress" in by:
        pairs.append(("instances: 3 (standard) vs 5 (stress)", by["standard"], by["stress"]))
    for r in runs:
        base = r.name.removesuffix(f"-{r.transport}")
        if base != r.name and base in by and by[base].transport != r.transport:
            pairs.append((f"transport: {by[base].transport} vs {r.transport} ({base})", by[base], r))
    return pairs


def display_frame(c: Comparison) -> pd.DataFrame:
    """The comparison as display strings (for the terminal and the report)."""
    def num(v, fmt="{:.3f}"):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else (
            v if isinstance(v, str) else fmt.format(v))

    df = c.rows
    return pd.DataFrame({
        "scenario": df["scenario"], "metric": df["metric"], "A": [num(v) for v in df["A"]],
        "B": [num(v) for v in df["B"]], "B − A": [num(v, "{:+.3f}") for v in df["delta"]],
        "change": [num(v, "{:+.1f}%") for v in df["delta_pct"]],
        "95% interval of B − A": ["" if lo is None or np.isnan(lo) else f"{lo:+.3f} … {hi:+.3f}"
                                  for lo, hi in zip(df["ci_low"], df["ci_high"])],
        "reading": df["reading"], "regressed": ["REGRESSED" if v else "no" for v in df["regressed"]],
    })


__all__ = ["Comparison", "comparison_pairs", "compare_pair", "compare_sets", "display_frame", "latency_ms", "THRESHOLD_PCT",
           "MAX_DELIVERY_DROP"]
