"""A percentile only where the samples carry it: percentile *q* is shown only from
``TAIL_SAMPLES / (1 − q)`` samples on (p50 20, p95 200, p99 1,000, p99.9 10,000), so that at least
ten samples lie beyond it. The one place the rule lives (stdlib only: the core's formatting, the
lab's capacity rows and the analysis' statistics all ask it); :mod:`fanout.analysis.latency`
applies it to latency statistics.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

PERCENTILES = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "p999_ms": 99.9}
#: how many samples must lie beyond a percentile for it to be shown
TAIL_SAMPLES = 10


def min_samples(q: float) -> int:
    """Samples needed to show percentile ``q`` (in percent): ``TAIL_SAMPLES / (1 − q)``, so that
    ``TAIL_SAMPLES`` lie beyond it (p50 20, p95 200, p99 1,000, p99.9 10,000)."""
    tail = 1 - Fraction(str(q)) / 100
    if not 0 < tail <= 1:
        raise ValueError(f"a percentile is in [0, 100): {q!r}")
    return math.ceil(TAIL_SAMPLES / tail)


def carried(q: float, n: int) -> bool:
    """Do ``n`` samples carry percentile ``q`` (in percent)?"""
    return n >= min_samples(q)


def quantile_of(key: str) -> float | None:
    """The percentile a key names: ``p99_ms``, ``lat_p99_ms``, ``schedule_lag_p99_ms`` → 99;
    ``p999_ms`` → 99.9; ``None`` for a key that names none (``avg_ms``, ``max_ms``)."""
    m = re.search(r"(?:^|_)p(\d+)_ms$", key)
    if not m:
        return None
    digits = m.group(1)
    return float(digits if len(digits) <= 2 else f"{digits[:2]}.{digits[2:]}")


def label_of(key: str) -> str:
    """How a percentile key reads: ``p999_ms`` → ``p99.9``."""
    return f"p{quantile_of(key):g}"


def withheld(n: int, keys=tuple(PERCENTILES)) -> dict[str, int]:
    """The percentile keys ``n`` samples do not carry → samples each needs (empty when there are no
    samples at all: then nothing is withheld, there is nothing)."""
    return {k: min_samples(quantile_of(k)) for k in keys if n and not carried(quantile_of(k), n)}
