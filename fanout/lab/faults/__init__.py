"""Fault plans: timed faults on a scenario's timeline (``plan``), one class per kind (``kinds``)."""
from __future__ import annotations

from fanout.lab.faults.kinds import FAULT_KINDS, FaultKind
from fanout.lab.faults.plan import INSTANCE_KINDS, KINDS, PROXY_KINDS, Fault, FaultLog, FaultRunner, parse_faults

__all__ = ["FAULT_KINDS", "FaultKind", "INSTANCE_KINDS", "KINDS", "PROXY_KINDS", "Fault", "FaultLog",
           "FaultRunner", "parse_faults"]
