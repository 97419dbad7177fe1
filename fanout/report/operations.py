"""Production readiness, deployment and monitoring, from the evidence of this report's runs:
a checklist where each item is ticked by a measured fact (or left open with the reason), the
Redis settings that matter as read from the server used, and alert thresholds derived from the
measured values. The wording is ``templates/operations.md.j2``."""
from __future__ import annotations

import math

from fanout.formatting import loss_bound
from fanout.report.capacity import ROWS as CAPACITY_ROWS
from fanout.report.context import SENTINEL_WHY, Report
from fanout.report.prose import render


def _item(text: str, ok: bool | None, evidence: str, link: str) -> dict:
    return {"text": text, "ok": ok, "evidence": evidence, "link": link}


def _bound(exact: list) -> str:
    """The rule of three over the runs that were exactly once (their summed deliveries)."""
    n = sum(o.expected for o in exact)
    return f" (loss rate {loss_bound(n)} at 95 % confidence over {n:,} deliveries)" if n else ""


def checklist(rep: Report) -> list[dict]:
    """Each item: ok True (measured and met), False (measured and not met), None (not measured)."""
    runs, t = rep.runs, rep.totals
    connected = sum(int(r.findings.per_instance["connected"].sum()) for r in runs)
    instances = sum(len(r.findings.per_instance) for r in runs)
    selfr = sum(o.self_received for o in rep.outcome_list())
    calm = [rep.outcome(r) for r in rep.scenarios if not r.faulted]
    faults = rep.outcome_list(rep.faults)
    restarts = [o for o in faults if "redis_restart" in o.fault_kinds]
    streams = [o for o in faults if o.transport == "streams" and "redis_restart" not in o.fault_kinds]
    top = CAPACITY_ROWS[-1]
    top_run = next((r for r in rep.capacity if r.name == top.name), None)
    sharded = [rep.outcome(r) for r in runs if r.transport == "sharded"]
    items = [
        _item("Every instance connects and stays connected", connected == instances if runs else None,
              f"{connected} of {instances} instances connected at the end of their runs", "key-results"),
        _item("No instance receives its own events", selfr == 0 if runs else None,
              f"{selfr} self-received deliveries in {len(runs)} runs", "key-results"),
        _item("Every event exactly once without faults", all(o.exactly_once for o in calm) if calm else None,
              f"{sum(o.exactly_once for o in calm)} of {len(calm)} runs without faults exactly once"
              + _bound([o for o in calm if o.exactly_once]) if calm else "no run without faults", "scenario-1"),
        _item("Every event lost under a fault is accounted for", all(o.unexplained == 0 for o in faults)
              if faults else None, f"{sum(o.unexplained for o in faults)} unexplained in {len(faults)} fault runs"
              if faults else "no fault run", "failover"),
        _item("Recovers by itself after a Redis restart", all(o.passed for o in restarts) if restarts else None,
              f"{sum(o.passed for o in restarts)} of {len(restarts)} restart runs receiving again afterwards"
              if restarts else "no Redis restart run", "failover"),
        _item("Streams lose nothing across crashes, partitions and stalls",
              all(o.missing == 0 for o in streams) if streams else None,
              f"{sum(o.missing for o in streams)} lost in {len(streams)} Streams fault runs" if streams
              else "no Streams fault run", "failover"),
        _item(f"Carries the seed's top row ({top.bots} instances at {top.rate:,.0f} events/s) within capacity",
              (rep.outcome(top_run).exactly_once and not rep.outcome(top_run).load.over_capacity) if top_run else None,
              ("within capacity" if not rep.outcome(top_run).load.over_capacity else
               "over capacity on this machine") if top_run else "capacity rows not run", "capacity"),
        _item("Sharded pub/sub on a Redis Cluster delivers exactly once", all(o.exactly_once for o in sharded)
              if sharded else None, f"{sum(o.exactly_once for o in sharded)} of {len(sharded)} sharded runs"
              + _bound([o for o in sharded if o.exactly_once]) if sharded else "no sharded run", "key-results"),
        _item("Sentinel failover", None, SENTINEL_WHY, "scope"),
        _item("TLS and authentication", None, "not exercised: the throwaway servers have neither", "scope"),
        _item("Alerts on the bridge metrics in place", None, "a deployment step: the thresholds below are a start",
              "monitoring"),
    ]
    del t
    return items


