"""Is a load point a measurement of the system, or of the instrument falling behind?

A run without faults is **over capacity** when its publishers could not keep the open-loop
schedule: the achieved publish rate is below :data:`BEHIND_FRACTION` of the target, or the
schedule lag (send − due) dominates the latency: its median is at least :data:`LAG_SHARE` of the
latency's median (and its p99 at least :data:`LAG_FLOOR_MS`), or its p99 is at least
:data:`LAG_SHARE` of the latency's p99 and at least :data:`LAG_TAIL_FLOOR_MS` (the tail of the
latency is then the publisher's lateness, not the delivery). It is then "the instrument
saturated" when the simulator's own CPU is the limit — the ``saturated`` flag the simulator
records in ``environment["instrument"]`` when it has one, else a process of the instrument at
:data:`CPU_SATURATED_PCT` of a core or more over the run (from the resource samples) — and "the
publisher fell behind" otherwise. Over-capacity points are excluded from the max lossless rate.
A run whose publishers kept the schedule but whose deliveries queued (median latency from the
actual send at least :data:`LAG_FLOOR_MS`) is over capacity too — "the receivers fell behind",
or "the instrument saturated" when they all share the instrument's one process at full CPU.
Fault runs are not judged here: their lag is the fault's doing.

The judgement reads the p50/p99 estimates even from fewer samples than
:func:`fanout.analysis.latency.carried` asks for showing them (a coarse screen, as it always was);
the :class:`Load` it returns carries only what may be shown (a withheld percentile is ``None``,
with the sample counts that say why).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fanout.analysis.latency import latency_samples, raw_percentile_ms
from fanout.lab.resources import summarise

BEHIND_FRACTION = 0.95
LAG_SHARE = 0.5
LAG_FLOOR_MS = 5.0
LAG_TAIL_FLOOR_MS = 20.0
CPU_SATURATED_PCT = 90.0

WITHIN, BEHIND, RECEIVERS, INSTRUMENT, NOT_JUDGED = ("within", "publisher-behind", "receivers-behind",
                                                     "instrument-saturated", "not-judged")


@dataclass(frozen=True)
class Load:
    """How one run stood against its own load."""

    state: str
    target_rate: float | None
    achieved_rate: float | None
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    latency_p50_ms: float | None
    instrument_cpu_pct: float | None   # the busiest process of the instrument, % of one core
    instrument_flag: bool | None       # environment["instrument"]["saturated"], when recorded
    rate_short: bool = False           # achieved below BEHIND_FRACTION of the target
    lag_dominates: bool = False
    receivers_behind: bool = False     # the schedule was kept, but deliveries queued (latency from send)
    latency_sent_p50_ms: float | None = None
    lag_samples: int | None = None       # publications behind the schedule-lag percentiles
    latency_samples: int | None = None   # deliveries behind the latency percentiles

    @property
    def over_capacity(self) -> bool:
        return self.state in (BEHIND, RECEIVERS, INSTRUMENT)

    @property
    def near_limit(self) -> bool:
        """Kept its schedule, but the simulator flagged itself as the limit (its own CPU measure;
        the process CPU from the samples cannot say it: the scheduler spins before each due time)."""
        return self.state == WITHIN and bool(self.instrument_flag)


def instrument_cpu_detail(run) -> dict:
    """The one instrument CPU of a run (the methodology's definition, ``facts.DEFINITIONS``): the
    busiest instrument process's CPU over the run, % of one core, less its scheduler's wait before
    each due time — the simulator's own accounting (``environment["instrument"]["cpu_pct"]``,
    ``source`` "accounted"); without it, the busiest sampled process, wait included ("sampled").
    Also the simulator's saturated flag, when recorded."""
    env = run.record.environment or {}
    inst = env.get("instrument") or {}
    flag = inst.get("saturated") if isinstance(inst, dict) else None
    cpu = inst.get("cpu_pct") if isinstance(inst, dict) else None
    source = "accounted"
    if not isinstance(cpu, (int, float)):
        res = summarise(run.record.resources, run.record.t0, run.record.t_end)
        procs = res[res["kind"] == "process"]["cpu_pct"].dropna()
        cpu = float(procs.max()) if len(procs) else None
        source = "sampled" if cpu is not None else None
    return {"pct": float(cpu) if cpu is not None else None, "source": source,
            "saturated": bool(flag) if flag is not None else None}


def instrument_cpu(run) -> tuple[float | None, bool | None]:
    """(instrument CPU as :func:`instrument_cpu_detail` defines it, the simulator's own saturated flag)."""
    d = instrument_cpu_detail(run)
    return d["pct"], d["saturated"]


