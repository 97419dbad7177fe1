"""The wire contract (docs/wire-format.md) end to end on throwaway servers: the lean envelope
and the forms still read, ids of any shape compared by type and value, duplicate instance
ids caught, compat="seed", and failed publishes announced as unsent instead of gaps."""
from __future__ import annotations

import asyncio
import logging
import random
import time

import orjson
import pytest
from redis.asyncio import Redis

from conftest import arun, wait_for
from fanout import BridgeConfig, ConfigError, PublishError, RedisEventBridge, decode
from fanout.events import EVENT_TYPES, EnvelopeWriter, decode_many
from fanout.lab.market import SyntheticMarket
from fanout.lab.servers import RedisServer

JS_SAFE = 2 ** 53


def collect(bridge: RedisEventBridge) -> list:
    got: list = []
    bridge.on("*", got.append)
    return got


def numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from numbers(v)
    elif isinstance(obj, int) and not isinstance(obj, bool):
        yield obj


def test_the_v2_envelope_is_exact_in_javascript_and_its_id_is_derived_the_same_way_on_both_sides():
    w = EnvelopeWriter("test-instance-0", "0123abcd")
    now = time.time_ns()
    raw = w.write(w.head("trade"), 41, now, now - 12_345, orjson.dumps({"price": 1.5}))
    obj = orjson.loads(raw)
    assert list(obj) == ["source", "epoch", "type", "seq", "timestamp", "ns", "lag", "data"]
    assert all(abs(n) < JS_SAFE for n in numbers(obj))       # every number reads exactly in JavaScript
    assert obj["timestamp"] * 1_000_000 + obj["ns"] == now     # the exact send time
    env = decode(raw)
    assert (env.ts_ns, env.ti_ns, env.id) == (now, now - 12_345, "0123abcd:trade:41")
    assert "id" not in obj and "ts_ns" not in obj


def test_the_v1_form_and_the_seeds_form_still_decode():
    v1 = orjson.dumps({"source": "old", "epoch": "e1", "type": "ticker", "id": "e1:ticker:3", "seq": 3,
                       "timestamp": 1_760_000_000_123, "ts_ns": 1_760_000_000_123_456_789,
                       "ti_ns": 1_760_000_000_123_000_000, "data": {"k": 1}})
    env = decode(v1)
    assert (env.id, env.seq, env.ts_ns, env.ti_ns, env.ns) == ("e1:ticker:3", 3, 1_760_000_000_123_456_789,
                                                              1_760_000_000_123_000_000, 456_789)
    seed = orjson.dumps({"type": "ticker", "data": {}, "timestamp": 5, "source": 4242})
    env = decode(seed)
    assert (env.source, env.seq, env.epoch, env.id, env.ts_ns) == (4242, None, None, None, None)
    batch = b"[" + v1 + b"," + seed + b"]"
    assert [e.source for e in decode_many(batch)] == ["old", 4242]


def test_bytes_per_event_are_fewer_than_v1():
    """The saving the table in docs/wire-format.md measures (benchmarks/wire.py), asserted as an order."""
    m = SyntheticMarket(random.Random(3))
    w = EnvelopeWriter("test-instance-0", "0123abcd")
    v1 = v2 = 0
    for k in range(200):
        t = EVENT_TYPES[k % 4]
        data = m.make(t, "BTC/USDT", 1_760_000_000_000)
        now = time.time_ns()
        v2 += len(w.write(w.head(t), k + 1, now, now - 1000, orjson.dumps(data)))
        v1 += len(orjson.dumps({"source": "test-instance-0", "epoch": "0123abcd", "type": t,
                                "id": f"0123abcd:{t}:{k + 1}", "seq": k + 1, "timestamp": now // 1_000_000,
                                "ts_ns": now, "ti_ns": now - 1000, "data": data}))
    assert v2 < v1 - 200 * 40  # at least 40 bytes less per event


def test_compat_seed_refuses_batching_in_one_line():
    with pytest.raises(ConfigError) as e:
        BridgeConfig(compat="seed", batch_max=2)
    assert "\n" not in str(e.value) and "batch_max" in str(e.value)
    assert BridgeConfig(compat="seed").batch_max == 1
    with pytest.raises(ConfigError, match="compat: 'ts'"):
        BridgeConfig(compat="ts")


