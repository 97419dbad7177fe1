"""Prometheus alerting rules (``alerts.yml``) and a Grafana dashboard (``dashboard.json``) for the
exporter's metrics (:mod:`fanout.exporters.prometheus`), their thresholds taken from a report's facts.

Both are written beside ``report.json`` by every ``fanout report`` (``build.py``, also with
``--from-runs``), and from a ``report.json`` alone by::

    python -m fanout.report.alerts reports/example/report.json [--heartbeat-s 5] [--scrape-interval-s 15]

Each rule's ``threshold`` annotation says where its threshold came from: which runs, which measured
figure, which server setting, or which assumption (the heartbeat interval and the scrape interval are
yours, not the runs'); thresholds measured with Redis on the bridges' machine say "loopback". A
threshold the runs give no figure for (no calm run measured a p99, the server had no pub/sub limit) is
left out, and the file's header says which and why. Nothing here imports the exporter (the report
extra does not bring prometheus_client): the names are written out below, and ``tests/test_alerts.py``
checks each against a real scrape.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

RULES_NAME = "alerts.yml"
DASHBOARD_NAME = "dashboard.json"
#: the heartbeat interval assumed when none is given (``BridgeConfig.heartbeat_s`` is the application's)
DEFAULT_HEARTBEAT_S = 5.0
#: the scrape interval assumed (the gauge an alert reads is as old as the last scrape)
DEFAULT_SCRAPE_INTERVAL_S = 15.0
#: the p99 rules: warn and page at k x the worst p99 measured within capacity (facts.monitoring's 3x and 10x)
K_WARN, K_PAGE = 3, 10
#: the shortest ``for`` of the disconnected rule: about two scrapes
CONNECTED_FOR_MIN_S = 30
#: metrics other work brings with a BridgeConfig field: until the field exists here the exporter cannot serve them
PENDING: dict[str, str] = {
    "fanout_stale_subscriptions_total": "heartbeat_s",
    "fanout_last_heartbeat_timestamp_seconds": "heartbeat_s",
    "fanout_subscriber_output_buffer_bytes": "output_buffer_check_s",
}


def pending_metrics() -> dict[str, str]:
    """:data:`PENDING`'s metrics whose BridgeConfig field this checkout does not have yet."""
    from fanout.config import BridgeConfig

    fields = {f.name for f in dataclasses.fields(BridgeConfig)}
    return {m: f for m, f in PENDING.items() if f not in fields}


# ------------------------------------------------------------------ thresholds


def _where(loopback: bool) -> str:
    return (" Measured on loopback (Redis on the bridges' machine): a network between them adds its round trip, so "
            "measure your own deployment before you trust it." if loopback else "")


