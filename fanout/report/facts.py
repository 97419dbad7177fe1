"""Every figure the report states, computed once and kept in ``report.json`` (``facts``): the
sections read these, never their own sums, so two sections cannot disagree.

* ``runs``: one entry per run (its outcome, loss kinds, lateness under faults, load, deliveries/s
  over the publishing window, instrument CPU, resources, ordering, server settings, hosting);
* ``groups``: the aggregates, each from :func:`tally` over the runs it names (``scope`` says which,
  in words: "the pub/sub fault runs"), so a denominator is always the one of the runs it speaks of;
* ``max_lossless``, ``capacity``, ``soak``, ``resources``, ``ordering``, ``comparisons``, ``settings``,
  ``monitoring``, ``readiness``, ``scope``: each section's numbers;
* ``definitions``: what a fault run's PASS means, instrument CPU, deliveries/s (one wording each).

Everything is plain JSON (numbers, strings, lists, dicts; ``None`` for undefined).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from fanout.analysis.findings import _plain
from fanout.report import outcomes as _outcomes
from fanout.report import saturation

from fanout.lab.options import RunOptions
from fanout.lab.resources import SAMPLE_INTERVAL_S

MIB = 1024 * 1024
#: how long the scheduler waits out before each due time by yielding (not work: instrument CPU leaves it out)
SCHEDULER_WAIT_MS = RunOptions().spin_s * 1000
#: the monitoring table's Redis CPU alert: one Redis node is single-threaded
REDIS_CPU_WARN_PCT = 70

#: one wording per definition; the page, the methodology and report.json quote these
DEFINITIONS = {
    "fault_pass": ("A fault run passes only when every lost event was lost where a planned fault acted (on the "
                   "instance it targets, within its window) and nothing was lost elsewhere; recovered events' "
                   "lateness is stated, not judged."),
    "instrument_cpu": ("Instrument CPU: the busiest process of the instrument (the simulator and its bridges), CPU "
                       "time over the run as % of one core, less the time its scheduler spends waiting out the "
                       f"last {SCHEDULER_WAIT_MS:g} ms before each due time (the simulator's own accounting); a run recorded without "
                       "that accounting shows the sampled process CPU, wait included, marked *."),
    "deliveries_per_s": ("Deliveries/s: distinct deliveries of the run's events divided by its publishing window, "
                         "from the first event's due time to the last event's send time (the drain after it is "
                         "not counted)."),
}
TRANSPORT_WORDS = {"pubsub": "pub/sub", "streams": "Streams", "sharded": "sharded pub/sub"}


# ------------------------------------------------------------------ per run


def publishing_window_s(run) -> float | None:
    """Seconds from the first acknowledged event's due time to the last one's send time."""
    rec = run.record
    if rec.summary is not None and not rec.rows_loaded:  # from the summary: no row read
        s = rec.summary
        if sum(len(b) for b in s.published.values()) < 2:
            return None
        start, end = s.due_min, max(s.sent_max, s.due_max)
        return (end - start) / 1e9 if end > start else None
    pubs = rec.publications
    ok = pubs[pubs["ok"]] if len(pubs) else pubs
    if len(ok) < 2:
        return None
    start = int(ok["t_intended"].min())
    end = max(int(ok["t_sent"].max()), int(ok["t_intended"].max()))
    return (end - start) / 1e9 if end > start else None


def hosting(run) -> dict[str, Any]:
    """How the run hosted its instances, as it recorded it: ``single`` (one process), ``processes``
    (worker processes) or ``agents``; ``processes`` counts them."""
    env, sc = run.record.environment or {}, run.findings.scenario
    inst = env.get("instrument") if isinstance(env.get("instrument"), dict) else {}
    done = str(env.get("process_mode") or inst.get("process_mode") or sc.get("process_mode", "single"))
    kind = ("agents" if sc.get("agents") or done.startswith("agents") else
            "processes" if done.startswith("processes") else "single" if done in ("single", "auto") else done)
    workers = env.get("workers") or inst.get("workers") or {}
    n = len(workers) if kind != "single" else 1
    return {"kind": kind, "processes": max(1, n)}


def _resources(run) -> dict[str, Any] | None:
    from fanout.lab.resources import summarise

    s = summarise(run.record.resources, run.record.t0, run.record.t_end)
    if s.empty:
        return None
    redis, procs = s[s["kind"] == "redis"], s[s["kind"] == "process"]
    out: dict[str, Any] = {"sampled_redis": bool(len(redis)), "sampled_processes": int(len(procs))}
    if len(redis):
        out.update({
            "redis_cpu_pct": float(redis["cpu_pct"].sum()), "redis_cpu_pct_max": float(redis["cpu_pct_max"].max()),
            "redis_memory_mib": float(redis["memory_bytes"].sum()) / MIB,
            "redis_memory_peak_mib": float(redis["memory_peak_bytes"].sum()) / MIB,
            "redis_net_in_kib_s": float(redis["net_in_per_s"].sum()) / 1024,
            "redis_net_out_kib_s": float(redis["net_out_per_s"].sum()) / 1024,
            "redis_clients_max": int(redis["clients_max"].sum()),
        })
    if len(procs):
        out["instrument_rss_mib"] = float(procs["memory_bytes"].sum()) / MIB
    return out


def _settings(run) -> dict[str, str]:
    """The server settings the run's server(s) had (``CONFIG GET``), one value per key (nodes joined)."""
    seen: dict[str, list[str]] = {}
    for _node, conf in ((run.record.environment or {}).get("redis_config") or {}).items():
        for k, v in conf.items():
            if str(v) not in seen.setdefault(k, []):
                seen[k].append(str(v))
    return {k: "; ".join(v) for k, v in seen.items()}


