"""Synthetic, internally consistent RunRecords for analysis and report tests (no Redis)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from fanout.lab.record import DELIVERY_COLUMNS, INSTANCE_COLUMNS, PUBLICATION_COLUMNS, RunRecord, frame
from fanout.lab.scenario import Scenario

T0 = 1_760_700_000_000_000_000
RATE_PER_S = 10.0
SCHEDULE_LAG_NS = 50_000  # t_sent - t_intended for every publication
TYPES = ("ticker", "trade")


def event_id(source: str, k: int) -> str:
    """Id of the k-th (0-based) event ``source`` publishes: types alternate, seq counts per type."""
    return f"{source}:{TYPES[k % 2]}:{k // 2 + 1}"


def _schedule(counts: dict[str, int]) -> list[str]:
    """Sources in publishing order: round robin over those with events left."""
    left = dict(counts)
    order: list[str] = []
    while any(left.values()):
        for s in left:
            if left[s]:
                order.append(s)
                left[s] -= 1
    return order


def make_record(
    published_by: dict[str, int],
    *,
    drop: Iterable[tuple[str, str]] = (),
    duplicate: Iterable[tuple[str, str]] = (),
    self_deliver: Iterable[str] = (),
    latency_ns: int | Sequence[int] = 1_000_000,
    failed: int = 0,
    scenario_overrides: dict[str, Any] | None = None,
) -> RunRecord:
    """A run where every receiver got every other instance's ok events once.

    * ``published_by``: ok publications per instance (instances in this order; 0 is allowed).
    * ``latency_ns``: ``t_received - t_intended`` of each delivery; a sequence is used in
      delivery order (cycled when shorter).
    * ``drop``: ``(receiver, id)`` delivery rows to remove; ``duplicate``: rows to deliver again 1 µs later.
    * ``self_deliver``: instances that get their own first event back.
    * ``failed``: extra publications (round robin over instances, after the ok ones) that failed.
    * ``scenario_overrides``: merged into the scenario dict (may add ``receivers``/``publishers``).
    """
    names = list(published_by)
    total = sum(published_by.values())
    scenario = Scenario(instances=len(names), rate_per_s=RATE_PER_S,
                        duration_s=max(1, math.ceil(total / RATE_PER_S))).to_dict()
    scenario.update(scenario_overrides or {})
    receivers = scenario.get("receivers") or names
    lats = [latency_ns] if isinstance(latency_ns, int) else list(latency_ns)

    step = int(1e9 / scenario["rate_per_s"])
    k_of = dict.fromkeys(names, 0)
    pubs: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    failing = [names[i % len(names)] for i in range(failed)]
    for j, source in enumerate(_schedule(published_by) + failing):
        ok = j < total
        k = k_of[source]
        k_of[source] += 1
        eid, t_intended = event_id(source, k), T0 + j * step
        t_sent = t_intended + SCHEDULE_LAG_NS if ok else 0
        pubs.append({"id": eid, "source": source, "seq": k // 2 + 1, "type": TYPES[k % 2], "symbol": "BTC/USDT",
                     "t_intended": t_intended, "t_sent": t_sent, "t_acked": t_sent + 100_000 if ok else 0,
                     "ok": ok, "error": "" if ok else "PublishError: timed out"})
        if not ok:
            continue
        for r in receivers:
            if r != source:
                lat = lats[len(deliveries) % len(lats)]
                deliveries.append({"id": eid, "source": source, "receiver": r, "type": TYPES[k % 2],
                                   "seq": k // 2 + 1, "t_received": t_intended + lat})

    dropped = set(drop)
    deliveries = [d for d in deliveries if (d["receiver"], d["id"]) not in dropped]
    for receiver, eid in duplicate:
        row = next(d for d in deliveries if (d["receiver"], d["id"]) == (receiver, eid))
        deliveries.append(row | {"t_received": row["t_received"] + 1_000})
    for name in self_deliver:
        own = next(p for p in pubs if p["source"] == name)
        deliveries.append({"id": own["id"], "source": name, "receiver": name, "type": own["type"],
                           "seq": own["seq"], "t_received": own["t_intended"] + 1_000_000})

    instances = [{"instance": n, "connected": True, "published": published_by[n],
                  "received": sum(d["receiver"] == n for d in deliveries), "subscriptions": len(TYPES),
                  "publish_errors": sum(not p["ok"] and p["source"] == n for p in pubs)} for n in names]
    for row in instances:
        row["errors"] = row["publish_errors"]
    t_end = max([d["t_received"] for d in deliveries] + [T0]) + 1_000_000
    return RunRecord(
        run_id="synthetic", scenario=scenario, environment={"python": "test"},
        publications=frame(pubs, PUBLICATION_COLUMNS), deliveries=frame(deliveries, DELIVERY_COLUMNS),
        instances=frame(instances, INSTANCE_COLUMNS), t0=T0, t_end=t_end,
    )
