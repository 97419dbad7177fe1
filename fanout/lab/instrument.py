"""Is the instrument the limit? The simulator's own CPU per worker and Redis's over a run, and
the flag the report reads (``RunRecord.environment["instrument"]``, keys in docs/architecture.md).

One event loop runs on one core: a worker whose process used ``SATURATED_PCT`` or more of a core
over the run was saturated, so the run measured fanout's simulator, not Redis. The event loop
the lab runs on (uvloop when installed, else asyncio's) is :func:`run`'s.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from redis.exceptions import RedisError

from fanout.lab import control

log = logging.getLogger(__name__)

#: a worker process using this much of one core over the run was the limit
SATURATED_PCT = 85.0
#: a busy worker whose events went out this late (p99 of sent - due) could not keep its schedule
LATE_MS = 5.0
#: workers + Redis using this share of the machine's cores: the machine was the limit
MACHINE_PCT = 90.0


def loop_factory():
    """uvloop's event loop when installed (``pip install 'fanout[fast]'``) and not turned off
    with ``FANOUT_EVENT_LOOP=asyncio``; else None (asyncio's default)."""
    if os.environ.get("FANOUT_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    return "uvloop" if loop_factory() is not None else "asyncio"


def run(coro):
    """``asyncio.run`` on the lab's event loop (:func:`loop_factory`)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


class CpuWindow:
    """This process's CPU time (``time.process_time``: every thread) over a stretch of wall time."""

    def __init__(self) -> None:
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()

    def stop(self, spin_s: float = 0.0, lag_p99_ms: float | None = None) -> dict[str, float]:
        """``cpu_pct`` leaves out ``spin_s``, the time the publishers yielded in a busy wait for
        an event's due time (``RunOptions.spin_s``): waiting, not work (work other tasks did
        during a spin is left out too, so it is a lower bound; under load events are late and
        nobody spins); ``cpu_pct_raw`` is all of it. ``lag_p99_ms``: p99 of sent - due."""
        cpu, wall = time.process_time() - self.cpu0, time.monotonic() - self.wall0
        work = max(0.0, cpu - spin_s)
        pct = (lambda x: round(100 * x / wall, 1) if wall > 0 else 0.0)  # noqa: E731
        return {"cpu_s": round(work, 4), "cpu_s_raw": round(cpu, 4), "spin_cpu_s": round(min(cpu, spin_s), 4),
                "wall_s": round(wall, 4), "cpu_pct": pct(work), "cpu_pct_raw": pct(cpu),
                "schedule_lag_p99_ms": None if lag_p99_ms is None else round(lag_p99_ms, 3), "pid": os.getpid()}


def busy(worker: dict) -> bool:
    """A worker was the limit: its work used ``SATURATED_PCT`` of a core, or its process was that
    busy (spin included) and its events went out ``LATE_MS`` or more late (p99)."""
    lag = worker.get("schedule_lag_p99_ms")
    return worker["cpu_pct"] >= SATURATED_PCT or (
        worker.get("cpu_pct_raw", 0.0) >= SATURATED_PCT and lag is not None and lag >= LATE_MS)


async def redis_cpu_s(url: str) -> float | None:
    """redis-server's CPU seconds so far (``INFO cpu``: user + sys); None when it does not say."""
    c = control.client(url)
    try:
        info = await c.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except (RedisError, OSError, KeyError, ValueError) as exc:  # a fact we could not get is null
        log.debug("INFO cpu failed: %s", exc)
        return None
    finally:
        await c.aclose()


def verdict(workers: dict[str, dict], redis_cpu: float | None, wall_s: float, *, mode: str,
            reason: str = "") -> dict[str, Any]:
    """The ``environment["instrument"]`` block of a run (see docs/architecture.md)."""
    cores = os.cpu_count() or 1
    worst_name, worst = max(workers.items(), key=lambda kv: kv[1]["cpu_pct"]) if workers else ("", {"cpu_pct": 0.0})
    total = sum(w["cpu_pct"] for w in workers.values())
    redis_pct = round(100 * redis_cpu / wall_s, 1) if redis_cpu is not None and wall_s > 0 else None
    machine = total + (redis_pct or 0.0)
    late = [n for n, w in workers.items() if busy(w)]
    if late:
        worst_name, worst = late[0], workers[late[0]]
        saturated, limit = True, "instrument"
        why = (f"{worst_name}'s event loop used {max(worst['cpu_pct'], worst.get('cpu_pct_raw', 0)):.0f}% of a core, "
               f"events {worst.get('schedule_lag_p99_ms') or 0:.1f} ms late at p99 (Redis "
               f"{'?' if redis_pct is None else f'{redis_pct:.0f}'}%): the figures are the simulator's limit, not Redis's")
    elif machine >= MACHINE_PCT * cores:
        saturated, limit = True, "machine"
        why = (f"the simulator ({total:.0f}%) and Redis ({redis_pct or 0:.0f}%) used {machine:.0f}% of {cores} cores: "
               "the machine was the limit")
    elif redis_pct is not None and redis_pct >= SATURATED_PCT:
        saturated, limit = False, "redis"
        why = f"Redis used {redis_pct:.0f}% of a core, the simulator at most {worst['cpu_pct']:.0f}%: Redis is the limit"
    else:
        saturated, limit = False, None
        why = (f"nothing saturated: the busiest simulator process used {worst['cpu_pct']:.0f}% of a core, Redis "
               f"{'?' if redis_pct is None else f'{redis_pct:.0f}'}%")
    return {
        "process_mode": mode, "process_mode_reason": reason, "event_loop": loop_name(), "cores": cores,
        "workers": workers, "cpu_pct": worst["cpu_pct"], "cpu_pct_total": round(total, 1),
        "redis_cpu_s": None if redis_cpu is None else round(redis_cpu, 4), "redis_cpu_pct": redis_pct,
        "wall_s": round(wall_s, 4), "saturated": saturated, "limit": limit, "why": why,
        "saturated_at_pct": SATURATED_PCT,
    }
