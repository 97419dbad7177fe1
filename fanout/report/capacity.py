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


#: (bot instances, events/s at the top of the seed's range, the seed's events/s text, its Redis CPU claim %)
SEED_ROWS = ((1, 500, "100–500", 5.0), (3, 1500, "300–1,500", 10.0), (5, 2500, "500–2,500", 15.0),
             (10, 5000, "1K–5K", 25.0))
QUICK_S, FULL_S = 2.0, 10.0
EVENT_TYPES = ("ticker", "trade", "orderbook", "candle")
#: docs/scaling.md, measured: one Python process delivers 18,500–24,400 deliveries/s per core
#: (41–54 µs per delivery, publishing and recording included)
CLIENT_DELIVERIES_PER_CORE = (18_500, 24_400)
#: the same, per delivery (µs)
CLIENT_US_PER_DELIVERY = (41, 54)
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


def model(bots: int, rate: float, processes: int = 1, cores: int | None = None) -> dict:
    """The scaling model's prediction for one row: the client bound is one process's
    deliveries/s per core times the processes the row ran on (at most the cores)."""
    deliveries = bots * rate
    n = max(1, min(int(processes or 1), int(cores or processes or 1)))
    lo, hi = (c * n for c in CLIENT_DELIVERIES_PER_CORE)
    fits = "fits" if deliveries <= lo else ("over" if deliveries > hi else "at the knee")
    cpu = tuple(deliveries * us / 1e6 * 100.0 for us in REDIS_US_PER_DELIVERY)
    return {"deliveries_per_s": deliveries, "client_bound": fits, "client_lo": lo, "client_hi": hi,
            "processes": n, "redis_cpu_lo": cpu[0], "redis_cpu_hi": cpu[1], "cores": cores}


def model_constants() -> dict:
    """The scaling model's constants (docs/scaling.md), as report.json keeps them."""
    return {"client_deliveries_per_core": list(CLIENT_DELIVERIES_PER_CORE),
            "client_us_per_delivery": list(CLIENT_US_PER_DELIVERY), "redis_us_per_delivery": list(REDIS_US_PER_DELIVERY)}


def _median(values) -> float | None:
    import statistics

    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def facts(rep, entries: Sequence[dict]) -> list[dict]:
    """One dict per seed row (report.json ``facts.capacity``): the claim, the measurement from the
    runs' facts (or why there is none) and the model. A row run several times (``--repeat``) is
    its runs' medians (one number per run), delivery over all of them, the worst run's load state,
    and the claim holds only when it held in every run."""
    by_name: dict[str, list[dict]] = {}
    for e in entries:
        if e["role"] == "capacity":
            by_name.setdefault(e["name"], []).append(e)
    requested = bool(rep.run_params.capacity) or bool(by_name)  # as the runs were made (through re-renderings)
    out = []
    for row in ROWS:
        runs = by_name.get(row.name, [])
        lo, _, hi = row.seed_rate.partition("–")
        d = {"bots": row.bots, "rate": row.rate, "seed_rate": row.seed_rate, "seed_cpu_pct": row.seed_cpu_pct,
             "seed_rate_lo": _seed_number(lo), "seed_rate_hi": _seed_number(hi),
             "run": row.name if runs else None, "measured": bool(runs), "runs": len(runs)}
        if not runs:
            d["not_measured"] = "not requested (capacity rows off)" if not requested else "not run"
            out.append(d)
            continue
        res = [e["resources"] or {} for e in runs]
        cpus = [r.get("redis_cpu_pct") for r in res]
        worst = max(runs, key=lambda e: (e["load"]["over_capacity"], e["load"].get("near_limit", False)))
        expected = sum(int(e["expected"]) for e in runs)
        holds = [None if c is None or e["load"]["over_capacity"] else c < row.seed_cpu_pct for c, e in zip(cpus, runs)]
        d.update({
            "achieved_rate_per_s": _median(e["achieved_rate_per_s"] for e in runs),
            "delivery_pct": 100.0 * sum(int(e["delivered"]) for e in runs) / expected if expected else None,
            "latency_p99_ms": _median(e["latency_p99_ms"] for e in runs),
            "latency_samples": min(int(e["latency_samples"] or 0) for e in runs), "redis_cpu_pct": _median(cpus),
            "redis_cpu_pct_max": max((r.get("redis_cpu_pct_max") for r in res if r.get("redis_cpu_pct_max") is not None),
                                     default=None),
            "instrument_cpu_pct": _median(e["instrument_cpu_pct"] for e in runs),
            "instrument_cpu_source": "sampled" if any(e["instrument_cpu_source"] == "sampled" for e in runs)
            else "accounted", "load": worst["load"], "hosting": runs[0]["hosting"],
            "duration_s": runs[0]["duration_s"], "publishing_window_s": _median(e["publishing_window_s"] for e in runs),
            "deliveries_per_s": _median(e["deliveries_per_s"] for e in runs),
            "model": model(row.bots, row.rate, runs[0]["hosting"]["processes"], rep.machine().get("cores")),
            "claim_holds": None if None in holds else all(holds),
        })
        out.append(d)
    return out


