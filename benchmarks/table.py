"""The printed table of a benchmark run (``render``) and the plain statements of where fanout is
slower than each baseline (``compare``), from the result dict ``runner.main`` builds."""
from __future__ import annotations

from typing import Any

from .targets import knee_deliveries, render as render_targets, render_capacity, render_climit


def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _x(v: float | None) -> str:
    """A ratio with 3 significant digits."""
    return "n/a" if v is None else f"{v:.3g}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


# -- the table ----------------------------------------------------------------------------------

def render(res: dict[str, Any]) -> str:
    from .machine import one_line

    L: list[str] = []
    m = res["machine"]
    L.append(f"fanout benchmarks ({res['mode']}), {res['started']}")
    L.append(f"machine: {one_line(m)}")
    L.append("")
    if res.get("climit"):
        L.extend(render_climit(res["climit"]))
        L.append("")
    lat = res.get("latency")
    if lat:
        L.append(f"Latency at fixed rates, {lat['instances']} instances, open-loop "
                 f"(ms from each event's due time; one Python process runs the publisher(s) and all subscribers; "
                 f"py cpu% includes the scheduler's {lat['spin_s'] * 1000:g} ms spin before each due time)")
        L.append(f"{'rate/s':>7}  {'harness':<19} {'achieved/s':>10} {'deliv%':>8} {'pub fail':>8} {'p50':>9} "
                 f"{'p99':>9} {'p99.9':>9} {'max':>9} {'py%':>4} {'redis%':>6} {'wait%':>5}")
        for s in lat["runs"]:
            la = s["latency"]
            L.append(f"{s['target_rate']:>7g}  {s['harness']:<19} {_fmt(s['achieved_rate'], 1):>10} "
                     f"{s['delivery_pct']:>8.3f} {s['publish_failed']:>8} {_fmt(la['p50_ms']):>9} "
                     f"{_fmt(la['p99_ms']):>9} {_fmt(la['p999_ms']):>9} {_fmt(la['max_ms']):>9} "
                     f"{_fmt(s['cpu']['python_cpu_pct'], 0):>4} {_fmt(s['cpu']['redis_cpu_pct'], 0):>6} "
                     f"{_fmt(s['contention']['python_runqueue_wait_pct'], 0):>5}")
        L.append("  wait% = share of the time the Python event loop was runnable but waiting for a CPU "
                 "(other processes on the machine)")
        for other, per in lat["ratios_fanout_over"].items():
            parts = [f"{r}/s p50 x{_x(d['p50_ms'])} p99 x{_x(d['p99_ms'])}" for r, d in per.items()]
            L.append(f"  fanout / {other}: " + "; ".join(parts))
        L.append("")
    knee = res.get("knee")
    if knee:
        c = knee["criteria"]
        L.append(f"Max lossless rate (knee), {knee['step_s']:g} s steps: 100% delivery, no disconnects, "
                 f"achieved >= {c['min_achieved_fraction']:.0%}, lag p99 <= {c['max_schedule_lag_p99_ms']:g} ms, "
                 f"latency p99 <= {c['max_latency_p99_ms']:g} ms")
        L.append(f"{'inst':>4}  {'harness':<19} {'knee ev/s':>9} {'deliveries/s':>12} {'x naive':>7} {'x C':>6} "
                 f"{'cpu µs':>6} {'steps':>5}  {'py%/redis%/wait%/gc ms at failing step':<38} next step")
        from .climit import limit_for
        for r in knee["results"]:
            fs = next((s for s in r["steps"] if s["target_rate"] == r["failed_rate"]), None)
            cpu = (f"{_fmt(fs['cpu']['python_cpu_pct'], 0)} / {_fmt(fs['cpu']['redis_cpu_pct'], 0)} / "
                   f"{_fmt(fs['contention']['python_runqueue_wait_pct'], 0)} / {_fmt(fs['gc']['max_pause_ms'], 0)}"
                   if fs else "-")
            kr = "none" if r["knee_rate"] is None else f"{r['knee_rate']:g}"
            kd = "-" if r["knee_deliveries_per_s"] is None else f"{r['knee_deliveries_per_s']:g}"
            nxt = f"{r['failed_rate']:g}/s failed:" if r["failed_rate"] is not None else "(capped)"
            naive = knee_deliveries(res, "baseline-pipelined", r["instances"])
            ks = next((s for s in r["steps"] if s["target_rate"] == r["knee_rate"]), None)
            us = ks["cpu"].get("python_cpu_ms_per_1k_deliveries") if ks else None
            L.append(f"{r['instances']:>4}  {r['harness']:<19} {kr:>9} {kd:>12} "
                     f"{_x(_ratio(r['knee_deliveries_per_s'], naive)):>7} "
                     f"{_x(_ratio(r['knee_deliveries_per_s'], limit_for(res.get('climit'), r['instances']))):>6} "
                     f"{_fmt(us, 1):>6} {len(r['steps']):>5}  {cpu:<38} {nxt}")
            L.append(f"{'':>6}{r['reason']}")
        L.append("  wait% = Python run-queue wait (starved by other processes); gc ms = longest garbage collection "
                 "pause (the recorded deliveries are scanned)")
        for other, per in knee["knee_ratio_fanout_over"].items():
            L.append(f"  fanout knee / {other} knee: " +
                     ", ".join(f"{n} inst x{_x(v)}" for n, v in per.items()))
        L.append("")
        L.append("Latency-throughput curve (knee search steps; rate/s -> p50/p99 ms; * = failed step)")
        groups: dict[tuple, list] = {}
        for p in knee["curve"]:
            groups.setdefault((p["instances"], p["harness"]), []).append(p)
        for (n, h), pts in groups.items():
            cells = [f"{p['rate']:g}{'' if p['passed'] else '*'}: {_fmt(p['p50_ms'], 1)}/{_fmt(p['p99_ms'], 1)}"
                     for p in pts]
            L.append(f"{n:>4}  {h:<19} " + "  ".join(cells))
        L.append("")
    mem = res.get("memory")
    if mem:
        rss = mem["rss"]
        cpu = mem["cpu"]
        hs = [r["harness"] for r in cpu["summary"]]
        L.append(f"Resources (RSS: K={rss['k_low']} vs K={rss['k_high']} idle instances; CPU: "
                 f"{cpu['instances']} instances at {cpu['rate']:g}/s for {cpu['duration_s']:g}s, median of "
                 f"{cpu['repeats']})")
        L.append(f"{'':<40}" + "".join(f"{h:>20}" for h in hs))
        rows = [
            ("RSS per instance (KiB)", lambda h: rss.get(h if h != "baseline-pipelined" else "baseline", {})
             .get("rss_per_instance_kib")),
            ("redis-server memory per instance (KiB)", lambda h: rss.get(h if h != "baseline-pipelined" else
                                                                       "baseline", {}).get("redis_used_memory_per_instance_kib")),
        ]
        for label, get in rows:
            L.append(f"{label:<40}" + "".join(f"{_fmt(get(h), 1):>20}" for h in hs))
        for label, key in (("Python CPU ms per 1k deliveries", "python_cpu_ms_per_1k_deliveries"),
                           ("redis CPU ms per 1k deliveries", "redis_cpu_ms_per_1k_deliveries"),
                           ("Python CPU %", "python_cpu_pct"), ("redis CPU %", "redis_cpu_pct")):
            L.append(f"{label:<40}" + "".join(f"{_fmt(r['cpu'][key], 1):>20}" for r in cpu["summary"]))
        L.append(f"{'Python run-queue wait %':<40}" + "".join(f"{_fmt(r['python_runqueue_wait_pct'], 1):>20}"
                                                          for r in cpu["summary"]))
        L.append(f"{'delivery % (lowest)':<40}" + "".join(f"{r['delivery_pct']:>20.3f}" for r in cpu["summary"]))
        L.append("")
    prof = res.get("profile")
    if prof:
        L.append(f"Profile (cProfile, {prof['duration_s']:g}s at 70% of fanout's knee; share of the Python "
                 f"process's self time by layer)")
        for r in prof["runs"]:
            top = ", ".join(f"{k} {v:.0f}%" for k, v in list(r["layers_pct_of_self_time"].items())[:4])
            L.append(f"  {r['instances']:>2} inst {r['rate']:>6g}/s {r['harness']:<19} {top}")
            c = r["calls_per_event"]
            L.append(f"  {'':>20}{'':<19} per published event: "
                     f"{c['tasks created']:g} tasks, {c['futures created']:g} futures, "
                     f"{c['timers scheduled (call_at)']:g} timers, {c['socket send() calls']:g} send() calls")
        L.append("")
    fixed = [f"  {s['harness']:<16} {s['instances']:>3} instances at {s['target_rate']:g}/s: delivery "
             f"{s['delivery_pct']:.3f}%, p50 {_fmt(s['latency']['p50_ms'])} / p99 {_fmt(s['latency']['p99_ms'])} ms, "
             f"{'pass' if s['passed'] else 'FAIL: ' + s['reason']}" for s in (res.get("fixed") or {}).get("runs", ())]
    for key, lines in (("capacity", lambda: render_capacity(res["capacity"])),
                       ("fixed", lambda: ["Fixed-rate steps", *fixed]), ("targets", lambda: render_targets(res["targets"]))):
        if res.get(key):
            L.extend(lines())
            L.append("")
    if res.get("wire"):
        from .wire import render_wire

        L.extend(render_wire(res["wire"]))
        L.append("")
    cmp_lines = res.get("comparison", {}).get("lines", [])
    if cmp_lines:
        L.append("Where fanout is slower than the baseline (ratio fanout/baseline; same machine, same minutes)")
        L.extend(f"  {x}" for x in cmp_lines)
        L.append("")
    L.append(f"elapsed {res['elapsed_s']:.0f}s; load avg at end {res['loadavg_at_end'][0]:.2f}; JSON: {res['json_path']}")
    return "\n".join(L)