def _lateness(rows: list[dict]) -> dict[str, Any]:
    """A fault run's lateness from its fault table: events sent in a fault's window that arrived
    later than the run's bound (None where the analysis does not say)."""
    late = [r.get("late") for r in rows if r.get("late") is not None]
    p99 = [r.get("window_p99_ms") for r in rows if r.get("window_p99_ms") is not None]
    mx = [r.get("window_max_ms") for r in rows if r.get("window_max_ms") is not None]
    n = [r.get("window_n") for r in rows if r.get("window_n") is not None]
    bound = next((r.get("bound_ms") for r in rows if r.get("bound_ms") is not None), None)
    # one fault: its window's percentiles; several: the worst window's p99 and max (a p50 across
    # windows would be no window's)
    p50 = rows[0].get("window_p50_ms") if len(rows) == 1 else None
    return {"late": int(sum(late)) if late else None, "bound_ms": bound, "window_n": int(sum(n)) if n else None,
            "window_p50_ms": p50, "window_p99_ms": max(p99) if p99 else None, "window_max_ms": max(mx) if mx else None}


def run_facts(rep, run) -> dict[str, Any]:
    """Everything the report says about one run, as data."""
    o = rep.outcome(run)
    d = dataclasses.asdict(o)
    load = rep.loads[run.record.run_id]
    d["load"] = {**dataclasses.asdict(load), "over_capacity": load.over_capacity, "near_limit": load.near_limit}
    f, ov = run.findings, run.findings.overall
    acc = f.losses
    kinds = dict(o.kinds)
    window = publishing_window_s(run)
    cpu = saturation.instrument_cpu_detail(run)
    faults = _plain(acc.faults.to_dict(orient="records")) if acc is not None and len(acc.faults) else []
    d.update({
        "lost": o.missing, "lost_pct": o.lost_pct, "by_kind": kinds, "planned": o.planned,
        "unplanned": o.unplanned, "all_planned": o.all_planned, "faulted": bool(o.fault_kinds) or run.role == "fault",
        "instances": int(ov["instances"]), "published": int(ov["published"]),
        "receivers": int((f.per_instance["expected"] > 0).sum()),
        "connected": int(f.per_instance["connected"].sum()), "duration_s": float(ov["duration_s"]),
        "target_rate_per_s": ov.get("target_rate_per_s"), "achieved_rate_per_s": ov.get("achieved_rate_per_s"),
        "publishing_window_s": window,
        "deliveries_per_s": (int(ov["received"]) / window) if window else None,
        "instrument_cpu_pct": cpu["pct"], "instrument_cpu_source": cpu["source"],
        "hosting": hosting(run), "resources": _resources(run), "settings": _settings(run),
        "server": server_name(run), "reconnects": int(ov["reconnects"]), "gaps_calm": int(ov["gaps"]),
        "gaps_other": o.gaps_other, "gaps_unannounced": o.gaps_unannounced,
        "latency_p50_ms": f.latency.get("p50_ms"), "latency_p99_ms": f.latency.get("p99_ms"),
        "repeat": (run.record.environment or {}).get("repeat"), "latency_samples": f.latency.get("count"), "faults": faults,
        "loss_bound_pct": loss_bound_pct(o.expected) if o.exactly_once else None, "lateness": _lateness(faults),
        "recovered": int(sum(r.get("recovered") or 0 for r in faults)),
        "recovery_ms": max((r["recovery_ms"] for r in faults if r.get("recovery_ms") is not None), default=None),
        "dispatch": dispatch(run),
    })
    return _plain(d)