def _screen(run) -> dict[str, float | None]:
    """The percentiles the judgement reads: the findings' own, and where they withheld one (too
    few samples to show it) the estimate from the record all the same."""
    o, lat, sent = run.findings.overall, run.findings.latency, run.findings.latency_sent
    vals = {"lag50": o.get("schedule_lag_p50_ms"), "lag99": o.get("schedule_lag_p99_ms"),
            "lat50": lat.get("p50_ms"), "lat99": lat.get("p99_ms"), "sent50": sent.get("p50_ms")}
    if o.get("schedule_lag_withheld"):
        pubs = run.record.publications
        ok = pubs[pubs["ok"]]
        lag = (ok["t_sent"] - ok["t_intended"]).to_numpy()
        vals["lag50"], vals["lag99"] = raw_percentile_ms(lag, 50.0), raw_percentile_ms(lag, 99.0)
    if lat.get("withheld") or sent.get("withheld"):
        s = latency_samples(run.record)
        vals["lat50"], vals["lat99"] = raw_percentile_ms(s["lat_ns"], 50.0), raw_percentile_ms(s["lat_ns"], 99.0)
        vals["sent50"] = raw_percentile_ms(s["lat_sent_ns"], 50.0)
    return vals


def assess(run) -> Load:
    """The load state of one :class:`~fanout.report.runs.ScenarioRun`."""
    o, lat = run.findings.overall, run.findings.latency
    cpu, flag = instrument_cpu(run)
    target, achieved = o.get("target_rate_per_s"), o.get("achieved_rate_per_s")
    base = dict(target_rate=target, achieved_rate=achieved, lag_p50_ms=o.get("schedule_lag_p50_ms"),
                lag_p99_ms=o.get("schedule_lag_p99_ms"), latency_p50_ms=lat.get("p50_ms"),
                instrument_cpu_pct=cpu, instrument_flag=flag, lag_samples=o.get("schedule_lag_samples"),
                latency_samples=lat.get("count"))
    if run.faulted:
        return Load(state=NOT_JUDGED, **base)
    short = bool(target and achieved is not None and achieved < BEHIND_FRACTION * target)
    v = _screen(run)
    lag50, lag99, lat50, lat99 = v["lag50"], v["lag99"], v["lat50"], v["lat99"]
    median = bool(lag50 is not None and lat50 and lag99 is not None and lag50 >= LAG_SHARE * lat50
                  and lag99 >= LAG_FLOOR_MS)
    tail = bool(lag99 is not None and lat99 and lag99 >= LAG_SHARE * lat99 and lag99 >= LAG_TAIL_FLOOR_MS)
    dominates = median or tail
    sent50 = v["sent50"]
    queued = bool(sent50 is not None and sent50 >= LAG_FLOOR_MS)
    flags = dict(rate_short=short, lag_dominates=dominates, receivers_behind=queued,
                 latency_sent_p50_ms=run.findings.latency_sent.get("p50_ms"))
    if not (short or dominates or queued):
        return Load(state=WITHIN, **base, **flags)
    one_process = str(run.findings.scenario.get("process_mode", "single")) == "single" and not \
        run.findings.scenario.get("agents")
    if flag is not None:
        saturated = bool(flag)
    else:  # all instances in one process: when they fall behind, that process is the limit
        saturated = cpu is not None and cpu >= CPU_SATURATED_PCT and (one_process or short or dominates)
    state = INSTRUMENT if saturated else (BEHIND if (short or dominates) else RECEIVERS)
    return Load(state=state, **base, **flags)


def lossless(run) -> bool:
    o = run.findings.overall
    return run.findings.passed and o["missing"] == 0 and o["duplicates"] == 0 and o["expected"] > 0


def max_lossless(runs: Sequence) -> dict:
    """The highest target rate that was lossless and within capacity, overall and per instance
    count, with the runs left out and why (over capacity, or not lossless)."""
    judged = [(r, assess(r)) for r in runs if not r.faulted]
    ok = [(r, a) for r, a in judged if lossless(r) and not a.over_capacity]
    best = max(ok, key=lambda ra: (ra[1].target_rate or 0, ra[0].findings.overall["deliveries_per_s"] or 0),
               default=None)
    per_n: dict[int, tuple] = {}
    for r, a in ok:
        n = int(r.findings.overall["instances"])
        if n not in per_n or (a.target_rate or 0) > (per_n[n][1].target_rate or 0):
            per_n[n] = (r, a)
    return {
        "best": best,
        "per_instances": [per_n[n] for n in sorted(per_n)],
        "excluded_over": [(r, a) for r, a in judged if a.over_capacity],
        "excluded_lossy": [(r, a) for r, a in judged if not lossless(r) and not a.over_capacity],
    }


__all__ = ["Load", "assess", "instrument_cpu", "instrument_cpu_detail", "lossless", "max_lossless", "WITHIN", "BEHIND", "RECEIVERS", "INSTRUMENT",
           "NOT_JUDGED", "BEHIND_FRACTION", "LAG_SHARE", "LAG_FLOOR_MS", "CPU_SATURATED_PCT"]
