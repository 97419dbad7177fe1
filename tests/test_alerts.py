"""fanout.report.alerts: alerts.yml and dashboard.json beside a report, from its facts.

The rules go through Debian's ``promtool`` (``check rules``, and ``test rules`` with series that
should and should not fire); the dashboard's PromQL is checked against the names a real exporter
serves, scraped over HTTP from bridges running against a throwaway server."""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from conftest import ROOT, arun, debian_binary, pair_run
from fanout.report import alerts

EXAMPLE = ROOT / "reports" / "example"


def promtool() -> str:
    """Debian's ``promtool`` (the ``prometheus`` package); absent: skip here, fail in CI (.ci/run installs it)."""
    return debian_binary("promtool")


def example_facts() -> dict:
    return json.loads((EXAMPLE / "report.json").read_text())["facts"]


def rules_by_name(doc: dict) -> dict[str, dict]:
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


def test_promtool_accepts_the_rules_rendered_from_the_example(tmp_path):
    tool = promtool()
    written = alerts.write_from_report(EXAMPLE / "report.json", tmp_path)
    assert sorted(p.name for p in written) == ["alerts.yml", "dashboard.json"]
    res = subprocess.run([tool, "check", "rules", str(tmp_path / "alerts.yml")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    n = len(rules_by_name(yaml.safe_load((tmp_path / "alerts.yml").read_text())))
    assert f"SUCCESS: {n} rules found" in res.stdout, res.stdout


def test_promtool_rejects_a_broken_rule(tmp_path):
    """The check above can fail: a rule with a PromQL syntax error is refused."""
    tool = promtool()
    doc = alerts.rules(example_facts())
    doc["groups"][0]["rules"][0]["expr"] = "increase(fanout_gaps_total[5m] > 0"
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(doc))
    res = subprocess.run([tool, "check", "rules", str(tmp_path / "bad.yml")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0 and "parse error" in (res.stdout + res.stderr).lower(), res.stdout + res.stderr


def test_every_rule_the_brief_names_is_there_with_thresholds_from_the_facts():
    facts = example_facts()
    doc = alerts.rules(facts)
    by = rules_by_name(doc)
    assert set(by) >= {"FanoutGaps", "FanoutUnsent", "FanoutLatencyP99High", "FanoutLatencyP99VeryHigh",
                       "FanoutHeartbeatLate", "FanoutStaleSubscription", "FanoutReconnecting",
                       "FanoutOutputBufferHigh", "FanoutDisconnected"}
    th = alerts.thresholds(facts)
    p99_s = facts["monitoring"]["p99_ms"] / 1000
    # p99 above k x the measured p99, over the exported histogram's buckets
    for name, k in (("FanoutLatencyP99High", 3), ("FanoutLatencyP99VeryHigh", 10)):
        expr = by[name]["expr"]
        assert "histogram_quantile(0.99" in expr and "fanout_delivery_latency_seconds_bucket" in expr, expr
        limit = float(re.search(r"> ([0-9.e+-]+)$", expr).group(1))
        assert limit == pytest.approx(k * p99_s, rel=1e-3), (name, expr)
        assert facts["monitoring"]["worst_p99_run"] in by[name]["annotations"]["threshold"]
    # output buffer above half the pub/sub limit the runs without faults had (the soft limit: 8 MiB for 60 s), not
    # the 1 MiB the slow-consumer fault set on purpose
    quiet = {e["name"] for e in facts["runs"] if not e["faulted"]}
    soft = min(lim["soft_bytes"] for lim in facts["settings"]["pubsub_limits"] if quiet & set(lim["runs"]))
    assert soft == 8 * 2**20 and min(lim["soft_bytes"] for lim in facts["settings"]["pubsub_limits"]) < soft
    assert by["FanoutOutputBufferHigh"]["expr"] == f"fanout_subscriber_output_buffer_bytes > {soft // 2}"
    assert th["output_buffer"]["warn_bytes"] == soft // 2
    # reconnects: more in 10 minutes than one planned Redis restart made per bridge (1 in the example)
    assert th["reconnects"]["per_restart"] == 1
    assert by["FanoutReconnecting"]["expr"] == "increase(fanout_reconnects_total[10m]) > 1"
    assert by["FanoutGaps"]["expr"] == "increase(fanout_gaps_total[5m]) > 0"
    assert by["FanoutDisconnected"]["expr"] == "fanout_connected == 0"
    assert "fanout_last_heartbeat_timestamp_seconds" in by["FanoutHeartbeatLate"]["expr"]
    # every rule says where its threshold came from; the example's runs were on loopback, and say so
    assert facts["scope"]["machine"]["loopback"] is True
    for name, r in by.items():
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert r["annotations"]["summary"] and r["annotations"]["threshold"], name
    for name in ("FanoutLatencyP99High", "FanoutLatencyP99VeryHigh", "FanoutDisconnected"):
        assert "loopback" in by[name]["annotations"]["threshold"], name


def test_runs_across_a_network_do_not_say_loopback_and_no_measured_p99_leaves_its_rules_out():
    facts = copy.deepcopy(example_facts())
    facts["scope"]["machine"]["loopback"] = False
    by = rules_by_name(alerts.rules(facts))
    assert not any("loopback" in r["annotations"]["threshold"] for r in by.values())
    facts["monitoring"]["p99_ms"] = None
    facts["monitoring"]["worst_p99_run"] = None
    doc = alerts.rules(facts)
    by = rules_by_name(doc)
    assert "FanoutLatencyP99High" not in by and "FanoutLatencyP99VeryHigh" not in by
    assert any("p99" in why for why in alerts.thresholds(facts)["left_out"])
    assert "left out" in alerts.render_rules(facts)  # the file says so in its header


PROMTOOL_TESTS = """
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'fanout_gaps_total{instance="bot-1", transport="pubsub"}'
        values: '0 0 0 2 2 2 2 2 2 2 2 2 2 2 2'
      - series: 'fanout_gaps_total{instance="bot-2", transport="pubsub"}'
        values: '0x15'
      - series: 'fanout_connected{instance="bot-1", transport="pubsub"}'
        values: '1 1 0 0 0 0 1 1 1 1 1 1 1 1 1'
      - series: 'fanout_connected{instance="bot-2", transport="pubsub"}'
        values: '1x15'
      - series: 'fanout_reconnects_total{instance="bot-1", transport="pubsub"}'
        values: '0 1 2 3 3 3 3 3 3 3 3 3 3 3 3'
      - series: 'fanout_reconnects_total{instance="bot-2", transport="pubsub"}'
        values: '0 1 1 1 1 1 1 1 1 1 1 1 1 1 1'
      # bot-1: every delivery lands between 2 s and 5 s; bot-2: every one within 1 ms
      - series: 'fanout_delivery_latency_seconds_bucket{instance="bot-1", transport="pubsub", event_type="trade", le="0.001"}'
        values: '0x15'
      - series: 'fanout_delivery_latency_seconds_bucket{instance="bot-1", transport="pubsub", event_type="trade", le="2.0"}'
        values: '0x15'
      - series: 'fanout_delivery_latency_seconds_bucket{instance="bot-1", transport="pubsub", event_type="trade", le="5.0"}'
        values: '0+600x15'
      - series: 'fanout_delivery_latency_seconds_bucket{instance="bot-1", transport="pubsub", event_type="trade", le="+Inf"}'
        values: '0+600x15'
      - series: 'fanout_delivery_latency_seconds_bucket{instance="bot-2", transport="pubsub", event_type="trade", le="0.001"}'
        values: '0+600x15'
      - series: 'fanout_delivery_latency_seconds_bucket{instance="bot-2", transport="pubsub", event_type="trade", le="2.0"}'
        values: '0+600x15'
      - series: 'fanout_delivery_latency_seconds_bucket{instance="bot-2", transport="pubsub", event_type="trade", le="5.0"}'
        values: '0+600x15'
      - series: 'fanout_delivery_latency_seconds_bucket{instance="bot-2", transport="pubsub", event_type="trade", le="+Inf"}'
        values: '0+600x15'
      - series: 'fanout_subscriber_output_buffer_bytes{instance="bot-1", transport="pubsub"}'
        values: '0 0 0 9000000 9000000 9000000 9000000 9000000 9000000 9000000 9000000 9000000 9000000 9000000 9000000'
      - series: 'fanout_last_heartbeat_timestamp_seconds{instance="bot-1", transport="pubsub"}'
        values: '0 60 120 120 120 120 120 120 120 120 120 120 120 120 120'
      - series: 'fanout_last_heartbeat_timestamp_seconds{instance="bot-2", transport="pubsub"}'
        values: '0+60x15'
    alert_rule_test:
      - eval_time: 4m
        alertname: FanoutGaps
        exp_alerts:
          - exp_labels: {severity: critical, instance: bot-1, transport: pubsub}
            exp_annotations: {summary: "bot-1 (pubsub): 2 events lost in transit in 5 minutes"}
      - eval_time: 12m
        alertname: FanoutGaps
        exp_alerts: []
      - eval_time: 5m
        alertname: FanoutDisconnected
        exp_alerts:
          - exp_labels: {severity: critical, instance: bot-1, transport: pubsub}
      - eval_time: 8m
        alertname: FanoutDisconnected
        exp_alerts: []
      - eval_time: 4m
        alertname: FanoutReconnecting
        exp_alerts:
          - exp_labels: {severity: warning, instance: bot-1, transport: pubsub}
      - eval_time: 14m
        alertname: FanoutLatencyP99VeryHigh
        exp_alerts:
          - exp_labels: {severity: critical, instance: bot-1, transport: pubsub}
      - eval_time: 14m
        alertname: FanoutLatencyP99High
        exp_alerts:
          - exp_labels: {severity: warning, instance: bot-1, transport: pubsub}
      - eval_time: 8m
        alertname: FanoutOutputBufferHigh
        exp_alerts:
          - exp_labels: {severity: warning, instance: bot-1, transport: pubsub}
      - eval_time: 10m
        alertname: FanoutHeartbeatLate
        exp_alerts:
          - exp_labels: {severity: critical, instance: bot-1, transport: pubsub}
"""


def test_the_rules_fire_on_the_series_they_watch_and_only_there(tmp_path):
    """``promtool test rules``: a gap, a bridge down for 4 minutes, reconnects, deliveries at 2-5 s, a buffer
    above half the limit and a heartbeat that stopped fire for bot-1; bot-2's healthy series fire nothing."""
    tool = promtool()
    facts = example_facts()
    doc = alerts.rules(facts, heartbeat_s=5.0, scrape_interval_s=15.0)
    for g in doc["groups"]:  # promtool compares annotations too: keep one summary, whose $value is checked
        for r in g["rules"]:
            r["annotations"] = {"summary": r["annotations"]["summary"]} if r["alert"] == "FanoutGaps" else {}
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc))
    (tmp_path / "tests.yml").write_text(PROMTOOL_TESTS)
    res = subprocess.run([tool, "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def scraped_names(redis_url: str) -> set[str]:
    """Every sample name a real exporter serves for a publishing and a subscribing bridge (with histograms, and
    with the heartbeat and the output-buffer check where this BridgeConfig has them)."""
    pytest.importorskip("prometheus_client", reason="fanout[prometheus] is not installed")
    import asyncio
    import dataclasses

    from prometheus_client.parser import text_string_to_metric_families

    from fanout import BridgeConfig
    from fanout.exporters.prometheus import serve

    fields = {f.name for f in dataclasses.fields(BridgeConfig)}
    extra = {k: v for k, v in (("heartbeat_s", 0.2), ("output_buffer_check_s", 0.2)) if k in fields}

    def scrape(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()

    async def scraped(host, bot) -> str:
        if extra:
            await asyncio.sleep(1.0)  # a few heartbeats and buffer samples
        stop = serve([host, bot], port=0, addr="127.0.0.1")
        try:
            return await asyncio.to_thread(scrape, stop.port)
        finally:
            stop()

    text = pair_run(redis_url, 20, scraped, types=("trade",), **extra)
    fams = list(text_string_to_metric_families(text))
    # a labelled counter with no series yet (publish errors by error_type, before the first failure) is
    # still served: its family is declared on every scrape, and a rule over it reads no series, not a typo
    return {s.name for fam in fams for s in fam.samples} | {
        f"{fam.name}_total" for fam in fams if fam.type == "counter" and not fam.samples}


def promql_names(expr: str) -> set[str]:
    return set(re.findall(r"\bfanout_[a-z0-9_]+", expr))


def test_the_dashboard_and_the_rules_name_only_metrics_a_real_exporter_serves(redis_url, tmp_path):
    served = scraped_names(redis_url)
    assert "fanout_messages_received_total" in served and "fanout_delivery_latency_seconds_bucket" in served
    facts = example_facts()
    dash = json.loads(alerts.render_dashboard(facts))
    exprs = {}
    for p in dash["panels"]:
        for t in p["targets"]:
            exprs[f'{p["title"]} {t["refId"]}'] = t["expr"]
    for name, r in rules_by_name(alerts.rules(facts)).items():
        exprs[name] = r["expr"]
    pending = alerts.pending_metrics()  # metrics whose BridgeConfig field has not landed here yet
    for where, expr in exprs.items():
        names = promql_names(expr)
        assert names, (where, expr)
        for n in names:
            if n in pending:
                assert n not in served, f"{n} is served now: take it out of alerts.PENDING"
                continue
            assert n in served, f"{where}: {n} is not a metric the exporter serves ({expr})"


def test_the_dashboard_is_a_grafana_dashboard_with_every_panel_the_brief_names():
    facts = example_facts()
    dash = json.loads(alerts.render_dashboard(facts))
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"] and dash["__inputs"][0]["pluginId"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for word in ("delivery rate", "latency", "gaps", "reconnects", "connected", "output buffer", "heartbeat age"):
        assert word in titles, word
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, " in exprs, q
    for name in ("fanout_gaps_total", "fanout_unsent_total", "fanout_duplicates_total"):
        assert name in exprs, name
    for p in dash["panels"]:
        assert p["type"] in ("timeseries", "stat") and p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        g = p["gridPos"]
        assert set(g) == {"h", "w", "x", "y"} and 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        assert [t["refId"] for t in p["targets"]] == [chr(ord("A") + i) for i in range(len(p["targets"]))]
    # the latency panel draws the alert thresholds
    lat = next(p for p in dash["panels"] if "p99" in p["title"])
    steps = [s["value"] for s in lat["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None]
    th = alerts.thresholds(facts)
    assert steps == [th["latency"]["warn_s"], th["latency"]["page_s"]]


def test_the_committed_example_ships_alerts_and_dashboard_rendered_from_its_report_json(tmp_path):
    alerts.write_from_report(EXAMPLE / "report.json", tmp_path)
    for name in ("alerts.yml", "dashboard.json"):
        assert (EXAMPLE / name).read_text() == (tmp_path / name).read_text(), (
            f"reports/example/{name} is stale: python -m fanout.report.alerts reports/example/report.json")


def test_the_command_line_writes_beside_the_report_and_a_wrong_path_is_one_line(tmp_path):
    import sys

    shutil.copy(EXAMPLE / "report.json", tmp_path / "report.json")
    res = subprocess.run([sys.executable, "-m", "fanout.report.alerts", str(tmp_path / "report.json")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "alerts.yml").is_file() and (tmp_path / "dashboard.json").is_file()
    res = subprocess.run([sys.executable, "-m", "fanout.report.alerts", str(tmp_path / "nope.json")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "nope.json" in res.stderr, res.stderr


def test_the_monitoring_section_names_the_exporters_metrics_and_the_rules_with_their_thresholds():
    from _records import make_record
    from fanout.report import operations
    from test_report_facts import capacity_run, partition, report, run_of

    rep = report(run_of(make_record({f"i{k}": 400 for k in range(4)}), name="standard"), capacity_run(),
                 partition("pubsub"))
    text = operations.operations(rep).split("## Monitoring", 1)[1]
    for name in ("fanout_delivery_latency_seconds", "fanout_gaps_total", "fanout_unsent_total",
                 "fanout_duplicates_total", "fanout_reconnects_total", "fanout_connected",
                 "fanout_stale_subscriptions_total", "fanout_last_heartbeat_timestamp_seconds",
                 "fanout_subscriber_output_buffer_bytes", "fanout_publish_errors_total"):
        assert f"`{name}`" in text, name
    assert "| `gaps` |" not in text and "| `reconnects` |" not in text  # no generic names left
    assert "alerts.yml" in text and "dashboard.json" in text
    by = rules_by_name(alerts.rules(rep.facts))
    for name in by:
        assert f"`{name}`" in text, name
    th = rep.facts["monitoring"]["alerts"]
    assert th == alerts.thresholds(rep.facts)  # report.json keeps what the rules were made of
    assert f"above {th['latency']['warn_s']} s (3×)" in text and f"above {th['latency']['page_s']} s (10×)" in text
    assert f"`FanoutDisconnected`: 0 for {th['connected']['for_s']} s" in text


def test_a_real_prometheus_loads_the_rules_and_evaluates_each_on_a_live_bridge_pair(redis_url, tmp_path):
    """Prometheus with ``rule_files: [alerts.yml]`` scrapes bridges delivering events: every rule evaluates
    without error (health ok), none fires, and the p99 the latency rules compare is a number below their
    threshold."""
    import asyncio
    import time
    import urllib.parse

    from test_prometheus import free_port, get_json, prometheus_binary

    from fanout import BridgeConfig, RedisEventBridge
    from fanout.exporters.prometheus import serve

    binary = prometheus_binary()
    facts = example_facts()
    alerts.write(facts, tmp_path)
    th = alerts.thresholds(facts)
    mport, pport = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: [{tmp_path / 'alerts.yml'}]\n"
        f"scrape_configs:\n  - job_name: fanout\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n")
    api = f"http://127.0.0.1:{pport}"
    p99_query = ("histogram_quantile(0.99, sum by (job, instance, transport, le) "
                 "(rate(fanout_delivery_latency_seconds_bucket[5m])))")

    def query(q: str) -> list:
        res = get_json(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        assert res["status"] == "success", res
        return res["data"]["result"]

    def settled() -> list | None:
        """The rules once every one has been evaluated after the p99 became a number, else None."""
        try:
            with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as r:
                if r.status != 200:
                    return None
        except OSError:
            return None
        if not [r for r in query(p99_query) if r["value"][1] not in ("NaN", "+Inf")]:
            return None
        time.sleep(2.5)  # two more evaluations
        rules = [r for g in get_json(f"{api}/api/v1/rules")["data"]["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    async def go():
        cfg = dict(url=redis_url, event_types=("trade",), histograms=True)
        log = open(tmp_path / "prometheus.log", "w")
        async with RedisEventBridge(BridgeConfig(instance_id="host", **cfg)) as host, \
                RedisEventBridge(BridgeConfig(instance_id="bot", **cfg)) as bot:
            got: list = []
            bot.on("trade", got.append)
            stop = serve([host, bot], port=mport, addr="127.0.0.1")
            prom = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                     f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                     f"--web.listen-address=127.0.0.1:{pport}"], stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                k = 0
                while True:
                    for _ in range(20):
                        await host.publish("trade", {"k": k})
                        k += 1
                    rules = await asyncio.to_thread(settled)
                    if rules is not None:
                        break
                    assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                    assert time.monotonic() < deadline, "prometheus evaluated no rule on a p99 within 60 s"
                p99 = await asyncio.to_thread(query, p99_query)
                return rules, p99, len(got), bot.metrics()
            finally:
                prom.kill()
                prom.wait(timeout=10)
                stop()
                log.close()

    rules, p99, delivered, m = arun(go(), timeout=120)
    assert delivered > 0 and m["gaps"] == 0 and m["connected"]
    assert {r["name"] for r in rules} == set(rules_by_name(alerts.rules(facts)))
    for r in rules:
        assert r["health"] == "ok", (r["name"], r.get("lastError"))
        assert r["state"] == "inactive", (r["name"], r["alerts"])
    (series,) = p99
    assert series["metric"]["job"] == "fanout" and series["metric"]["transport"] == "pubsub"
    assert 0 < float(series["value"][1]) < th["latency"]["warn_s"], series
