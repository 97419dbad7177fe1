"""``python -m benchmarks``: run the sections, print the table, write the JSON.

Sections (``--only``, comma-separated; default: all but ``profile`` in ``--quick``):

* ``latency`` - fixed open-loop rates (100, 1,000, 10,000 events/s) with 5 instances, every harness;
* ``knee``    - the maximum lossless rate for 3, 5, 10 and 50 instances, every harness, and the
  latency-throughput curve of the search's steps;
* ``memory``  - RSS (and redis-server memory) per added instance, and CPU per 1,000 deliveries
  from one fixed-rate run per harness;
* ``climit``  - the C hiredis publisher/subscriber pair (pipeline 64 and 1) on the same Redis:
  the limit every figure is divided by (skipped, with the reason, without a compiler or libhiredis);
* ``capacity``- the seed's capacity table (1/3/5/10 instances at 500/1,500/2,500/5,000 events/s);
* ``fixed``   - fixed-rate steps the targets name (50 instances at 1,000 events/s);
* ``profile`` - cProfile of one short run per harness (where the Python process's time goes);
* ``wire``    - no server: bytes per event in each envelope form, CPU per message to sign and
  verify, and per delivery through the receive path with signing off and on (``benchmarks.wire``).

After the sections, the targets table of issue 13 (``benchmarks.targets``): every target's
measured value, its ratio to the naive redis-py loops and to the C limit, CPU µs per delivery.

Progress goes to stderr; the table to stdout; the JSON to ``--out`` (default
``benchmarks/results/``) as ``<timestamp>.json`` and ``latest.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SECTIONS = ("climit", "latency", "knee", "memory", "capacity", "fixed", "profile", "wire")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA = "fanout-benchmarks/1"


@dataclass
class Plan:
    mode: str
    harnesses: tuple[str, ...] = ("fanout", "baseline", "baseline-pipelined")
    # latency at fixed rates
    latency_rates: tuple[float, ...] = (100, 1_000, 10_000)
    latency_instances: int = 5
    latency_events: int = 5_000           # duration per rate: this many events ...
    latency_min_s: float = 2.0            # ... but at least this long
    latency_max_s: float = 6.0            # ... and at most this long
    latency_warmup_s: float = 1.0         # at most this long, and at most latency_warmup_events
    latency_warmup_events: int = 1_000
    latency_drain_s: float = 5.0
    latency_spin_s: float = 0.0015        # the simulator's default scheduler (on-time sends)
    # knee
    knee_instances: tuple[int, ...] = (3, 5, 10, 50)
    # knee searches beyond harnesses x knee_instances: the process and batching harnesses at 5
    knee_extra: tuple[tuple[str, int], ...] = (("fanout-processes", 5), ("fanout-batch64", 5))
    climit_instances: tuple[int, ...] = (5,)
    capacity_duration_s: float = 5.0
    fixed_duration_s: float = 3.0
    knee_step_s: float = 2.0
    knee_warmup_s: float = 0.5
    knee_drain_s: float = 2.0
    knee_start_deliveries: float = 2_000.0  # first step: this many deliveries/s, i.e. rate = this / (n - 1)
    knee_factor: float = 2.0
    knee_refine: int = 3
    knee_tolerance: float = 0.1
    knee_max_raise: int = 8
    knee_max_rate: float = 200_000.0
    # memory and CPU
    mem_k_low: int = 1
    mem_k_high: int = 51
    mem_repeats: int = 2
    cpu_rate: float = 1_000.0
    cpu_instances: int = 5
    cpu_duration_s: float = 2.0
    cpu_repeats: int = 3                  # interleaved; the median per harness is reported
    # profile
    profile_instances: tuple[int, ...] = (3, 50)   # publish-bound and receive-bound ends
    profile_duration_s: float = 3.0
    profile_harnesses: tuple[str, ...] = ("fanout", "baseline-pipelined")

    knee_retries: int = 2                 # failing steps measured while starved, measured again (per search)

    def latency_duration(self, rate: float) -> float:
        return max(self.latency_min_s, min(self.latency_max_s, self.latency_events / rate))

    def latency_warmup(self, rate: float) -> float:
        return round(max(0.1, min(self.latency_warmup_s, self.latency_warmup_events / rate)), 3)


def full_plan() -> Plan:
    return Plan(mode="full")


def quick_plan() -> Plan:
    return Plan(
        mode="quick", harnesses=("fanout", "baseline", "baseline-pipelined"),
        latency_rates=(100, 1_000), latency_events=1_000, latency_min_s=1.0, latency_max_s=1.0,
        latency_warmup_s=0.2, latency_drain_s=2.0, knee_retries=0,
        knee_instances=(5,), capacity_duration_s=1.0, fixed_duration_s=1.0, knee_step_s=0.7, knee_warmup_s=0.1, knee_drain_s=1.0,
        knee_start_deliveries=1_000.0, knee_factor=4.0, knee_refine=1, knee_max_raise=3, knee_max_rate=100_000,
        mem_k_low=1, mem_k_high=11, mem_repeats=1, cpu_rate=500.0, cpu_duration_s=1.0, cpu_repeats=1,
        profile_instances=(3,), profile_duration_s=1.0,
    )


from .table import _ratio, compare, render  # noqa: E402


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- sections ----------------------------------------------------------------------------------

def run_latency(plan: Plan) -> dict[str, Any]:
    from .harness import measure

    runs = []
    for rate in plan.latency_rates:
        dur = plan.latency_duration(rate)
        for h in plan.harnesses:  # interleaved per rate: the harnesses are compared minutes apart at most
            _say(f"latency: {h}, {plan.latency_instances} instances, {rate:g}/s for {dur:g}s")
            s = measure(h, plan.latency_instances, rate, duration_s=dur, warmup_s=plan.latency_warmup(rate),
                        drain_s=plan.latency_drain_s, spin_s=plan.latency_spin_s)
            runs.append(s)
    ratios = _ratios_by(runs, "target_rate", plan.harnesses)
    return {"instances": plan.latency_instances, "spin_s": plan.latency_spin_s,
            "what": "open-loop: event k due at t0 + k/rate; latency = receive time - due time (ms)",
            "runs": runs, "ratios_fanout_over": ratios}


def _ratios_by(runs: list[dict], key: str, harnesses: tuple[str, ...]) -> dict[str, Any]:
    """fanout / baseline for each latency statistic and CPU, per value of ``key``."""
    out: dict[str, Any] = {}
    for other in harnesses:
        if other == "fanout":
            continue
        per: dict[str, Any] = {}
        for f in (r for r in runs if r["harness"] == "fanout"):
            b = next((r for r in runs if r["harness"] == other and r[key] == f[key]), None)
            if b is None:
                continue
            d = {k: _ratio(f["latency"][k], b["latency"][k]) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}
            d["python_cpu_ms_per_1k_deliveries"] = _ratio(f["cpu"]["python_cpu_ms_per_1k_deliveries"],
                                                          b["cpu"]["python_cpu_ms_per_1k_deliveries"])
            per[f"{f[key]:g}"] = d
        out[other] = per
    return out


def run_knee(plan: Plan, cores: int | None) -> dict[str, Any]:
    from .harness import Criteria, bottleneck, measure
    from .knee import find_knee

    results = []
    searches = [(n, h) for n in plan.knee_instances for h in plan.harnesses]
    searches += [(n, h) for h, n in plan.knee_extra if (n, h) not in searches]
    for n, h in searches:
        start = max(1.0, round(plan.knee_start_deliveries / max(1, n - 1)))
        retries = [plan.knee_retries]

        def step(rate: float, h=h, n=n, retries=retries) -> dict[str, Any]:
            def once() -> dict[str, Any]:
                return measure(h, n, rate, duration_s=plan.knee_step_s, warmup_s=plan.knee_warmup_s,
                               drain_s=plan.knee_drain_s, spin_s=0.0)

            s = once()
            if not s["passed"] and s["contention"]["contended"] and retries[0] > 0:
                # starved by other processes: measure once more, and let the second measurement count
                retries[0] -= 1
                _say(f"knee: {h}, {n} instances, {rate:g}/s failed while starved "
                     f"(run-queue wait {s['contention']['python_runqueue_wait_pct']:.0f}%); measuring again")
                first = {k: s[k] for k in ("passed", "reason", "achieved_rate", "schedule_lag_p99_ms",
                                           "delivery_pct", "cpu", "contention", "gc")}
                s = once()
                s["retry_of_starved_step"] = first
            _say(f"knee: {h}, {n} instances, {rate:g}/s -> {'pass' if s['passed'] else 'FAIL: ' + s['reason']}")
            return s

        t = time.monotonic()
        r = find_knee(step, start=start, factor=plan.knee_factor, max_rate=plan.knee_max_rate,
                      refine_steps=plan.knee_refine, tolerance=plan.knee_tolerance,
                      max_raise_steps=plan.knee_max_raise)
        ks, fs = r.knee_step, r.failed_step
        results.append({
            "harness": h, "instances": n,
            "knee_rate": r.knee_rate,
            "knee_deliveries_per_s": r.knee_rate * (n - 1) if r.knee_rate is not None else None,
            "failed_rate": r.failed_rate,
            "reason": r.reason if r.failed_rate is not None else
                      f"no failure up to the largest rate probed ({r.knee_rate:g}/s)",
            "capped": r.capped,
            "limit_at_failed_step": bottleneck(fs, cores) if fs else None,
            "limit_at_knee": bottleneck(ks, cores) if ks else None,
            "fanout_is_the_limit": bool(h == "fanout" and fs and (fs["cpu"]["python_cpu_pct"] or 0) >= 85),
            "probes": [{"phase": p, "rate": rate, "passed": ok} for p, rate, ok in r.probes],
            "elapsed_s": round(time.monotonic() - t, 1),
            "steps": r.steps,
        })
    curve = [{"harness": s["harness"], "instances": s["instances"], "rate": s["target_rate"],
              "deliveries_per_s": s["deliveries_per_s"], "p50_ms": s["latency"]["p50_ms"],
              "p99_ms": s["latency"]["p99_ms"], "delivery_pct": s["delivery_pct"], "passed": s["passed"],
              "python_cpu_pct": s["cpu"]["python_cpu_pct"], "redis_cpu_pct": s["cpu"]["redis_cpu_pct"]}
             for res in results for s in sorted(res["steps"], key=lambda x: x["target_rate"])]
    ratios: dict[str, Any] = {}
    for other in plan.harnesses:
        if other == "fanout":
            continue
        ratios[other] = {}
        for f in (x for x in results if x["harness"] == "fanout"):
            b = next((x for x in results if x["harness"] == other and x["instances"] == f["instances"]), None)
            if b:
                ratios[other][str(f["instances"])] = _ratio(f["knee_rate"], b["knee_rate"])
    return {"criteria": Criteria().to_dict(), "step_s": plan.knee_step_s, "warmup_s": plan.knee_warmup_s,
            "drain_s": plan.knee_drain_s, "spin_s": 0.0,
            "search": {"start_deliveries_per_s": plan.knee_start_deliveries, "factor": plan.knee_factor,
                       "refine_steps": plan.knee_refine, "tolerance": plan.knee_tolerance,
                       "max_raise_steps": plan.knee_max_raise, "max_rate": plan.knee_max_rate},
            "results": results, "curve": curve, "knee_ratio_fanout_over": ratios}


def run_memory(plan: Plan) -> dict[str, Any]:
    from .harness import measure
    from .memory import memory_per_instance

    _say(f"memory: RSS with K={plan.mem_k_low} and K={plan.mem_k_high} idle instances (fresh subprocesses)")
    mem = memory_per_instance(("fanout", "baseline"), plan.mem_k_low, plan.mem_k_high, plan.mem_repeats)
    cpu_runs = []
    for i in range(plan.cpu_repeats):
        for h in plan.harnesses:  # interleaved, so a burst of load elsewhere hits every harness
            _say(f"cpu: {h}, {plan.cpu_instances} instances, {plan.cpu_rate:g}/s for {plan.cpu_duration_s:g}s "
                 f"({i + 1}/{plan.cpu_repeats})")
            cpu_runs.append(measure(h, plan.cpu_instances, plan.cpu_rate, duration_s=plan.cpu_duration_s,
                                    warmup_s=0.5, drain_s=3.0, spin_s=0.0))
    summary = []
    for h in plan.harnesses:
        mine = [r for r in cpu_runs if r["harness"] == h]

        def med(key: str, group: str = "cpu") -> float | None:
            vals = sorted(r[group][key] for r in mine if r[group][key] is not None)
            return vals[len(vals) // 2] if vals else None

        summary.append({"harness": h, "repeats": len(mine),
                        "delivery_pct": min(r["delivery_pct"] for r in mine),
                        "cpu": {k: med(k) for k in ("python_cpu_ms_per_1k_deliveries", "redis_cpu_ms_per_1k_deliveries",
                                                    "python_cpu_pct", "redis_cpu_pct")},
                        "python_runqueue_wait_pct": med("python_runqueue_wait_pct", "contention"),
                        "python_cpu_ms_per_1k_deliveries_all": [r["cpu"]["python_cpu_ms_per_1k_deliveries"]
                                                                for r in mine]})
    return {"rss": mem, "cpu": {
        "what": ("process CPU (time.process_time: publisher + N subscribers + recorder, one process) and "
                 "redis-server CPU (INFO cpu used_cpu_user+sys) over the active window, per 1,000 deliveries; "
                 "scheduler spin off; median of the interleaved repeats"),
        "instances": plan.cpu_instances, "rate": plan.cpu_rate, "duration_s": plan.cpu_duration_s,
        "repeats": plan.cpu_repeats, "summary": summary, "runs": cpu_runs}}


def run_profile(plan: Plan, knee: dict[str, Any] | None) -> dict[str, Any]:
    from .profiling import profile_run

    out: dict[str, Any] = {"duration_s": plan.profile_duration_s, "runs": [],
                           "note": "cProfile slows Python ~1.5-2x: read the shares, not the seconds"}
    for n in plan.profile_instances:
        rate = None
        if knee:  # 70 % of fanout's knee at this size: busy, but still keeping up
            k = next((r for r in knee["results"] if r["harness"] == "fanout" and r["instances"] == n), None)
            if k and k["knee_rate"]:
                rate = max(1, round(0.7 * k["knee_rate"]))
        if rate is None:
            rate = max(1, round(0.7 * plan.knee_start_deliveries * 2 / max(1, n - 1)))
        for h in plan.profile_harnesses:
            _say(f"profile: {h}, {n} instances, {rate:g}/s for {plan.profile_duration_s:g}s under cProfile")
            out["runs"].append(profile_run(h, n, rate, plan.profile_duration_s))
    return out


# -- main -----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny durations and rates (< 60 s)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="directory for <timestamp>.json and latest.json")
    p.add_argument("--only", default=None, help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--harnesses", default=None, help="comma-separated: fanout,baseline,baseline-pipelined")
    p.add_argument("--rates", default=None, help="latency section: comma-separated events/s")
    p.add_argument("--instances", type=int, default=None, help="latency section: instances")
    p.add_argument("--duration", type=float, default=None, help="latency section: seconds per rate")
    p.add_argument("--knee-instances", default=None, help="knee section: comma-separated instance counts")
    return p.parse_args(argv)


def strict_json(value: Any) -> Any:
    """``value`` with every NaN float as None (a withheld percentile in a frame is NaN): strict JSON,
    which the report's archive embeds."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = quick_plan() if args.quick else full_plan()
    from .harness import HARNESSES

    if args.harnesses:
        hs = tuple(h.strip() for h in args.harnesses.split(",") if h.strip())
        bad = [h for h in hs if h not in HARNESSES]
        if bad or not hs:
            print(f"--harnesses: unknown {', '.join(bad) or '(none)'} (known: {', '.join(HARNESSES)})", file=sys.stderr)
            return 2
        plan = replace(plan, harnesses=hs, profile_harnesses=tuple(h for h in plan.profile_harnesses if h in hs) or hs)
    if args.rates:
        plan = replace(plan, latency_rates=tuple(float(x) for x in args.rates.split(",") if x.strip()))
    if args.instances:
        plan = replace(plan, latency_instances=args.instances)
    if args.duration:
        plan = replace(plan, latency_min_s=args.duration, latency_max_s=args.duration)
    if args.knee_instances:
        plan = replace(plan, knee_instances=tuple(int(x) for x in args.knee_instances.split(",") if x.strip()))
    if args.only:
        sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
        bad = [s for s in sections if s not in SECTIONS]
        if bad:
            print(f"--only: unknown section(s) {', '.join(bad)} (known: {', '.join(SECTIONS)})", file=sys.stderr)
            return 2
    else:
        sections = tuple(s for s in SECTIONS if not (args.quick and s == "profile"))

    from fanout.lab.provenance import provenance

    from .machine import machine_info

    t_start = time.monotonic()
    started = datetime.now(timezone.utc)
    machine = machine_info()
    _say(f"benchmarks ({plan.mode}): {', '.join(sections)} on {machine['cores']} cores")
    res: dict[str, Any] = {"schema": SCHEMA, "mode": plan.mode, "started": started.isoformat(timespec="seconds"),
                           "sections": list(sections), "machine": machine, "plan": asdict(plan),
                           "provenance": provenance()}  # the commit measured (the report's appendix names it)
    if "latency" in sections:
        res["latency"] = run_latency(plan)
    if "knee" in sections:
        res["knee"] = run_knee(plan, machine.get("cores"))
    if "memory" in sections:
        res["memory"] = run_memory(plan)
    from .climit import run_climit
    from .targets import build as build_targets, run_capacity, run_fixed

    if "climit" in sections:
        _say("climit: building and running the C hiredis pair")
        res["climit"] = run_climit(plan.climit_instances, args.quick)
    if "capacity" in sections:
        res["capacity"] = run_capacity(plan, _say)
    if "fixed" in sections:
        res["fixed"] = run_fixed(plan, _say)
    res["targets"] = build_targets(res)
    if "profile" in sections:
        res["profile"] = run_profile(plan, res.get("knee"))
    if "wire" in sections:
        from .wire import run_wire

        _say("wire: bytes per event, signing and receive CPU per message")
        res["wire"] = run_wire(args.quick)
    res["comparison"] = compare(res)
    res["elapsed_s"] = round(time.monotonic() - t_start, 1)
    res["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{started.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    res["json_path"] = str(path)
    table = render(res)
    res["table"] = table
    text = json.dumps(strict_json(res), indent=1, default=str, allow_nan=False) + "\n"
    path.write_text(text)
    (out / "latest.json").write_text(text)
    print(table, flush=True)
    return 0