@pytest.mark.parametrize("iid", ["bot 1", "bøt-ü", 123, "123"])
def test_any_instance_id_connects_publishes_and_filters_its_own(redis_url, iid):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id=iid)) as me, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="peer")) as peer:
            mine, theirs = collect(me), collect(peer)
            await me.publish("ticker", {"from": "me"})
            await peer.publish("trade", {"from": "peer"})
            await wait_for(lambda: len(mine) == 1 and len(theirs) == 1, what="one event each way")
            assert mine[0].source == "peer" and theirs[0].source == iid and type(theirs[0].source) is type(iid)
            assert theirs[0].id == f"{me.epoch}:ticker:1"
            m = me.metrics()
            assert (m["self_filtered"], m["received"], m["errors"], m["id_conflicts"]) == (1, 1, 0, 0)
            names = [c["name"] for c in await Redis.from_url(redis_url).client_list()]
            assert f"fanout:{iid}".replace(" ", "_").replace("ø", "_").replace("ü", "_") in names

    arun(go())


def test_123_and_the_string_123_are_two_instances(redis_url):
    """Ids compare by type and value, as the seed's ``===`` does: neither filters the other's events."""
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id=123)) as num, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="123")) as text:
            gn, gt = collect(num), collect(text)
            for k in range(3):
                await num.publish("ticker", {"k": k})
                await text.publish("ticker", {"k": k})
            await wait_for(lambda: len(gn) == 3 and len(gt) == 3, what="3 events each way")
            assert {type(e.source) for e in gn} == {str} and {type(e.source) for e in gt} == {int}
            for b in (num, text):
                m = b.metrics()
                assert (m["self_filtered"], m["id_conflicts"], m["gaps"], m["suspicious"]) == (3, 0, 0, 0)

    arun(go())


def test_two_bridges_with_the_same_id_both_report_the_conflict_within_a_second(redis_url, caplog):
    async def go():
        cfg = dict(url=redis_url, instance_id="twin")
        async with RedisEventBridge(BridgeConfig(**cfg)) as a, RedisEventBridge(BridgeConfig(**cfg)) as b:
            notices = {a.epoch: [], b.epoch: []}
            got = {a.epoch: collect(a), b.epoch: collect(b)}
            for x in (a, b):
                x.on_gap(notices[x.epoch].append)
            await a.publish("ticker", {"from": "a"})
            await b.publish("ticker", {"from": "b"})
            await wait_for(lambda: all(notices.values()), timeout=1.0, what="both twins to report the conflict")
            for x, other in ((a, b), (b, a)):
                n = notices[x.epoch][0]
                assert (n.reason, n.source, n.epoch) == ("id_conflict", "twin", other.epoch)
            for k in range(5):  # told once per conflicting epoch, not per message
                await a.publish("ticker", {"k": k})
                await b.publish("ticker", {"k": k})
            await wait_for(lambda: all(len(g) == 6 for g in got.values()), what="each twin's events at the other")
            for x in (a, b):
                m = x.metrics()
                assert (m["id_conflicts"], m["received"], m["self_filtered"]) == (1, 6, 6)
                assert len(notices[x.epoch]) == 1
            warned = [r for r in caplog.records if "another instance publishes with" in r.getMessage()]
            assert len(warned) == 2 and all("'twin'" in r.getMessage() for r in warned)

    caplog.set_level(logging.WARNING, "fanout.bridge")
    arun(go())


def test_an_earlier_life_of_this_id_is_its_own_not_a_conflict(redis_url):
    """A message with this bridge's source sent before it started (a crashed predecessor's
    last events, a stream's history) is its own: filtered, no conflict."""
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="me")) as me:
            r = Redis.from_url(redis_url)
            old = orjson.dumps({"source": "me", "epoch": "deadbeef", "type": "ticker", "seq": 9,
                                "timestamp": int(time.time() * 1000) - 60_000, "ns": 0, "data": {}})
            await r.publish("ws:ticker", old)
            await wait_for(lambda: me.metrics()["self_filtered"] == 1)
            assert (me.metrics()["id_conflicts"], me.metrics()["received"]) == (0, 0)
            await r.aclose()

    arun(go())


