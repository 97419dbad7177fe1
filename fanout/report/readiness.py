"""The production-readiness checklist: each item ticked only by evidence from the report's facts
(:mod:`fanout.report.facts`), the same aggregates the verdict quotes, or left open with why."""
from __future__ import annotations

from fanout.formatting import loss_bound
from fanout.report.capacity import ROWS as CAPACITY_ROWS

#: why Sentinel is never in the default report (page one says so)
SENTINEL_WHY = ("not in the default report: each run needs a master, a replica and three Sentinels; "
                "measure it with `fanout run --scenario cluster/sentinel-failover-pubsub`")


def _item(text: str, ok: bool | None, evidence: str, link: str) -> dict:
    return {"text": text, "ok": ok, "evidence": evidence, "link": link}


def _bound(g: dict) -> str:
    """The rule of three over an aggregate's runs that were exactly once (their summed deliveries)."""
    n = g["exactly_once_expected"]
    return f" (loss rate {loss_bound(n)} at 95 % confidence over {n:,} deliveries)" if n else ""


def _n(v: int) -> str:
    return f"{int(v):,}"


def checklist(facts: dict) -> list[dict]:
    """Each item: ok True (measured and met), False (measured and not met), None (not measured).
    Every count is read from ``facts`` (the same aggregates the verdict quotes)."""
    entries, g = facts["runs"], facts["groups"]
    everyone, calm, faults = g["all"], g["calm"], g["faults"]
    fault_runs = [e for e in entries if e["faulted"]]
    restarts = [e for e in fault_runs if "redis_restart" in e["fault_kinds"]]
    streams = [e for e in fault_runs if e["transport"] == "streams" and "redis_restart" not in e["fault_kinds"]]
    top = CAPACITY_ROWS[-1]
    top_run = next((e for e in entries if e["name"] == top.name and e["role"] == "capacity"), None)
    sharded = [e for e in entries if e["transport"] == "sharded"]
    kinds = faults["by_kind"]
    return [
        _item("Every instance connects and stays connected",
              everyone["connected"] == everyone["instances"] if entries else None,
              f"{_n(everyone['connected'])} of {_n(everyone['instances'])} instances connected at the end of their "
              f"runs", "key-results"),
        _item("No instance receives its own events", everyone["self_received"] == 0 if entries else None,
              f"{_n(everyone['self_received'])} self-received deliveries in {_n(everyone['runs'])} runs",
              "key-results"),
        _item("Every event exactly once without faults", calm["exactly_once"] == calm["runs"] if calm["runs"] else None,
              f"{_n(calm['exactly_once'])} of the {_n(calm['runs'])} run{'s' if calm['runs'] != 1 else ''} without "
              f"injected faults exactly once{_bound(calm)}"
              if calm["runs"] else "no run without faults", "verdict"),
        _item("Every event lost under a fault was lost where a planned fault acted",
              faults["all_planned"] if faults["runs"] else None,
              (f"of {_n(faults['lost'])} deliveries lost in {_n(faults['runs'])} fault runs, "
               f"{_n(kinds['planned fault'])} where a planned fault acted, {_n(kinds['unplanned outage'])} during "
               f"unplanned outages, {_n(kinds['unexplained'])} unexplained") if faults["runs"] else "no fault run",
              "failover"),
        _item("Recovers by itself after a Redis restart", all(e["passed"] for e in restarts) if restarts else None,
              f"{sum(e['passed'] for e in restarts)} of {len(restarts)} restart runs receiving again afterwards"
              if restarts else "no Redis restart run", "failover"),
        _item("Streams lose nothing across crashes, partitions and stalls",
              all(e["missing"] == 0 for e in streams) if streams else None,
              f"{_n(sum(e['missing'] for e in streams))} lost in {len(streams)} Streams fault runs" if streams
              else "no Streams fault run", "failover"),
        _item(f"Carries the seed's top row ({top.bots} instances at {top.rate:,.0f} events/s) within capacity",
              (top_run["exactly_once"] and not top_run["load"]["over_capacity"]) if top_run else None,
              ("within capacity" if not top_run["load"]["over_capacity"] else "over capacity on this machine")
              if top_run else "capacity rows not run", "capacity"),
        _item("Sharded pub/sub on a Redis Cluster delivers exactly once", all(e["exactly_once"] for e in sharded)
              if sharded else None, f"{sum(e['exactly_once'] for e in sharded)} of {len(sharded)} sharded runs"
              + _bound(g["sharded"]) if sharded else "no sharded run", "key-results"),
        _item("Sentinel failover", None, SENTINEL_WHY, "scope"),
        _item("TLS and authentication", None, "not exercised: the throwaway servers have neither", "scope"),
        _item("Alerts on the bridge metrics in place", None, "a deployment step: the thresholds below are a start",
              "monitoring"),
    ]


__all__ = ["checklist", "SENTINEL_WHY"]
