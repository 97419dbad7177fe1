"""The seed's capacity-planning table, measured: each row as a short run, the seed's claim beside
what was measured, and the scaling model (docs/scaling.md) beside both.

The seed's rows are application instances of 100 bots each behind one WebSocket host, at up to
500 / 1,500 / 2,500 / 5,000 events/s, with "Redis CPU" under 5 / 10 / 15 / 25 %. Here each row
is that deployment (``topology: host-bots``): one publish-only host at the row's top rate and N
subscribe-only bot instances, so every event is delivered N times (the bots inside one instance
share its one subscription, as the seed's do).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from fanout.lab.resources import summarise
from fanout.report import saturation

#: (bot instances, events/s at the top of the seed's range, the seed's events/s text, its Redis CPU claim %)
SEED_ROWS = ((1, 500, "100–500", 5.0), (3, 1500, "300–1,500", 10.0), (5, 2500, "500–2,500", 15.0),
             (10, 5000, "1K–5K", 25.0))
QUICK_S, FULL_S = 2.0, 10.0
EVENT_TYPES = ("ticker", "trade", "orderbook", "candle")
#: docs/scaling.md, measured: one Python process delivers 18,500–24,400 deliveries/s per core
#: (41–54 µs per delivery, publishing and recording included)
CLIENT_DELIVERIES_PER_CORE = (18_500, 24_400)
#: docs/scaling.md, measured: one Redis node spends 1.2 µs (batched) to 8.3 µs (unbatched) per delivery
REDIS_US_PER_DELIVERY = (1.2, 8.3)


@dataclass(frozen=True)
class Row:
    bots: int
    rate: float
    seed_rate: str
    seed_cpu_pct: float

    @property
    def name(self) -> str:
        return f"capacity-{self.bots}x{self.rate:g}"


ROWS = tuple(Row(*r) for r in SEED_ROWS)


def scenarios(*, quick: bool = True, duration_scale: float | None = None, redis_url: str | None = None,
              key_prefix: str | None = None, seed: int | None = None) -> list[tuple]:
    """``(scenario, "capacity", source, changes)`` for each row, ready for :func:`runs.run_planned`."""
    from fanout.lab.scenario import Scenario

    duration = FULL_S * duration_scale if duration_scale is not None else (QUICK_S if quick else FULL_S)
    out = []
    for row in ROWS:
        fields = dict(name=row.name, instances=row.bots + 1, topology="host-bots", rate_per_s=row.rate,
                      duration_s=round(duration, 6), event_types=EVENT_TYPES, drain_timeout_s=5.0,
                      redis_url=redis_url)
        if key_prefix:
            fields["key_prefix"] = key_prefix
        if seed is not None:
            fields["seed"] = seed
        out.append((Scenario(**fields), "capacity", "the seed's capacity-planning table", {}))
    return out


def model(bots: int, rate: float, cores: int | None) -> dict:
    """The scaling model's prediction for one row, all instances in one process (one core)."""
    deliveries = bots * rate
    lo, hi = CLIENT_DELIVERIES_PER_CORE
    fits = "fits" if deliveries <= lo else ("over" if deliveries > hi else "at the knee")
    cpu = tuple(deliveries * us / 1e6 * 100.0 for us in REDIS_US_PER_DELIVERY)
    return {"deliveries_per_s": deliveries, "client_bound": fits, "client_lo": lo, "client_hi": hi,
            "redis_cpu_lo": cpu[0], "redis_cpu_hi": cpu[1], "cores": cores}


def _redis_cpu(run) -> tuple[float | None, float | None]:
    res = summarise(run.record.resources, run.record.t0, run.record.t_end)
    r = res[res["kind"] == "redis"]
    if r.empty:
        return None, None
    return float(r["cpu_pct"].sum()), float(r["cpu_pct_max"].max())