def dispatch(run) -> dict[str, Any] | None:
    """The per-instance latency stagger of a run (:func:`fanout.report.ordering.dispatch_order`)
    with ``one_loop``: whether its instances shared one event loop (hosted in one process). None
    for a run analysed from its summary: its rows are not read for this."""
    from fanout.report.ordering import dispatch_order

    if run.findings.overall.get("analysed_from") == "summary":
        return None
    d = dispatch_order(run.record)
    return None if d is None else {**d, "one_loop": hosting(run)["kind"] == "single"}


def server_name(run) -> str:
    """The server as it reports itself: product and version (``environment["server"]``), what it
    implements, else ``environment["redis_server"]`` as recorded."""
    env = run.record.environment or {}
    srv = env.get("server") if isinstance(env.get("server"), dict) else {}
    if srv.get("product") and srv.get("version"):
        impl = srv.get("redis_version")
        return f"{srv['product']} {srv['version']}" + (f" (implements Redis {impl})"
                                                         if impl and srv["product"] != "Redis" else "")
    return str(env.get("redis_server") or "not recorded")


# ------------------------------------------------------------------ aggregates


def loss_bound_pct(n: int | None) -> float | None:
    """The number :func:`fanout.formatting.loss_bound` shows: the rule of three's 95 % upper bound
    on a loss rate when none of ``n`` was lost, % rounded up to two significant digits."""
    from fractions import Fraction

    if not n:
        return None
    p = Fraction(300, int(n))
    digits = 0
    while p * 10 ** digits < 10:
        digits += 1
    return math.ceil(p * 10 ** digits) / 10 ** digits


def tally(entries: Sequence[dict], scope: str) -> dict[str, Any]:
    """The one aggregate: sums over ``entries`` (run facts) and the runs they are, with ``scope``
    naming them in words, so every denominator says which runs it counts."""
    kinds = dict.fromkeys(_outcomes.LOSS_KINDS, 0)
    for e in entries:
        for k, n in (e.get("by_kind") or {}).items():
            kinds[k] = kinds.get(k, 0) + int(n)
    expected = sum(int(e["expected"]) for e in entries)
    lost = sum(int(e["missing"]) for e in entries)
    late = [e for e in entries if (e.get("lateness") or {}).get("late")]
    exact_n = sum(int(e["expected"]) for e in entries if e["exactly_once"])
    return {
        "scope": scope, "runs": len(entries), "names": [e["name"] for e in entries],
        "expected": expected, "delivered": sum(int(e["delivered"]) for e in entries), "lost": lost,
        "lost_pct": 100.0 * lost / expected if expected else 0.0, "by_kind": kinds,
        "planned": kinds.get(_outcomes.PLANNED, 0), "unplanned": kinds.get(_outcomes.UNPLANNED, 0),
        "unexplained": sum(int(e["unexplained"]) for e in entries),
        "all_planned": lost == kinds.get(_outcomes.PLANNED, 0),
        "runs_with_loss": sum(1 for e in entries if e["missing"]),
        "names_with_loss": [e["name"] for e in entries if e["missing"]],
        "exactly_once": sum(1 for e in entries if e["exactly_once"]),
        # the rule of three over the runs that were exactly once (their summed deliveries)
        "exactly_once_expected": exact_n, "exactly_once_loss_bound_pct": loss_bound_pct(exact_n),
        "passed": sum(1 for e in entries if e["passed"]),
        "failed": [e["name"] for e in entries if not e["passed"]],
        "not_published": sum(int(e["not_published"]) for e in entries),
        "instances": sum(int(e["instances"]) for e in entries),
        "connected": sum(int(e["connected"]) for e in entries),
        "self_received": sum(int(e["self_received"]) for e in entries),
        "duplicates": sum(int(e["duplicates"]) for e in entries),
        "late": sum(int(e["lateness"]["late"]) for e in late),
        "runs_late": [e["name"] for e in late],
    }


