"""Fault plans: timed faults on a scenario's timeline, and the machinery that injects them.

A fault is a dict in the scenario (``faults:`` in YAML), e.g.::

    faults:
      - {kind: redis_restart, at_s: 4, duration_s: 1}                 # server down 1 s, then back
      - {kind: instance_crash, at_s: 3, duration_s: 2, instance: 1}   # bridge dies without closing
      - {kind: slow_consumer, at_s: 3, duration_s: 2, instance: 2}    # stops reading; Redis may cut it off
      - {kind: latency, at_s: 2, duration_s: 3, instance: 0, delay_ms: 50}
      - {kind: partition, at_s: 3, duration_s: 2, instance: 1, mode: reset}   # or blackhole
      - {kind: node_failover, at_s: 2, duration_s: 1}     # a cluster master SIGKILLed, its replica promoted
      - {kind: sentinel_failover, at_s: 2, duration_s: 1} # the master SIGKILLed, Sentinel promotes the replica

``at_s`` counts from the first measured event. ``instance`` is an index (0 .. instances-1).
``redis_restart`` needs the throwaway server (fanout starts it; the scenario's ``redis_aof``
chooses persistence); ``latency`` and ``partition`` put a :class:`~fanout.proxy.FaultProxy`
between that one instance and Redis for the whole run.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from fanout.errors import ConfigError
from fanout.lab.faults.kinds import FAULT_KINDS

log = logging.getLogger(__name__)

KINDS = tuple(FAULT_KINDS)
INSTANCE_KINDS = tuple(k for k, cls in FAULT_KINDS.items() if cls.instance)
PROXY_KINDS = tuple(k for k, cls in FAULT_KINDS.items() if cls.proxy)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float
    instance: int | None = None
    delay_ms: float = 0.0
    mode: str = "reset"
    hard: bool = False

    @property
    def label(self) -> str:
        who = f" on instance {self.instance}" if self.instance is not None else ""
        extra = f" +{self.delay_ms:g}ms" if self.kind == "latency" else ""
        extra += f" ({self.mode})" if self.kind == "partition" else ""
        return f"{self.kind}{who}{extra} at {self.at_s:g}s for {self.duration_s:g}s"


def parse_faults(raw: Any, instances: int, duration_s: float) -> list[Fault]:
    """Validate the scenario's ``faults`` list; every mistake names the fault and the field."""
    out: list[Fault] = []
    for n, f in enumerate(raw or ()):
        where = f"faults[{n}]"
        if not isinstance(f, dict):
            raise ConfigError(f"{where}: expected a mapping like {{kind: redis_restart, at_s: 3, duration_s: 1}}")
        allowed = {"kind", "at_s", "duration_s", "instance", "delay_ms", "mode", "hard"}
        unknown = sorted(set(f) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
        kind = f.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
        try:
            at_s = float(f.get("at_s", 0))
            dur = float(f.get("duration_s", 1))
            delay = float(f.get("delay_ms", 0))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: at_s, duration_s and delay_ms must be numbers") from None
        if at_s < 0 or at_s >= duration_s:
            raise ConfigError(f"{where}.at_s: {at_s:g} must be within the run (0 .. {duration_s:g}s)")
        if dur <= 0:
            raise ConfigError(f"{where}.duration_s: must be > 0")
        inst = f.get("instance")
        if kind in INSTANCE_KINDS:
            if not isinstance(inst, int) or isinstance(inst, bool) or not 0 <= inst < instances:
                raise ConfigError(f"{where}.instance: {kind} needs an instance index 0..{instances - 1}, got {inst!r}")
        elif inst is not None:
            raise ConfigError(f"{where}.instance: {kind} affects the server, not one instance")
        if kind == "latency" and delay <= 0:
            raise ConfigError(f"{where}.delay_ms: latency needs delay_ms > 0")
        mode = f.get("mode", "reset")
        if mode not in ("reset", "blackhole"):
            raise ConfigError(f"{where}.mode: {mode!r} is not reset or blackhole")
        out.append(Fault(kind=kind, at_s=at_s, duration_s=dur, instance=inst, delay_ms=delay, mode=mode,
                         hard=bool(f.get("hard", False))))
    return out


@dataclass
class FaultLog:
    """What actually happened, in integer ns: one row per fault for the run record."""

    kind: str
    instance: str
    t_start: int
    t_end: int
    detail: str


class FaultRunner:
    """Runs a fault plan against a live simulation ``sim``: one task per fault, kept and awaited
    (bounded) by :meth:`wait`; each fault gets its own :class:`~fanout.lab.faults.kinds.FaultKind`."""

    def __init__(self, faults: list[Fault], t0_ns: int, sim: Any) -> None:
        self.faults = faults
        self.t0_ns = t0_ns
        self.sim = sim
        self.log: list[FaultLog] = []
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._one(f), name=f"fault-{f.kind}") for f in self.faults]

    async def _one(self, f: Fault) -> None:
        action = FAULT_KINDS[f.kind](self.sim, f)
        await _sleep_until_ns(self.t0_ns + int(f.at_s * 1e9))
        t_start = time.time_ns()
        detail = ""
        try:
            detail = await action.begin() or ""
            await asyncio.sleep(f.duration_s)
        finally:
            t_end = time.time_ns()
            try:
                more = await action.end()
                detail = "; ".join(x for x in (detail, more) if x)
            finally:
                who = self.sim.ids[f.instance] if f.instance is not None else ""
                self.log.append(FaultLog(f.kind, who, t_start, t_end, detail or f.label))
                log.info("fault %s: %s", f.label, detail)

    async def wait(self, timeout_s: float) -> None:
        """Wait (bounded) until every fault has ended and been undone; a fault that failed raises."""
        if not self._tasks:
            return
        done, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()

    async def cancel(self) -> None:
        """Stop every fault still running (the run is ending early); each one's ``end`` still runs."""
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _sleep_until_ns(due_ns: int) -> None:
    wait = (due_ns - time.time_ns()) / 1e9
    if wait > 0:
        await asyncio.sleep(wait)
