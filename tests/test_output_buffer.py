"""fanout.outbuf: the bridge reads its subscriber's output buffer at Redis (CLIENT LIST omem) and warns
before Redis cuts a slow subscriber off; with the check off nothing is asked; a server or ACL user that
refuses what it needs turns it off in one line. Real servers only (throwaway, started here)."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aredis

from conftest import arun, needs_redis7, wait_for
from fanout import BridgeConfig, RedisEventBridge
from fanout.errors import ConfigError
from fanout.lab.servers import RedisServer
from fanout.outbuf import client_field, parse_pubsub_limit

LIMIT = 1024 * 1024           # the throwaway server's pub/sub output-buffer limit (hard = soft, cut at once)
BLOB = "x" * 4000             # one event's payload: ~4 KB on the wire
WARNING = "pub/sub output-buffer limit"


def test_parse_the_pubsub_limit_and_a_clients_omem():
    assert parse_pubsub_limit([b"client-output-buffer-limit",
                               b"normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"]) \
        == (33554432, 8388608, 60)
    listing = (b"id=7 addr=127.0.0.1:5 laddr=127.0.0.1:6 fd=8 name=fanout:a omem=0 tot-mem=1\n"
               b"id=12 addr=127.0.0.1:9 laddr=127.0.0.1:6 fd=9 name=fanout:b omem=524288 tot-mem=2\n")
    assert client_field(listing, 12, "omem") == "524288"
    assert client_field(listing, 7, "omem") == "0"
    assert client_field(listing, 1, "omem") is None    # id=1 is no prefix match for id=12
    with pytest.raises(ValueError):
        parse_pubsub_limit([b"client-output-buffer-limit", b"normal 0 0 0"])


@pytest.mark.parametrize("kw, field", [
    ({"output_buffer_check_s": 0}, "output_buffer_check_s"),
    ({"output_buffer_check_s": "1"}, "output_buffer_check_s"),
    ({"output_buffer_check_s": 1.0, "transport": "streams"}, "output_buffer_check_s"),
    ({"output_buffer_warn_fraction": 1.5}, "output_buffer_warn_fraction"),
    ({"output_buffer_warn_fraction": 0}, "output_buffer_warn_fraction"),
    ({"output_buffer_limit_bytes": -1}, "output_buffer_limit_bytes"),
    ({"output_buffer_limit_bytes": 1.5}, "output_buffer_limit_bytes"),
])
def test_bad_check_settings_are_one_line_naming_the_field(kw, field):
    with pytest.raises(ConfigError) as e:
        BridgeConfig(**kw)
    assert str(e.value).startswith(field) and "\n" not in str(e.value)


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if WARNING in r.getMessage()]


async def _flood_until_cut_off(url: str):
    """A subscriber whose async handler never returns (its backlog stops the reading, as a slow consumer
    does) and a publisher flooding it in steps, each step followed by one look of the check, until Redis
    cuts the subscriber off. Returns the subscriber's metrics, the last time (ns) Redis was seen not to
    have cut anyone off yet, and what the exporter said then."""
    admin = aredis.Redis.from_url(url)
    gate = asyncio.Event()

    async def slow(env):
        await gate.wait()

    sub = RedisEventBridge(BridgeConfig(url=url, instance_id="slow", enable_publishing=False, event_types=("trade",),
                                        output_buffer_check_s=0.02, health_check_interval_s=0.5))
    sub.on("trade", slow)
    pub = RedisEventBridge(BridgeConfig(url=url, instance_id="flood", enable_subscription=False,
                                        event_types=("trade",)))
    await sub.start()
    await pub.start()
    try:
        not_yet_ns = 0
        scraped = None
        for _step in range(2000):
            m = sub.metrics()
            # while the kernel's buffers absorb the flood (Redis holds nothing): ~256 KB a step; once Redis
            # holds some, ~32 KB a step, so each look of the check sees the buffer at most that much larger
            for _ in range(64 if not m["output_buffer_bytes"] else 8):
                assert pub.publish_nowait("trade", {"blob": BLOB}) is not None
            await pub.flush()
            before = time.time_ns()
            if await _cut_off(admin):
                break
            not_yet_ns = before  # (the count only grows: at `before` nobody had been cut off)
            if m["output_buffer_warnings"] and scraped is None:
                scraped = _scrape(sub)
            if not await _next_look(sub, m["output_buffer_samples"]):
                # no look for 5 s: only a subscriber Redis just cut off (its client is gone) is not read
                assert await _cut_off(admin), "the check took no look for 5 s"
                break
        else:
            raise AssertionError("Redis never cut the slow subscriber off")
        # the bridge notices the cut-off although its reading is stopped (the paused-connection probe)
        await wait_for(lambda: sub.metrics()["reconnects"] >= 1, 10, "the slow subscriber's reconnect")
        gate.set()
        return sub.metrics(), not_yet_ns, scraped, list(sub.outages)
    finally:
        gate.set()
        await pub.close()
        await sub.close()
        await admin.aclose()


async def _cut_off(admin) -> int:
    """Subscribers Redis has cut off for their output buffer so far (INFO stats)."""
    return (await admin.info("stats"))["client_output_buffer_limit_disconnections"]


async def _next_look(bridge, seen: int, timeout_s: float = 5.0) -> bool:
    """Wait until the bridge's check has taken a look after the ``seen``-th; False after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while bridge.metrics()["output_buffer_samples"] <= seen:
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.002)
    return True


