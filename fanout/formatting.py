"""How numbers read everywhere fanout shows them (text report, tables, notebooks, CLI, benchmarks).

Latencies are milliseconds with three decimals (microsecond resolution), rates two decimals,
counts whole with thousands separators; a missing value is ``n/a``. A percentile the samples do
not carry (:func:`fanout.percentiles.carried`) reads ``n too small (n=180; p99.9 needs ≥
10,000)``, or ``— (n=180)`` in a table cell with :func:`percentile_rule` said once under the table.
"""
from __future__ import annotations

import math
from fractions import Fraction

NA = "n/a"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def ms(value: float | None, unit: str = "ms") -> str:
    """A latency: ``1.234ms`` (``unit=""`` for a bare number)."""
    return NA if _missing(value) else f"{value:.3f}{unit}"


def percentile(value: float | None, n: int | float | None, key: str, *, short: bool = False) -> str:
    """A percentile (``key`` names it: ``p99_ms``, ``lat_p999_ms`` ...) from ``n`` samples: its
    latency, or why it is not shown when ``n`` does not carry it (any other key: :func:`ms`)."""
    from fanout.percentiles import carried, label_of, min_samples, quantile_of

    q = quantile_of(key)
    if q is None or _missing(n) or not n:
        return ms(value)
    if carried(q, int(n)):  # a value the samples do not carry is withheld even when given
        return ms(value)
    if short:
        return f"— (n={int(n):,})"
    return f"n too small (n={int(n):,}; {label_of(key)} needs ≥ {min_samples(q):,})"


def percentile_rule() -> str:
    """The rule behind a ``— (n=…)`` cell, in one sentence."""
    from fanout.percentiles import PERCENTILES, TAIL_SAMPLES, label_of, min_samples

    needs = ", ".join(f"{label_of(k)} {min_samples(q):,}" for k, q in PERCENTILES.items())
    return (f"— (n=…): too few samples for that percentile; a percentile q is shown only from "
            f"{TAIL_SAMPLES} / (1 − q) samples on, so that {TAIL_SAMPLES} lie beyond it ({needs}).")


def loss_bound(n: int | None) -> str:
    """The 95 % upper bound on a loss rate when none of ``n`` was lost (the rule of three, 3 / n),
    as a percentage rounded *up* to two significant digits: ``< 0.75 %``."""
    if _missing(n) or not n:
        return NA
    p = Fraction(300, int(n))
    digits = 0
    while p * 10 ** digits < 10:
        digits += 1
    return f"< {math.ceil(p * 10 ** digits) / 10 ** digits:.{digits}f} %"


def count(value: int | float | None) -> str:
    """A count with thousands separators: ``12,345``."""
    return NA if _missing(value) else f"{int(value):,}"


def pct(value: float | None) -> str:
    """A percentage with two decimals: ``99.95%``."""
    return NA if _missing(value) else f"{value:.2f}%"


def rate(value: float | None, unit: str = "") -> str:
    """A rate with two decimals and separators: ``1,234.50`` (+ ``unit``)."""
    return NA if _missing(value) else f"{value:,.2f}{unit}"


def seconds(value: float | None) -> str:
    """A duration as given: ``20 s``, ``0.5 s``."""
    return NA if _missing(value) else f"{value:g} s"


def mark(ok: bool) -> str:
    """A check mark for text output (the report says PASS/FAIL in words beside it)."""
    return "✓" if ok else "✗"
