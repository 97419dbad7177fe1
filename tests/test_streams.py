"""The Redis Streams transport against a real redis-server (no mocks).

Every test starts its own throwaway server on a free port and runs its bridges inside
``asyncio.run``; waits are bounded polls, so a failure is an assertion, not a hang.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from conftest import needs_redis7
from fanout import BridgeConfig, PublishError, RedisEventBridge
from fanout.lab.servers import RedisServer
from fanout.transports.streams import StreamsTransport

pytestmark = needs_redis7

HERE = Path(__file__).resolve().parent
TICKER = "ws:ticker"


def config(url: str, instance_id: str, **kw) -> BridgeConfig:
    kw.setdefault("event_types", ("ticker", "trade"))
    return BridgeConfig(url=url, instance_id=instance_id, transport="streams",
                        reconnect_initial_s=0.02, reconnect_max_s=0.2, **kw)


class Recorder:
    """Everything one bridge handed to its handlers and gap callbacks."""

    def __init__(self, bridge: RedisEventBridge) -> None:
        self.bridge = bridge
        self.envs: list = []
        self.notices: list = []
        bridge.on("*", self.envs.append)
        bridge.on_gap(self.notices.append)

    def ids(self) -> list[str]:
        return [e.id for e in self.envs]

    def reasons(self) -> set[str]:
        return {n.reason for n in self.notices}


async def until(cond, timeout: float = 8.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)


async def publish(bridge: RedisEventBridge, n: int, event_type: str = "ticker") -> list[str]:
    return [(await bridge.publish(event_type, {"i": i})).id for i in range(n)]


async def saved(url: str, instance_id: str, key: str = TICKER, timeout: float = 5.0) -> None:
    """Wait until the instance's saved position on ``key`` is the stream's last entry."""
    r = redis.Redis.from_url(url)
    try:
        last = r.xrevrange(key, count=1)
        want = last[0][0] if last else b"0-0"
        await until(lambda: r.hget(f"ws:pos:{instance_id}", key) == want, timeout,
                    f"{instance_id}'s saved position on {key} to reach {want!r}")
    finally:
        r.close()


def kill_reader(url: str, instance_id: str) -> None:
    """CLIENT KILL the instance's reading connection (its publisher, busy with XADD, stays)."""
    reader_cmds = {"xread", "evalsha", "hset"}
    r = redis.Redis.from_url(url)
    try:
        victims = [c for c in r.client_list()
                   if c.get("name") == f"fanout:{instance_id}" and c.get("cmd") in reader_cmds]
        assert victims, f"no XREAD connection of {instance_id} found"
        for c in victims:
            r.client_kill_filter(_id=c["id"])
    finally:
        r.close()


def assert_clean(m: dict) -> None:
    assert (m["gaps"], m["duplicates"], m["errors"], m["malformed"]) == (0, 0, 0, 0), m


# 1 ---------------------------------------------------------------------------------------
def test_three_instances_exactly_once_never_self():
    async def run(url):
        bridges = [RedisEventBridge(config(url, name)) for name in ("A", "B", "C")]
        recs = {b.instance_id: Recorder(b) for b in bridges}
        for b in bridges:
            await b.start()
        sent = {}
        for b in bridges:
            sent[b.instance_id] = await publish(b, 20, "ticker") + await publish(b, 10, "trade")
        for name, rec in recs.items():
            expected = [i for other, ids in sent.items() if other != name for i in ids]
            await until(lambda: len(rec.envs) >= len(expected), what=f"{name} to receive {len(expected)}")
        await asyncio.sleep(0.3)  # anything extra (a duplicate, an echo) would arrive now
        for name, rec in recs.items():
            m = rec.bridge.metrics()
            expected = Counter(i for other, ids in sent.items() if other != name for i in ids)
            assert Counter(rec.ids()) == expected, name
            assert all(str(e.source) != name for e in rec.envs)
            assert m["received"] == 60 and m["self_filtered"] == 30 and m["published"] == 30, m
            assert_clean(m)
            assert rec.notices == []
        for b in bridges:
            await b.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