def _num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def thresholds(facts: dict[str, Any], *, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
               scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S) -> dict[str, Any]:
    """Every rule's threshold and where it came from, from a report's ``facts`` alone (plain JSON)."""
    mon = facts.get("monitoring") or {}
    runs = facts.get("runs") or []
    loopback = bool(((facts.get("scope") or {}).get("machine") or {}).get("loopback"))
    where = _where(loopback)
    calm = list(mon.get("calm_runs") or [])
    left_out: list[str] = []
    out: dict[str, Any] = {"loopback": loopback, "heartbeat_s": heartbeat_s, "scrape_interval_s": scrape_interval_s}

    p99 = mon.get("p99_ms")
    if p99:
        warn_ms = mon.get("warn_ms") or math.ceil(K_WARN * p99)
        page_ms = mon.get("page_ms") or math.ceil(K_PAGE * p99)
        src = (f"the worst p99 of the {len(calm)} runs without faults within capacity: {_num(p99)} ms "
               f"({mon.get('worst_p99_run')}), from each event's due time (an application's events carry no due "
               "time, so its bridges measure from the send time and leave the publisher's queueing out).")
        out["latency"] = {"p99_ms": p99, "run": mon.get("worst_p99_run"), "runs": len(calm), "k_warn": K_WARN,
                          "k_page": K_PAGE, "warn_s": warn_ms / 1000, "page_s": page_ms / 1000,
                          "warn_why": f"{K_WARN} x {src}{where}", "page_why": f"{K_PAGE} x {src}{where}"}
    else:
        left_out.append("the p99 latency rules: no run without faults within capacity measured a p99")

    quiet = [e for e in runs if not e.get("faulted")]
    out["gaps"] = {"calm": int(mon.get("gaps_calm") or 0), "runs": len(calm),
                   "why": (f"any: the {len(calm)} runs without faults within capacity counted "
                           f"{int(mon.get('gaps_calm') or 0)} gaps; a gap is an event Redis accepted and this "
                           "instance never got.")}
    unsent = sum(int(e.get("unsent") or 0) for e in quiet)
    out["unsent"] = {"quiet": unsent, "runs": len(quiet),
                     "why": (f"any: the {len(quiet)} runs without faults counted {unsent} unsent; unsent is an event "
                             "its publisher announced it never got into Redis (a failed publish).")}
    out["stale"] = {"why": ("any: a heartbeat that did not come back while PING still answered is silent loss "
                            "(heartbeat_s on; none of these runs measured one).")}

    hb_limit = 3 * heartbeat_s + scrape_interval_s
    out["heartbeat"] = {"age_s": hb_limit,
                        "why": (f"3 heartbeat intervals ({_num(3 * heartbeat_s)} s: heartbeat_s = {_num(heartbeat_s)} s "
                                f"assumed, set yours) plus one scrape interval ({_num(scrape_interval_s)} s assumed), "
                                "as the gauge is as old as the last scrape; not measured in these runs.")}

    restarts = [e for e in runs if "redis_restart" in (e.get("fault_kinds") or []) and e.get("instances")]
    if restarts:
        per = max(math.ceil(int(e.get("reconnects") or 0) / int(e["instances"])) for e in restarts)
        worst = max(restarts, key=lambda e: int(e.get("reconnects") or 0) / int(e["instances"]))
        rec = [e["recovery_ms"] for e in restarts if e.get("recovery_ms") is not None]
        out["reconnects"] = {
            "per_restart": per, "window": "10m", "runs": len(restarts),
            "why": (f"more than one planned Redis restart makes per bridge in 10 minutes: {per} in the "
                    f"{len(restarts)} Redis-restart runs ({int(worst.get('reconnects') or 0)} reconnects over "
                    f"{int(worst['instances'])} instances in {worst['name']}); runs without faults had none.")}
        longest = max(rec) if rec else None
    else:
        out["reconnects"] = {"per_restart": 0, "window": "10m", "runs": 0,
                             "why": "any: no run restarted Redis, so no reconnect is expected."}
        longest = None
    for_s = max(CONNECTED_FOR_MIN_S, math.ceil(3 * longest / 1000)) if longest else CONNECTED_FOR_MIN_S
    out["connected"] = {"for_s": for_s, "recovery_ms": longest,
                        "why": (f"down for {for_s} s: the longest recovery after a planned Redis restart here was "
                                f"{_num(longest)} ms (fault end to the first delivery at every instance), and "
                                f"{CONNECTED_FOR_MIN_S} s (about two scrapes) is the shortest wait.{where}"
                                if longest else f"down for {for_s} s (about two scrapes): no Redis restart measured "
                                                "a recovery time here.")}

    # the server's own limit: the one runs without faults had (a slow-consumer fault lowers it on purpose)
    quiet_names = {e.get("name") for e in quiet}
    all_limits = (facts.get("settings") or {}).get("pubsub_limits") or []
    own = [lim for lim in all_limits if quiet_names & set(lim.get("runs") or [])] or all_limits
    limits = []
    for lim in own:
        soft, hard = lim.get("soft_bytes") or 0, lim.get("hard_bytes") or 0
        if soft or hard:
            limits.append((soft if soft else hard, lim))
    if limits:
        cut, lim = min(limits, key=lambda x: x[0])
        kind = (f"soft limit {_num(cut / 2**20)} MiB for {lim.get('soft_s')} s" if lim.get("soft_bytes") and lim.get("soft_s")
                else f"limit {_num(cut / 2**20)} MiB")
        out["output_buffer"] = {
            "limit_bytes": cut, "warn_bytes": cut // 2, "setting": lim.get("value"), "limit_mib": cut / 2**20,
            "warn_mib": cut / 2**21, "soft_s": lim.get("soft_s") if lim.get("soft_bytes") else None,
            "why": (f"half the pub/sub output-buffer limit the runs without faults had ({kind}; "
                    f"client-output-buffer-limit {lim.get('value')}): Redis cuts a subscriber off above its soft limit "
                    "for that long, or above its hard limit at once. Use your server's (CONFIG GET "
                    "client-output-buffer-limit).")}
    elif all_limits:
        left_out.append("the output-buffer rule: the runs' server had no pub/sub output-buffer limit")
    else:
        left_out.append("the output-buffer rule: the runs did not read the server's pub/sub output-buffer limit")
    out["output_buffer_limit_read"] = bool(all_limits)
    out["left_out"] = left_out
    return out


