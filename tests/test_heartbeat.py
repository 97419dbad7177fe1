"""The heartbeat (fanout/heartbeat.py, BridgeConfig.heartbeat_s) against real throwaway servers: a
subscription that answers PING but delivers nothing (the lab's proxy dropping its pub/sub message
frames) is found stale within the bound, resubscribed on a new connection, its loss counted; off, nothing
changes; on, a healthy run hands the handlers exactly the same events, on every transport."""
from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from conftest import arun, needs_redis7, wait_for
from fanout import BridgeConfig, ConfigError, RedisEventBridge
from fanout.config import HEARTBEAT_BOUND
from fanout.lab.proxy import FaultProxy

HB = 0.2  # heartbeat_s of these tests


def collect(bridge: RedisEventBridge) -> list:
    got: list = []
    bridge.on("*", got.append)
    return got


def test_heartbeat_s_is_checked_and_its_channel_is_no_event_type():
    assert BridgeConfig().heartbeat_s is None  # off by default
    for bad in (0, -1, "1", True, float("nan")):
        with pytest.raises(ConfigError, match="^heartbeat_s: must be a number of seconds > 0, or None"):
            BridgeConfig(heartbeat_s=bad)
    with pytest.raises(ConfigError, match="^event_types: '_heartbeat:x': names starting with '_heartbeat'"):
        BridgeConfig(event_types=("trade", "_heartbeat:x"))
    cfg = BridgeConfig(key_prefix="ws:", instance_id="bot-1", heartbeat_s=1)
    assert cfg.heartbeat_channel() == "ws:_heartbeat:bot-1"


def test_a_sharded_heartbeat_channel_shares_its_nodes_slot():
    from redis.crc import key_slot

    for prefix, chan in (("ws:", "ws:ticker"), ("ws:", "ws:ticker:{3.7}"), ("{ws}:", "{ws}:trade"),
                         ("ws:", "ws:odd}name{")):
        name = BridgeConfig(key_prefix=prefix, instance_id="b{1}", heartbeat_s=1).heartbeat_channel(slot_of=chan)
        assert name.startswith(f"{prefix}_heartbeat:") and name.endswith(":b{1}")
        assert key_slot(name.encode()) == key_slot(chan.encode()), (chan, name)


def test_a_subscription_that_answers_ping_but_delivers_nothing_is_found_stale_and_resubscribed(redis_server):
    """The proxy drops every pub/sub message on the bot's connection and passes the rest (PONGs
    included): the health check stays green, the heartbeat does not come back. Found stale within
    the bound, resubscribed on a new connection (the proxy's drop holds only for the old one),
    events after it delivered again; the stale count and the loss (10 gaps, the reconnect notice,
    an outage) are in metrics() and the bridge's outages."""
    async def go():
        async with FaultProxy(redis_server.host, redis_server.port, resp=True) as proxy:
            host = RedisEventBridge(BridgeConfig(url=redis_server.url, instance_id="host", enable_subscription=False,
                                                 event_types=("trade",)))
            bot = RedisEventBridge(BridgeConfig(
                url=proxy.url_for(redis_server.url), instance_id="bot", enable_publishing=False,
                event_types=("trade",), heartbeat_s=HB, health_check_interval_s=HB, health_check_timeout_s=1.0))
            got = collect(bot)
            notices: list = []
            bot.on_gap(notices.append)
            await host.start()
            await bot.start()
            try:
                began = bot.last_heartbeat_ns
                assert began > 0
                await wait_for(lambda: bot.last_heartbeat_ns > began, 5, "a heartbeat to come back")
                for k in range(5):
                    await host.publish("trade", {"k": k})
                await wait_for(lambda: len(got) == 5, 5, "the first 5 events")
                links = proxy.stats()["connections_total"]

                proxy.drop_messages()
                dropped_at = time.time_ns()
                for k in range(5, 15):  # lost: Redis delivers them, the proxy drops them
                    await host.publish("trade", {"k": k})
                await wait_for(lambda: bot.metrics()["stale_subscriptions"] == 1,
                               HB * (HEARTBEAT_BOUND + 2) + 2.0, "the subscription to be found stale")
                await wait_for(lambda: bot.metrics()["reconnects"] == 1 and bot.connected, 5, "the resubscription")
                assert proxy.stats()["connections_total"] > links  # a new connection
                assert proxy.stats()["dropped_messages"] >= 10
                # PING answered all along: the connection was never failed by the health check
                why = bot.outages[0][2]
                assert why.startswith("stale: its heartbeat on ws:_heartbeat:bot not back within 0.6 s"), why
                lost_from, restored = bot.outages[0][0], bot.outages[0][1]
                assert restored > lost_from and lost_from <= dropped_at  # dated from the last heartbeat back

                for k in range(15, 20):
                    await host.publish("trade", {"k": k})
                await wait_for(lambda: len(got) == 10, 5, "the events after the resubscription")
                assert [e.data["k"] for e in got] == [*range(5), *range(15, 20)]
                m = bot.metrics()
                assert (m["received"], m["gaps"], m["stale_subscriptions"], m["reconnects"]) == (10, 10, 1, 1)
                assert m["self_filtered"] == 0 and m["malformed"] == 0 and m["errors"] == 0
                assert [n.reason for n in notices] == ["reconnect", "seq_gap"] and notices[1].missing == 10
                # still live on the new connection
                again = bot.last_heartbeat_ns
                await wait_for(lambda: bot.last_heartbeat_ns > again, 5, "heartbeats on the new connection")
                assert bot.metrics()["stale_subscriptions"] == 1
            finally:
                await bot.close()
                await host.close()

    arun(go(), 30)