def _scrape(bridge) -> dict | None:
    """The exporter's output-buffer gauges and the metrics() they came from, read in one go (no loop turn
    between them: the same reading)."""
    try:
        from prometheus_client.parser import text_string_to_metric_families

        from fanout.exporters.prometheus import registry_for
        from prometheus_client import generate_latest
    except ImportError:  # fanout[prometheus] not installed: the gauge is not checked
        return None
    m = bridge.metrics()
    text = generate_latest(registry_for(bridge)).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return {"metrics": m, "bytes": [s.value for s in fams["fanout_subscriber_output_buffer_bytes"].samples],
            "limit": [s.value for s in fams["fanout_subscriber_output_buffer_limit_bytes"].samples]}


@needs_redis7  # INFO stats client_output_buffer_limit_disconnections
def test_the_warning_comes_before_redis_cuts_the_slow_subscriber_off(caplog):
    caplog.set_level(logging.WARNING, logger="fanout")
    with RedisServer(pubsub_buffer_limit="1mb") as srv:
        m, not_yet_ns, scraped, outages = arun(_flood_until_cut_off(srv.url), timeout=120)
    # the server's limit was read (CONFIG GET) and crossed at half of it, once, before the cut-off
    assert m["output_buffer_limit_bytes"] == LIMIT
    assert m["output_buffer_warnings"] == 1, m
    assert 0 < m["output_buffer_warned_ns"] < not_yet_ns, "the warning came after Redis cut the subscriber off"
    assert LIMIT // 2 <= m["output_buffer_max_bytes"] < LIMIT
    lines = _warnings(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert lines[0].created * 1e9 < not_yet_ns
    assert "slow" in lines[0].getMessage() and "\n" not in lines[0].getMessage()
    # the bridge's own evidence of the cut-off: an outage, noticed after the warning
    assert m["reconnects"] >= 1 and outages
    assert "closed by the server while reading was paused" in outages[0][2]
    # what a Prometheus would have scraped once the warning was given
    if scraped is not None:
        assert scraped["bytes"] == [scraped["metrics"]["output_buffer_bytes"]] and scraped["bytes"][0] >= LIMIT // 2
        assert scraped["limit"] == [LIMIT]


async def _quiet_run(url: str, check_s: float | None) -> tuple[dict, dict]:
    """A subscriber (the check on or off) that gets a few events; then its metrics, the calls of each
    command the server counted meanwhile (INFO commandstats, after minus before), and its exporter gauges."""
    admin = aredis.Redis.from_url(url)
    got = []
    sub = RedisEventBridge(BridgeConfig(url=url, instance_id="sub", enable_publishing=False, event_types=("trade",),
                                        output_buffer_check_s=check_s))
    sub.on("trade", got.append)
    pub = RedisEventBridge(BridgeConfig(url=url, instance_id="pub", enable_subscription=False, event_types=("trade",)))
    before = await admin.info("commandstats")  # (starting the throwaway server asked some itself)
    async with sub, pub:
        for k in range(5):
            await pub.publish("trade", {"k": k})
        await wait_for(lambda: len(got) == 5, 5, "five events")
        await asyncio.sleep(0.3)  # 15 looks of a 20 ms check
        m = sub.metrics()
        after = await admin.info("commandstats")
        scraped = _scrape(sub)
    await admin.aclose()
    return m, {k: v["calls"] - before.get(k, {}).get("calls", 0) for k, v in after.items()}, scraped


@needs_redis7  # per-subcommand counts in INFO commandstats (cmdstat_client|list)
@pytest.mark.parametrize("check_s", [None, 0.02])
def test_with_the_check_off_nothing_is_asked(redis_server, check_s):
    m, calls, scraped = arun(_quiet_run(redis_server.url, check_s))
    asked = {k: n for k, n in calls.items() if n and k in ("cmdstat_client|list", "cmdstat_client|id",
                                                           "cmdstat_config|get")}
    if check_s is None:
        assert asked == {}, f"the check is off, yet the bridge asked {asked}"
        assert m["output_buffer_check"] == "off" and m["output_buffer_bytes"] is None
        assert m["output_buffer_samples"] == 0
        assert scraped is None or scraped["bytes"] == scraped["limit"] == []   # no gauge rather than a made-up 0
    else:  # the same instrument sees the check when it is on
        assert asked["cmdstat_client|id"] == 1 and asked["cmdstat_config|get"] == 1
        # one CLIENT LIST per look (one may be on its way when the metrics are read)
        assert m["output_buffer_samples"] >= 5
        assert m["output_buffer_samples"] <= asked["cmdstat_client|list"] <= m["output_buffer_samples"] + 1
        assert m["output_buffer_check"] == "on" and m["output_buffer_bytes"] == 0 and m["output_buffer_warnings"] == 0
        assert scraped is None or (scraped["bytes"] == [0] and scraped["limit"] == [m["output_buffer_limit_bytes"]])


@needs_redis7  # ACL rules removing one subcommand
@pytest.mark.parametrize("deny, configured, off", [
    ("-client|list", None, "CLIENT LIST refused"),
    ("-client|id", None, "the subscriber connection's CLIENT ID was refused"),
    ("-config|get", None, "CONFIG GET client-output-buffer-limit refused"),
    ("-config|get", 3_000_000, None),     # a configured limit: CONFIG is not asked, the check runs
])
def test_a_user_refused_what_the_check_needs_gets_one_line_and_the_check_turns_off(caplog, deny, configured, off):
    caplog.set_level(logging.INFO, logger="fanout")
    with RedisServer() as srv:
        async def go():
            admin = aredis.Redis.from_url(srv.url)
            await admin.execute_command("ACL", "SETUSER", "watcher", "on", ">pw", "~*", "&*", "+@all", deny)
            await admin.aclose()
            url = f"redis://watcher:pw@{srv.host}:{srv.port}/0"
            got = []
            sub = RedisEventBridge(BridgeConfig(url=url, instance_id="sub", enable_publishing=False,
                                                event_types=("trade",), output_buffer_check_s=0.02,
                                                output_buffer_limit_bytes=configured))
            sub.on("trade", got.append)
            pub = RedisEventBridge(BridgeConfig(url=srv.url, instance_id="pub", enable_subscription=False,
                                                event_types=("trade",)))
            async with sub, pub:
                await asyncio.sleep(0.3)
                await pub.publish("trade", {"k": 1})
                await wait_for(lambda: got, 5, "an event after the check's verdict")
                return sub.metrics()
        m = arun(go())
    said = [r.getMessage() for r in caplog.records if "output-buffer check off" in r.getMessage()]
    if off is None:
        assert said == [] and m["output_buffer_check"] == "on"
        assert m["output_buffer_limit_bytes"] == configured and m["output_buffer_samples"] >= 5
    else:
        assert len(said) == 1 and off in said[0], said     # once, although the check ran every 20 ms
        assert m["output_buffer_check"].startswith(off) and m["output_buffer_samples"] == 0
        assert m["connected"]                               # the bridge itself goes on


@pytest.mark.parametrize("check_s", [None, 0.05])
def test_a_run_records_each_receivers_largest_reading(tmp_path, check_s):
    from fanout.lab import Scenario, load_run, run_scenario
    from fanout.lab.options import RunOptions
    from fanout.lab.record import INSTANCE_COLUMNS, frame

    sc = Scenario(name="omem", instances=2, duration_s=1, rate_per_s=20)
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path), options=RunOptions(output_buffer_check_s=check_s))
    inst = load_run(rec.path).instances  # saved and read back
    if check_s is None:
        assert (inst["output_buffer_max_bytes"] == -1).all()   # not read: never claimed as 0
    else:
        assert (inst["output_buffer_max_bytes"] >= 0).all() and (inst["output_buffer_max_bytes"] < 1024 * 1024).all()
    assert (inst["output_buffer_warnings"] == 0).all()
    # a record made before the column existed reads as "not read"
    old = frame(inst.drop(columns=["output_buffer_max_bytes", "output_buffer_warnings"]), INSTANCE_COLUMNS)
    assert (old["output_buffer_max_bytes"] == -1).all() and (old["output_buffer_warnings"] == 0).all()