# 2 ---------------------------------------------------------------------------------------
def test_crash_and_resume_gets_exactly_what_was_missed():
    async def run(url):
        a = RedisEventBridge(config(url, "A"))
        b = RedisEventBridge(config(url, "B"))
        rb = Recorder(b)
        await a.start()
        await b.start()
        before = await publish(a, 10)
        await until(lambda: len(rb.envs) == 10, what="B to get the first 10")
        await saved(url, "B")
        b.abort()  # a crash: no goodbye, no final position write

        missed = await publish(a, 50)
        b2 = RedisEventBridge(config(url, "B"))
        rb2 = Recorder(b2)
        await b2.start()
        await until(lambda: len(rb2.envs) >= 50, what="the new B to get the 50 it missed")
        later = await publish(a, 5)
        await until(lambda: len(rb2.envs) >= 55, what="the new B to get new events")
        await asyncio.sleep(0.3)
        assert rb.ids() == before
        assert rb2.ids() == missed + later  # exactly once, in order, nothing from before the crash
        m = b2.metrics()
        assert m["received"] == 55
        assert_clean(m)
        await a.close()
        await b2.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


# 3 ---------------------------------------------------------------------------------------
def test_trimmed_while_away_is_counted_exactly():
    async def run(url):
        a = RedisEventBridge(config(url, "A", stream_maxlen=50, stream_maxlen_approx=False))
        b = RedisEventBridge(config(url, "B"))
        rb = Recorder(b)
        await a.start()
        await b.start()
        await publish(a, 10)
        await until(lambda: len(rb.envs) == 10, what="B to get the first 10")
        await saved(url, "B")
        b.abort()

        sent = await publish(a, 200)
        b2 = RedisEventBridge(config(url, "B"))
        rb2 = Recorder(b2)
        await b2.start()
        await until(lambda: len(rb2.envs) >= 50 and rb2.notices, what="the new B to get the 50 left")
        await asyncio.sleep(0.3)
        assert rb2.ids() == sent[-50:]
        m = b2.metrics()
        assert m["gaps"] == 150 and m["transport_losses"] == 150, m
        assert [(n.reason, n.type, n.missing) for n in rb2.notices] == [("trimmed", "ticker", 150)]
        assert m["duplicates"] == 0 and m["received"] == 50

        more = await publish(a, 3)
        await until(lambda: len(rb2.envs) >= 53, what="new events after the trim")
        assert rb2.ids()[-3:] == more and b2.metrics()["gaps"] == 150
        await a.close()
        await b2.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


def test_trimmed_during_reconnect_is_not_counted_twice_nor_own_events():
    """Same bridge (its seq baselines alive): the transport's exact count replaces the seq gap;
    entries the instance published itself and that were trimmed are not its loss."""
    async def run(url):
        a = RedisEventBridge(config(url, "A", stream_maxlen=50, stream_maxlen_approx=False))
        b = RedisEventBridge(config(url, "B", stream_maxlen=50, stream_maxlen_approx=False))
        rb = Recorder(b)
        await a.start()
        await b.start()
        await publish(a, 10)
        await until(lambda: len(rb.envs) == 10, what="B to get the first 10")
        b.hold_reconnect()
        kill_reader(url, "B")
        await until(lambda: not b.connected, what="B to notice its reader is gone")
        await publish(b, 20)  # B's own, trimmed below: not a loss for B
        sent = await publish(a, 200)
        b.release_reconnect()
        await until(lambda: len(rb.envs) >= 60 and "trimmed" in rb.reasons(), what="B to catch up")
        await asyncio.sleep(0.3)
        assert rb.ids()[10:] == sent[-50:]
        m = b.metrics()
        assert m["gaps"] == 150 and m["transport_losses"] == 150, m
        assert [n.missing for n in rb.notices if n.reason == "trimmed"] == [150]
        assert m["reconnects"] == 1 and m["duplicates"] == 0 and m["self_filtered"] == 0
        await a.close()
        await b.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