def groups(entries: Sequence[dict]) -> dict[str, dict]:
    """The aggregates the sections quote: all runs, those without injected faults, the fault runs,
    and the fault runs per transport."""
    calm = [e for e in entries if not e["faulted"]]
    faulted = [e for e in entries if e["faulted"]]
    out = {"all": tally(entries, "all runs"), "calm": tally(calm, "the runs without injected faults"),
           "faults": tally(faulted, "the fault runs")}
    sharded = [e for e in entries if e["transport"] == "sharded"]
    if sharded:
        out["sharded"] = tally(sharded, "the sharded pub/sub runs")
    for tr in dict.fromkeys(e["transport"] for e in faulted):
        out[f"faults/{tr}"] = tally([e for e in faulted if e["transport"] == tr],
                                    f"the {TRANSPORT_WORDS.get(tr, tr)} fault runs")
    return out


def max_lossless(rep) -> dict[str, Any]:
    ml = rep.max_lossless
    best = ml["best"]
    entry = {}
    if best:
        run, load = best
        window = publishing_window_s(run)
        entry = {"run": run.name, "rate": load.target_rate, "instances": int(run.findings.overall["instances"]),
                 "publishing_window_s": window,
                 "deliveries_per_s": int(run.findings.overall["received"]) / window if window else None}
    return _plain({**entry, "found": bool(best), "excluded_over": [r.name for r, _ in ml["excluded_over"]],
                   "excluded_lossy": [r.name for r, _ in ml["excluded_lossy"]]})


