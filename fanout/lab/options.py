"""How a run is driven, apart from what it measures (the Scenario): the clock, the scheduler,
how long to wait for agents. Passed as an object, never patched into module globals."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable


@dataclass(frozen=True)
class RunOptions:
    #: added to the wall clock: 0, except in an agent started with an injected skew (tests of clock correction)
    clock_skew_ns: int = 0
    #: the last stretch before an event is due is waited out by yielding, not sleeping (0: sleep only)
    spin_s: float = 0.0015
    #: a run over agents waits this long for them to register
    agent_wait_s: float = 60.0
    #: how long to wait for every subscription to show on the server before publishing
    subscribe_confirm_timeout_s: float = 10.0
    #: a worker (process or agent) must have its bridges up and say "ready" within this
    ready_timeout_s: float = 60.0
    #: record as you go: write the run's rows as Parquet parts into ``<record_dir>/<run id>/parts/``
    #: while it runs (None: keep them in memory until the run ends)
    record_dir: str | None = None
    #: a chunk of deliveries (a part) closes at this many rows over one process's receivers ...
    chunk_rows: int = 1_000_000
    #: ... or after this many seconds
    chunk_s: float = 10.0
    #: the bridges keep their own histograms (``BridgeConfig.histograms``; the run records every delivery
    #: itself, so off unless their metrics are served: ``fanout run --metrics-port``)
    bridge_histograms: bool = False
    #: the receivers' output-buffer check (``BridgeConfig.output_buffer_check_s``, pub/sub only; None: off):
    #: each instance's largest reading and warnings go into the record's instances
    output_buffer_check_s: float | None = None
    #: called with each in-process :class:`~fanout.lab.simulator.Simulation` once its bridges are made (its
    #: ``bridges`` then follow crashes and restarts), e.g. to serve their metrics (``fanout run
    #: --metrics-port``); not sent to worker processes or agents (their bridges are not in this process)
    on_simulation: Callable[[Any], None] | None = field(default=None, compare=False, repr=False)

    def now_ns(self) -> int:
        """The run's clock: integer ns, the wall clock shared by every process on a host (+ skew)."""
        return time.time_ns() + self.clock_skew_ns

    async def sleep_until(self, due_ns: int) -> float:
        """Sleep until ``due_ns`` on :meth:`now_ns` without the event loop's millisecond overshoot:
        sleep most of the way, then yield to the loop until the moment comes. Returns the
        seconds spent yielding (the spin: waiting, not work; the instrument leaves it out)."""
        now = self.now_ns
        wait = (due_ns - now()) / 1e9
        if wait > self.spin_s:
            await asyncio.sleep(wait - self.spin_s)
        if now() >= due_ns:
            return 0.0
        t = time.perf_counter()
        while now() < due_ns:
            await asyncio.sleep(0)
        return time.perf_counter() - t

    def to_dict(self) -> dict:
        """The options a worker process gets (plain values: ``on_simulation`` stays here)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "on_simulation"}


DEFAULT = RunOptions()