# 4 ---------------------------------------------------------------------------------------
def test_redis_restart_with_aof_loses_nothing():
    async def run(srv):
        url = srv.url
        a = RedisEventBridge(config(url, "A"))
        b = RedisEventBridge(config(url, "B"))
        c = RedisEventBridge(config(url, "C"))
        rb, rc = Recorder(b), Recorder(c)
        for x in (a, b, c):
            await x.start()
        sent = await publish(a, 10)
        await until(lambda: len(rb.envs) == 10 and len(rc.envs) == 10, what="the first 10")

        b.hold_reconnect()  # B stays away across both restarts; its events wait in the AOF
        await asyncio.to_thread(srv.restart)
        await until(lambda: c.connected, what="C to reconnect")
        sent += await publish(a, 20)
        await until(lambda: len(rc.envs) == 30, what="C to get the 20 after the restart")
        await asyncio.to_thread(srv.restart)
        await until(lambda: c.connected, what="C to reconnect again")
        b.release_reconnect()
        await until(lambda: b.connected, what="B to reconnect")
        sent += await publish(a, 10)
        await until(lambda: len(rb.envs) >= 40 and len(rc.envs) >= 40, what="everything")
        await asyncio.sleep(0.3)
        assert rb.ids() == sent and rc.ids() == sent
        for x in (b, c):
            assert_clean(x.metrics())
        assert a.metrics()["publish_errors"] == 0
        for x in (a, b, c):
            await x.close()

    with RedisServer(appendonly=True, appendfsync="always") as srv:
        asyncio.run(run(srv))


# 5 ---------------------------------------------------------------------------------------
def test_redis_restart_without_persistence_never_stuck_never_silent():
    async def run(srv):
        url = srv.url
        a = RedisEventBridge(config(url, "A"))
        b = RedisEventBridge(config(url, "B"))
        rb = Recorder(b)
        await a.start()
        await b.start()
        first = await publish(a, 10)
        await until(lambda: len(rb.envs) == 10, what="the first 10")

        # 15 events B never reads, then Redis forgets them.
        b.hold_reconnect()
        kill_reader(url, "B")
        await until(lambda: not b.connected, what="B to notice its reader is gone")
        await publish(a, 15)
        await asyncio.to_thread(srv.restart)
        fresh = await publish(a, 5)  # into a brand-new stream
        b.release_reconnect()
        await until(lambda: len(rb.envs) >= 15, what="B to read the new stream")
        await until(lambda: {"stream_reset", "seq_gap"} <= rb.reasons(), what="B to say what happened")
        m = b.metrics()
        assert rb.ids() == first + fresh
        assert m["gaps"] == 15, m  # seen from the envelope seq of the next event

        # B connected while Redis restarts empty: it must follow the new stream at once.
        await asyncio.to_thread(srv.restart)
        await until(lambda: b.connected and b.metrics()["reconnects"] >= 2, what="B to reconnect")
        last = await publish(a, 5)
        await until(lambda: len(rb.envs) >= 20, what="events after the second restart")
        await asyncio.sleep(0.3)
        assert rb.ids() == first + fresh + last
        assert b.metrics()["duplicates"] == 0 and b.metrics()["gaps"] == 15
        await a.close()
        await b.close()

    with RedisServer() as srv:
        asyncio.run(run(srv))


