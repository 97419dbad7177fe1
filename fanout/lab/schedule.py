"""The run's plan: which instance publishes what, when; and what each receiver should get."""
from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
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
    publishers, the types and the symbols. A list: for tests and short runs; a run reads it as it
    goes (:class:`PlanFeed`)."""
    return list(iter_schedule(sc))


def iter_schedule(sc: Scenario) -> Iterator[Scheduled]:
    """:func:`schedule`, one event at a time (nothing of the run's length is held)."""
    rng = random.Random(sc.seed)
    publishers = roles(sc)[0]
    total_s = sc.warmup_s + sc.duration_s
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
        yield Scheduled(k, t, publisher, rng.choice(sc.event_types), rng.choice(sc.symbols))
        k += 1


class PlanFeed:
    """The schedule of the publishers one process hosts, generated as the run goes: each
    publisher takes its next event with :meth:`next`; a block of the schedule is drawn when one
    runs dry, its hosted events numbered in schedule order (the publication row ``k``) and queued
    per publisher. Memory holds what the slowest publisher has not reached yet, never the run."""

    BLOCK = 4096

    def __init__(self, sc: Scenario, hosted) -> None:
        self._it = iter_schedule(sc)
        self._hosted = set(hosted)
        self.queues: dict[int, deque] = {i: deque() for i in hosted}
        self.k = 0            # hosted events numbered so far
        self.drawn = 0        # schedule events drawn so far
        self.exhausted = False

    def next(self, i: int) -> tuple[int, Scheduled] | None:
        """Publisher ``i``'s next ``(row, event)``; None when its share is over."""
        q = self.queues[i]
        while not q:
            if self.exhausted:
                return None
            self._draw()
        return q.popleft()

    def _draw(self) -> None:
        it, hosted, queues = self._it, self._hosted, self.queues
        for _ in range(self.BLOCK):
            ev = next(it, None)
            if ev is None:
                self.exhausted = True
                return
            self.drawn += 1
            if ev.publisher in hosted:
                queues[ev.publisher].append((self.k, ev))
                self.k += 1


def expected_counts(published_by: dict[str, int], receivers: list[str]) -> dict[str, int]:
    """Distinct events each receiver should get: every acknowledged publication but its own."""
    total = sum(published_by.values())
    return {r: total - published_by.get(r, 0) for r in receivers}