@needs_redis7  # sharded pub/sub
def test_sharded_reads_every_nodes_subscriber_connection():
    from redis.crc import key_slot

    from fanout.lab.servers import LocalCluster

    types = ("ticker", "trade", "orderbook", "candle")
    with LocalCluster(masters=3) as cl:
        cfg = BridgeConfig(url=cl.url, instance_id="sub", transport="sharded", event_types=types, shard_partitions=3,
                           enable_publishing=False, output_buffer_check_s=0.02)
        holders = {cl.slot_owner(key_slot(c.encode())).port for t in types for c in cfg.channels(t)}
        assert len(holders) == 3, holders   # the subscription spans every master

        async def go():
            sub = RedisEventBridge(cfg)
            async with sub:
                await wait_for(lambda: sub.metrics()["output_buffer_samples"] >= 5, 10, "five looks")
                m = sub.metrics()
            calls = {}
            for node in cl.masters():
                admin = aredis.Redis(host=node.host, port=node.port)
                stats = await admin.info("commandstats")
                calls[node.port] = stats.get("cmdstat_client|list", {}).get("calls", 0)
                await admin.aclose()
            return m, calls

        m, calls = arun(go(), 30)
    # every look read the subscriber connection on each of the three masters (one may be on its way)
    assert all(m["output_buffer_samples"] <= n <= m["output_buffer_samples"] + 1 for n in calls.values()), (m, calls)
    assert m["output_buffer_bytes"] == 0 and m["output_buffer_check"] == "on"
    assert m["output_buffer_limit_bytes"] == 8 * 1024 * 1024  # the default pubsub 32mb 8mb 60: the soft limit


def test_fanout_run_output_buffer_check_records_each_receivers_reading(redis_url, tmp_path):
    import subprocess

    from conftest import ROOT, fanout_cmd
    from fanout.lab import load_run

    def fanout(*args):
        return subprocess.run([*fanout_cmd(), "run", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)

    res = fanout("--instances=2", "--duration=1", "--rate=20", "--no-progress", f"--redis-url={redis_url}",
                 f"--out={tmp_path}", "--output-buffer-check=0.05")
    assert res.returncode == 0, res.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if (p / "run.json").exists()]
    inst = load_run(run_dir).instances
    assert len(inst) == 2 and (inst["output_buffer_max_bytes"] >= 0).all()
    bad = fanout("--output-buffer-check=0", "--no-save", f"--redis-url={redis_url}")
    assert bad.returncode == 2 and "--output-buffer-check" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
