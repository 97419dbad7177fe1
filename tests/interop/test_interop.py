"""fanout and the seed's TypeScript side (a Node + ioredis bridge written to the seed's wire format,
tests/interop/seed-bridge.js) on one Redis: exact counts both ways, and a fanout validation run while
the TypeScript host publishes live. Skipped, with the reason, where node or npm is missing."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import redis

from conftest import arun, wait_for
from fanout import BridgeConfig, RedisEventBridge
from fanout.analysis import analyse
from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def node_bridge(tmp_path_factory) -> list[str]:
    """The command that runs seed-bridge.js with ioredis installed (in a temporary folder)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the interop tests (apt-get install nodejs npm)")
    work = tmp_path_factory.mktemp("interop")
    shutil.copy(HERE / "package.json", work)
    shutil.copy(HERE / "seed-bridge.js", work)
    try:
        res = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=work,
                             capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.skip("npm install of ioredis did not finish within 180 s (no registry?)")
    if res.returncode != 0:
        pytest.skip(f"npm install of ioredis failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return [node, str(work / "seed-bridge.js")]


def seed(cmd: list[str], *args: str, timeout: float = 30) -> dict:
    res = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


class SeedSubscriber:
    """seed-bridge.js subscribe, running in the background until its window ends."""

    def __init__(self, cmd: list[str], url: str, prefix: str, instance_id: str, seconds: float) -> None:
        self.proc = subprocess.Popen([*cmd, "subscribe", url, prefix, instance_id, str(seconds)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()  # {"subscribed": 2}: its subscriptions are confirmed
        assert "subscribed" in first, first + self.proc.stderr.read()

    def result(self) -> dict:
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])


def test_a_seed_subscriber_gets_every_fanout_event_exactly_once(node_bridge, redis_server):
    bot = SeedSubscriber(node_bridge, redis_server.url, "ws:", "pid", 2.0)

    async def publish():
        async with RedisEventBridge(BridgeConfig(url=redis_server.url, instance_id="fanout-host",
                                                 enable_subscription=False)) as host:
            for k in range(20):
                await host.publish(("ticker", "trade")[k % 2], {"symbol": "ETH/USDT", "k": k})

    arun(publish())
    got = bot.result()
    assert got["received"] == 20 and got["malformed"] == 0 and got["self"] == 0
    assert got["bySource"] == {"string:fanout-host": 20}


def test_fanout_gets_every_event_of_a_seed_publisher_and_filters_its_own(node_bridge, redis_server):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_server.url, instance_id="bot-1",
                                                 enable_publishing=False)) as bot:
            got = []
            bot.on("*", got.append)
            sent = await asyncio.to_thread(seed, node_bridge, "publish", redis_server.url, "ws:", "n:4242", "30")
            assert sent == {"published": 30, "source": 4242}
            await wait_for(lambda: len(got) == 30, what="30 seed events")
            await asyncio.sleep(0.2)  # nothing more arrives
            assert len(got) == 30 and {e.source for e in got} == {4242}
            assert all(e.seq is None for e in got)  # a seed sender has no seq: no gap detection for it
            m = bot.metrics()
            assert (m["received"], m["gaps"], m["duplicates"], m["malformed"]) == (30, 0, 0, 0)

    arun(go())


def test_a_fanout_run_while_the_typescript_host_publishes_live(node_bridge, redis_server):
    sent = 40

    def live_host():  # once the run is publishing, the TypeScript host sends on the same channels
        with redis.Redis.from_url(redis_server.url, socket_timeout=10) as r, r.pubsub() as ps:
            ps.subscribe("live:ticker")
            for msg in ps.listen():
                if msg["type"] == "message":
                    break
        seed(node_bridge, "publish", redis_server.url, "live:", "pid", str(sent))

    host = threading.Thread(target=live_host, daemon=True)
    host.start()
    rec = run_scenario(Scenario(name="interop", instances=3, duration_s=2.5, rate_per_s=40,
                                redis_url=redis_server.url, key_prefix="live:"), progress=False, save_to=None)
    host.join(30)
    assert not host.is_alive()
    f = analyse(rec)
    assert f.passed, [c for c in f.verdict if not c.passed]
    assert f.overall["foreign"] == sent * 3
    assert (f.overall["duplicates"], f.overall["unknown"], f.overall["missing"]) == (0, 0, 0)


@pytest.mark.parametrize("fanout_id, seed_arg, same", [
    (123, "123", False),       # a number at fanout, a string at the seed: two instances on both sides
    ("123", "n:123", False),   # a string at fanout, a number at the seed: two instances on both sides
    (123, "n:123", True),      # the same type and value: one id, two instances (a conflict both can see)
])
def test_ids_compare_by_type_and_value_on_both_sides(node_bridge, redis_server, fanout_id, seed_arg, same):
    """docs/wire-format.md: ids compare like JavaScript's ``===``. Where they differ, each side gets
    every event of the other; where they are equal, the seed drops fanout's events as its own and
    fanout reports the conflict (id_conflicts) and still delivers the seed's events."""
    n = 10
    bot = SeedSubscriber(node_bridge, redis_server.url, "ws:", seed_arg, 2.0)

    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_server.url, instance_id=fanout_id)) as me:
            got = []
            me.on("*", got.append)
            for k in range(n):
                await me.publish(("ticker", "trade")[k % 2], {"k": k})
            sent = await asyncio.to_thread(seed, node_bridge, "publish", redis_server.url, "ws:", seed_arg, str(n))
            assert sent["published"] == n and type(sent["source"]) is (str if seed_arg == "123" else int)
            await wait_for(lambda: len(got) == n, what=f"{n} seed events at fanout")
            m = me.metrics()
            assert {e.source for e in got} == {sent["source"]} and {type(e.source) for e in got} == {type(sent["source"])}
            assert (m["received"], m["self_filtered"], m["id_conflicts"]) == (n, n, 1 if same else 0)

    arun(go())
    res = bot.result()
    want = "number:123" if isinstance(fanout_id, int) else "string:123"
    # the seed instance (its subscriber and publisher share the id) filters its own n events, and
    if same:    # ... with `===` true also fanout's: lost there (fanout could only warn)
        assert (res["received"], res["self"]) == (0, 2 * n)
    else:       # ... receives every fanout event
        assert (res["received"], res["self"], res["bySource"]) == (n, n, {want: n})
