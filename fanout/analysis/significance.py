"""How sure a comparison of repeated runs is: one number per run per side, a rank test, a shift
with its interval, a correction for the number of comparisons, and a reading.

Latency samples inside one run are not independent (a slow moment slows many deliveries at
once), and what a team lead needs to know is whether *another run* of the same setup would
differ, so each run gives **one number per metric** (its p50, its loss, ...; :func:`run_metrics`)
and a comparison sets the base runs' numbers against the new runs' numbers, as Go's benchstat
and asv do.

* **Test**: two-sided Mann–Whitney U (:func:`scipy.stats.mannwhitneyu`): exact when the runs
  hold no ties, an exact permutation test when they do and the permutations are few
  (≤ :data:`EXACT_PERMUTATIONS` splits of the pooled mid-ranks, each enumerated), the normal
  approximation with tie correction otherwise.
* **Shift**: the Hodges–Lehmann estimate, the median of all ``m × n`` pairwise differences
  ``new_j − base_i``, with its distribution-free interval: the ``C``-th smallest and ``C``-th
  largest pairwise differences, ``C`` the lower ``α/2`` quantile of the exact null distribution
  of U (:func:`u_distribution`), as Hollander & Wolfe and R's ``wilcox.test(conf.int=TRUE)``
  do. With few runs no ``C`` reaches the nominal level; the interval is then the whole range of
  the differences and ``confidence`` says what it covers (R does the same).
* **Family**: Holm's step-down correction (:func:`holm`) over **the comparisons of one metric**
  shown together (e.g. p50 across every scenario compared), never over every metric at once:
  with 5 runs per side the smallest exact two-sided p is 2 / C(10, 5) = 2/252 ≈ 0.0079, so a
  family of twelve (α/12 ≈ 0.0042) could never reach significance however large the change.
  :func:`runs_for_level` says how many runs per side a family's strictest level needs.
* **Threshold**: what counts as a change worth a word, in the metric's unit: for latency and
  recovery time :data:`THRESHOLD_PCT` % of the base runs' median; for loss
  :data:`LOSS_THRESHOLD_PP` percentage points of the expected deliveries (for lost events, the
  same share of the base runs' median expected deliveries). A base median of 0 makes a relative
  threshold 0: only "no change at all" is SAME.

**Readings** (lower is better for every metric here: latency, loss, recovery time):

* ``INCONCLUSIVE`` when either side has fewer than :data:`MIN_RUNS` runs, or the interval covers
  less than its nominal confidence (so 1 or 2 runs per side never read SAME by accident);
* ``SAME`` when the interval lies inside ``±threshold`` (bounds included): whatever the
  difference is, it is smaller than the threshold at the stated confidence;
* ``WORSE`` / ``BETTER`` when the Holm-adjusted p is below α, the interval lies wholly above /
  below zero, and the shift exceeds the threshold;
* ``INCONCLUSIVE`` otherwise: the interval is wider than the threshold, or the change is not
  significant after the correction: add runs. :func:`runs_needed` says roughly how many per side
  (the largest of: :data:`MIN_RUNS`, one more than now, the runs the family's strictest Holm
  level needs, and the runs that would bring the interval's wider side within reach — inside
  ±threshold for a shift below the threshold, clear of zero for one above — if it shrinks as
  1/√n); a rough guide, not a promise; ``None`` beyond :data:`MAX_RUNS_ESTIMATE` or when the
  shift sits on the threshold.

Everything here is pure: lists of numbers in, dataclasses out.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

ALPHA = 0.05
CONFIDENCE = 0.95
THRESHOLD_PCT = 20.0
LOSS_THRESHOLD_PP = 0.1
MIN_RUNS = 3
MAX_RUNS_ESTIMATE = 50
EXACT_PERMUTATIONS = 20_000

SAME, BETTER, WORSE, INCONCLUSIVE = "SAME", "BETTER", "WORSE", "INCONCLUSIVE"
READINGS = (SAME, BETTER, WORSE, INCONCLUSIVE)


@dataclass(frozen=True)
class Metric:
    """One number per run: ``key`` in :func:`run_metrics`, how it is shown, and its threshold
    (``relative``: a share of the base median; else ``loss``: percentage points of expected
    deliveries)."""

    key: str
    label: str
    unit: str
    threshold: str  # "relative" | "loss_pp" | "loss_events"


METRICS: tuple[Metric, ...] = (
    Metric("p50_ms", "p50 latency", "ms", "relative"),
    Metric("p99_ms", "p99 latency", "ms", "relative"),
    Metric("lost", "lost", "events", "loss_events"),
    Metric("loss_pct", "loss", "%", "loss_pp"),
    Metric("recovery_ms", "recovery time", "ms", "relative"),
)
METRIC_KEYS = tuple(m.key for m in METRICS)


def run_metrics(findings) -> dict[str, float | None]:
    """One number per metric for one run (``None``: the run gives none). p50/p99 only where the
    run's latency samples carry the percentile (:func:`fanout.analysis.latency.carried`: a
    ``None`` in ``findings.latency``); loss from ``findings.overall`` (``missing`` of
    ``expected``); recovery time, for a fault run, the longest of its faults' recoveries (fault
    end → first delivery to every touched receiver, ``findings.losses.faults``)."""
    from fanout.analysis.latency import carried

    lat, ov = findings.latency, findings.overall
    out: dict[str, float | None] = {}
    for key, q in (("p50_ms", 50.0), ("p99_ms", 99.0)):
        v = lat.get(key)
        out[key] = float(v) if v is not None and carried(q, int(lat.get("count") or 0)) else None
    expected = int(ov.get("expected") or 0)
    out["lost"] = float(ov["missing"]) if expected else None
    out["loss_pct"] = 100.0 * float(ov["missing"]) / expected if expected else None
    out["expected"] = float(expected) if expected else None
    faults = getattr(getattr(findings, "losses", None), "faults", None)
    rec = faults["recovery_ms"].dropna() if faults is not None and len(faults) else ()
    out["recovery_ms"] = float(max(rec)) if len(rec) else None
    return out


# ------------------------------------------------------------------ the exact null distribution

@lru_cache(maxsize=256)
def u_distribution(m: int, n: int) -> np.ndarray:
    """P(U = k), k = 0 … m·n, for U the Mann–Whitney count of two samples of sizes m and n without
    ties under the null: the coefficients of the Gaussian binomial ``[m+n choose m]_q`` divided
    by C(m+n, m), built one factor ``(1 − q^(n+i)) / (1 − q^i)`` at a time (every partial product
    is itself a Gaussian binomial, so no coefficient goes negative)."""
    if m < 0 or n < 0:
        raise ValueError("sample sizes must be ≥ 0")
    size = m * n + 1
    p = np.zeros(size, dtype=float)
    p[0] = 1.0
    for i in range(1, m + 1):
        a = n + i
        if a < size:
            p[a:] = p[a:] - p[:-a].copy()
        pad = (-size) % i
        blocks = np.concatenate([p, np.zeros(pad)]).reshape(-1, i)
        p = np.cumsum(blocks, axis=0).reshape(-1)[:size]
    return p / p.sum()


def min_p_two_sided(m: int, n: int) -> float:
    """The smallest two-sided exact p two samples of sizes m and n can give: 2 / C(m+n, m)."""
    return min(1.0, 2.0 / math.comb(m + n, m))


def runs_for_level(level: float, limit: int = 1_000) -> int | None:
    """The smallest n such that n runs per side can give an exact two-sided p below ``level``."""
    for k in range(1, limit + 1):
        if min_p_two_sided(k, k) < level:
            return k
    return None


def mann_whitney_p(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Mann–Whitney U p (see the module doc for the method used)."""
    from scipy.stats import mannwhitneyu, rankdata

    x, y = np.asarray(new, dtype=float), np.asarray(base, dtype=float)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("both sides need at least one value")
    pooled = np.concatenate([x, y])
    if len(np.unique(pooled)) == len(pooled):
        return float(mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue)
    if math.comb(len(pooled), len(x)) > EXACT_PERMUTATIONS:
        return float(mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").pvalue)
    # ties, few permutations: every split of the pooled mid-ranks, as far from the centre as observed
    ranks = rankdata(pooled)
    sums = ranks[np.array(list(itertools.combinations(range(len(pooled)), len(x))))].sum(axis=1)
    centre = len(x) * (len(pooled) + 1) / 2.0
    observed = abs(ranks[: len(x)].sum() - centre)
    return float(min(1.0, np.mean(np.abs(sums - centre) >= observed - 1e-9)))


def hodges_lehmann(base: Sequence[float], new: Sequence[float],
                   confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(shift, low, high, achieved confidence): the median of the pairwise differences
    ``new_j − base_i`` and its distribution-free interval (module doc)."""
    b, a = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    m, n = len(b), len(a)
    if m == 0 or n == 0:
        raise ValueError("both sides need at least one value")
    d = np.sort((a[None, :] - b[:, None]).reshape(-1))
    cdf = np.cumsum(u_distribution(m, n))
    half = (1.0 - confidence) / 2.0
    # R's qwilcox(α/2): the smallest c with P(U ≤ c) ≥ α/2; at least 1 (the extreme differences)
    c = max(int(np.searchsorted(cdf, half - 1e-12)), 1)
    achieved = 1.0 - 2.0 * (float(cdf[c - 1]) if c >= 1 else 0.0)
    return float(np.median(d)), float(d[c - 1]), float(d[m * n - c]), max(0.0, min(1.0, achieved))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p values, in the given order; ``None`` entries (nothing
    tested) are not in the family and stay ``None``."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    k = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (k - rank) * float(pvalues[i])))
        out[i] = running
    return out


# ------------------------------------------------------------------ one comparison

@dataclass(frozen=True)
class Assessment:
    """One comparison of one metric: the numbers and the reading. ``threshold`` is in the
    metric's unit; ``confidence`` is what the interval covers (below :data:`CONFIDENCE` with
    few runs)."""

    base_n: int
    new_n: int
    base_median: float | None
    new_median: float | None
    shift: float | None
    low: float | None
    high: float | None
    confidence: float | None
    p: float | None
    p_holm: float | None
    threshold: float
    family: int
    reading: str
    why: str
    runs_needed: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _numbers(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([float(v) for v in values if v is not None and not math.isnan(float(v))], dtype=float)


def runs_needed(n: int, shift: float, low: float, high: float, threshold: float, level: float) -> int | None:
    """Roughly how many runs per side could settle it (module doc), or None."""
    need = max(MIN_RUNS, n + 1, runs_for_level(level) or MAX_RUNS_ESTIMATE + 1)
    reach, s = max(shift - low, high - shift), abs(shift)  # the interval's wider side
    target = s if s > threshold else threshold - s
    if reach > 0 and target > 0 and n > 0:
        need = max(need, math.ceil(n * (reach / target) ** 2))
    elif reach > 0:
        return None
    return need if need <= MAX_RUNS_ESTIMATE else None


def assess_family(pairs: Sequence[tuple[Sequence[float | None], Sequence[float | None], float]], *,
                  alpha: float = ALPHA, confidence: float = CONFIDENCE) -> list[Assessment]:
    """Compare each ``(base values, new values, threshold)`` of one family (one metric across
    the comparisons shown), Holm-corrected together. A side without a number (``None`` or
    empty) gives an INCONCLUSIVE row with no test."""
    prepared = [(_numbers(b), _numbers(n), float(t)) for b, n, t in pairs]
    ps = [mann_whitney_p(b, n) if len(b) and len(n) else None for b, n, _t in prepared]
    adjusted = holm(ps)
    family = sum(p is not None for p in ps)
    out = []
    for (b, n, thr), p, ph in zip(prepared, ps, adjusted):
        out.append(_assess(b, n, thr, p, ph, family, alpha, confidence))
    return out


def _assess(b: np.ndarray, n: np.ndarray, thr: float, p: float | None, ph: float | None, family: int,
            alpha: float, confidence: float) -> Assessment:
    bm = float(np.median(b)) if len(b) else None
    nm = float(np.median(n)) if len(n) else None
    base = dict(base_n=len(b), new_n=len(n), base_median=bm, new_median=nm, threshold=thr, family=family)
    if p is None:
        side = "base" if not len(b) else "new"
        return Assessment(**base, shift=None, low=None, high=None, confidence=None, p=None, p_holm=None,
                          reading=INCONCLUSIVE, why=f"no {side} run gives this number", runs_needed=None)
    shift, lo, hi, achieved = hodges_lehmann(b, n, confidence)
    level = alpha / max(family, 1)
    nums = dict(shift=shift, low=lo, high=hi, confidence=achieved, p=p, p_holm=ph)
    needed = runs_needed(min(len(b), len(n)), shift, lo, hi, thr, level)
    if min(len(b), len(n)) < MIN_RUNS or achieved < confidence - 1e-9:
        why = (f"too few runs ({len(b)}+{len(n)}; a reading needs at least {MIN_RUNS} per side and an interval "
               f"of {confidence:.0%} confidence, this one covers {achieved:.0%})")
        return Assessment(**base, **nums, reading=INCONCLUSIVE, why=why, runs_needed=needed)
    if -thr <= lo and hi <= thr:
        return Assessment(**base, **nums, reading=SAME, why="the interval lies inside ±threshold", runs_needed=None)
    beyond = lo > 0 or hi < 0
    if ph is not None and ph < alpha and beyond and abs(shift) > thr:
        return Assessment(**base, **nums, reading=WORSE if shift > 0 else BETTER,
                          why="significant after Holm, the interval excludes zero and the shift exceeds the threshold",
                          runs_needed=None)
    if beyond and abs(shift) > thr:
        why = f"a shift beyond the threshold, but p after Holm ({ph:.3g}) is not below {alpha:g}: add runs"
    else:
        why = "the interval is wider than the threshold: add runs"
    return Assessment(**base, **nums, reading=INCONCLUSIVE, why=why, runs_needed=needed)


__all__ = ["ALPHA", "CONFIDENCE", "THRESHOLD_PCT", "LOSS_THRESHOLD_PP", "MIN_RUNS", "MAX_RUNS_ESTIMATE",
           "EXACT_PERMUTATIONS", "SAME", "BETTER", "WORSE", "INCONCLUSIVE", "READINGS", "Metric", "METRICS",
           "METRIC_KEYS", "Assessment", "run_metrics", "u_distribution", "min_p_two_sided", "runs_for_level",
           "mann_whitney_p", "hodges_lehmann", "holm", "runs_needed", "assess_family"]
