"""The lab: scenarios, the simulator that drives N bridges and records every hop, faults, workers
over processes and hosts, and throwaway Redis servers (``pip install 'fanout[lab]'``).

    from fanout.lab import Scenario, run_scenario
    record = run_scenario(Scenario(instances=5, duration_s=30))

A saved run, to dig into (``README.md``, "Exploring a run"):

    import fanout.lab
    fanout.lab.runs()                                        # every archived run, newest first
    rec = fanout.lab.load_run("20261207-235837-partition")  # a folder, a run id or a unique prefix
    rec.events(status="missing")                             # each lost (event, receiver) with its cause

The names below are imported on first use, so ``fanout.lab.servers`` (which needs no pandas)
stays light.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Scenario": "scenario", "load_scenario": "scenario", "from_dict": "scenario",
    "simulate": "run", "run_scenario": "run",
    "RunRecord": "record", "load_run": "record", "runs": "archive",
    "RedisServer": "servers", "LocalCluster": "servers", "LocalSentinel": "servers",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fanout.lab.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fanout.lab' has no attribute {name!r}")


__all__ = list(_EXPORTS)