def test_a_paused_reader_is_not_stale(redis_server):
    """Reading paused (a slow consumer; the handler backlog holds it the same way): nothing can come
    back, so nothing is expected: longer than the bound paused is no stale subscription; resumed, the
    heartbeats come back on the same connection."""
    async def go():
        bot = RedisEventBridge(BridgeConfig(url=redis_server.url, instance_id="bot 100%d", heartbeat_s=HB,
                                            event_types=("trade",)))  # (any id: a '%' in it too)
        await bot.start()
        try:
            t = bot.last_heartbeat_ns
            await wait_for(lambda: bot.last_heartbeat_ns > t, 5, "a heartbeat back")
            bot.pause_reading()
            await asyncio.sleep(HB * (HEARTBEAT_BOUND + 3))
            bot.resume_reading()
            t = bot.last_heartbeat_ns
            await wait_for(lambda: bot.last_heartbeat_ns > t, 5, "a heartbeat back after the resume")
            m = bot.metrics()
            assert (m["stale_subscriptions"], m["reconnects"]) == (0, 0) and not bot.outages
        finally:
            await bot.close()

    arun(go(), 20)


def test_heartbeat_off_changes_nothing(redis_server):
    """No heartbeat_s: no control channel, no publishing connection for a subscribe-only bridge, only
    the events' PUBLISHes reach Redis."""
    async def go():
        host = RedisEventBridge(BridgeConfig(url=redis_server.url, instance_id="host", enable_subscription=False))
        bot = RedisEventBridge(BridgeConfig(url=redis_server.url, instance_id="bot", enable_publishing=False))
        got = collect(bot)
        r = Redis.from_url(redis_server.url)
        await host.start()
        await bot.start()
        try:
            for k in range(20):
                await host.publish("trade", {"k": k})
            await wait_for(lambda: len(got) == 20, 5, "the events")
            channels = {c.decode() for c in await r.pubsub_channels()}
            assert channels == {f"ws:{t}" for t in bot.config.event_types}
            stats = await r.info("commandstats")
            assert stats["cmdstat_publish"]["calls"] == 20
            names = [c["name"] for c in await r.client_list()]
            assert names.count("fanout:bot") == 1  # its subscription only
            assert bot.last_heartbeat_ns == 0 and bot.metrics()["stale_subscriptions"] == 0
        finally:
            await bot.close()
            await host.close()
            await r.aclose()

    arun(go(), 20)


