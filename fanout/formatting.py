"""How numbers read everywhere fanout shows them (text report, tables, notebooks, CLI, benchmarks).

Latencies are milliseconds with three decimals (microsecond resolution), rates two decimals,
counts whole with thousands separators; a missing value is ``n/a``.
"""
from __future__ import annotations

import math

NA = "n/a"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def ms(value: float | None, unit: str = "ms") -> str:
    """A latency: ``1.234ms`` (``unit=""`` for a bare number)."""
    return NA if _missing(value) else f"{value:.3f}{unit}"


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
