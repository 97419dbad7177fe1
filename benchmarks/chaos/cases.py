"""Every case of the suite, in the order the table shows them: name -> function(Sizes) -> CaseResult."""
from __future__ import annotations

from typing import Callable

from . import hostile, limits, outages, security, shared, slow, soak
from .common import CaseResult, Sizes

CASES: dict[str, Callable[[Sizes], CaseResult]] = {}
CASES.update(outages.CASES)
CASES.update(hostile.CASES)
CASES.update(slow.CASES)
CASES.update(limits.CASES)
CASES.update(security.CASES)
CASES.update(shared.CASES)
CASES.update(soak.CASES)

#: cases that run in full mode only (their small size is still run with --small)
GROUPS = {name: "outage" for name in outages.CASES}


def bound_s(name: str, small: bool) -> float:
    """How long a case may take before the runner calls it a hang and kills it."""
    sz = Sizes.make(small)
    if name == "soak":
        return sz.soak_duration_s + 300
    return 300.0 if not small else 180.0
