"""The run's plan: which instance publishes what, when; and what each receiver should get."""
from __future__ import annotations

import random
from dataclasses import dataclass

from fanout.lab.scenario import Scenario
from fanout.lab.topology import roles


@dataclass(frozen=True, slots=True)
class Scheduled:
    k: int
    due_s: float
    publisher: int
    type: str
    symbol: str


def schedule(sc: Scenario) -> list[Scheduled]:
    """Every event of the run (seconds after the start, warm-up first), reproducibly: one seeded
    generator draws the arrival times (uniform: every 1/rate s; poisson: exponential gaps), the
    publishers, the types and the symbols."""
    rng = random.Random(sc.seed)
    publishers = roles(sc)[0]
    total_s = sc.warmup_s + sc.duration_s
    out: list[Scheduled] = []
    t = 0.0
    k = 0
    while True:
        if sc.arrivals == "uniform":
            t = k / sc.rate_per_s
        elif k > 0:
            t += rng.expovariate(sc.rate_per_s)
        if t >= total_s - 1e-12:
            break
        publisher = rng.choice(publishers) if len(publishers) > 1 else publishers[0]
        out.append(Scheduled(k, t, publisher, rng.choice(sc.event_types), rng.choice(sc.symbols)))
        k += 1
    return out


def expected_counts(published_by: dict[str, int], receivers: list[str]) -> dict[str, int]:
    """Distinct events each receiver should get: every acknowledged publication but its own."""
    total = sum(published_by.values())
    return {r: total - published_by.get(r, 0) for r in receivers}
