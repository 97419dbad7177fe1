"""The verdict: the seed's five criteria in its wording, then ours; under faults, what a fault run
must show instead: every loss the planned fault's own (on the instance it targets, within its
window: nothing lost elsewhere, no unplanned outage, nothing unexplained), Streams keep what they
promise, everyone back after; how late the fault's window delivered is stated beside, not judged."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fanout.analysis.accounting import (
    DEFAULT_BOUND_MS, OUTAGE_KIND, PLANNED, UNEXPLAINED, LossAccount, recovery_windows,
)
from fanout.analysis.latency import latency_samples, latency_stats
from fanout.formatting import ms as fmt_ms
from fanout.lab.record import RunRecord


@dataclass(frozen=True)
class Thresholds:
    """Pass marks for the verdict (the seed's: delivery above 95 %, average latency below 100 ms)."""

    min_delivery_pct: float = 95.0
    max_avg_latency_ms: float = DEFAULT_BOUND_MS

    @classmethod
    def from_scenario(cls, scenario: dict[str, Any]) -> "Thresholds":
        """Read ``min_delivery_pct`` and ``max_avg_latency_ms`` from a scenario dict when present."""
        keys = ("min_delivery_pct", "max_avg_latency_ms")
        return cls(**{k: float(scenario[k]) for k in keys if scenario.get(k) is not None})


@dataclass(frozen=True)
class Criterion:
    """One line of the verdict. ``judged=False``: stated beside the verdict (e.g. how late a fault's
    window delivered), never making a run fail; ``passed`` then says whether it met ``threshold``."""

    name: str
    passed: bool
    measured: str
    threshold: str
    judged: bool = True


def streams_promise_applies(record: RunRecord) -> bool:
    """Streams promise zero loss for every fault but a restart of a Redis that keeps nothing, and
    a failover to a replica: replication is asynchronous, so the last entries the old master had
    not yet sent may be gone (counted exactly, not promised)."""
    sc = record.scenario
    if sc.get("transport") != "streams":
        return False
    kinds = set(record.faults["kind"]) if len(record.faults) else set()
    if kinds & {"sentinel_failover", "node_failover"}:
        return False
    return "redis_restart" not in kinds or bool(sc.get("redis_aof"))


def fault_verdict(per: pd.DataFrame, overall: dict[str, Any], latency: dict[str, Any], th: Thresholds,
                   record: RunRecord, losses: LossAccount) -> list[Criterion]:
    """Under faults, loss is expected on pub/sub: the verdict asks that every loss is the planned
    fault's own (on the instance it targets, in its window), that Streams keeps what it promises and
    that everyone is connected and receiving after; how late the windows delivered is stated."""
    n = len(per)
    connected = int(per["connected"].sum())
    exact = int((per["received"] + per["lost_attributed"] == per["expected"]).sum())
    # latency outside the faults' windows: a fault's own delay is its point, not a regression — and
    # so is the backlog it left on the receiver it touched, until that receiver was on time again
    windows = recovery_windows(record, list(per["instance"]))
    s = latency_samples(record).merge(record.publications[["id", "t_sent"]], on="id")
    inside = np.zeros(len(s), dtype=bool)
    for r, start, end in windows:
        inside |= ((s["receiver"] == r) & (s["t_sent"] >= start) & (s["t_sent"] <= end)).to_numpy()
    avg = latency_stats(s.loc[~inside, "lat_ns"].to_numpy())["avg_ms"]
    last_end = int(record.faults["t_end"].max())
    d = record.deliveries
    receiving = sum(1 for name in per["instance"]
                    if ((d["receiver"] == name) & (d["t_received"] > last_end)).any())
    own_errors = overall["malformed"] + overall["handler_errors"]
    out = [
        Criterion("All instances connected after the faults", connected == n, f"{connected}/{n} connected", "all"),
        Criterion("All instances receiving again after the faults", receiving == n,
                  f"{receiving}/{n} received events after the last fault", "all"),
        Criterion("No self-received events (instance filtering works)", overall["self_received"] == 0,
                  str(overall["self_received"]), "0"),
        Criterion("Every lost event lost where a planned fault acted (on the instance it targets, in its window)",
                  losses.planned_only, _kinds_measured(losses), "0 unplanned, 0 unexplained"),
        Criterion("Per-instance arithmetic exact (received + attributed losses = expected)",
                  exact == n and overall["unknown"] == 0 and overall["unexpected"] == 0,
                  f"{exact}/{n} instances exact", "all"),
        Criterion("No errors besides the faults' (malformed messages, handler errors)", own_errors == 0,
                  str(own_errors), "0"),
        Criterion(f"Average latency <{th.max_avg_latency_ms:g}ms outside the faults' windows",
                  overall["expected"] == 0 if avg is None else avg < th.max_avg_latency_ms,
                  "n/a (no deliveries)" if avg is None else fmt_ms(avg), f"<{th.max_avg_latency_ms:g}ms"),
        Criterion("No duplicates handed to the application", overall["duplicates"] == 0,
                  str(overall["duplicates"]), "0"),
    ]
    out.append(_lateness(losses, th))
    if streams_promise_applies(record):
        out.insert(4, Criterion("Streams lost nothing it promises to keep", losses.lost == 0,
                                f"{losses.lost} lost", "0"))
    return out


def _kinds_measured(losses: LossAccount) -> str:
    k = losses.by_kind
    return (f"{losses.lost} lost: {k.get(PLANNED, 0)} to the planned fault, {k.get(OUTAGE_KIND, 0)} in unplanned "
            f"outages, {k.get(UNEXPLAINED, 0)} unexplained")


def _lateness(losses: LossAccount, th: Thresholds) -> Criterion:
    """How late the faults' windows delivered (stated, not judged): deliveries of events sent in a
    fault's window to the receivers it touched, against the run's latency bound."""
    f = losses.faults
    n, late = int(f["window_n"].sum()) if len(f) else 0, int(f["late"].sum()) if len(f) else 0
    worst = f["window_max_ms"].dropna().max() if len(f) else None
    p99 = f["window_p99_ms"].dropna().max() if len(f) else None
    measured = f"{late} of {n} later than {th.max_avg_latency_ms:g}ms"
    if n:  # the worst p99 of a fault that carries one (fanout.analysis.latency: p99 needs 1,000 samples)
        measured += (f" (p99 {fmt_ms(p99)}, " if p99 is not None and not pd.isna(p99) else " (") + \
            f"max {fmt_ms(worst)})"
    return Criterion(f"Deliveries in the faults' windows within {th.max_avg_latency_ms:g}ms (stated, not judged)",
                     late == 0, measured, f"<{th.max_avg_latency_ms:g}ms", judged=False)


def seed_verdict(per: pd.DataFrame, overall: dict[str, Any], latency: dict[str, Any], th: Thresholds) -> list[Criterion]:
    """The seed's five criteria in its wording, then ours."""
    n = len(per)
    connected = int(per["connected"].sum())
    exact = int(per["arithmetic_ok"].sum())
    avg = latency["avg_ms"]
    arithmetic = f"{exact}/{n} instances exact"
    if overall["unknown"] or overall["unexpected"]:
        arithmetic += f", {overall['unknown']} unknown, {overall['unexpected']} unexpected"
    return [
        Criterion("All instances connected", connected == n, f"{connected}/{n} connected", "all"),
        Criterion("No self-received events (instance filtering works)", overall["self_received"] == 0,
                  str(overall["self_received"]), "0"),
        Criterion(f"Delivery rate >{th.min_delivery_pct:g}%", overall["delivery_pct"] > th.min_delivery_pct,
                  f"{overall['delivery_pct']:.2f}%", f">{th.min_delivery_pct:g}%"),
        Criterion("No errors", overall["errors"] == 0, str(overall["errors"]), "0"),
        Criterion(f"Average latency <{th.max_avg_latency_ms:g}ms",
                  overall["expected"] == 0 if avg is None else avg < th.max_avg_latency_ms,
                  "n/a (no deliveries)" if avg is None else fmt_ms(avg), f"<{th.max_avg_latency_ms:g}ms"),
        Criterion("Per-instance arithmetic exact (each received all published minus its own)",
                  exact == n and overall["unknown"] == 0 and overall["unexpected"] == 0, arithmetic, "all"),
        Criterion("No duplicates", overall["duplicates"] == 0, str(overall["duplicates"]), "0"),
    ]
