"""Issue 13's targets, each with its measured value and its ratios, from one benchmark run.

Sections computed here: ``climit`` (the C hiredis pair, :mod:`benchmarks.climit`), ``capacity``
(the seed's capacity table, :func:`fanout.lab.capacity.capacity_table`), ``fixed`` (fixed-rate
steps the targets name that no other section runs: 50 instances at 1,000 events/s), and
``targets`` (no runs: the table, from every other section's figures).
"""
from __future__ import annotations

from typing import Any

#: (harness, instances, events/s) measured once at a fixed rate for the targets
FIXED_STEPS = (("fanout-auto", 50, 1_000.0),)


def run_fixed(plan, say) -> dict[str, Any]:
    from .harness import measure

    runs = []
    for h, n, rate in FIXED_STEPS:
        say(f"fixed: {h}, {n} instances, {rate:g}/s for {plan.fixed_duration_s:g}s")
        runs.append(measure(h, n, rate, duration_s=plan.fixed_duration_s, warmup_s=0.5, drain_s=5.0, spin_s=0.0))
    return {"runs": runs}


def run_capacity(plan, say) -> dict[str, Any]:
    from fanout.lab.capacity import SEED_ROWS, capacity_table

    df = capacity_table(SEED_ROWS, duration_s=plan.capacity_duration_s, say=say)
    return {"duration_s": plan.capacity_duration_s, "topology": "host-bots (one publishing host, N bot instances)",
            "rows": df.to_dict(orient="records")}


def _knee(res: dict, harness: str, n: int) -> dict | None:
    return next((r for r in (res.get("knee") or {}).get("results", ()) if r["harness"] == harness
                 and r["instances"] == n), None)


def _cpu_us(step: dict | None) -> float | None:
    return None if not step else step["cpu"].get("python_cpu_ms_per_1k_deliveries")


def _ratio(a, b) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def _knee_step(k: dict | None) -> dict | None:
    if not k or k["knee_rate"] is None:
        return None
    return next((s for s in k["steps"] if s["target_rate"] == k["knee_rate"]), None)


def knee_deliveries(res: dict, harness: str, n: int) -> float | None:
    k = _knee(res, harness, n)
    return None if k is None else k["knee_deliveries_per_s"]