# 6 ---------------------------------------------------------------------------------------
def test_process_killed_with_sigkill_resumes_exactly_once(tmp_path):
    out = tmp_path / "received.txt"
    ready = Path(str(out) + ".ready")

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    async def start_child(url):
        ready.unlink(missing_ok=True)
        env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.Popen([sys.executable, str(HERE / "streams_child.py"), url, "child", str(out)],
                                env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            await until(lambda: ready.exists() or proc.poll() is not None, 15, "the child to subscribe")
        except AssertionError:
            proc.kill()
            raise
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
        return proc

    async def run(url):
        a = RedisEventBridge(config(url, "A", event_types=("ticker",)))
        await a.start()
        child = await start_child(url)
        try:
            before = await publish(a, 10)
            await until(lambda: len(lines()) == 10, what="the child to write 10")
            await saved(url, "child")
            child.send_signal(signal.SIGKILL)
            child.wait(5)

            missed = await publish(a, 25)
            child = await start_child(url)
            await until(lambda: len(lines()) >= 35, what="the restarted child to catch up")
            later = await publish(a, 5)
            await until(lambda: len(lines()) >= 40, what="the restarted child to get new events")
            await asyncio.sleep(0.3)
            assert lines() == before + missed + later  # each exactly once, in order
        finally:
            child.kill()
            child.wait(5)
            if child.stderr:
                child.stderr.close()
        await a.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


# extra -----------------------------------------------------------------------------------
def test_malformed_entries_are_counted_not_fatal():
    async def run(url):
        a = RedisEventBridge(config(url, "A"))
        b = RedisEventBridge(config(url, "B"))
        rb = Recorder(b)
        await a.start()
        await b.start()
        r = redis.Redis.from_url(url)
        r.xadd(TICKER, {"x": "no d field"})
        r.xadd(TICKER, {"d": "not json"})
        r.close()
        sent = await publish(a, 3)
        await until(lambda: len(rb.envs) == 3, what="B to keep going")
        m = b.metrics()
        assert rb.ids() == sent and m["malformed"] == 2 and m["gaps"] == 0, m
        await a.close()
        await b.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


def test_transport_is_registered_and_publishes_with_maxlen():
    async def run(url):
        a = RedisEventBridge(config(url, "A", stream_maxlen=5, stream_maxlen_approx=False))
        assert isinstance(a._transport, StreamsTransport)
        await a.start()
        await publish(a, 12)
        r = redis.Redis.from_url(url)
        assert r.xlen(TICKER) == 5 and r.xinfo_stream(TICKER)["entries-added"] == 12
        r.close()
        await a.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


def test_stream_replaced_with_lower_ids_while_connected_is_followed():
    """DEL + XADD with ids below our position (a restored or clock-behind Redis): the periodic
    check after every XREAD restarts from 0-0 instead of blocking forever on an id the
    stream will never reach."""
    from fanout import Envelope, encode

    async def run(url):
        a = RedisEventBridge(config(url, "A"))
        b = RedisEventBridge(config(url, "B"))
        rb = Recorder(b)
        await a.start()
        await b.start()
        await publish(a, 3)
        await until(lambda: len(rb.envs) == 3, what="the first 3")
        r = redis.Redis.from_url(url)
        r.delete(TICKER)
        env = Envelope(type="ticker", data={}, timestamp=1, source="Z", seq=1, epoch="e", id="e:ticker:1")
        r.xadd(TICKER, {"d": encode(env)}, id="1-1")
        r.close()
        await until(lambda: len(rb.envs) == 4, what="B to read the replaced stream")
        await until(lambda: "stream_reset" in rb.reasons(), what="a stream_reset notice")
        assert rb.envs[-1].id == "e:ticker:1"
        await a.close()
        await b.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


def test_close_mid_batch_redelivers_rather_than_loses():
    """A graceful close while a handler is in the middle of a batch saves the position before
    that batch: the next incarnation gets the rest (and at most that batch again), never less."""
    async def run(url):
        a = RedisEventBridge(config(url, "A"))
        b = RedisEventBridge(config(url, "B"))
        got1: list[str] = []

        async def slow(env):
            got1.append(env.id)
            await asyncio.sleep(0.02)

        b.on("ticker", slow)
        await a.start()
        await b.start()
        sent = await publish(a, 30)
        await until(lambda: len(got1) >= 5, what="B to be busy with the batch")
        await b.close()
        assert 5 <= len(got1) < 30

        b2 = RedisEventBridge(config(url, "B"))
        rb2 = Recorder(b2)
        await b2.start()
        await until(lambda: rb2.ids()[-1:] == sent[-1:], what="the next B to get the rest")
        got2 = rb2.ids()
        start = sent.index(got2[0])
        assert got2 == sent[start:] and start <= len(got1)  # a suffix, with no hole after got1
        assert got1 == sent[:len(got1)]
        await a.close()
        await b2.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


def test_trimmed_while_reader_lags_is_counted_once():
    """The reader is alive but stuck in a handler while the stream is trimmed past it: the next
    XREAD starts at the stream's first entry and the pipelined XINFO counts the hole exactly."""
    async def run(url):
        a = RedisEventBridge(config(url, "A", stream_maxlen=50, stream_maxlen_approx=False))
        b = RedisEventBridge(config(url, "B"))
        rb = Recorder(b)
        entered, release = asyncio.Event(), asyncio.Event()

        async def stuck(env):
            if env.seq == 1:
                entered.set()
                await release.wait()

        b.on("ticker", stuck)
        await a.start()
        await b.start()
        sent = await publish(a, 1)
        await until(entered.is_set, what="B to be stuck on the first event")
        sent += await publish(a, 200)
        release.set()
        await until(lambda: len(rb.envs) >= 51 and "trimmed" in rb.reasons(), what="B to catch up")
        await asyncio.sleep(0.3)
        assert rb.ids() == sent[:1] + sent[-50:]
        m = b.metrics()
        assert m["gaps"] == 150 and m["transport_losses"] == 150 and m["duplicates"] == 0, m
        assert [n.missing for n in rb.notices] == [150]
        await a.close()
        await b.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))