def test_publishes_that_failed_while_redis_was_down_are_unsent_not_gaps():
    """Issue 17: kill Redis, publish N times (each fails at once), start it again, publish again:
    receivers count the N as unsent (announced by the next envelope), 0 transit gaps."""
    n = 7
    with RedisServer() as srv:
        async def go():
            cfg = dict(url=srv.url, reconnect_initial_s=0.02, reconnect_max_s=0.2, publish_timeout_s=1.0)
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg))
            subs = [RedisEventBridge(BridgeConfig(instance_id=f"s{i}", enable_publishing=False, **cfg))
                    for i in range(2)]
            got = [collect(s) for s in subs]
            notices = [[] for _ in subs]
            for s, ns in zip(subs, notices):
                s.on_gap(ns.append)
            for b in (pub, *subs):
                await b.start()
            for k in range(3):
                await pub.publish("ticker", {"k": k})
            await wait_for(lambda: all(len(g) == 3 for g in got))
            srv.kill()
            await wait_for(lambda: not any(s.metrics()["connected"] for s in subs), what="receivers to notice")
            for k in range(n):
                with pytest.raises(PublishError):
                    await pub.publish("ticker", {"lost": k})
            srv.start()
            await wait_for(lambda: all(s.metrics()["connected"] for s in subs), timeout=10, what="resubscribed")
            for k in range(3):
                await pub.publish("ticker", {"k": 3 + k})
            await wait_for(lambda: all(len(g) == 6 for g in got), what="the events after the outage")
            assert pub.metrics()["publish_errors"] == n
            for s, g, ns in zip(subs, got, notices):
                m = s.metrics()
                assert (m["gaps"], m["unsent"], m["suspicious"]) == (0, n, 0), m
                assert [e.seq for e in g] == [1, 2, 3, 4 + n, 5 + n, 6 + n]
                assert [x.reason for x in ns] == ["reconnect"]  # no "data may be missing" for unsent events
            for b in (pub, *subs):
                await b.close()

        arun(go(), timeout=60)


def test_publishes_in_flight_when_redis_hangs_are_void_and_those_that_arrived_count_once():
    """With pipelining a publish whose reply was lost may still have reached Redis: the void range
    overlaps what receivers already got. Every accepted event ends delivered or unsent, never a gap."""
    with RedisServer() as srv:
        async def go():
            cfg = dict(url=srv.url, publish_timeout_s=0.4, reconnect_initial_s=0.02, event_types=("ticker",),
                       health_check_interval_s=5.0)
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg))
            sub = RedisEventBridge(BridgeConfig(instance_id="sub", enable_publishing=False, **cfg))
            got = collect(sub)
            done: list = []
            pub.on_published(lambda token, err: done.append(err))
            await pub.start()
            await sub.start()
            await pub.publish("ticker", {"before": 0})
            await wait_for(lambda: len(got) == 1)
            srv.pause()
            for k in range(300):
                pub.publish_nowait("ticker", {"k": k}, token=k)
            await wait_for(lambda: len(done) == 300, timeout=5, what="the publishes in flight to fail")
            srv.resume()
            for k in range(5):
                await pub.publish("ticker", {"after": k})
            await wait_for(lambda: sum(1 for e in got if "after" in e.data) == 5, timeout=10, what="later events")
            m = sub.metrics()
            assert sum(1 for e in done if e is not None) == 300
            assert m["gaps"] == 0 and m["suspicious"] == 0, m
            early = sum(1 for e in got if "k" in e.data)
            assert early + m["unsent"] == 300  # each delivered (its reply was lost) or unsent, never both
            for b in (pub, sub):
                await b.close()

        arun(go(), timeout=60)


