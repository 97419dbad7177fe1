"""The knee search: the highest rate that still passes, and why the next step failed.

Pure Python over a ``measure(rate) -> step`` function, where a step is a mapping with at least
``passed`` (bool) and ``reason`` (str, why it failed). The search:

1. **raise**: ``start``, ``start*factor``, ``start*factor^2`` ... until the first failing step
   (never beyond it) or ``max_rate`` (probed once, capped);
2. **descend**, only when the very first step fails: ``start/factor`` ... until a step passes or
   the rate would fall below ``min_rate``;
3. **bisect** between the last passing and the first failing rate, at most ``refine_steps``
   times, until they are within ``tolerance`` (relative) of each other.

The knee is the highest passing rate; ``reason`` is the failure of the lowest failing rate
probed (the step just above the knee).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

Step = Mapping[str, Any]


@dataclass
class KneeResult:
    knee_rate: float | None          # highest passing rate (None: nothing passed)
    failed_rate: float | None        # lowest failing rate probed (None: nothing failed)
    reason: str                      # why failed_rate failed ("" when nothing failed)
    capped: bool                     # the raise phase reached max_rate without failing
    probes: list[tuple[str, float, bool]] = field(default_factory=list)  # (phase, rate, passed), in order
    steps: list[dict[str, Any]] = field(default_factory=list)           # every step as measured, in order

    @property
    def knee_step(self) -> dict[str, Any] | None:
        return self._step_at(self.knee_rate)

    @property
    def failed_step(self) -> dict[str, Any] | None:
        return self._step_at(self.failed_rate)

    def _step_at(self, rate: float | None) -> dict[str, Any] | None:
        if rate is None:
            return None
        for (_, r, _), s in zip(self.probes, self.steps):
            if r == rate:
                return s
        return None


def _round(rate: float) -> float:
    """Rates are whole events per second (and at least 1)."""
    return float(max(1, round(rate)))


def find_knee(measure: Callable[[float], Step], *, start: float, factor: float = 2.0,
              max_rate: float = 1e6, min_rate: float = 1.0, refine_steps: int = 3,
              tolerance: float = 0.1, max_raise_steps: int = 30) -> KneeResult:
    """Search the knee of ``measure`` (see the module docstring). Every loop is bounded."""
    if factor <= 1:
        raise ValueError("factor must be > 1")
    res = KneeResult(knee_rate=None, failed_rate=None, reason="", capped=False)

    def probe(phase: str, rate: float) -> bool:
        step = dict(measure(rate))
        ok = bool(step["passed"])
        res.probes.append((phase, rate, ok))
        step.setdefault("target_rate", rate)
        step["search_phase"] = phase
        res.steps.append(step)
        if ok:
            if res.knee_rate is None or rate > res.knee_rate:
                res.knee_rate = rate
        elif res.failed_rate is None or rate < res.failed_rate:
            res.failed_rate = rate
            res.reason = str(step.get("reason") or "failed")
        return ok

    rate = _round(min(start, max_rate))
    lo: float | None = None
    hi: float | None = None
    if probe("raise", rate):
        lo = rate
        for _ in range(max_raise_steps):
            if rate >= max_rate:
                res.capped = True
                break
            rate = _round(min(rate * factor, max_rate))
            if probe("raise", rate):
                lo = rate
            else:
                hi = rate
                break
        else:
            res.capped = True
    else:
        hi = rate
        while True:
            nxt = _round(rate / factor)
            if nxt < min_rate or nxt >= rate:
                break
            rate = nxt
            if probe("descend", rate):
                lo = rate
                break
            hi = rate
    if lo is not None and hi is not None:
        for _ in range(refine_steps):
            if (hi - lo) <= max(1.0, tolerance * lo):
                break
            mid = _round(math.sqrt(lo * hi) if factor > 2.5 else (lo + hi) / 2)
            if mid <= lo or mid >= hi:
                break
            if probe("bisect", mid):
                lo = mid
            else:
                hi = mid
    return res
