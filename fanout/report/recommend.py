"""The recommendation a team lead can decide from, as data (``facts["recommendation"]`` in
report.json): which transport to deploy, by a stated rule over the measured trade-off, the
configuration to deploy it with, the Redis settings that mattered, Redis sizing from the capacity
rows and what is left to measure.

The trade-off is put in units that carry over to another deployment:

* pub/sub: events lost per second of outage per receiver at the run's rate — from each fault run
  that interrupts delivery (:data:`OUTAGE_KINDS`), its lost events over the fault's window
  (the record's ``faults`` table: ``t_end - t_start``) times the receivers the fault touched;
  per run, then the median and range (several runs may share a name: ``--repeat K``);
* Streams: what it lost, how long until every touched receiver got an event again after the
  fault (``recovery_ms``), how late what was sent in the fault's window arrived, and Redis
  memory per retained stream entry (within each Streams run: the slope of Redis's memory over
  the events published so far, before any trim; "not measured" when no run gives it).

:func:`facts` reads what report.json's run entries do not carry (the fault windows, the scenario
settings a bridge was made with, the memory slope) from the runs and hands everything to
:func:`derive`, which is pure: report.json-shaped dicts in, the recommendation out (the tests
build it from synthetic facts). Wording comes from ``templates/_recommendation.md.j2``.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fanout.report.prose import macro

#: the stated rule's lateness budget: Streams is chosen only when what it recovered after an
#: outage arrived within this (the worst run's p99 where its samples carry one, else its max)
LATENESS_BUDGET_MS = 5000.0
#: fault kinds that stop delivery to a receiver for their window (the added-latency fault slows it only)
OUTAGE_KINDS = ("redis_restart", "instance_crash", "partition", "slow_consumer", "node_failover",
                "sentinel_failover")
#: the fault runs that settle the question, as ``fanout report`` names them
FAILOVER_TO_RUN = "redis-restart,redis-restart-aof,instance-crash,slow-consumer,partition"
#: where the recommended bridges connect: a placeholder, said as one (no run measured a real one)
REDIS_URL_PLACEHOLDER = "redis://redis.internal:6379/0"
MIB = 1024 * 1024
#: transports in words (as fanout.report.facts says them; not imported from it: it imports this module)
TRANSPORT_WORDS = {"pubsub": "pub/sub", "streams": "Streams", "sharded": "sharded pub/sub"}
#: fewer Redis memory samples than this in a run give no slope
MIN_MEMORY_SAMPLES = 5


# ------------------------------------------------------------------ what the runs hold beyond report.json


def run_inputs(record, scenario: Mapping[str, Any], analysed_from: str | None = None) -> dict[str, Any]:
    """What :func:`derive` needs of one run that its report.json entry does not carry: its fault
    windows (in the record's order, the order of the entry's fault rows), the scenario fields a
    bridge is made from, and for a Streams run Redis memory per published event."""
    faults = [{"kind": str(f.kind), "instance": str(f.instance or "") or None,
               "window_s": (int(f.t_end) - int(f.t_start)) / 1e9}
              for f in record.faults.sort_values("t_start", kind="stable").itertuples(index=False)]
    keep = ("name", "transport", "key_prefix", "event_types", "health_check_s", "stream_maxlen", "redis_aof",
            "pubsub_buffer_limit", "topology", "instances", "rate_per_s", "batch_max", "batch_delay_ms",
            "shard_partitions")
    sc = {k: scenario.get(k) for k in keep if k in scenario}
    sc["faulted"] = bool(scenario.get("faults"))
    memory = None
    if scenario.get("transport") == "streams" and analysed_from != "summary" \
            and "redis_restart" not in {f["kind"] for f in faults}:
        memory = memory_per_event(record, int(scenario.get("stream_maxlen") or 0))
    return {"faults": faults, "scenario": sc, "memory": memory}


def memory_per_event(record, maxlen: int = 0) -> dict[str, Any] | None:
    """Bytes of Redis memory per event published, within one Streams run: the least-squares slope
    of Redis's sampled memory over the events acknowledged by each sample's time, up to the
    stream's MAXLEN (beyond it the stream is trimmed and holds no more). None without enough samples."""
    res = record.resources
    if res is None or not len(res):
        return None
    redis = res[res["kind"] == "redis"]
    if len(redis) < MIN_MEMORY_SAMPLES or redis["target"].nunique() != 1:  # one node: a cluster's keys spread
        return None
    pubs = record.publications
    sent = np.sort(pubs.loc[pubs["ok"], "t_sent"].to_numpy(dtype=np.int64))
    redis = redis.sort_values("t")
    events = np.searchsorted(sent, redis["t"].to_numpy(dtype=np.int64), side="right")
    memory = redis["memory_bytes"].to_numpy(dtype=np.float64)
    keep = events <= maxlen if maxlen > 0 else np.ones(len(events), dtype=bool)
    events, memory = events[keep], memory[keep]
    if len(events) < MIN_MEMORY_SAMPLES or events.max() - events.min() < 2:
        return None
    slope, _ = np.polyfit(events.astype(np.float64), memory, 1)
    return {"bytes_per_event": float(slope), "events": int(events.max()), "samples": int(len(events))}