def _range(values: list[float]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return {"min": min(vals) if vals else None, "max": max(vals) if vals else None}


def resources(entries: Sequence[dict]) -> dict[str, Any]:
    sampled = [e for e in entries if e["resources"]]
    redis = [e["resources"] for e in sampled if e["resources"].get("sampled_redis")]
    return {"runs": len(sampled), "unsampled": [e["name"] for e in entries if not e["resources"]],
            "redis_cpu_pct": _range([r["redis_cpu_pct"] for r in redis]),
            "redis_memory_peak_mib": _range([r["redis_memory_peak_mib"] for r in redis]),
            "instrument_cpu_pct": _range([e["instrument_cpu_pct"] for e in sampled]),
            "instrument_cpu_sampled": [e["name"] for e in entries if e["instrument_cpu_source"] == "sampled"]}


def ordering(rep) -> dict[str, Any]:
    from fanout.report.ordering import ordering_stats

    # a run analysed from its summary (a soak) keeps its rows on disk: they are not read for this
    rows = [r for r in rep.runs if r.findings.overall.get("analysed_from") != "summary"]
    per = [{"run": r.name, **ordering_stats(r.record)} for r in rows]
    keys = ("deliveries", "same_channel", "same_publisher", "any_publisher")
    return {"runs": per, "total": {k: sum(int(p[k]) for p in per) for k in keys},
            "left_out": [r.name for r in rep.runs if r.findings.overall.get("analysed_from") == "summary"]}


def comparisons(rep) -> dict[str, Any]:
    """The comparisons section's numbers: each like-for-like pair of run sets (one factor
    changed, :func:`fanout.report.compare.comparison_pairs`) with its rows — per metric the runs
    each side gave, medians, Hodges–Lehmann shift and interval, Holm-adjusted p, reading — and
    how they were made (``method``); Holm runs per metric across these pairs."""
    from fanout.report import compare as _compare

    groups = _compare.comparison_pairs(rep.scenarios + rep.capacity)
    c = _compare.compare_groups(groups)
    pairs = []
    for g in groups:
        rows = c.rows[c.rows["scenario"] == g.label].drop(columns=["scenario"]).to_dict(orient="records")
        for row in rows:
            row["confidence_pct"] = None if row["confidence"] is None else row["confidence"] * 100.0
        first_b, first_n = g.base[0], g.new[0]
        pairs.append({"label": g.label, "factor": g.factor, "names": [first_b.name, first_n.name], **g.detail,
                      "base_runs": [r.record.run_id for r in g.base], "new_runs": [r.record.run_id for r in g.new],
                      "base_instances": first_b.findings.overall["instances"],
                      "new_instances": first_n.findings.overall["instances"],
                      "base_transport": first_b.transport, "new_transport": first_n.transport,
                      "rows": _plain(rows)})
    return {"method": _compare.method(c), "readings": c.readings, "pairs": pairs,
            "single_runs": bool(groups) and all(len(g.base) == 1 and len(g.new) == 1 for g in groups),
            "skipped": [{"label": lab, "metric": m} for lab, m in c.skipped]}


def settings(entries: Sequence[dict]) -> dict[str, Any]:
    """Server settings per run (which runs had which value), and the numbers the advice is made
    of, each from the runs it applies to: the busiest pub/sub subscriber's bytes/s comes from
    pub/sub runs only (a Streams run's byte rate is not a subscriber's)."""
    values: dict[str, list[dict]] = {}
    for e in entries:
        for k, v in e["settings"].items():
            groups_ = values.setdefault(k, [])
            g = next((g for g in groups_ if g["value"] == v), None)
            if g is None:
                g = {"value": v, "runs": []}
                groups_.append(g)
            g["runs"].append(e["name"])
    for gs in values.values():
        gs.sort(key=lambda g: -len(g["runs"]))
    limits = []
    for g in values.get("client-output-buffer-limit", []):
        lim = parse_limit(g["value"])
        limits.append({"hard_bytes": lim[0] if lim else None, "soft_bytes": lim[1] if lim else None,
                       "soft_s": lim[2] if lim else None, "value": g["value"], "runs": g["runs"],
                       # as the page shows them
                       "hard_kib": lim[0] / 1024 if lim else None, "soft_kib": lim[1] / 1024 if lim else None,
                       "hard_mib": lim[0] / MIB if lim else None, "soft_mib": lim[1] / MIB if lim else None})
    per_sub = []
    for e in entries:
        res = e["resources"] or {}
        if e["transport"] in ("pubsub", "sharded") and res.get("redis_net_out_kib_s") is not None:
            subs = max(1, int(e.get("receivers") or e["instances"]))
            per_sub.append({"run": e["name"], "kib_s": res["redis_net_out_kib_s"] / subs})
    busiest = max(per_sub, key=lambda p: p["kib_s"], default=None)
    clients = [(e["resources"]["redis_clients_max"] / e["instances"]) for e in entries
               if e["resources"] and e["resources"].get("sampled_redis") and e["instances"]]
    streams = [e for e in entries if e["transport"] == "streams" and e["resources"]
               and e["resources"].get("sampled_redis")]
    peak = max(streams, key=lambda e: e["resources"]["redis_memory_peak_mib"], default=None)
    for lim in limits:
        lim["holds_s"] = (lim["hard_bytes"] / (busiest["kib_s"] * 1024) if busiest and lim["hard_bytes"]
                          and busiest["kib_s"] else None)
    return {"values": values, "pubsub_limits": limits, "busiest_pubsub_subscriber": busiest,
            "clients_per_instance": max(clients) if clients else None,
            "streams_peak_mib": peak["resources"]["redis_memory_peak_mib"] if peak else None,
            "streams_peak_run": peak["name"] if peak else None}


def parse_limit(text: str, cls: str = "pubsub") -> tuple[int, int, int] | None:
    """(hard bytes, soft bytes, soft seconds) of ``cls`` in a ``client-output-buffer-limit`` value."""
    parts = str(text).split()
    for i, p in enumerate(parts):
        if p == cls and i + 3 < len(parts):
            try:
                return int(parts[i + 1]), int(parts[i + 2]), int(parts[i + 3])
            except ValueError:
                return None
    return None


def monitoring(rep, entries: Sequence[dict]) -> dict[str, Any]:
    """Alert thresholds from what was measured: latency from the worst p99 of the runs without
    faults that stayed within capacity, CPU from the busiest Redis interval."""
    calm = [e for e in entries if not e["faulted"] and not e["load"]["over_capacity"] and e["latency_p99_ms"]
            and e["role"] in ("scenario", "capacity")]
    p99 = max((e["latency_p99_ms"] for e in calm), default=None)
    cpu = [e["resources"]["redis_cpu_pct_max"] for e in entries if e["resources"]
           and e["resources"].get("redis_cpu_pct_max") is not None]
    restarts = [e for e in entries if "redis_restart" in e["fault_kinds"]]
    busiest = max(entries, key=lambda e: (e["resources"] or {}).get("redis_cpu_pct_max") or -1, default=None)
    return {"p99_ms": p99, "warn_ms": math.ceil(3 * p99) if p99 else None, "redis_cpu_warn_pct": REDIS_CPU_WARN_PCT,
            "page_ms": math.ceil(10 * p99) if p99 else None, "calm_runs": [e["name"] for e in calm],
            "worst_p99_run": max(calm, key=lambda e: e["latency_p99_ms"])["name"] if calm else None,
            "redis_cpu_max": max(cpu) if cpu else None,
            "redis_cpu_max_run": busiest["name"] if cpu and busiest else None,
            "restart_reconnects": max((e["reconnects"] for e in restarts), default=None),
            "gaps_calm": sum(e["gaps_calm"] for e in calm)}


def compute(rep) -> dict[str, Any]:
    """The report's facts (see the module doc)."""
    entries = [run_facts(rep, r) for r in rep.runs]
    facts: dict[str, Any] = {
        "passed": rep.passed, "status": "PASS" if rep.passed else "FAIL", "definitions": dict(DEFINITIONS), "runs": entries, "groups": groups(entries),
        "max_lossless": max_lossless(rep), "resources": resources(entries), "settings": settings(entries),
        "monitoring": monitoring(rep, entries),
    }
    from fanout.report import repeats as _repeats

    facts["repeats"] = _repeats.facts(entries, rep.rounds)
    facts["ordering"] = ordering(rep)
    facts["comparisons"] = comparisons(rep)
    facts["method"] = {"sample_interval_s": SAMPLE_INTERVAL_S, "scheduler_wait_ms": SCHEDULER_WAIT_MS}
    from fanout.report import capacity as _capacity
    from fanout.report import readiness as _readiness

    facts["capacity"] = _capacity.facts(rep, entries)
    from fanout.report import soak as _soak

    facts["soak"] = _soak.facts(rep, entries)
    facts["capacity_model"] = _capacity.model_constants()
    facts["scope"] = scope(rep)
    from fanout.report import alerts as _alerts

    facts["monitoring"]["alerts"] = _alerts.thresholds(facts)  # alerts.yml's, with where each came from
    facts["readiness"] = _readiness.checklist(facts)
    from fanout.report import recommend as _recommend

    facts["recommendation"] = _recommend.facts(rep, entries, facts)
    return _plain(facts)


def scope(rep) -> dict[str, Any]:
    """What the runs covered (when and from where this rendering was made is provenance, not a fact
    of the runs: a rendering of the same runs has the same facts)."""
    return {"durations": rep.durations(), "servers": rep.servers(), "hosting": rep.hosting(),
            "protection": rep.protection(), "machine": rep.machine(), "not_measured": rep.not_measured(),
            "transports": rep.transports(), "quick": rep.quick, "duration_scale": rep.run_params.duration_scale,
            "foreign": sum(int(r.findings.overall.get("foreign", 0)) for r in rep.runs)}


def run_entry(facts: dict, run) -> dict | None:
    """One run's entry of ``facts["runs"]``, by its run id (names repeat when runs are repeated)."""
    return next((e for e in facts["runs"] if e.get("run_id") == run.record.run_id), None)


def by_name(facts: dict) -> dict[str, dict]:
    return {e["name"]: e for e in facts["runs"]}


__all__ = ["DEFINITIONS", "compute", "tally", "groups", "run_facts", "publishing_window_s", "hosting",
           "server_name", "parse_limit", "by_name", "dispatch", "run_entry"]