def measured_rows(runs: Sequence, *, requested: bool = True) -> list[dict]:
    """One dict per seed row: the claim, the measurement (or why there is none) and the model."""
    by_name = {r.name: r for r in runs if r.role == "capacity"}
    out = []
    for row in ROWS:
        run = by_name.get(row.name)
        d = {"row": row, "run": run, "model": None, "load": None, "redis_cpu": None, "redis_cpu_max": None,
             "not_measured": None}
        if run is None:
            d["not_measured"] = "not requested (capacity rows off)" if not requested else "not run"
        else:
            d["load"] = saturation.assess(run)
            d["redis_cpu"], d["redis_cpu_max"] = _redis_cpu(run)
            d["model"] = model(row.bots, row.rate, run.findings.environment.get("cores"))
            d["claim_holds"] = (None if d["redis_cpu"] is None or d["load"].over_capacity
                                else d["redis_cpu"] < row.seed_cpu_pct)
        out.append(d)
    return out


def _fmt(v, spec="{:.1f}") -> str:
    return "n/a" if v is None else spec.format(v)


def _p99(lat: dict) -> str:
    """The p99 as a bare number, or ``— (n=…)`` when the samples do not carry it."""
    from fanout.formatting import percentile

    shown = percentile(lat.get("p99_ms"), lat.get("count"), "p99_ms", short=True)
    return shown if shown.startswith("—") else _fmt(lat.get("p99_ms"), "{:.3f}")


def seed_table(rows: list[dict]) -> pd.DataFrame:
    """The seed's columns, then the measured ones (numbers only; the states are words)."""
    from fanout.report.tables import load_state

    recs = []
    for d in rows:
        row, run = d["row"], d["run"]
        if run is None:
            recs.append({"bot instances": row.bots, "seed: events/s": row.seed_rate,
                         "seed: Redis CPU": f"<{row.seed_cpu_pct:g}%", "target events/s": f"{row.rate:,.0f}",
                         "achieved events/s": "not measured", "delivered": "", "p99 (ms)": "",
                         "Redis CPU % (mean / max)": "", "instrument CPU %": "", "load": d["not_measured"]})
            continue
        o, lat, load = run.findings.overall, run.findings.latency, d["load"]
        recs.append({"bot instances": row.bots, "seed: events/s": row.seed_rate,
                     "seed: Redis CPU": f"<{row.seed_cpu_pct:g}%", "target events/s": f"{row.rate:,.0f}",
                     "achieved events/s": _fmt(o["achieved_rate_per_s"], "{:,.0f}"),
                     "delivered": f"{o['delivery_pct']:.2f}%", "p99 (ms)": _p99(lat),
                     "Redis CPU % (mean / max)": f"{_fmt(d['redis_cpu'])} / {_fmt(d['redis_cpu_max'])}",
                     "instrument CPU %": _fmt(load.instrument_cpu_pct), "load": load_state(load)})
    return pd.DataFrame(recs)


def model_table(rows: list[dict]) -> pd.DataFrame:
    recs = []
    for d in rows:
        row, run, m = d["row"], d["run"], d["model"]
        if run is None:
            continue
        o = run.findings.overall
        recs.append({"bot instances": row.bots, "events/s": f"{row.rate:,.0f}",
                     "model: deliveries/s offered": f"{m['deliveries_per_s']:,.0f}",
                     "model: one process (18,500–24,400/s)": m["client_bound"],
                     "measured: deliveries/s": _fmt(o["deliveries_per_s"], "{:,.0f}"),
                     "model: Redis CPU %": f"{m['redis_cpu_lo']:.1f}–{m['redis_cpu_hi']:.1f}",
                     "measured: Redis CPU %": _fmt(d["redis_cpu"])})
    return pd.DataFrame(recs)


__all__ = ["ROWS", "Row", "scenarios", "model", "measured_rows", "seed_table", "model_table",
           "CLIENT_DELIVERIES_PER_CORE", "REDIS_US_PER_DELIVERY"]