def test_a_publish_error_says_whether_redis_may_have_accepted_it():
    """Written, then Redis went silent (paused): the outcome is unknown, maybe_sent. While the
    publishing side is down a publish never leaves: not sent, by publish() and publish_nowait() alike."""
    with RedisServer() as srv:
        async def go():
            cfg = {"url": srv.url, "publish_timeout_s": 0.4, "reconnect_initial_s": 0.02, "event_types": ("ticker",),
                   "health_check_interval_s": 5.0, "connect_timeout_s": 0.3, "command_timeout_s": 0.3}
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg))
            done: dict = {}
            pub.on_published(done.__setitem__)
            await pub.start()
            await pub.publish("ticker", {"before": 0})
            srv.pause()
            try:
                for k in range(20):
                    assert pub.publish_nowait("ticker", {"k": k}, token=k)
                await wait_for(lambda: len(done) == 20, timeout=5, what="the publishes in flight to fail")
                for err in done.values():
                    assert isinstance(err, PublishError) and err.maybe_sent and not err.refused, err
                    assert str(err).endswith("(outcome unknown: Redis may have accepted it)"), str(err)
                with pytest.raises(PublishError) as awaited:  # the side is down: reopening it does not
                    await pub.publish("ticker", {"never": 0})  # finish in time, nothing was written
                with pytest.raises(PublishError) as at_once:
                    pub.publish_nowait("ticker", {"never": 1})
            finally:
                srv.resume()
            for err in (awaited.value, at_once.value):
                assert not err.maybe_sent and not err.refused and str(err).endswith("(not sent)"), str(err)
            await pub.close()

        arun(go(), timeout=60)


@pytest.mark.parametrize("batch_max", [1, 10])
def test_publishes_queued_when_the_connection_ends_are_not_sent_and_never_arrive(redis_url, batch_max):
    """Queued on the publishing connection (or in an open batch) but not yet written when it ends (a
    crash in the same turn): each one's PublishError says not sent, and indeed no receiver gets it."""
    async def go():
        cfg = {"url": redis_url, "event_types": ("ticker",)}
        pub = RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, batch_max=batch_max,
                                            batch_delay_ms=0, **cfg))
        other = RedisEventBridge(BridgeConfig(instance_id="other", enable_subscription=False, **cfg))
        sub = RedisEventBridge(BridgeConfig(instance_id="sub", enable_publishing=False, **cfg))
        got = collect(sub)
        done: dict = {}
        pub.on_published(done.__setitem__)
        for b in (pub, other, sub):
            await b.start()
        await pub.publish("ticker", {"before": 0})
        for k in range(5):
            assert pub.publish_nowait("ticker", {"k": k}, token=k)
        pub.abort()  # the same turn: nothing of it was written
        assert sorted(done) == list(range(5))
        for err in done.values():
            assert isinstance(err, PublishError) and not err.maybe_sent and not err.refused, err
            assert str(err).endswith("(not sent)"), str(err)
        await other.publish("ticker", {"after": 0})
        await wait_for(lambda: any("after" in e.data for e in got), what="a later event")
        assert [e.data for e in got if str(e.source) == "pub"] == [{"before": 0}]
        for b in (other, sub):
            await b.close()

    arun(go())


def test_a_receiver_that_missed_the_announcement_counts_gaps_a_resync_allows_any_distance():
    """Without an announcement a long hole after the receiver's own reconnect is transit loss,
    however long (the bound on one message's gap applies only while connected)."""
    with RedisServer() as srv:
        async def go():
            cfg = dict(url=srv.url, reconnect_initial_s=0.02, reconnect_max_s=0.1)
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg))
            sub = RedisEventBridge(BridgeConfig(instance_id="sub", enable_publishing=False, **cfg))
            got = collect(sub)
            await pub.start()
            await sub.start()
            await pub.publish("trade", {"k": 0})
            await wait_for(lambda: len(got) == 1)
            sub.hold_reconnect()
            await Redis.from_url(srv.url).client_kill_filter(_type="pubsub")
            await wait_for(lambda: not sub.metrics()["connected"])
            for k in range(1500):  # more than sequencing.MAX_GAP, while sub is away
                while pub.publish_nowait("trade", {"k": k}) is None:
                    await pub.writable()
            await asyncio.sleep(0.2)
            sub.release_reconnect()
            await wait_for(lambda: sub.metrics()["connected"], timeout=10)
            await pub.publish("trade", {"k": "last"})
            await wait_for(lambda: len(got) == 2, timeout=10)
            m = sub.metrics()
            assert (m["gaps"], m["unsent"], m["suspicious"]) == (1500, 0, 0), m
            for b in (pub, sub):
                await b.close()

        arun(go(), timeout=60)