def _parse_limit(text: str, cls: str = "pubsub") -> tuple[int, int, int] | None:
    parts = str(text).split()
    for i, p in enumerate(parts):
        if p == cls and i + 3 < len(parts):
            try:
                return int(parts[i + 1]), int(parts[i + 2]), int(parts[i + 3])
            except ValueError:
                return None
    return None


def settings(rep: Report) -> dict:
    """The settings as read from the servers used (one entry per distinct value), and the numbers
    the recommendations are made of: the busiest subscriber's bytes/s, clients per instance, the
    largest Streams memory."""
    seen: dict[str, set] = {}
    for r in rep.runs:
        for node, conf in ((r.record.environment or {}).get("redis_config") or {}).items():
            for k, v in conf.items():
                seen.setdefault(k, set()).add(str(v))
    per_sub, clients_per_inst, streams_mem = [], [], []
    for r in rep.runs:
        s = rep.resources(r)
        redis = s[s["kind"] == "redis"]
        if redis.empty:
            continue
        n = int(r.findings.overall["instances"])
        clients = int(redis["clients_max"].sum())
        subs = max(1, n)
        if redis["net_out_per_s"].notna().any():
            per_sub.append(float(redis["net_out_per_s"].sum()) / subs)
        if n:
            clients_per_inst.append(clients / n)
        if r.transport == "streams":
            streams_mem.append(int(redis["memory_peak_bytes"].sum()))
    limit = next((_parse_limit(v) for v in seen.get("client-output-buffer-limit", ())), None)
    worst = max(per_sub) if per_sub else None
    return {
        "values": {k: sorted(v) for k, v in seen.items()},
        "pubsub_limit": limit, "per_subscriber_bps": worst,
        "hard_limit_seconds": (limit[0] / worst if limit and limit[0] and worst else None),
        "clients_per_instance": max(clients_per_inst) if clients_per_inst else None,
        "streams_peak_bytes": max(streams_mem) if streams_mem else None,
    }


def thresholds(rep: Report) -> dict:
    """Alert thresholds from what was measured: latency from the worst p99 of the runs without
    faults that stayed within capacity, CPU from the busiest Redis interval."""
    calm = [r for r in rep.scenarios + rep.capacity
            if not r.faulted and not rep.loads[r.record.run_id].over_capacity and r.findings.latency["p99_ms"]]
    p99 = max((r.findings.latency["p99_ms"] for r in calm), default=None)
    cpu = []
    for r in rep.runs:
        s = rep.resources(r)
        redis = s[s["kind"] == "redis"]
        if len(redis) and redis["cpu_pct_max"].notna().any():
            cpu.append(float(redis["cpu_pct_max"].max()))
    restarts = [r for r in rep.faults if "redis-restart" in r.name]
    reconnects = max((int(r.findings.overall["reconnects"]) for r in restarts), default=None)
    return {"p99_ms": p99, "warn_ms": math.ceil(3 * p99) if p99 else None, "page_ms": math.ceil(10 * p99) if p99 else None,
            "calm_runs": [r.name for r in calm], "redis_cpu_max": max(cpu) if cpu else None,
            "restart_reconnects": reconnects,
            "gaps_calm": sum(int(r.findings.overall["gaps"]) for r in calm)}


def operations(rep: Report) -> str:
    return render("operations.md.j2", rep=rep, items=checklist(rep), s=settings(rep), th=thresholds(rep))


def limitations(rep: Report) -> str:
    """The seed's four known limitations, each with what these runs measured about it."""
    from fanout.report.ordering import ordering_stats

    order = [ordering_stats(r.record) for r in rep.runs]
    return render("limitations.md.j2", rep=rep, t=rep.totals, order=order, mach=rep.machine())


def methodology() -> str:
    return render("methodology.md.j2")


__all__ = ["checklist", "settings", "thresholds", "operations", "limitations", "methodology"]
