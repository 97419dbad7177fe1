"""Differences between two runs with their uncertainty: a 95 % interval from a block bootstrap.

Latency samples within one run are not independent (a slow moment slows many deliveries at
once), so resampling single samples would make every difference look significant. The samples
of each run are cut, in time order, into :data:`BLOCKS` contiguous blocks, and the bootstrap
resamples blocks; the interval is the 2.5th–97.5th percentile of the resampled differences. An
interval that holds zero reads "within noise". It covers the variation inside each run, not the
variation between repeated runs (which only repeated runs can measure). A percentile either
sample does not carry (:func:`fanout.analysis.latency.carried`) has no interval: Nones.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fanout.analysis.latency import carried

BLOCKS = 20
RESAMPLES = 400
SEED = 20251017

#: the percentile each statistic is (the mean is none)
QUANTILES: dict[str, float] = {"p50": 50.0, "p95": 95.0, "p99": 99.0}

STATISTICS: dict[str, Callable[[np.ndarray], float]] = {
    "avg": lambda x: float(np.mean(x)),
    "p50": lambda x: float(np.percentile(x, 50)),
    "p95": lambda x: float(np.percentile(x, 95)),
    "p99": lambda x: float(np.percentile(x, 99)),
}


def _blocks(x: np.ndarray, n: int) -> list[np.ndarray]:
    return [b for b in np.array_split(np.asarray(x, dtype=float), min(n, max(1, len(x)))) if len(b)]


def _resample(blocks: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    pick = rng.integers(0, len(blocks), size=len(blocks))
    return np.concatenate([blocks[i] for i in pick])


def diff_interval(a: np.ndarray, b: np.ndarray, statistic: str = "p50", *, blocks: int = BLOCKS,
                  resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float | None, float | None, float | None]:
    """(stat(b) − stat(a), low, high of its 95 % block-bootstrap interval); Nones when either is
    empty, or does not carry the percentile."""
    if len(a) == 0 or len(b) == 0:
        return None, None, None
    if statistic in QUANTILES and not carried(QUANTILES[statistic], min(len(a), len(b))):
        return None, None, None
    f = STATISTICS[statistic]
    rng = np.random.default_rng(seed)
    ba, bb = _blocks(a, blocks), _blocks(b, blocks)
    diffs = np.array([f(_resample(bb, rng)) - f(_resample(ba, rng)) for _ in range(resamples)])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return f(np.asarray(b, dtype=float)) - f(np.asarray(a, dtype=float)), float(lo), float(hi)


def within_noise(lo: float | None, hi: float | None) -> bool:
    return lo is None or hi is None or lo <= 0.0 <= hi


__all__ = ["diff_interval", "within_noise", "STATISTICS", "QUANTILES", "BLOCKS", "RESAMPLES"]
