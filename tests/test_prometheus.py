"""fanout[prometheus] (fanout.exporters.prometheus): a real scrape over HTTP of bridges running against
a throwaway server, parsed with prometheus_client's own parser; and a real Prometheus scraping
``fanout run --metrics-port``."""
from __future__ import annotations

import asyncio
import urllib.request

import pytest

from conftest import arun, debian_binary, pair_run, wait_for
from fanout import BridgeConfig, RedisEventBridge
from fanout.histograms import BOUNDS_S

prometheus_client = pytest.importorskip("prometheus_client", reason="fanout[prometheus] is not installed")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from fanout.exporters.prometheus import COUNTERS, HISTOGRAMS, registry_for, serve  # noqa: E402

BY_TYPE = "fanout_publish_errors"  # the one counter labelled by error_type too


def scrape(port: int) -> dict:
    """``{family name: family}`` parsed from ``/metrics`` (run in a thread: the server is another thread)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fam, suffix: str = "", **labels) -> float:
    got = [s.value for s in fam.samples if s.name == fam.name + suffix
           and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(got) == 1, (fam.name, suffix, labels, fam.samples)
    return got[0]


def test_a_real_scrape_equals_metrics_and_the_histograms_count_the_deliveries(redis_url):
    n = 200

    async def scrape_both(host, bot):
        stop = serve([host, bot], port=0, addr="127.0.0.1")
        try:
            fams = await asyncio.to_thread(scrape, stop.port)
        finally:
            stop()
        return fams, host.metrics(), bot.metrics(), bot.histograms(), host.histograms()

    fams, mh, mb, hb, hh = pair_run(redis_url, n, scrape_both)
    for name, (src, _) in COUNTERS.items():  # prometheus_client's parser names counters without _total
        if name == BY_TYPE:  # labelled by error_type too: no series before a publish failed
            assert mh[src] + mb[src] == 0 and not fams[name].samples, fams[name].samples
            continue
        assert value(fams[name], "_total", transport="pubsub") == mh[src] + mb[src], name
    assert value(fams["fanout_messages_received"], "_total") == n
    assert value(fams["fanout_messages_published"], "_total") == n
    assert value(fams["fanout_connected"]) == 2 and value(fams["fanout_subscriptions"]) == 4
    assert "fanout_last_heartbeat_timestamp_seconds" not in fams  # no bridge with heartbeat_s on
    (info,) = fams["fanout_build_info"].samples
    assert info.labels["version"] and info.value == 1

    lat = fams["fanout_delivery_latency_seconds"]
    per_type = {t: value(lat, "_count", event_type=t, transport="pubsub") for t in ("trade", "ticker")}
    assert per_type == {"trade": n - n // 4, "ticker": n // 4} and sum(per_type.values()) == mb["received"]
    for t in ("trade", "ticker"):
        buckets = [s for s in lat.samples if s.name.endswith("_bucket") and s.labels["event_type"] == t]
        les = [float(s.labels["le"]) for s in buckets]
        assert les[0] == 5e-05 and les[-2] == 10.0 and les[-1] == float("inf") and les == sorted(les)
        counts = [s.value for s in buckets]
        assert counts == sorted(counts) and counts[-1] == per_type[t]  # cumulative, ending at the count
        own = hb["delivery_latency"][t]
        assert own.count == per_type[t] and abs(value(lat, "_sum", event_type=t) - own.sum) < 1e-6
        assert dict(own.cumulative())[1.0] == value(lat, "_bucket", event_type=t, le="1.0")
    pub = fams["fanout_publish_duration_seconds"]
    assert sum(value(pub, "_count", event_type=t) for t in ("trade", "ticker")) == mh["published"] == n
    handled = fams["fanout_handler_duration_seconds"]
    assert sum(value(handled, "_count", event_type=t) for t in ("trade", "ticker")) == n  # one sync handler each
    # only aggregating labels: no instance id, symbol, run id or message id
    for fam in fams.values():
        for s in fam.samples:
            assert set(s.labels) <= {"transport", "event_type", "le", "version"}, s


def test_publish_errors_are_labelled_by_error_type_after_the_server_stopped(redis_server):
    from prometheus_client import generate_latest

    from fanout.errors import PublishError

    async def go():
        cfg = BridgeConfig(url=redis_server.url, event_types=("trade",), instance_id="host", publish_timeout_s=1.0,
                           reconnect_initial_s=0.1, enable_subscription=False)
        async with RedisEventBridge(cfg) as host:
            await host.publish("trade", {"k": 0})
            redis_server.stop()
            failed = 0
            for k in range(3):
                try:
                    await host.publish("trade", {"k": k})
                except PublishError:
                    failed += 1
            return failed, host.metrics(), host.publish_error_types(), generate_latest(registry_for(host)).decode()

    failed, m, kinds, text = arun(go())
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert failed == 3 and m["publish_errors"] == 3 and m["published"] == 1, (failed, m)
    samples = [s for s in fams[BY_TYPE].samples if s.name == BY_TYPE + "_total"]
    got = {s.labels["error_type"]: s.value for s in samples}
    assert got == kinds and sum(got.values()) == m["publish_errors"], (got, kinds, m)
    assert all(s.labels["transport"] == "pubsub" and s.labels["error_type"] for s in samples), samples
    assert set(got) <= {"timeout", "ConnectionRefusedError", "ConnectionResetError", "ConnectionError", "NeverSent",
                        "RedisUnavailable", "OSError"}, got


def test_error_types_are_bounded_the_rest_counted_as_other():
    from fanout.publishing import MAX_ERROR_TYPES

    bridge = RedisEventBridge(BridgeConfig(url="redis://127.0.0.1:1/0", event_types=("trade",)))
    for k in range(MAX_ERROR_TYPES + 5):
        bridge._count_error_type(f"Kind{k}")
    bridge._count_error_type("Kind0")
    kinds = bridge.publish_error_types()
    assert len(kinds) == MAX_ERROR_TYPES + 1 and kinds["_OTHER"] == 5 and kinds["Kind0"] == 2, kinds


def test_the_last_heartbeat_gauge_is_the_oldest_over_the_bridges_with_heartbeats(redis_url):
    async def go():
        cfg = dict(url=redis_url, event_types=("trade",), enable_publishing=False)
        async with RedisEventBridge(BridgeConfig(instance_id="a", heartbeat_s=0.05, **cfg)) as a, \
                RedisEventBridge(BridgeConfig(instance_id="b", heartbeat_s=600, **cfg)) as b, \
                RedisEventBridge(BridgeConfig(instance_id="c", **cfg)) as c:
            t = a.last_heartbeat_ns
            await wait_for(lambda: a.last_heartbeat_ns > t, 5, "a's heartbeat back")
            stop = serve([a, b, c], port=0, addr="127.0.0.1")
            try:
                fams = await asyncio.to_thread(scrape, stop.port)
            finally:
                stop()
            return fams, b.last_heartbeat_ns, a.last_heartbeat_ns

    fams, b_ns, a_ns = arun(go())
    assert b_ns < a_ns  # b's first heartbeat is 10 minutes away: its clock stands at its subscription
    assert value(fams["fanout_last_heartbeat_timestamp_seconds"], transport="pubsub") == b_ns / 1e9
    assert value(fams["fanout_stale_subscriptions"], "_total", transport="pubsub") == 0


def test_histogram_buckets_are_log_linear_from_50_us_to_10_s():
    assert BOUNDS_S[0] == 5e-05 and BOUNDS_S[-1] == 10.0 and len(BOUNDS_S) == 51
    assert list(BOUNDS_S) == sorted(set(BOUNDS_S))
    assert {"fanout_delivery_latency_seconds", "fanout_publish_duration_seconds",
            "fanout_handler_duration_seconds"} == set(HISTOGRAMS)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_binary() -> str:
    """Debian's ``prometheus``; absent: skip here, fail in CI (.ci/run installs it)."""
    return debian_binary("prometheus")