# ------------------------------------------------------------------ rules


def _rule(alert: str, expr: str, severity: str, summary: str, description: str, why: str,
          for_: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"alert": alert, "expr": expr}
    if for_:
        r["for"] = for_
    r["labels"] = {"severity": severity}
    r["annotations"] = {"summary": summary, "description": description, "threshold": why}
    return r


def _p99(metric_s: float) -> str:
    return ("histogram_quantile(0.99, sum by (job, instance, transport, le) "
            f"(rate(fanout_delivery_latency_seconds_bucket[5m]))) > {metric_s:g}")


def rules(facts: dict[str, Any], *, heartbeat_s: float = DEFAULT_HEARTBEAT_S,
          scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S) -> dict[str, Any]:
    """The rules file as data (``{"groups": [...]}``, Prometheus's format)."""
    th = thresholds(facts, heartbeat_s=heartbeat_s, scrape_interval_s=scrape_interval_s)
    who = "{{ $labels.instance }} ({{ $labels.transport }})"
    rs = [
        _rule("FanoutGaps", "increase(fanout_gaps_total[5m]) > 0", "critical",
              f"{who}: {{{{ $value | printf \"%.0f\" }}}} events lost in transit in 5 minutes",
              "Events Redis accepted never reached this instance (a source's seq jumped, or the transport counted a "
              "loss). Pub/sub keeps nothing for a subscriber that was away; see the bridge's gap notices.",
              th["gaps"]["why"]),
        _rule("FanoutUnsent", "increase(fanout_unsent_total[5m]) > 0", "critical",
              f"{who}: {{{{ $value | printf \"%.0f\" }}}} events a publisher never got into Redis, in 5 minutes",
              "A publisher announced failed publishes (fanout_publish_errors_total on its instance says why).",
              th["unsent"]["why"]),
        _rule("FanoutStaleSubscription", "increase(fanout_stale_subscriptions_total[10m]) > 0", "critical",
              f"{who}: a subscription answered PING but stopped delivering",
              "The bridge's own heartbeat did not come back; it resubscribed on a new connection. Events in "
              "between are counted as gaps. Look for a failover or a proxy between the bridge and Redis.",
              th["stale"]["why"]),
        _rule("FanoutHeartbeatLate",
              f"time() - fanout_last_heartbeat_timestamp_seconds > {th['heartbeat']['age_s']:g} "
              "and fanout_last_heartbeat_timestamp_seconds > 0", "critical",
              f"{who}: the last heartbeat came back {{{{ $value | humanizeDuration }}}} ago",
              "The path publish -> Redis -> this subscriber is not proven live: no heartbeat of its own came back.",
              th["heartbeat"]["why"]),
        _rule("FanoutReconnecting",
              f"increase(fanout_reconnects_total[{th['reconnects']['window']}]) > {th['reconnects']['per_restart']}",
              "warning", f"{who}: {{{{ $value | printf \"%.0f\" }}}} reconnects in 10 minutes",
              "The subscription keeps being lost and restored: more than a planned Redis restart explains. Pub/sub "
              "loses what was published meanwhile (fanout_gaps_total).", th["reconnects"]["why"]),
        _rule("FanoutDisconnected", "fanout_connected == 0", "critical", f"{who}: no bridge connected",
              "Neither publishing nor receiving: every bridge of this process is down (Redis unreachable, a "
              "refused password, or the bridge closed).", th["connected"]["why"], for_=f"{th['connected']['for_s']}s"),
    ]
    if "latency" in th:
        lat = th["latency"]
        rs.append(_rule("FanoutLatencyP99High", _p99(lat["warn_s"]), "warning",
                        f"{who}: delivery p99 {{{{ $value | humanizeDuration }}}} over 5 minutes",
                        "From each event's due or send time to its handler (across hosts, their clock difference "
                        "too). A handler or Redis falling behind; look at fanout_handler_duration_seconds.",
                        lat["warn_why"], for_="5m"))
        rs.append(_rule("FanoutLatencyP99VeryHigh", _p99(lat["page_s"]), "critical",
                        f"{who}: delivery p99 {{{{ $value | humanizeDuration }}}} over 5 minutes",
                        "Deliveries an order of magnitude slower than measured: a subscriber this far behind is "
                        "close to Redis's output-buffer cut-off (fanout_subscriber_output_buffer_bytes).",
                        lat["page_why"], for_="5m"))
    if "output_buffer" in th:
        ob = th["output_buffer"]
        rs.append(_rule("FanoutOutputBufferHigh", f"fanout_subscriber_output_buffer_bytes > {ob['warn_bytes']}",
                        "warning", f"{who}: Redis holds {{{{ $value | humanize1024 }}}}B for this subscriber",
                        "The subscriber reads slower than events arrive; Redis will cut it off at its limit and "
                        "everything in the buffer is lost. Speed up the handlers or spread the load.", ob["why"]))
    return {"groups": [{"name": "fanout", "rules": rs}]}