def compare(res: dict[str, Any]) -> dict[str, Any]:
    """Plain statements of where fanout is slower (or bigger) than each baseline, with ratios."""
    lines: list[str] = []
    facts: list[dict[str, Any]] = []

    def add(what: str, ratio: float | None, worse_if_above: bool, other: str, note: str = "") -> None:
        if ratio is None:
            return
        worse = ratio > 1.05 if worse_if_above else ratio < 0.95
        facts.append({"what": what, "vs": other, "ratio": ratio, "fanout_worse": worse, "note": note})
        if worse:
            lines.append(f"{what} vs {other}: x{_x(ratio)}" + (f" ({note})" if note else ""))

    def caveat(*steps: dict[str, Any] | None) -> str:
        notes = []
        for s in steps:
            if not s:
                continue
            if s["publish_failed"]:
                notes.append(f"{s['harness']}: {s['publish_failed']} publishes failed")
            if not s["passed"] and s.get("reason", "").startswith("publisher behind"):
                notes.append(f"{s['harness']} could not keep the schedule")
            if s["contention"]["contended"]:
                notes.append(f"{s['harness']} starved {s['contention']['python_runqueue_wait_pct']:.0f}% of the time")
        return "; ".join(notes)

    lat = res.get("latency")
    if lat:
        runs = lat["runs"]
        for other, per in lat["ratios_fanout_over"].items():
            for rate, d in per.items():
                f = next((r for r in runs if r["harness"] == "fanout" and f"{r['target_rate']:g}" == rate), None)
                b = next((r for r in runs if r["harness"] == other and f"{r['target_rate']:g}" == rate), None)
                note = caveat(f, b)
                for k, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
                    add(f"latency {label} at {rate}/s", d[k], True, other, note)
    knee = res.get("knee")
    if knee:
        for other, per in knee["knee_ratio_fanout_over"].items():
            for n, v in per.items():
                f = next((r for r in knee["results"] if r["harness"] == "fanout" and str(r["instances"]) == n), None)
                add(f"max lossless rate, {n} instances", v, False, other,
                    f"fanout's next step: {f['reason']}" if f and f["failed_rate"] else "")
    mem = res.get("memory")
    if mem:
        runs = {r["harness"]: r for r in mem["cpu"]["summary"]}
        f = runs.get("fanout")
        for other, b in runs.items():
            if other == "fanout" or not f:
                continue
            add("Python CPU per delivery", _ratio(f["cpu"]["python_cpu_ms_per_1k_deliveries"],
                                                  b["cpu"]["python_cpu_ms_per_1k_deliveries"]), True, other)
            add("redis CPU per delivery", _ratio(f["cpu"]["redis_cpu_ms_per_1k_deliveries"],
                                                 b["cpu"]["redis_cpu_ms_per_1k_deliveries"]), True, other)
        rss = mem["rss"]
        if "fanout" in rss and "baseline" in rss:
            add("RSS per instance", _ratio(rss["fanout"]["rss_per_instance_kib"],
                                           rss["baseline"]["rss_per_instance_kib"]), True, "baseline")
            add("redis-server memory per instance", _ratio(rss["fanout"]["redis_used_memory_per_instance_kib"],
                                                           rss["baseline"]["redis_used_memory_per_instance_kib"]),
                True, "baseline", "a bridge holds 2 connections (publisher + subscriber), a baseline subscriber 1")
    if not lines and facts:
        lines.append("nowhere by more than 5 % in this run")
    return {"lines": lines, "facts": facts}


