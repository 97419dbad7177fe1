"""The seed report's capacity table, measured: ``capacity_table()``.

The seed's "Capacity Planning" table claims, per number of application instances, an event rate
and a Redis CPU bound (1 instance: 100-500 events/s, < 5 %; 3: 300-1,500, < 10 %; 5: 500-2,500,
< 15 %; 10: 1K-5K, < 25 %). Each row here runs the top of that range in the seed's deployment
(``topology="host-bots"``: one publish-only WebSocket host feeding N subscribe-only bot
instances, so every event is delivered N times) on a throwaway redis-server, and states whether
it was lossless, its latency, Redis's CPU over the run (``INFO cpu``) against the seed's bound,
and whether the instrument itself was the limit (``environment["instrument"]``).

    from fanout.lab.capacity import capacity_table
    df = capacity_table()                 # a DataFrame, one row per (instances, events/s)
    df = capacity_table(duration_s=2)     # shorter runs

Used by ``python -m benchmarks`` (its ``capacity`` section) and the validation report.
"""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from fanout.lab.record import RunRecord
from fanout.lab.scenario import Scenario

#: (application instances, events/s): the top of each row of the seed's table
SEED_ROWS: tuple[tuple[int, int], ...] = ((1, 500), (3, 1_500), (5, 2_500), (10, 5_000))
#: the seed's Redis CPU bound per row (percent of one core)
SEED_REDIS_CPU_PCT: dict[int, float] = {1: 5.0, 3: 10.0, 5: 15.0, 10: 25.0}

COLUMNS = ("instances", "events_per_s", "deliveries_per_s", "published", "expected", "received", "delivery_pct",
           "lossless", "p50_ms", "p99_ms", "redis_cpu_pct", "seed_redis_cpu_bound_pct", "within_seed_bound",
           "instrument_cpu_pct", "instrument_saturated", "process_mode", "transport", "duration_s", "run_id")


def row_facts(rec: RunRecord, instances: int, rate: float) -> dict[str, Any]:
    """One capacity row from a host-bots run's record (arithmetic on the frames, no analysis); a
    percentile its deliveries do not carry is ``None`` (:func:`fanout.percentiles.carried`)."""
    from fanout.percentiles import carried

    pubs, d = rec.publications, rec.deliveries
    ok = pubs[pubs["ok"]]
    bots = [i for i in rec.instances["instance"] if i != "websocket-host"]
    expected = len(ok) * len(bots)
    got = d[d["id"].isin(set(ok["id"]))].drop_duplicates(["id", "receiver"])
    received = len(got)
    lat = (got.merge(ok[["id", "t_intended"]], on="id").eval("t_received - t_intended") / 1e6)
    inst = rec.environment.get("instrument", {})
    redis_pct = inst.get("redis_cpu_pct")
    bound = SEED_REDIS_CPU_PCT.get(instances)
    return {
        "instances": instances, "events_per_s": rate, "deliveries_per_s": rate * instances,
        "published": len(ok), "expected": expected, "received": received,
        "delivery_pct": round(100.0 * received / expected, 3) if expected else 100.0,
        "lossless": bool(received == expected and len(ok) == len(pubs)),
        "p50_ms": round(float(lat.quantile(0.5)), 3) if carried(50.0, len(lat)) else None,
        "p99_ms": round(float(lat.quantile(0.99)), 3) if carried(99.0, len(lat)) else None,
        "redis_cpu_pct": redis_pct, "seed_redis_cpu_bound_pct": bound,
        "within_seed_bound": None if redis_pct is None or bound is None else bool(redis_pct < bound),
        "instrument_cpu_pct": inst.get("cpu_pct"), "instrument_saturated": inst.get("saturated"),
        "process_mode": inst.get("process_mode"), "transport": rec.environment.get("transport"),
        "duration_s": rec.scenario.get("duration_s"), "run_id": rec.run_id,
    }


def capacity_scenario(instances: int, rate: float, duration_s: float, transport: str = "pubsub") -> Scenario:
    return Scenario(name=f"capacity-{instances}x{rate:g}", topology="host-bots", instances=instances + 1,
                    rate_per_s=float(rate), duration_s=duration_s, warmup_s=min(1.0, duration_s / 4),
                    drain_timeout_s=5.0, health_check_s=30.0, transport=transport)


def capacity_table(rows: tuple[tuple[int, int], ...] = SEED_ROWS, *, duration_s: float = 5.0,
                   transport: str = "pubsub", say: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run every ``(instances, events/s)`` row on a fresh throwaway server; one row each (``COLUMNS``)."""
    from fanout.lab.run import run_scenario

    out = []
    for instances, rate in rows:
        if say:
            say(f"capacity: {instances} instances at {rate:g} events/s for {duration_s:g}s")
        rec = run_scenario(capacity_scenario(instances, rate, duration_s, transport), progress=False, save_to=None)
        out.append(row_facts(rec, instances, rate))
    return pd.DataFrame(out, columns=list(COLUMNS))