def render_rules(facts: dict[str, Any], **kw) -> str:
    """``alerts.yml``'s text: a header saying where it came from and what was left out, then the rules."""
    import yaml

    th = thresholds(facts, **kw)
    head = ["# Prometheus alerting rules for fanout bridges (fanout.exporters.prometheus), thresholds from the",
            "# report's facts (report.json); each rule's `threshold` annotation says where its figure came from.",
            "# Made by: python -m fanout.report.alerts report.json   Check: promtool check rules alerts.yml"]
    if th["loopback"]:
        head.append("# These runs used a Redis on the bridges' machine (loopback): measured latencies are a floor.")
    for why in th["left_out"]:
        head.append(f"# left out: {why}")
    body = yaml.safe_dump(rules(facts, **kw), sort_keys=False, allow_unicode=True, width=120)
    return "\n".join(head) + "\n" + body


# ------------------------------------------------------------------ dashboard

_SEL = '{instance=~"$instance"}'


def _panel(pid: int, title: str, exprs: list[tuple[str, str]], x: int, y: int, *, unit: str = "short",
           description: str = "", steps: list[tuple[str, float | None]] | None = None, w: int = 12,
           h: int = 8) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if steps:
        defaults["thresholds"] = {"mode": "absolute",
                                  "steps": [{"color": c, "value": v} for c, v in steps]}
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {"id": pid, "type": "timeseries", "title": title, "description": description,
            "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
            "gridPos": {"h": h, "w": w, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + i), "expr": e, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}}
                        for i, (e, legend) in enumerate(exprs)]}


def dashboard(facts: dict[str, Any], **kw) -> dict[str, Any]:
    """A Grafana dashboard (import it: Dashboards > New > Import) for the exporter's metrics."""
    th = thresholds(facts, **kw)
    q = [(f"histogram_quantile({p}, sum by (instance, le) "
          f"(rate(fanout_delivery_latency_seconds_bucket{_SEL}[$__rate_interval])))", f"{{{{instance}}}} p{name}")
         for p, name in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))]
    lat = th.get("latency")
    ob = th.get("output_buffer")
    panels = [
        _panel(1, "Delivery rate (events/s)", [
            (f"sum by (instance) (rate(fanout_messages_received_total{_SEL}[$__rate_interval]))", "{{instance}} received"),
            (f"sum by (instance) (rate(fanout_messages_published_total{_SEL}[$__rate_interval]))", "{{instance}} published")],
            0, 0, unit="ops", description="Events handed to the application and events published, per second."),
        _panel(2, "Delivery latency p50 / p95 / p99", q, 12, 0, unit="s",
               description=("From each event's due or send time to its handler, from the histogram's buckets. "
                            + (f"Lines: the alerts at {lat['k_warn']}x and {lat['k_page']}x the measured p99."
                               if lat else "No measured p99: no alert lines.")),
               steps=[("green", None), ("orange", lat["warn_s"]), ("red", lat["page_s"])] if lat else None),
        _panel(3, "Gaps, unsent and duplicates (per 5 min)", [
            (f"sum by (instance) (increase(fanout_gaps_total{_SEL}[5m]))", "{{instance}} gaps"),
            (f"sum by (instance) (increase(fanout_unsent_total{_SEL}[5m]))", "{{instance}} unsent"),
            (f"sum by (instance) (increase(fanout_duplicates_total{_SEL}[5m]))", "{{instance}} duplicates dropped")],
            0, 8, description="Any gap or unsent is an event this instance did not get; duplicates were dropped."),
        _panel(4, "Reconnects and stale subscriptions (per 10 min)", [
            (f"sum by (instance) (increase(fanout_reconnects_total{_SEL}[10m]))", "{{instance}} reconnects"),
            (f"sum by (instance) (increase(fanout_stale_subscriptions_total{_SEL}[10m]))", "{{instance}} stale")],
            12, 8, description=th["reconnects"]["why"]),
        _panel(5, "Bridges connected", [(f"sum by (instance) (fanout_connected{_SEL})", "{{instance}}")], 0, 16,
               description="Bridges with both sides up; 0 for longer than the alert's wait pages."),
        _panel(6, "Subscriber output buffer (Redis's omem)",
               [(f"max by (instance) (fanout_subscriber_output_buffer_bytes{_SEL})", "{{instance}}")], 12, 16,
               unit="bytes", description=ob["why"] if ob else "No pub/sub limit on the runs' server.",
               steps=[("green", None), ("orange", ob["warn_bytes"]), ("red", ob["limit_bytes"])] if ob else None),
        _panel(7, "Heartbeat age", [(f"time() - max by (instance) (fanout_last_heartbeat_timestamp_seconds{_SEL} > 0)",
                                     "{{instance}}")], 0, 24, unit="s", description=th["heartbeat"]["why"],
               steps=[("green", None), ("red", th["heartbeat"]["age_s"])]),
        _panel(8, "Publish errors and refused publishes (per 5 min)", [
            (f"sum by (instance) (increase(fanout_publish_errors_total{_SEL}[5m]))", "{{instance}} publish errors"),
            (f"sum by (instance) (increase(fanout_refused_total{_SEL}[5m]))", "{{instance}} refused")], 12, 24),
    ]
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "__requires": [{"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
                       {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""}],
        "title": "fanout bridges", "uid": "fanout-bridges", "tags": ["fanout", "redis"], "editable": True,
        "description": ("fanout's exporter metrics; alert thresholds from the validation report's facts"
                        + (" (measured on loopback)." if th["loopback"] else ".")),
        "schemaVersion": 39, "version": 1, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "instance", "label": "instance", "type": "query",
                                 "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                                 "query": {"query": "label_values(fanout_connected, instance)", "refId": "instance"},
                                 "definition": "label_values(fanout_connected, instance)",
                                 "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
                                 "current": {"text": "All", "value": "$__all"}}]},
        "annotations": {"list": []}, "panels": panels,
    }