def test_a_refused_position_save_under_noeviction_is_no_lost_connection(caplog):
    """maxmemory below what Redis uses, noeviction: Redis refuses the position save (HSET: OOM) but
    still serves XREAD. The reader says so once, counts it, reads and hands over on without
    reconnecting, and saves the position again once Redis takes writes."""
    caplog.set_level(logging.INFO, logger="fanout.transports.streams")

    async def run(url):
        p = RedisEventBridge(config(url, "P", enable_subscription=False))
        b = RedisEventBridge(config(url, "R", enable_publishing=False))
        rb = Recorder(b)
        await p.start()
        await b.start()
        sent = await publish(p, 10)
        await until(lambda: len(rb.envs) == 10, what="R to get the first 10")
        await saved(url, "R")
        r = redis.Redis.from_url(url)
        old_pos = r.hget("ws:pos:R", TICKER)
        b.pause_reading()
        sent += await publish(p, 1)  # read by the XREAD already waiting; its position is saved next cycle
        await until(lambda: len(rb.envs) == 11, what="R to get the 11th, then stop reading")
        sent += await publish(p, 40)  # waits in the stream
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", used // 2)
        try:
            with pytest.raises(redis.ResponseError, match="maxmemory"):
                r.hset("probe", "x", 1)  # the precondition: Redis refuses writes now
            b.resume_reading()
            await until(lambda: len(rb.envs) == 51, what="R to read on while its saves are refused")
            await until(lambda: b.metrics()["position_save_errors"] >= 2, what="the save to be retried")
            assert rb.ids() == sent
            assert r.hget("ws:pos:R", TICKER) == old_pos  # indeed refused
            m = b.metrics()
            assert m["connected"] and m["reconnects"] == 0 and b.outages == [], (m, b.outages)
            assert m["errors"] == m["position_save_errors"] and m["gaps"] == 0 and m["duplicates"] == 0, m
            # a reader starting now: its first save ("$" resolved) is refused too, yet it subscribes
            q = RedisEventBridge(config(url, "Q", enable_publishing=False))
            rq = Recorder(q)
            await q.start()
            assert q.connected and q.metrics()["position_save_errors"] == 1 and not r.exists("ws:pos:Q")
        finally:
            r.config_set("maxmemory", 0)
        later = await publish(p, 5)
        await until(lambda: len(rb.envs) == 56 and len(rq.envs) == 5, what="the events published once memory was freed")
        await saved(url, "R")  # a later save was taken: the position is Redis's again
        await saved(url, "Q")
        assert rb.ids() == sent + later and rq.ids() == later
        for x in (b, q):
            m = x.metrics()
            assert m["reconnects"] == 0 and x.outages == [] and m["duplicates"] == 0, m
        r.close()
        for x in (p, b, q):
            await x.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))
    said = [rec.getMessage() for rec in caplog.records if "refused to save the read position" in rec.getMessage()]
    assert len([x for x in said if x.startswith("bridge R:")]) == 1, said  # once, though refused at least twice
    assert "OOM" in said[0] and "reading goes on" in said[0]
    assert any(rec.getMessage().startswith("bridge R: read position ws:pos:R saved again") for rec in caplog.records)