def _seed_number(text: str) -> float | None:
    """The seed's "1K" as 1000, "1,500" as 1500."""
    t = text.strip().replace(",", "")
    try:
        return float(t[:-1]) * 1000 if t.upper().endswith("K") else float(t)
    except ValueError:
        return None


def _fmt(v, spec="{:.1f}") -> str:
    return "n/a" if v is None else spec.format(v)


def _hosted(h: dict) -> str:
    return "1 process" if h["kind"] == "single" else f"{h['processes']} {h['kind']}"


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
        base = {"bot instances": d["bots"], "runs": d.get("runs", 1), "seed: events/s": d["seed_rate"],
                "seed: Redis CPU": f"<{d['seed_cpu_pct']:g}%", "target events/s": f"{d['rate']:,.0f}"}
        if not d["measured"]:
            recs.append({**base, "achieved events/s": "not measured", "delivered": "", "p99 (ms)": "",
                         "hosted in": "", "Redis CPU % (mean / max)": "", "instrument CPU %": "",
                         "load": d["not_measured"], "seed's claim": "not measured"})
            continue
        star = "*" if d["instrument_cpu_source"] == "sampled" else ""
        recs.append({**base, "achieved events/s": _fmt(d["achieved_rate_per_s"], "{:,.0f}"),
                     "delivered": _fmt(d["delivery_pct"], "{:.2f}%"),
                     "p99 (ms)": _p99({"p99_ms": d["latency_p99_ms"], "count": d["latency_samples"]}),
                     "hosted in": _hosted(d["hosting"]),
                     "Redis CPU % (mean / max)": f"{_fmt(d['redis_cpu_pct'])} / {_fmt(d['redis_cpu_pct_max'])}",
                     "instrument CPU %": _fmt(d["instrument_cpu_pct"]) + star, "load": load_state(d["load"]),
                     "seed's claim": "holds" if d["claim_holds"] else "does not hold" if d["claim_holds"] is not None
                     else "not judged"})
    return pd.DataFrame(recs)


def model_table(rows: list[dict]) -> pd.DataFrame:
    recs = []
    for d in rows:
        if not d["measured"]:
            continue
        m = d["model"]
        recs.append({"bot instances": d["bots"], "events/s": f"{d['rate']:,.0f}",
                     "model: deliveries/s offered": f"{m['deliveries_per_s']:,.0f}",
                     "processes": m["processes"],
                     "model: client bound (deliveries/s)": f"{m['client_lo']:,.0f}–{m['client_hi']:,.0f}",
                     "model: reading": m["client_bound"],
                     "measured: deliveries/s (publishing window)": _fmt(d["deliveries_per_s"], "{:,.0f}"),
                     "model: Redis CPU %": f"{m['redis_cpu_lo']:.1f}–{m['redis_cpu_hi']:.1f}",
                     "measured: Redis CPU %": _fmt(d["redis_cpu_pct"])})
    return pd.DataFrame(recs)


__all__ = ["ROWS", "Row", "scenarios", "model", "facts", "seed_table", "model_table",
           "CLIENT_DELIVERIES_PER_CORE", "REDIS_US_PER_DELIVERY"]