async def _same_events(urls: dict, transport: str) -> None:
    """Two peers publish while a third instance and a fourth (heartbeats on, one of them not) listen:
    the one with heartbeats gets exactly what the other gets, heartbeats come back, none is stale."""
    base = dict(transport=transport, event_types=("ticker", "trade"), health_check_interval_s=1.0)
    peers = [RedisEventBridge(BridgeConfig(url=urls["pub"], instance_id=f"peer-{i}", heartbeat_s=0.05, **base))
             for i in range(2)]
    plain = RedisEventBridge(BridgeConfig(url=urls["sub"], instance_id="plain", enable_publishing=False, **base))
    beating = RedisEventBridge(BridgeConfig(url=urls["sub"], instance_id="beating", enable_publishing=False,
                                            heartbeat_s=0.05, **base))
    subs = [plain, beating, *peers]
    gots = [collect(b) for b in subs]
    for b in subs:
        await b.start()
    try:
        started = [b.last_heartbeat_ns for b in subs]
        for k in range(150):
            for p in peers:
                p.publish_nowait("ticker" if k % 3 else "trade", {"k": k})
            if k % 10 == 9:
                for p in peers:
                    await p.flush()
                await asyncio.sleep(0.02)  # heartbeats go out in between
        for p in peers:
            await p.flush()
        await wait_for(lambda: len(gots[0]) == 300 and len(gots[1]) == 300, 10, "every event at both listeners")
        await wait_for(lambda: all(b.last_heartbeat_ns > t for b, t in zip(subs[1:], started[1:])), 5,
                       "a heartbeat back at every bridge that sends them")

        def key(e):
            return (e.source, e.type, e.seq, e.data["k"])

        assert sorted(map(key, gots[1])) == sorted(map(key, gots[0]))
        for p, got in zip(peers, gots[2:]):
            assert len(got) == 150 and {e.source for e in got} == {q.instance_id for q in peers if q is not p}
        for b in subs:
            m = b.metrics()
            assert (m["gaps"], m["duplicates"], m["malformed"], m["errors"], m["stale_subscriptions"],
                    m["reconnects"]) == (0, 0, 0, 0, 0, 0), (b.instance_id, m)
        assert plain.metrics()["received"] == beating.metrics()["received"] == 300
        assert plain.last_heartbeat_ns == 0
        for p in peers:  # its own heartbeats are no self-filtered events
            assert p.metrics()["self_filtered"] == 150 and p.metrics()["published"] == 150
    finally:
        for b in subs:
            await b.close()


@pytest.mark.parametrize("transport", ["pubsub", pytest.param("streams", marks=needs_redis7)])
def test_a_healthy_run_with_heartbeats_delivers_exactly_the_same_events(redis_server, transport):
    arun(_same_events({"pub": redis_server.url, "sub": redis_server.url}, transport), 30)


@needs_redis7
def test_streams_heartbeats_are_no_position_and_no_loss(redis_server):
    """Streams: its own short heartbeat stream, read in the same XREAD; never in the saved positions,
    its trimming no loss."""
    async def go():
        bot = RedisEventBridge(BridgeConfig(url=redis_server.url, instance_id="bot", transport="streams",
                                            heartbeat_s=0.02, event_types=("trade",)))
        r = Redis.from_url(redis_server.url)
        await bot.start()
        try:
            from fanout.transports.streams import BEAT_MAXLEN

            await wait_for(lambda: bot._beat._n > 2 * BEAT_MAXLEN, 20, "the heartbeat stream to be trimmed")
            await bot.publish("trade", {"k": 1})
            assert await r.xlen("ws:_heartbeat:bot") < 2 * BEAT_MAXLEN
            pos = {k.decode() for k in await r.hgetall("ws:pos:bot")}
            assert pos == {"ws:trade", "ws:trade|n"}
            m = bot.metrics()
            assert (m["gaps"], m["transport_losses"], m["stale_subscriptions"], m["received"]) == (0, 0, 0, 0)
        finally:
            await bot.close()
            await r.aclose()

    arun(go(), 30)


@needs_redis7
def test_sharded_heartbeats_one_per_node_and_the_same_events():
    from fanout.lab.servers import LocalCluster

    with LocalCluster(masters=3) as cl:
        async def go():
            await _same_events({"pub": cl.url, "sub": cl.url}, "sharded")
            b = RedisEventBridge(BridgeConfig(url=cl.url, instance_id="b", transport="sharded", heartbeat_s=HB,
                                              enable_publishing=False, shard_partitions=6, event_types=("trade",)))
            await b.start()
            try:
                beats = b._subscriber.heartbeats
                nodes = b._transport.channel_nodes(list(beats))
                assert len(beats) == 3 and len(set(nodes.values())) == 3  # one per node
                t = b.last_heartbeat_ns
                await wait_for(lambda: b.last_heartbeat_ns > t, 5, "a heartbeat back")
                assert all(beat.back > 0 for beat in b._beat._beats)  # from every node
            finally:
                await b.close()
        arun(go(), 60)