def test_a_publish_refused_under_noeviction_leaves_the_bridge_connected_and_is_said_once(caplog):
    """XADD refused (OOM): Redis answered on a connection that is up. Each PublishError says refused,
    not sent; the bridge stays connected; the refusal is logged once, and again only after Redis
    took a publish in between."""
    async def run(url):
        p = RedisEventBridge(config(url, "P", enable_subscription=False))
        b = RedisEventBridge(config(url, "R", enable_publishing=False))
        rb = Recorder(b)
        seen: list = []
        p.on_published(lambda token, err: seen.append((err, p.connected)))
        await p.start()
        await b.start()
        await publish(p, 1)
        r = redis.Redis.from_url(url)

        def refuse(on: bool) -> None:
            r.config_set("maxmemory-policy", "noeviction")
            r.config_set("maxmemory", int(r.info("memory")["used_memory"]) // 2 if on else 0)
            if on:
                with pytest.raises(redis.ResponseError, match="maxmemory"):
                    r.hset("probe", "x", 1)  # the precondition: Redis refuses writes now

        refuse(True)
        try:
            for k in range(5):
                assert p.publish_nowait("ticker", {"k": k}, token=k)
            await until(lambda: len(seen) == 5, what="the 5 refusals")
            with pytest.raises(PublishError) as awaited:
                await publish(p, 1)
            assert p.connected  # right after the failure, before any reopening could run
            for err, connected in [*seen, (awaited.value, p.connected)]:
                assert err.refused and not err.maybe_sent and "OOM" in str(err), err
                assert connected
            refuse(False)
            await publish(p, 2)  # taken: the next refusal is news again (2: the receiver confirms the jump)
            refuse(True)
            assert p.publish_nowait("ticker", {"k": 5}, token=5)
            await until(lambda: len(seen) == 6, what="the refusal after a publish was taken")
            assert seen[-1][0].refused and seen[-1][1]
        finally:
            refuse(False)
        more = await publish(p, 1)
        await until(lambda: rb.ids()[-1:] == more, what="R to get the event after memory was freed")
        m = b.metrics()
        # every refused seq was announced: 1 taken, 2..7 refused, 8 9 taken, 10 refused, 11 taken
        assert (m["received"], m["unsent"], m["gaps"], m["suspicious"]) == (4, 7, 0, 0), m
        r.close()
        await p.close()
        await b.close()

    with RedisServer() as srv:
        asyncio.run(run(srv.url))
    loud = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING and "OOM" in rec.getMessage()]
    assert len([x for x in loud if x.startswith("bridge P: publish on ")]) == 2, loud  # once per refusal spell
    assert len([x for x in loud if x.startswith("bridge P: publish to ws:ticker on ")]) == 1, loud


def test_position_arithmetic_cases():
    """The offset arithmetic of the module docstring on hand-made XINFO states (pure: no Redis)."""
    from fanout.transports.streams import StreamInfo

    def info(added, length, first, last):
        return StreamInfo(length, added, (last, 0), (first, 0) if first else None)

    def transport():
        t = StreamsTransport(BridgeConfig(instance_id="T", transport="streams"))
        t._pos["s"] = [(10, 0), 10]  # at entry 10 (ids 1..N have offsets 1..N below)
        return t

    ids = lambda *ms: [(m, 0) for m in ms]  # noqa: E731
    t = transport()  # nothing trimmed: batch 11..12, stream 1..12
    t._reconcile("s", info(12, 12, 1, 12), ids(11, 12))
    assert t._pos["s"] == [(12, 0), 12] and t._take_losses() == []

    t = transport()  # 11..14 trimmed, batch starts at the head 15..16
    t._reconcile("s", info(16, 2, 15, 16), ids(15, 16))
    assert t._pos["s"] == [(16, 0), 16] and [(x.count, x.reason) for x in t._take_losses()] == [(4, "trimmed")]

    t = transport()  # read 15..18; by the XINFO 15..16 are gone too (j=2): the hole is 11..14
    t._reconcile("s", info(20, 4, 17, 20), ids(15, 16, 17, 18))
    assert t._pos["s"] == [(18, 0), 18] and [x.count for x in t._take_losses()] == [4]

    t = transport()  # read 15..16; all gone by the XINFO, first is 30: 11..14 and 17..29 lost
    t._reconcile("s", info(40, 11, 30, 40), ids(15, 16))
    assert t._pos["s"] == [(16, 0), 29] and [x.count for x in t._take_losses()] == [17]
    t._handed_over()  # before the next batch: restart the bridge's seq baselines once more
    assert [(x.count, x.reason) for x in t._take_losses()] == [(0, "trimmed")]

    t = transport()  # idle, trimmed past us, then own entries are not a loss
    t._own["s"] = ids(12, 13)
    t._reconcile("s", info(30, 10, 21, 30))
    assert t._pos["s"] == [(10, 0), 20] and [x.count for x in t._take_losses()] == [8]
    t._reconcile("s", info(30, 10, 21, 30))  # nothing new: nothing counted twice
    assert t._take_losses() == []

    # gone; ids went backwards; counter went backwards; offsets impossible (nothing trimmed, yet
    # the first entry is after us: a new stream with new, larger ids)
    for n, state in ((10, None), (10, info(20, 20, 1, 9)), (10, info(5, 5, 1, 25)), (10, info(12, 12, 11, 22))):
        t = transport()
        t._pos["s"] = [(10, 0), n]
        t._reconcile("s", state)
        assert "stream_reset" in [x.reason for x in t._take_losses()], state
        assert t._pos["s"][0] <= (state.last_generated if state else (0, 0))