def build(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: measured value, ratio to the naive loops and to the C limit, CPU µs
    per delivery, met (None when not measured in this run)."""
    from .climit import limit_for

    c5 = limit_for(res.get("climit"), 5)
    naive5, naive5_awaited = knee_deliveries(res, "baseline-pipelined", 5), knee_deliveries(res, "baseline", 5)
    rows: list[dict[str, Any]] = []

    def knee_row(what: str, target: str, harness: str, floor: float, times_naive: float | None = None,
                 over: float | None = None) -> None:
        v = knee_deliveries(res, harness, 5)
        k = _knee(res, harness, 5)
        ratio = _ratio(v, naive5)
        met = None if v is None else v >= floor and (times_naive is None or (ratio or 0) >= times_naive)
        if over is not None and met is not None and v is not None:
            met = met and v >= over
        note = (k or {}).get("reason", "not measured")
        if k and k["capped"] and not met:  # the search stopped below the target: not a verdict
            met, note = None, f"the search stopped at {k['knee_rate']:g} events/s (knee_max_rate / max raise steps)"
        rows.append({"what": what, "target": target, "measured": v, "unit": "deliveries/s",
                     "x_naive_pipelined": ratio, "x_naive_awaited": _ratio(v, naive5_awaited), "x_c_limit": _ratio(v, c5),
                     "cpu_us_per_delivery": _cpu_us(_knee_step(k)),
                     "met": met, "note": note})

    knee_row("max lossless deliveries/s, 1 event per message, 5 instances, processes",
             "≥ 150,000 and ≥ 3× the pipelined naive loop", "fanout-processes", 150_000, 3.0)
    knee_row("same, one process", "≥ 60,000", "fanout", 60_000)
    unbatched = knee_deliveries(res, "fanout-processes", 5)
    knee_row("with batching (batch_max 64), processes", "≥ 500,000 events delivered/s (≥ 3× unbatched)",
             "fanout-batch64", 500_000, over=3 * unbatched if unbatched else None)
    lat = res.get("latency") or {}
    f = next((r for r in lat.get("runs", ()) if r["harness"] == "fanout" and r["target_rate"] == 1000), None)
    b = [r for r in lat.get("runs", ()) if r["harness"].startswith("baseline") and r["target_rate"] == 1000]
    if f:
        p50, p99 = f["latency"]["p50_ms"], f["latency"]["p99_ms"]
        best = min(b, key=lambda r: r["latency"]["p99_ms"] or 1e9) if b else None
        ok = p50 is not None and p99 is not None and p50 <= 0.25 and p99 <= 1.0
        if best:
            ok = ok and p50 <= best["latency"]["p50_ms"] * 1.05 and p99 <= best["latency"]["p99_ms"] * 1.05
        rows.append({"what": f"1,000 events/s × {lat.get('instances')} instances", "target":
                     "p50 ≤ 0.25 ms, p99 ≤ 1.0 ms, no worse than the naive loop", "measured": f"p50 {p50} / p99 {p99}",
                     "unit": "ms", "x_naive_pipelined": _ratio(p99, best["latency"]["p99_ms"]) if best else None,
                     "x_naive_awaited": None, "x_c_limit": None, "cpu_us_per_delivery": _cpu_us(f), "met": ok,
                     "note": (f"best naive ({best['harness']}): p50 {best['latency']['p50_ms']} / p99 "
                              f"{best['latency']['p99_ms']} ms; ratio is p99/p99") if best else ""})
    fixed = next((r for r in (res.get("fixed") or {}).get("runs", ()) if r["instances"] == 50), None)
    if fixed:
        p99 = fixed["latency"]["p99_ms"]
        rows.append({"what": "50 instances × 1,000 events/s", "target": "lossless, p99 ≤ 5 ms",
                     "measured": f"delivery {fixed['delivery_pct']:.3f}%, p99 {p99}", "unit": "ms",
                     "x_naive_pipelined": None, "x_naive_awaited": None, "x_c_limit": None,
                     "cpu_us_per_delivery": _cpu_us(fixed),
                     "met": bool(fixed["passed"] and p99 is not None and p99 <= 5.0),
                     "note": f"{(fixed.get('instrument') or {}).get('process_mode_reason', '')}; {fixed['reason']}"})
    cap = (res.get("capacity") or {}).get("rows")
    if cap:
        rows.append({"what": "the seed's capacity table (1/3/5/10 instances at 500/1,500/2,500/5,000 events/s)",
                     "target": "every row lossless, Redis CPU % measured",
                     "measured": "; ".join(f"{r['instances']}×{r['events_per_s']:g}: "
                                           f"{'lossless' if r['lossless'] else 'LOSS'}, Redis {r['redis_cpu_pct']}%"
                                           for r in cap), "unit": "", "x_naive_pipelined": None,
                     "x_naive_awaited": None, "x_c_limit": None, "cpu_us_per_delivery": None,
                     "met": all(r["lossless"] and r["redis_cpu_pct"] is not None for r in cap), "note": ""})
    rss = ((res.get("memory") or {}).get("rss") or {}).get("fanout")
    if rss:
        kib = rss["rss_per_instance_kib"]
        base = ((res.get("memory") or {}).get("rss") or {}).get("baseline", {}).get("rss_per_instance_kib")
        rows.append({"what": "memory per bridge", "target": "≤ 5 MB", "measured": kib, "unit": "KiB RSS",
                     "x_naive_pipelined": None, "x_naive_awaited": _ratio(kib, base), "x_c_limit": None,
                     "cpu_us_per_delivery": None, "met": kib <= 5 * 1024, "note": ""})
    return rows


def render(rows: list[dict[str, Any]]) -> list[str]:
    def f(v) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"
        return str(v)

    L = ["Targets (issue 13): measured in this run; x naive = / the redis-py loop (pipelined, awaited), "
         "x C = / the C hiredis pair (pipeline 64); cpu = Python CPU µs per delivery"]
    L.append(f"  {'what':<58} {'measured':>30} {'x naive':>8} {'x await':>8} {'x C':>6} {'cpu':>6}  met  target")
    for r in rows:
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "NO")
        L.append(f"  {r['what'][:58]:<58} {f(r['measured'])[:30]:>30} {f(r['x_naive_pipelined']):>8} "
                 f"{f(r['x_naive_awaited']):>8} {f(r['x_c_limit']):>6} {f(r['cpu_us_per_delivery']):>6}  "
                 f"{met:<4} {r['target']}")
        if r.get("note") and r["met"] is not True:
            L.append(f"  {'':<58} {r['note'][:160]}")
    return L


def render_climit(c: dict[str, Any]) -> list[str]:
    if c.get("skipped"):
        return [f"C limit: skipped: {c['skipped']}"]
    L = [f"C limit (hiredis publisher + subscribers in C, {c['payload_bytes']} B messages = fanout's mean envelope)"]
    for r in c["runs"]:
        if "error" in r:
            L.append(f"  {r['instances']} instances, pipeline {r['pipeline']}: error {r['error']}")
            continue
        L.append(f"  {r['instances']} instances ({r['subscribers']} subscribers), pipeline {r['pipeline']:>3}: "
                 f"{r['deliveries_per_s']:>11,.0f} deliveries/s, client {r['client_cpu_us_per_delivery']:.2f} µs + "
                 f"Redis {r['redis_cpu_us_per_delivery']:.2f} µs CPU per delivery"
                 f"{'' if r['complete'] else ' (INCOMPLETE: messages lost)'}")
    return L


def render_capacity(c: dict[str, Any]) -> list[str]:
    L = [f"Capacity (the seed's table; {c['topology']}, {c['duration_s']:g} s per row)"]
    L.append(f"  {'inst':>4} {'events/s':>8} {'deliv/s':>8} {'deliv%':>8} {'p50 ms':>7} {'p99 ms':>7} "
             f"{'redis%':>6} {'seed <':>6} {'py%':>5} {'mode':<9} lossless")
    for r in c["rows"]:
        L.append(f"  {r['instances']:>4} {r['events_per_s']:>8g} {r['deliveries_per_s']:>8g} {r['delivery_pct']:>8.3f} "
                 f"{r['p50_ms'] or 0:>7.3f} {r['p99_ms'] or 0:>7.3f} {r['redis_cpu_pct'] or 0:>6.1f} "
                 f"{r['seed_redis_cpu_bound_pct'] or 0:>6g} {r['instrument_cpu_pct'] or 0:>5.0f} "
                 f"{r['process_mode'] or '?':<9} {'yes' if r['lossless'] else 'NO'}")
    return L