def render_dashboard(facts: dict[str, Any], **kw) -> str:
    return json.dumps(dashboard(facts, **kw), indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------ writing


def write(facts: dict[str, Any], out_dir: str | Path, **kw) -> list[Path]:
    """Write ``alerts.yml`` and ``dashboard.json`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    rules_path, dash_path = out / RULES_NAME, out / DASHBOARD_NAME
    rules_path.write_text(render_rules(facts, **kw))
    dash_path.write_text(render_dashboard(facts, **kw))
    return [rules_path, dash_path]


def write_from_report(report_json: str | Path, out_dir: str | Path | None = None, **kw) -> list[Path]:
    """The same from a ``report.json`` alone (into its folder unless ``out_dir``)."""
    from fanout.errors import ConfigError

    path = Path(report_json)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such report.json") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable report.json ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("facts"), dict):
        raise ConfigError(f"{path}: holds no facts (a report.json of fanout report holds them)")
    return write(doc["facts"], path.parent if out_dir is None else out_dir, **kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fanout.report.alerts",
                                 description="write alerts.yml and dashboard.json beside a report.json")
    ap.add_argument("report_json", help="a report's report.json (its facts give the thresholds)")
    ap.add_argument("--out", help="the folder to write into (default: the report's)")
    ap.add_argument("--heartbeat-s", type=float, default=DEFAULT_HEARTBEAT_S,
                    help=f"your BridgeConfig.heartbeat_s (default {DEFAULT_HEARTBEAT_S:g})")
    ap.add_argument("--scrape-interval-s", type=float, default=DEFAULT_SCRAPE_INTERVAL_S,
                    help=f"your Prometheus scrape interval (default {DEFAULT_SCRAPE_INTERVAL_S:g})")
    args = ap.parse_args(argv)
    from fanout.errors import FanoutError

    try:
        for p in write_from_report(args.report_json, args.out, heartbeat_s=args.heartbeat_s,
                                   scrape_interval_s=args.scrape_interval_s):
            print(f"wrote {p}")
    except FanoutError as e:
        print(f"python -m fanout.report.alerts: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["RULES_NAME", "DASHBOARD_NAME", "PENDING", "pending_metrics", "thresholds", "rules", "render_rules",
           "dashboard", "render_dashboard", "write", "write_from_report", "main"]