def get_json(url: str) -> dict:
    import json

    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


def test_a_real_prometheus_scrapes_fanout_run_metrics_port(tmp_path):
    import subprocess
    import time
    import urllib.parse

    from conftest import fanout_cmd

    binary = prometheus_binary()
    mport, pport = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: fanout\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n")
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{pport}"],
                            stdout=log, stderr=subprocess.STDOUT)
    run = None
    api = f"http://127.0.0.1:{pport}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert prom.poll() is None, f"prometheus exited {prom.returncode}: {(tmp_path / 'prometheus.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "prometheus was not ready within 30 s"
            time.sleep(0.2)
        run = subprocess.Popen([*fanout_cmd(), "run", "--duration", "12", "--rate", "20", "--no-save", "--no-progress",
                                "--metrics-port", str(mport)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        query = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": "fanout_messages_received_total"})
        seen = None
        while run.poll() is None and seen is None:  # the run's metrics exist while it runs
            res = get_json(query)
            assert res["status"] == "success", res
            for r in res["data"]["result"]:
                if float(r["value"][1]) > 0:
                    seen = r
            time.sleep(0.5)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        assert seen is not None, (f"prometheus never returned fanout_messages_received_total > 0 while the run ran; "
                                  f"targets: {get_json(f'{api}/api/v1/targets')['data']}")
        assert seen["metric"]["__name__"] == "fanout_messages_received_total"
        assert seen["metric"]["transport"] == "pubsub" and seen["metric"]["job"] == "fanout"
    finally:
        for p in (run, prom):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        log.close()


def test_metrics_port_with_agents_or_worker_processes_is_one_line_and_exit_2():
    import subprocess

    from conftest import fanout_cmd

    for extra in (["--agents", "2", "--redis-url", "redis://127.0.0.1:1/0"], ["--process-mode", "processes"]):
        res = subprocess.run([*fanout_cmd(), "run", "--no-save", "--metrics-port", "0", *extra],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "--metrics-port serves the bridges of this process only" in lines[0], res.stderr


def test_histograms_false_keeps_none_and_the_counters_still_count(redis_url):
    mb, mh, hb, hh = pair_run(redis_url, 20, lambda host, bot: (bot.metrics(), host.metrics(), bot.histograms(),
                                                                host.histograms()), types=("trade",), histograms=False)
    assert mb["received"] == 20 and mh["published"] == 20
    assert hb["delivery_latency"]["trade"].count == hb["handler_duration"]["trade"].count == 0
    assert hh["publish_duration"]["trade"].count == 0
    with pytest.raises(Exception, match="histograms: must be True or False"):
        BridgeConfig(histograms="yes")