def facts(rep, entries: Sequence[dict], facts_: Mapping[str, Any], *,
          budget_ms: float = LATENESS_BUDGET_MS) -> dict[str, Any]:
    """``facts["recommendation"]``: the runs' inputs read once, then :func:`derive`."""
    inputs = {r.record.run_id: run_inputs(r.record, r.findings.scenario, r.findings.overall.get("analysed_from"))
              for r in rep.runs}
    return derive({**facts_, "runs": list(entries)}, inputs, budget_ms=budget_ms)


# ------------------------------------------------------------------ the trade-off


def _median_range(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(vals), "median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def _fault_rows(entry: Mapping[str, Any], inp: Mapping[str, Any] | None) -> list[dict]:
    """The entry's fault rows of outage kinds, each with its window (seconds): the row's own
    ``outage_s`` (the fault table's, as report.json keeps it), else from the record — row k is the
    record's fault k (the analysis builds them in that order); where the counts differ, each row
    takes the next window of its kind."""
    rows, windows = list(entry.get("faults") or []), list((inp or {}).get("faults") or [])
    if rows and all(r.get("outage_s") is not None for r in rows):
        return [{**r, "window_s": float(r["outage_s"])} for r in rows if r.get("kind") in OUTAGE_KINDS]
    if len(windows) != len(rows):
        pool: dict[str, list[dict]] = {}
        for w in windows:
            pool.setdefault(w["kind"], []).append(w)
        windows = [pool[r.get("kind")].pop(0) if pool.get(r.get("kind")) else None for r in rows]
    return [{**r, "window_s": w["window_s"] if w else None}
            for r, w in zip(rows, windows) if r.get("kind") in OUTAGE_KINDS]


def _pubsub_row(e: Mapping[str, Any], rows: list[dict]) -> dict[str, Any]:
    lost = sum(int(r.get("lost") or 0) for r in rows)
    sent = sum(int(r.get("sent_in_window") or 0) for r in rows)
    receiver_s = (sum(float(r["window_s"]) * int(r.get("receivers") or 0) for r in rows)
                  if all(r["window_s"] is not None for r in rows) else None)
    return {"name": e["name"], "run_id": e["run_id"], "fault": e.get("fault"), "kinds": sorted({r["kind"] for r in rows}),
            "rate_per_s": e.get("target_rate_per_s"), "receivers": max(int(r.get("receivers") or 0) for r in rows),
            "outage_s": max((float(r["window_s"]) for r in rows if r["window_s"] is not None), default=None),
            "receiver_outage_s": receiver_s, "lost": lost, "sent_in_window": sent,
            "lost_share": lost / sent if sent else None,
            "lost_per_outage_s_per_receiver": lost / receiver_s if receiver_s else None}


def _streams_row(e: Mapping[str, Any], rows: list[dict]) -> dict[str, Any]:
    p99 = [r["window_p99_ms"] for r in rows if r.get("window_p99_ms") is not None]
    mx = [r["window_max_ms"] for r in rows if r.get("window_max_ms") is not None]
    rec = [r["recovery_ms"] for r in rows if r.get("recovery_ms") is not None]
    worst_p99, worst_max = (max(p99) if p99 else None), (max(mx) if mx else None)
    return {"name": e["name"], "run_id": e["run_id"], "fault": e.get("fault"), "kinds": sorted({r["kind"] for r in rows}),
            "rate_per_s": e.get("target_rate_per_s"), "lost": sum(int(r.get("lost") or 0) for r in rows),
            "recovered": sum(int(r.get("recovered") or 0) for r in rows),
            "sent_in_window": sum(int(r.get("sent_in_window") or 0) for r in rows),
            "recovery_ms": max(rec) if rec else None, "lateness_p99_ms": worst_p99, "lateness_max_ms": worst_max,
            # the rule's number: the p99 where the window's samples carry one, else the max
            "lateness_ms": worst_p99 if worst_p99 is not None else worst_max,
            "lateness_stat": "p99" if worst_p99 is not None else "max" if worst_max is not None else None}


def _by_name(rows: Sequence[dict], keys: Sequence[str]) -> list[dict]:
    """Per run name (repeated runs share one): how many runs, and per key the median and range."""
    names: dict[str, list[dict]] = {}
    for r in rows:
        names.setdefault(r["name"], []).append(r)
    return [{"name": n, "fault": rs[0]["fault"], "runs": len(rs), **{k: _median_range([r[k] for r in rs]) for k in keys}}
            for n, rs in names.items()]


def pubsub_tradeoff(rows: Sequence[dict]) -> dict[str, Any]:
    """Pub/sub's loss per second of outage per receiver: per run, per name and per rate (the
    headline quotes the rate most runs had)."""
    per_s = [r for r in rows if r["lost_per_outage_s_per_receiver"] is not None]
    rates: dict[float, list[dict]] = {}
    for r in per_s:
        rates.setdefault(float(r["rate_per_s"] or 0), []).append(r)
    by_rate = [{"rate_per_s": rate, "runs": len(rs), "names": list(dict.fromkeys(r["name"] for r in rs)),
                **_median_range([r["lost_per_outage_s_per_receiver"] for r in rs])}
               for rate, rs in sorted(rates.items())]
    main = max(by_rate, key=lambda g: (g["runs"], -g["rate_per_s"]), default=None)
    return {"runs": list(rows), "by_name": _by_name(rows, ("lost", "lost_per_outage_s_per_receiver", "lost_share")),
            "by_rate": by_rate, "main": main, "lost": sum(r["lost"] for r in rows),
            "lost_range": _median_range([r["lost"] for r in rows]),
            "lost_pct_of_window": _median_range([100 * r["lost_share"] for r in rows if r["lost_share"] is not None]),
            "runs_with_loss": sum(1 for r in rows if r["lost"])}


def streams_tradeoff(rows: Sequence[dict], memory: Sequence[dict]) -> dict[str, Any]:
    """Streams' cost of losing nothing: catch-up, lateness, memory per retained entry."""
    late = [r for r in rows if r["lateness_ms"] is not None]
    worst = max(late, key=lambda r: r["lateness_ms"], default=None)
    mem = _median_range([m["bytes_per_event"] for m in memory])
    return {"runs": list(rows), "by_name": _by_name(rows, ("lost", "recovery_ms", "lateness_ms")),
            "lost": sum(r["lost"] for r in rows), "recovered": sum(r["recovered"] for r in rows),
            "recovery_ms": _median_range([r["recovery_ms"] for r in rows]),
            "lateness_ms": _median_range([r["lateness_ms"] for r in rows]),
            "worst": ({"name": worst["name"], "run_id": worst["run_id"], "lateness_ms": worst["lateness_ms"],
                       "stat": worst["lateness_stat"]} if worst else None),
            "memory": {**mem, "runs": list(memory),
                       "events_lo": min((m["events"] for m in memory), default=None),
                       "events_hi": max((m["events"] for m in memory), default=None),
                       "measured": bool(memory)}}


def choose(pubsub: Mapping[str, Any], streams: Mapping[str, Any], budget_ms: float) -> str:
    """The stated rule (``_recommendation.md.j2`` says it in words):

    * ``no-faults``: neither transport ran a fault that interrupts delivery; ``pubsub-only`` /
      ``streams-only``: only one did (the other side of the trade-off is missing);
    * ``pubsub``: pub/sub lost nothing under its faults (Streams' lateness buys nothing), or it lost
      but Streams, losing nothing, delivered later than the budget (``streams-late``);
    * ``streams``: pub/sub lost, Streams lost nothing and delivered within the budget;
    * ``neither``: both lost under faults.
    """
    ps, st = pubsub["runs"], streams["runs"]
    if not ps and not st:
        return "no-faults"
    if not st:
        return "pubsub-only"
    if not ps:
        return "streams-only"
    if not pubsub["lost"]:
        return "pubsub"
    if streams["lost"]:
        return "neither"
    late = (streams["worst"] or {}).get("lateness_ms")
    return "streams" if late is None or late <= budget_ms else "streams-late"


#: the transport each decision deploys (None: no decision)
DEPLOYS = {"pubsub": "pubsub", "streams-late": "pubsub", "streams": "streams", "neither": None,
           "no-faults": None, "pubsub-only": None, "streams-only": None}


# ------------------------------------------------------------------ configuration


def bridge_kwargs(sc: Mapping[str, Any], role: str, transport: str) -> dict[str, Any]:
    """BridgeConfig keyword arguments for the ``host`` (publish only) or a ``bot`` (subscribe only),
    with the settings the runs' bridges had: the simulator's mapping of a scenario
    (:meth:`fanout.lab.simulator.Simulation._config`), under faults its quick reconnect and
    publish timeouts (the ones the recovery was measured with)."""
    fast = bool(sc.get("faulted"))
    hc = float(sc.get("health_check_s") or 5.0)
    kw: dict[str, Any] = {"url": REDIS_URL_PLACEHOLDER}
    if role == "host":
        kw.update(instance_id="websocket-host", enable_publishing=True, enable_subscription=False)
    else:
        kw.update(enable_publishing=False, enable_subscription=True)
    kw.update(transport=transport, key_prefix=str(sc.get("key_prefix") or "ws:"),
              event_types=tuple(sc.get("event_types") or ()) or None,
              health_check_interval_s=hc, health_check_timeout_s=min(3.0, hc),
              reconnect_max_s=0.5 if fast else 2.0, publish_timeout_s=1.0 if fast else 2.0)
    if transport == "streams":
        kw["stream_maxlen"] = int(sc.get("stream_maxlen") or 100_000)
    if transport != "streams" and int(sc.get("batch_max") or 1) > 1:
        kw.update(batch_max=int(sc["batch_max"]), batch_delay_ms=float(sc.get("batch_delay_ms") or 0.0))
    return {k: v for k, v in kw.items() if v is not None}


def config_code(kwargs: Mapping[str, Any], var: str) -> str:
    """Python that builds the BridgeConfig (the password from the environment, never written down)."""
    lines = [f"{var} = BridgeConfig("]
    for k, v in kwargs.items():
        lines.append(f"    {k}={v!r},")
        if k == "url":
            lines.append("    password=os.environ.get('REDIS_PASSWORD'),")
    lines.append(")")
    return "\n".join(lines)


def configuration(entries: Sequence[dict], inputs: Mapping[str, dict], transport: str | None) -> dict[str, Any]:
    """The host's and a bot's BridgeConfig as code, from the runs the recommendation rests on:
    the recommended transport's fault runs (their timeouts are the ones the recovery was measured
    with), else its runs without faults, else the first run."""
    if transport is None:
        return {"transport": None, "from_runs": [], "faulted": False, "host": None, "bot": None, "code": None}
    mine = [e for e in entries if e["transport"] == transport and e["run_id"] in inputs]
    basis = ([e for e in mine if e["faulted"] and any(k in OUTAGE_KINDS for k in e["fault_kinds"])]
             or [e for e in mine if not e["faulted"]] or mine
             or [e for e in entries if e["run_id"] in inputs])
    if not basis:
        return {"transport": transport, "from_runs": [], "faulted": False, "host": None, "bot": None, "code": None}
    sc = inputs[basis[0]["run_id"]]["scenario"]
    host, bot = bridge_kwargs(sc, "host", transport), bridge_kwargs(sc, "bot", transport)
    # a bot: the host's settings, subscribe only, an id of its own (unique per process and host)
    changed = {k: v for k, v in bot.items() if host.get(k) != v}
    code = "\n".join(["import dataclasses", "import os", "", "from fanout.config import BridgeConfig, default_instance_id",
                      "", config_code(host, "host"), "",
                      "bot = dataclasses.replace(host, instance_id=default_instance_id(),",
                      "                          " + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")", ""])
    return {"transport": transport, "from_runs": [basis[0]["name"]],
            "faulted": bool(sc.get("faulted")), "host": host, "bot": bot, "code": code}


def _setting_runs(entries: Sequence[dict], key: str, value: str) -> list[dict]:
    return [e for e in entries if (e.get("settings") or {}).get(key) == value]


def redis_settings(entries: Sequence[dict], facts_: Mapping[str, Any], transport: str | None) -> dict[str, Any]:
    """The server settings that mattered, each with the runs that show it: the pub/sub output-buffer
    limit (the slow-consumer runs and the busiest subscriber's byte rate), maxmemory-policy, and
    AOF (the Redis restarts with and without it, per transport)."""
    st = facts_.get("settings") or {}
    limits = st.get("pubsub_limits") or []
    # the limit the most runs had, and the runs that lost to a limit (cut off)
    base = limits[0] if limits else None
    cut = [e for e in entries if any("output-buffer" in str(c) for c, n in (e.get("causes") or []) if n)]
    cut_at = []
    for e in cut:
        lim = next((lm for lm in limits if e["name"] in lm["runs"]), None)
        cut_at.append({"name": e["name"], "transport": e["transport"], "lost": e["lost"],
                       "pubsub": (f"{lim['hard_bytes']} {lim['soft_bytes']} {lim['soft_s']}"
                                  if lim and lim["hard_bytes"] is not None else None)})
    policy = (st.get("values") or {}).get("maxmemory-policy") or []
    return {"pubsub_limit": base, "busiest_pubsub_subscriber": st.get("busiest_pubsub_subscriber"),
            "cut_off": cut_at, "aof": aof(entries, transport or "streams"),
            "maxmemory_policy": policy[0]["value"] if policy else None,
            "maxmemory_policy_runs": len(policy[0]["runs"]) if policy else 0}


def aof(entries: Sequence[dict], transport: str) -> dict[str, Any]:
    """AOF from ``transport``'s Redis restarts: ``yes`` when a restart without it lost events and
    one with it lost none; ``no`` when measured both ways without that difference; None when
    not measured both ways (not decided by these runs)."""
    mine = [e for e in entries if e["transport"] == transport and "redis_restart" in (e.get("fault_kinds") or [])]
    with_ = [e for e in mine if (e.get("settings") or {}).get("appendonly") == "yes"]
    without = [e for e in mine if (e.get("settings") or {}).get("appendonly") != "yes"]
    lost_with, lost_without = sum(int(e["lost"]) for e in with_), sum(int(e["lost"]) for e in without)
    value = None if not (with_ and without) else "yes" if lost_without and not lost_with else "no"
    return {"transport": transport, "value": value, "with": [e["name"] for e in with_],
            "without": [e["name"] for e in without], "lost_with": lost_with, "lost_without": lost_without}


# ------------------------------------------------------------------ sizing and next steps


def sizing(facts_: Mapping[str, Any]) -> dict[str, Any]:
    """Redis CPU and memory per 1,000 deliveries/s from the capacity rows: a least-squares line
    (``cpu = intercept + slope × deliveries/s ÷ 1000``) over the range measured, and the median
    ratio beside it; never beyond the range (the template says where it ends)."""
    from scipy import stats

    # every capacity run within capacity is one point (repeated runs: each its own); a run over
    # capacity measured the instrument's limit, not Redis's
    rows = []
    for e in facts_["runs"]:
        res = e.get("resources") or {}
        if e.get("role") != "capacity" or (e.get("load") or {}).get("over_capacity") \
                or not e.get("deliveries_per_s") or res.get("redis_cpu_pct") is None:
            continue
        rows.append({"run": e["name"], "run_id": e["run_id"], "transport": e.get("transport"),
                     "deliveries_per_s": float(e["deliveries_per_s"]), "redis_cpu_pct": float(res["redis_cpu_pct"]),
                     "redis_memory_mib": res.get("redis_memory_mib")})
    out: dict[str, Any] = {"rows": rows, "runs": len(rows), "configurations": len({r["run"] for r in rows}),
                           "excluded_over": sorted({e["name"] for e in facts_["runs"] if e.get("role") == "capacity"
                                                    and (e.get("load") or {}).get("over_capacity")}),
                           "derivable": False, "lo": None, "hi": None,
                           "transports": sorted({r["transport"] for r in rows if r["transport"]})}
    if not rows:
        out["why"] = "no capacity run within capacity was measured with Redis sampled"
        return out
    x = np.array([r["deliveries_per_s"] for r in rows]) / 1000
    cpu = np.array([r["redis_cpu_pct"] for r in rows])
    out.update(lo=float(x.min() * 1000), hi=float(x.max() * 1000),
               cpu_ratio_per_1k=_median_range(list(cpu / x)), cpu_at_hi=float(cpu[x.argmax()]))
    mems = [r["redis_memory_mib"] for r in rows if r["redis_memory_mib"] is not None]
    out["memory_mib"] = _median_range(mems)
    if len(set(x.round(6))) < 3:
        out["why"] = f"{len(set(x.round(6)))} distinct load(s) measured: a line needs three"
        return out
    fit = stats.linregress(x, cpu)
    out.update(derivable=True, cpu_per_1k=float(fit.slope), cpu_intercept=float(fit.intercept),
               cpu_r2=float(fit.rvalue ** 2), cpu_per_1k_stderr=float(fit.stderr))
    if len(mems) == len(rows):
        mfit = stats.linregress(x, np.array(mems, dtype=float))
        out.update(memory_per_1k_mib=float(mfit.slope), memory_intercept_mib=float(mfit.intercept))
    return out


def next_steps(facts_: Mapping[str, Any], transport: str | None) -> list[dict]:
    """What was not measured (the scope's list), plus a managed Redis when every server was a
    throwaway, and the recommended transport's soak when the soak ran on another."""
    scope = facts_.get("scope") or {}
    commands = {"Sentinel failover": f"fanout run --scenario cluster/sentinel-failover-{transport or 'pubsub'}",
                "network latency between hosts": "fanout run --scenario multi-host --redis-url URL",
                "instances in separate processes or on separate hosts": "fanout run --scenario multi-host --redis-url URL",
                "failover matrix": f"fanout report --failover {FAILOVER_TO_RUN} --failover-transports pubsub,streams",
                "soak": "fanout report --scenarios soak --full",
                "TLS and authentication": "fanout report --redis-url rediss://USER:PASSWORD@HOST:6380/0",
                "least-privilege ACL users": "fanout acl"}
    out = [{"what": n["what"], "why": n["why"], "run": commands.get(n["what"])} for n in scope.get("not_measured") or []]
    servers = scope.get("servers") or []
    if servers and all(s.get("throwaway") for s in servers):
        names = sorted({f"{s.get('product')} {s.get('version')}" for s in servers})
        out.append({"what": "a managed or production Redis", "why": "every run used a throwaway " + ", ".join(names)
                    + " started for it", "run": "fanout report --redis-url URL"})
    soaked = {k.get("transport") for k in (facts_.get("soak") or {}).get("runs") or []}
    if transport and soaked and transport not in soaked:
        words = ", ".join(TRANSPORT_WORDS.get(t, t) for t in sorted(soaked))
        out.append({"what": f"a soak on {TRANSPORT_WORDS.get(transport, transport)}", "why": f"the soak ran on {words} only",
                    "run": f"fanout report --scenarios soak@{transport} --full"})
    return out


def deployment(facts_: Mapping[str, Any], transport: str | None) -> dict[str, Any]:
    """What the deployment figure annotates: the largest capacity row measured within capacity (its
    bots and rate), else the largest run; the server; the transport."""
    rows = [c for c in facts_.get("capacity") or [] if c.get("measured") and not (c.get("load") or {}).get("over_capacity")]
    top = max(rows, key=lambda c: (c.get("deliveries_per_s") or 0), default=None)
    transports = {e["name"]: e["transport"] for e in facts_.get("runs") or []}
    if top is not None:
        basis = {"basis": "capacity", "run": top["run"], "bots": int(top["bots"]), "rate_per_s": float(top["rate"]),
                 "deliveries_per_s": top.get("deliveries_per_s"), "redis_cpu_pct": top.get("redis_cpu_pct"),
                 "measured_transport": transports.get(top["run"])}
    else:
        runs = facts_.get("runs") or []
        big = max(runs, key=lambda e: (e.get("instances") or 0), default=None)
        basis = ({"basis": "run", "run": big["name"], "bots": int(big.get("receivers") or big["instances"]),
                  "rate_per_s": big.get("target_rate_per_s"), "deliveries_per_s": big.get("deliveries_per_s"),
                  "redis_cpu_pct": (big.get("resources") or {}).get("redis_cpu_pct"),
                  "measured_transport": big["transport"]} if big else {})
    servers = (facts_.get("scope") or {}).get("servers") or []
    return {**basis, "transport": transport,
            "server": f"{servers[0]['product']} {servers[0]['version']}" if servers else None}


def _cell(g: Mapping[str, Any], fmt_: str, scale: float = 1.0) -> str:
    """A per-name cell: the median, and the range when several runs share the name."""
    if g["median"] is None:
        return "n/a"
    med = fmt_.format(g["median"] * scale)
    return med if g["n"] < 2 else f"{med} ({fmt_.format(g['min'] * scale)}–{fmt_.format(g['max'] * scale)})"


def tradeoff_table(R: Mapping[str, Any]):
    """The trade-off, one row per fault (the run name without its transport): pub/sub's loss and
    loss per second of outage per receiver beside Streams' loss, recovery and lateness after the
    outage; medians over the runs of a name, with their range when there were several."""
    import pandas as pd

    rows: dict[str, dict[str, str]] = {}
    for key, side in (("pubsub", R["pubsub"]), ("streams", R["streams"])):
        rate = {r["name"]: r["rate_per_s"] for r in side["runs"]}
        for g in side["by_name"]:
            fault = g["fault"] or g["name"]
            row = rows.setdefault(fault, {"Fault": fault, "Events/s": f"{rate.get(g['name']) or 0:,.0f}"})
            row[f"{key} runs"] = str(g["runs"])
            if key == "pubsub":
                row["Pub/sub lost"] = _cell(g["lost"], "{:,.0f}")
                row["Lost per s of outage per receiver"] = _cell(g["lost_per_outage_s_per_receiver"], "{:,.1f}")
            else:
                row["Streams lost"] = _cell(g["lost"], "{:,.0f}")
                row["Streams recovery"] = _cell(g["recovery_ms"], "{:,.0f} ms")
                row["Streams late after the outage"] = _cell(g["lateness_ms"], "{:,.0f} ms")
    for row in rows.values():
        row["Runs"] = " / ".join(row.pop(f"{k} runs", "0") for k in ("pubsub", "streams"))
    cols = ["Fault", "Events/s", "Runs", "Pub/sub lost", "Lost per s of outage per receiver", "Streams lost",
            "Streams recovery", "Streams late after the outage"]
    return pd.DataFrame([{c: row.get(c, "not run") for c in cols} for row in rows.values()], columns=cols)


# ------------------------------------------------------------------ the whole


def derive(facts_: Mapping[str, Any], inputs: Mapping[str, dict], *,
           budget_ms: float = LATENESS_BUDGET_MS) -> dict[str, Any]:
    """The recommendation from report.json-shaped ``facts_`` (``runs``, ``capacity``, ``settings``,
    ``soak``, ``scope``) and per run id the :func:`run_inputs`. ``headline`` comes first."""
    entries = list(facts_["runs"])
    ps_rows, st_rows = [], []
    for e in entries:
        if not e.get("faulted"):
            continue
        rows = _fault_rows(e, inputs.get(e["run_id"]))
        if not rows:
            continue
        if e["transport"] == "pubsub":  # (sharded pub/sub is not this decision's: it needs a cluster)
            ps_rows.append(_pubsub_row(e, rows))
        elif e["transport"] == "streams":
            st_rows.append(_streams_row(e, rows))
    names = {e["run_id"]: e["name"] for e in entries}
    memory = [{"name": names[k], "run_id": k, "event_types": list(v["scenario"].get("event_types") or []),
               **v["memory"]} for k, v in inputs.items() if v.get("memory") and k in names]
    pubsub, streams = pubsub_tradeoff(ps_rows), streams_tradeoff(st_rows, memory)
    # Streams' loss in restarts without AOF, where restarts with it lost none, is AOF's to prevent:
    # the rule weighs Streams with AOF (and the configuration says appendonly yes)
    st_aof = aof(entries, "streams")
    streams["aof_required"] = st_aof["value"] == "yes"
    streams["lost_all"] = streams["lost"]
    if streams["aof_required"]:
        streams["lost"] = sum(r["lost"] for r in st_rows if r["name"] not in st_aof["without"])
    # a full stream: MAXLEN entries per event type at the median bytes per entry measured
    maxlens = [int(inputs[r["run_id"]]["scenario"].get("stream_maxlen") or 0) for r in memory + st_rows
               if r["run_id"] in inputs]
    mem = streams["memory"]
    mem["maxlen"] = max(maxlens) if maxlens else None
    # (entries differ in size by event type: the smallest and the largest measured)
    mem["full_stream_mib"] = ({"min": mem["maxlen"] * mem["min"] / MIB, "max": mem["maxlen"] * mem["max"] / MIB}
                              if mem["measured"] and mem["maxlen"] else None)
    decision = choose(pubsub, streams, budget_ms)
    transport = DEPLOYS[decision]
    R: dict[str, Any] = {"headline": "", "decision": decision, "transport": transport, "budget_ms": budget_ms,
                         "rule": "", "failover_to_run": FAILOVER_TO_RUN, "pubsub": pubsub, "streams": streams,
                         "configuration": configuration(entries, inputs, transport),
                         "redis": redis_settings(entries, facts_, transport), "sizing": sizing(facts_),
                         "next_steps": next_steps(facts_, transport), "deployment": deployment(facts_, transport)}
    R["redis"]["conf"] = "\n".join(line for line in macro("_recommendation.md.j2", "redis_conf")(R).splitlines()
                                   if line.strip()) + "\n"
    R["rule"] = " ".join(macro("_recommendation.md.j2", "rule")(R).split())
    R["headline"] = " ".join(macro("_recommendation.md.j2", "headline")(R).split())
    return R


__all__ = ["LATENESS_BUDGET_MS", "OUTAGE_KINDS", "facts", "derive", "run_inputs", "memory_per_event", "choose",
           "bridge_kwargs", "configuration", "aof", "tradeoff_table", "redis_settings", "sizing", "next_steps", "deployment"]
