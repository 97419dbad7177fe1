"""The bridge against real throwaway Redis servers: fan-out, self-filtering, loss visibility,
reconnect, bounded publish, garbage on the wire, authentication."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from redis.asyncio import Redis

from conftest import arun, wait_for
from fanout.lab.servers import RedisServer
from fanout import (
    AuthenticationFailed,
    BridgeConfig,
    ConfigError,
    NotPublisher,
    PublishError,
    RedisEventBridge,
    RedisUnavailable,
)


def collect(bridge: RedisEventBridge) -> list:
    got: list = []
    bridge.on("*", got.append)
    return got


async def through_markers(pubs: list, subs: list, gots: list) -> None:
    """Everything published so far has arrived, by order rather than by waiting a while: each of
    ``pubs`` publishes a marker (after its earlier publishes were acknowledged, so Redis ran them
    first); a subscriber's one connection hears Redis's messages in the order it ran them, so once
    every marker has reached every subscriber nothing published before can still arrive. The
    markers are then taken out of ``gots`` (in place)."""
    for p in pubs:
        await p.publish("ticker", {"marker": str(p.instance_id)})
    for sub, got in zip(subs, gots):
        want = {str(p.instance_id) for p in pubs if p is not sub}
        await wait_for(lambda: {e.data.get("marker") for e in got if e.type == "ticker"} >= want, 10,
                       f"the markers of {sorted(want)} at {sub.instance_id}")
        got[:] = [e for e in got if not (e.type == "ticker" and "marker" in e.data)]


def test_three_bridges_each_event_reaches_the_two_others_exactly_once(redis_url):
    async def go():
        bridges = [RedisEventBridge(BridgeConfig(url=redis_url, instance_id=f"i{i}")) for i in range(3)]
        got = [collect(b) for b in bridges]
        for b in bridges:
            await b.start()
        sent = []
        for k in range(30):
            env = await bridges[k % 3].publish(("ticker", "trade", "orderbook", "candle")[k % 4], {"k": k})
            sent.append(env)
        await through_markers(bridges, bridges, got)  # nothing more may arrive
        for i, b in enumerate(bridges):
            ids = [e.id for e in got[i]]
            assert len(ids) == len(set(ids)) == 20
            assert all(e.source != f"i{i}" for e in got[i])
            assert set(ids) == {e.id for e in sent if e.source != f"i{i}"}
            m = b.metrics()
            assert (m["connected"], m["published"], m["received"], m["self_filtered"]) == (True, 11, 22, 11)  # + markers
            assert (m["errors"], m["gaps"], m["duplicates"], m["reconnects"], m["subscriptions"]) == (0, 0, 0, 0, 4)
        for b in bridges:
            await b.close()
        assert not bridges[0].metrics()["connected"]

    arun(go())


def test_handlers_per_type_sync_and_async(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub")) as pub, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="sub")) as sub:
            tickers, trades = [], []
            sub.on("ticker", tickers.append)

            async def on_trade(env):
                await asyncio.sleep(0)
                trades.append(env)

            sub.on("trade", on_trade)
            await pub.publish("ticker", {"symbol": "BTC/USDT"})
            await pub.publish("trade", {"symbol": "ETH/USDT"})
            await pub.publish("candle", {"symbol": "SOL/USDT"})
            await wait_for(lambda: sub.metrics()["received"] == 3)
            assert [e.data["symbol"] for e in tickers] == ["BTC/USDT"]  # a sync handler ran as it was read
            # an async handler runs in the bridge's handler task, a turn (or, on a busy machine, several) later
            await wait_for(lambda: len(trades) == 1, what="the async trade handler")
            assert [e.data["symbol"] for e in trades] == ["ETH/USDT"]
            with pytest.raises(ConfigError, match="subscribes to"):
                RedisEventBridge(BridgeConfig(url=redis_url, event_types=("ticker",))).on("trade", print)

    arun(go())


def test_two_key_prefixes_do_not_see_each_other(redis_url):
    async def go():
        a_pub = RedisEventBridge(BridgeConfig(url=redis_url, instance_id="p", key_prefix="ws:"))
        b_pub = RedisEventBridge(BridgeConfig(url=redis_url, instance_id="p", key_prefix="other:"))
        a_sub = RedisEventBridge(BridgeConfig(url=redis_url, instance_id="a", key_prefix="ws:"))
        b_sub = RedisEventBridge(BridgeConfig(url=redis_url, instance_id="b", key_prefix="other:"))
        ga, gb = collect(a_sub), collect(b_sub)
        for b in (a_pub, b_pub, a_sub, b_sub):
            await b.start()
        for k in range(5):
            await a_pub.publish("ticker", {"k": k, "prefix": "ws:"})
        for k in range(7):
            await b_pub.publish("ticker", {"k": k, "prefix": "other:"})
        await through_markers([a_pub], [a_sub], [ga])  # after b_pub's events: they would have come first
        await through_markers([b_pub], [b_sub], [gb])
        assert {e.data["prefix"] for e in ga} == {"ws:"} and len(ga) == 5
        assert {e.data["prefix"] for e in gb} == {"other:"} and len(gb) == 7
        for b in (a_pub, b_pub, a_sub, b_sub):
            await b.close()

    arun(go())


def test_publish_only_host_and_subscribe_only_bots(redis_url):
    async def go():
        host = RedisEventBridge(BridgeConfig(url=redis_url, instance_id="websocket-host", enable_subscription=False))
        bots = [RedisEventBridge(BridgeConfig(url=redis_url, instance_id=f"bot-{i}", enable_publishing=False))
                for i in range(3)]
        got = [collect(b) for b in bots]
        await host.start()
        for b in bots:
            await b.start()
        for k in range(25):
            await host.publish("trade", {"k": k})
        await wait_for(lambda: all(len(g) == 25 for g in got))
        for g in got:
            assert [e.data["k"] for e in g] == list(range(25))
        assert host.metrics()["subscriptions"] == 0 and host.metrics()["published"] == 25
        with pytest.raises(NotPublisher, match="enable_publishing=False"):
            await bots[0].publish("trade", {})
        for b in [host, *bots]:
            await b.close()

    arun(go())


def test_seed_minimal_format_from_a_plain_client_reaches_handlers(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id=4242)) as sub:
            got = collect(sub)
            r = Redis.from_url(redis_url)
            ts = int(time.time() * 1000)
            await r.publish("ws:ticker", orjson.dumps({"type": "ticker", "data": {"symbol": "BTC/USDT", "last": 1.5},
                                                       "timestamp": ts, "source": 31337}))
            await r.publish("ws:trade", orjson.dumps({"type": "trade", "data": {"price": 2},
                                                      "timestamp": ts, "source": "websocket-host"}))
            # our pid-style id without our epoch (fanout always sends one): another instance uses our id.
            # Told (id_conflict), and delivered: it is not this bridge's event (docs/wire-format.md)
            notices = []
            sub.on_gap(notices.append)
            await r.publish("ws:trade", orjson.dumps({"type": "trade", "data": {}, "timestamp": ts, "source": 4242}))
            await wait_for(lambda: len(got) == 3)
            assert [(e.type, e.source, e.seq) for e in got] == [("ticker", 31337, None), ("trade", "websocket-host", None),
                                                                 ("trade", 4242, None)]
            assert got[0].data == {"symbol": "BTC/USDT", "last": 1.5} and got[0].timestamp == ts
            m = sub.metrics()
            assert (m["self_filtered"], m["id_conflicts"]) == (0, 1)
            assert [(n.reason, n.source) for n in notices] == [("id_conflict", 4242)]
            await r.aclose()

    arun(go())


def test_garbage_on_the_channels_is_counted_and_valid_events_still_arrive(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub")) as pub, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="sub")) as sub:
            got = collect(sub)
            r = Redis.from_url(redis_url)
            garbage = [
                b"this is not json",
                orjson.dumps({"hello": "world"}),                       # JSON without the fields
                orjson.dumps({"type": "ticker", "data": {}}),            # no source
                orjson.dumps({"type": 7, "data": {}, "source": "x"}),    # wrong type of type
                orjson.dumps(["a", "list"]),
                b"x" * (1024 * 1024),                                    # a 1 MB string
                bytes(range(256)) * 4,                                   # binary bytes
            ]
            for k, junk in enumerate(garbage):
                await pub.publish("ticker", {"k": k})
                await r.publish("ws:ticker", junk)
            await pub.publish("ticker", {"k": len(garbage)})
            await wait_for(lambda: len(got) == len(garbage) + 1 and sub.metrics()["errors"] == len(garbage))
            m = sub.metrics()
            assert [e.data["k"] for e in got] == list(range(len(garbage) + 1))
            assert (m["errors"], m["malformed"], m["gaps"], m["received"]) == (len(garbage), len(garbage), 0, len(garbage) + 1)
            assert "malformed message" in m["last_error"]
            await r.aclose()

    arun(go())


def test_a_raising_handler_is_counted_and_the_listener_keeps_going(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub")) as pub, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="sub")) as sub:
            ok = []

            def bad(env):
                if env.data["k"] % 2:
                    raise RuntimeError("handler bug")
                ok.append(env.data["k"])

            sub.on("ticker", bad)
            for k in range(6):
                await pub.publish("ticker", {"k": k})
            await wait_for(lambda: sub.metrics()["received"] == 6)
            assert ok == [0, 2, 4]
            assert sub.metrics()["errors"] == 3 and sub.metrics()["handler_errors"] == 3

    arun(go())


def test_duplicates_are_counted_not_delivered_and_a_new_epoch_is_not_a_gap(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="sub")) as sub:
            got = collect(sub)
            notices = []
            sub.on_gap(notices.append)
            r = Redis.from_url(redis_url)

            def env(seq, epoch="e1"):
                return orjson.dumps({"type": "trade", "data": {"seq": seq}, "timestamp": 0, "source": "p",
                                     "seq": seq, "epoch": epoch, "id": f"{epoch}:trade:{seq}"})

            for seq in (1, 2, 2, 3, 1):          # two duplicates
                await r.publish("ws:trade", env(seq))
            for seq in (6, 7):                   # 4 and 5 lost
                await r.publish("ws:trade", env(seq))
            for seq in (1, 2):                   # the source restarted: new epoch, not a loss
                await r.publish("ws:trade", env(seq, "e2"))
            # the 7th delivered is the last published, on the same connection: every duplicate came before it
            await wait_for(lambda: sub.metrics()["received"] == 7)
            m = sub.metrics()
            assert [e.data["seq"] for e in got] == [1, 2, 3, 6, 7, 1, 2]
            assert (m["duplicates"], m["gaps"], m["source_restarts"]) == (2, 2, 1)
            assert [(n.reason, n.source, n.type, n.missing, n.last_seq, n.next_seq) for n in notices] == \
                [("seq_gap", "p", "trade", 2, 3, 6)]
            await r.aclose()

    arun(go())


def test_seq_is_per_source_and_type_so_a_subset_subscriber_sees_no_false_gaps(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub")) as pub, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="sub", event_types=("trade",))) as sub:
            for k in range(10):
                await pub.publish("ticker" if k % 2 else "trade", {"k": k})
            await wait_for(lambda: sub.metrics()["received"] == 5)
            assert sub.metrics()["gaps"] == 0

    arun(go())


def test_redis_restart_reconnect_bounded_publish_and_gaps():
    """Redis goes away and comes back: bridges reconnect and resubscribe by themselves; a
    publish while it is down fails fast; a receiver held back from reconnecting reports the
    events it missed as gaps once the next event from that source arrives."""
    with RedisServer() as srv:
        async def go():
            cfg = dict(url=srv.url, reconnect_initial_s=0.02, reconnect_max_s=0.2, publish_timeout_s=30.0)
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", **cfg))
            fast = RedisEventBridge(BridgeConfig(instance_id="fast", **cfg))
            slow = RedisEventBridge(BridgeConfig(instance_id="slow", **cfg))
            gf, gs = collect(fast), collect(slow)
            notices = []
            slow.on_gap(notices.append)
            for b in (pub, fast, slow):
                await b.start()
            for k in range(3):
                await pub.publish("ticker", {"k": k})
            await wait_for(lambda: len(gf) == 3 and len(gs) == 3)

            slow.hold_reconnect()
            srv.stop()
            await wait_for(lambda: not fast.metrics()["connected"] and not slow.metrics()["connected"],
                           what="bridges to notice Redis is gone")
            # fails fast, by its cause (nothing to connect to), not by its deadline (30 s; 10 s allowed here)
            with pytest.raises(PublishError, match="publish to ws:ticker on redis://127.0.0.1:\\d+/0 failed") as ei:
                async with asyncio.timeout(10):
                    await pub.publish("ticker", {"k": "lost"})
            assert "no answer within" not in str(ei.value) and not ei.value.maybe_sent
            assert pub.metrics()["errors"] == 1 and pub.metrics()["publish_errors"] == 1

            srv.start()
            await wait_for(lambda: fast.metrics()["connected"], timeout=10, what="fast to resubscribe")
            assert fast.metrics()["reconnects"] == 1 and fast.metrics()["subscriptions"] == 4
            for k in range(3, 6):   # slow is still disconnected: it misses these
                await pub.publish("ticker", {"k": k})
            await wait_for(lambda: len(gf) == 6)
            slow.release_reconnect()
            await wait_for(lambda: slow.metrics()["connected"], timeout=10, what="slow to resubscribe")
            await pub.publish("ticker", {"k": 6})
            await wait_for(lambda: len(gs) == 4 and len(gf) == 7)
            assert [e.data["k"] for e in gs] == [0, 1, 2, 6]
            # seq 4 failed to publish (announced by the next envelopes as void: unsent, not a gap);
            # 5..7 were sent while slow was away: 3 lost in transit
            assert (slow.metrics()["gaps"], slow.metrics()["unsent"]) == (3, 1)
            assert (fast.metrics()["gaps"], fast.metrics()["unsent"]) == (0, 1)
            assert [n.reason for n in notices] == ["reconnect", "seq_gap"] and notices[1].missing == 3
            assert (notices[1].last_seq, notices[1].next_seq) == (3, 8)
            for b in (pub, fast, slow):
                await b.close()

        arun(go(), timeout=60)


def test_paused_redis_is_noticed_by_the_health_check_and_publish_is_bounded():
    with RedisServer() as srv:
        async def go():
            cfg = dict(url=srv.url, health_check_interval_s=0.3, health_check_timeout_s=0.5,
                       publish_timeout_s=0.5, reconnect_initial_s=0.05, reconnect_max_s=0.2,
                       connect_timeout_s=0.5, command_timeout_s=0.5)
            sub = RedisEventBridge(BridgeConfig(instance_id="sub", **cfg))
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", **cfg))
            got = collect(sub)
            await sub.start()
            await pub.start()
            srv.pause()
            try:
                # bounded by its own deadline (the message says which fired); 10 s allowed here
                with pytest.raises(PublishError, match="no answer within 0.5s"):
                    async with asyncio.timeout(10):
                        await pub.publish("ticker", {})
                await wait_for(lambda: not sub.metrics()["connected"], timeout=5, what="health check to fire")
            finally:
                srv.resume()
            await wait_for(lambda: sub.metrics()["connected"], timeout=10, what="resubscribe after resume")
            await pub.publish("ticker", {"after": True})
            await wait_for(lambda: any(e.data.get("after") for e in got), timeout=5)
            await sub.close()
            await pub.close()

        arun(go(), timeout=60)


def test_an_outage_is_dated_from_the_last_sign_of_life_not_from_when_it_was_noticed():
    """Redis paused: the subscriber notices only after health_check_interval_s of silence plus the
    PING's timeout, but what was sent in between went nowhere: the outage starts before the pause."""
    with RedisServer() as srv:
        async def go():
            cfg = dict(url=srv.url, health_check_interval_s=0.3, health_check_timeout_s=0.3, reconnect_initial_s=0.05,
                       reconnect_max_s=0.2, connect_timeout_s=0.5, command_timeout_s=0.5)
            sub = RedisEventBridge(BridgeConfig(instance_id="sub", enable_publishing=False, **cfg))
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg))
            got = collect(sub)
            await sub.start()
            await pub.start()
            await pub.publish("ticker", {"k": 0})
            await wait_for(lambda: len(got) == 1)
            t_paused = time.time_ns()
            srv.pause()
            try:
                await wait_for(lambda: not sub.metrics()["connected"], timeout=5, what="the health check to fire")
                t_noticed = time.time_ns()
            finally:
                srv.resume()
            await wait_for(lambda: sub.metrics()["connected"], timeout=10, what="resubscribe after resume")
            [(t_down, t_up, why)] = sub.outages
            assert t_down <= t_paused < t_noticed < t_up, (t_down, t_paused, t_noticed, t_up)
            assert "PING" in why
            await sub.close()
            await pub.close()

        arun(go(), timeout=60)


def test_a_subscription_held_for_its_handler_backlog_notices_redis_cutting_it_off():
    """An async handler far behind: past ASYNC_BACKLOG the subscription stops reading; Redis then
    cuts it off (its output-buffer limit). The bridge notices while still held, records the outage,
    reconnects (held again), and once the handler catches up counts what was lost as gaps."""
    from fanout.delivery import ASYNC_BACKLOG

    with RedisServer(pubsub_buffer_limit="256kb") as srv:
        async def go():
            cfg = dict(url=srv.url, event_types=("trade",), health_check_interval_s=0.5, reconnect_initial_s=0.05,
                       reconnect_max_s=0.2)
            sub = RedisEventBridge(BridgeConfig(instance_id="sub", enable_publishing=False, **cfg))
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg))
            gate, handled, notices = asyncio.Event(), [], []

            async def slow(env):
                await gate.wait()
                handled.append(env.seq)
            sub.on("trade", slow)
            sub.on_gap(notices.append)
            await sub.start()
            await pub.start()

            async def publish(n: int, size: int) -> None:
                for _ in range(n):
                    while pub.publish_nowait("trade", {"pad": "x" * size}) is None:
                        await pub.writable()
            await publish(ASYNC_BACKLOG + 2_000, 10)     # the backlog: reading stops
            await wait_for(lambda: sub._held, 10, "the subscription to stop reading")
            await publish(3_000, 4_096)                   # more than the kernel buffers and Redis's limit hold
            await wait_for(lambda: sub.outages, 15, "the cut-off to be noticed while held")
            assert not gate.is_set() and "closed by the server while reading was paused" in sub.outages[0][2]
            await wait_for(lambda: sub.metrics()["reconnects"] >= 1, 10, "the reconnect")
            m = sub.metrics()
            # bounded: the backlog, one read, and what the host had received when Redis cut it off (drained)
            rmem_max = int(open("/proc/sys/net/ipv4/tcp_rmem").read().split()[2])
            assert m["received"] - len(handled) <= ASYNC_BACKLOG + 1_000 + rmem_max // 4_096
            gate.set()
            await wait_for(lambda: not sub._held, 30, "the handler to catch up")
            await pub.publish("trade", {"last": True})
            await wait_for(lambda: len(handled) == sub.metrics()["received"] and handled[-1] == pub._routes["trade"].seq,
                           30, "the event after the catch-up")
            m = sub.metrics()
            assert m["gaps"] + m["received"] == pub.metrics()["published"]  # every event delivered or a gap
            assert m["gaps"] > 0 and "reconnect" in [n.reason for n in notices]
            await sub.close()
            await pub.close()

        arun(go(), timeout=90)


def test_password_right_wrong_and_unreachable():
    with RedisServer(password="s3cret-pw") as srv:
        async def go():
            async with RedisEventBridge(BridgeConfig(host="127.0.0.1", port=srv.port, password="s3cret-pw",
                                                     instance_id="a")) as a, \
                    RedisEventBridge(BridgeConfig(url=srv.url, instance_id="b")) as b:
                got = collect(b)
                await a.publish("ticker", {})
                await wait_for(lambda: len(got) == 1)
            with pytest.raises(AuthenticationFailed) as ei:
                await RedisEventBridge(BridgeConfig(url=f"redis://:wrong-pw@127.0.0.1:{srv.port}/0")).start()
            assert "refused the credentials" in str(ei.value)
            assert "wrong-pw" not in str(ei.value) and "***" in str(ei.value)
            dead = f"redis://:topsecret@127.0.0.1:{srv.port + 1 if srv.port < 65535 else 1}/0"
            with pytest.raises(RedisUnavailable) as ei:  # refused at once, not after connect_timeout_s (30 s)
                async with asyncio.timeout(10):
                    await RedisEventBridge(BridgeConfig(url=dead, connect_timeout_s=30)).start()
            assert "cannot reach Redis at redis://:***@127.0.0.1:" in str(ei.value)
            assert "topsecret" not in str(ei.value)

        arun(go())


def test_acl_username_and_password():
    with RedisServer(users={"bot": "bot-pw"}) as srv:
        async def go():
            url = f"redis://bot:bot-pw@127.0.0.1:{srv.port}/0"
            async with RedisEventBridge(BridgeConfig(url=url, instance_id="a")) as a, \
                    RedisEventBridge(BridgeConfig(host="127.0.0.1", port=srv.port, username="bot",
                                                  password="bot-pw", instance_id="b")) as b:
                got = collect(b)
                await a.publish("candle", {"interval": "1m"})
                await wait_for(lambda: len(got) == 1)
            with pytest.raises(AuthenticationFailed, match="redis://bot:\\*\\*\\*@"):
                await RedisEventBridge(BridgeConfig(url=f"redis://bot:nope@127.0.0.1:{srv.port}/0")).start()

        arun(go())


def test_config_mistakes_are_clear():
    with pytest.raises(ConfigError, match="transport: 'kafka'"):
        BridgeConfig(transport="kafka")
    with pytest.raises(ConfigError, match="both off"):
        BridgeConfig(enable_publishing=False, enable_subscription=False)
    with pytest.raises(ConfigError, match="must start with redis://"):
        BridgeConfig(url="http://user:pw@host")
    with pytest.raises(ConfigError, match="compat='seed' sends one event per message"):
        BridgeConfig(compat="seed", batch_max=8)
    with pytest.raises(ConfigError, match="instance_id: must be a string or an integer"):
        BridgeConfig(instance_id=True)
    # unique across hosts and containers (which often all run as pid 1): host, pid, a random suffix
    a, b = BridgeConfig().instance_id, BridgeConfig().instance_id
    assert a != b and f"-{__import__('os').getpid()}-" in a
    assert BridgeConfig(instance_id=1).instance_id == 1  # an explicit id, e.g. the seed's pid, is kept
    assert "secret" not in repr(BridgeConfig(password="secret", signing_keys={"k1": b"secret" * 4}))
    assert BridgeConfig(host="h", port=1, password="p w", username="u").resolved_url() == "redis://u:p%20w@h:1/0"
    assert BridgeConfig(host="h", port=1, password="pw").safe_url == "redis://:***@h:1/0"


def test_batching_delivers_every_event_once_in_per_source_order(redis_url):
    async def go():
        cfg = dict(url=redis_url, batch_max=25, event_types=("ticker", "trade"))
        bridges = [RedisEventBridge(BridgeConfig(instance_id=f"b{i}", **cfg)) for i in range(3)]
        got = [collect(b) for b in bridges]
        for b in bridges:
            await b.start()
        # publish far ahead of the replies: 3 x 400 events queued at once, so batches form
        sent = await asyncio.gather(*(bridges[k % 3].publish(("ticker", "trade")[k % 2], {"k": k})
                                      for k in range(1200)))
        assert len({e.id for e in sent}) == 1200
        stats = await Redis.from_url(redis_url).info("commandstats")
        assert stats["cmdstat_publish"]["calls"] <= 1200 / 10, "events travelled in batches"
        await wait_for(lambda: all(len(g) == 800 for g in got), timeout=15, what="800 deliveries each")
        await through_markers(bridges, bridges, got)  # nothing more may arrive
        for i, b in enumerate(bridges):
            ids = [e.id for e in got[i]]
            assert len(ids) == len(set(ids)) == 800
            assert set(ids) == {e.id for e in sent if e.source != f"b{i}"}
            for src in {e.source for e in got[i]}:
                for t in ("ticker", "trade"):
                    seqs = [e.seq for e in got[i] if e.source == src and e.type == t]
                    assert seqs == list(range(1, len(seqs) + 1)), "per-source order and contiguity"
            m = b.metrics()
            assert (m["gaps"], m["duplicates"], m["errors"], m["published"]) == (0, 0, 0, 401)  # + the marker
        for b in bridges:
            await b.close()

    arun(go())


def test_a_batch_with_a_bad_element_counts_it_and_delivers_the_rest(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="sub")) as sub:
            got = collect(sub)
            r = Redis.from_url(redis_url)
            good = {"type": "trade", "data": {}, "timestamp": 0, "source": "p"}
            await r.publish("ws:trade", orjson.dumps([good, {"type": "trade", "data": {}}, good]))
            await wait_for(lambda: len(got) == 2 and sub.metrics()["malformed"] == 1)
            await r.aclose()

    arun(go())


# -- issue 23: configuration that says what is wrong ---------------------------------------------------

def test_config_types_and_ranges_are_checked_naming_the_field():
    for kw, why in (({"port": "6379"}, "port: must be a whole number from 1 to 65535, got '6379'"),
                    ({"port": -1}, "port: must be a whole number from 1 to 65535, got -1"),
                    ({"port": True}, "port: must be a whole number"),
                    ({"db": -1}, "db: must be a whole number >= 0"),
                    ({"host": ""}, "host: must be a non-empty string"),
                    ({"publish_timeout_s": None}, "publish_timeout_s: must be a number of seconds > 0, got None"),
                    ({"connect_timeout_s": "3"}, "connect_timeout_s: must be a number of seconds > 0"),
                    ({"publish_timeout_s": float("nan")}, "publish_timeout_s: must be a number of seconds > 0"),
                    ({"signed_max_age_s": 0}, "signed_max_age_s: must be a number of seconds > 0"),
                    ({"enable_publishing": "no"}, "enable_publishing: must be True or False"),
                    ({"stream_maxlen": 1.5}, "stream_maxlen: must be a whole number"),
                    ({"batch_delay_ms": None}, "batch_delay_ms: must be a number from 0 to 1000"),
                    ({"key_prefix": "ws"}, "key_prefix: 'ws' must end with a separator"),
                    ({"keyPrefix": "ws:"}, "keyPrefix: not a BridgeConfig field.*key_prefix.*from_seed"),
                    ({"instanceId": "a"}, "instanceId: not a BridgeConfig field.*instance_id"),
                    ({"enablePublishing": False}, "enablePublishing: not a BridgeConfig field.*enable_publishing")):
        with pytest.raises(ConfigError, match=why):
            BridgeConfig(**kw)
        with pytest.raises(ConfigError, match=why):  # the same line through the bridge's keyword form
            RedisEventBridge(**kw)
    for ok in ("ws:", "ws.", "app/ws/", "ws-", "ws_", ""):
        assert BridgeConfig(key_prefix=ok).channel("ticker") == f"{ok}ticker"


def test_bridge_config_is_frozen_and_the_bridge_keeps_what_it_discovers():
    import dataclasses

    cfg = BridgeConfig(instance_id="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.port = 1
    assert not hasattr(cfg, "discovered_url")
    assert dataclasses.replace(cfg, port=6380).port == 6380  # changed copies are checked like new ones
    with pytest.raises(ConfigError, match="port"):
        dataclasses.replace(cfg, port="x")
    assert BridgeConfig(event_types="ticker").event_types == ("ticker",)
    assert hash(BridgeConfig(instance_id="a", event_types=["ticker"])) == hash(BridgeConfig(instance_id="a",
                                                                                            event_types=("ticker",)))


def test_from_seed_takes_the_seeds_camel_case_fields(redis_server):
    seed = {"host": "127.0.0.1", "port": redis_server.port, "password": redis_server.password,
            "keyPrefix": "ws:", "instanceId": 4242, "enablePublishing": True, "enableSubscription": False}
    cfg = BridgeConfig.from_seed(seed)
    assert (cfg.host, cfg.port, cfg.key_prefix, cfg.instance_id, cfg.enable_publishing, cfg.enable_subscription) == (
        "127.0.0.1", redis_server.port, "ws:", 4242, True, False)
    assert BridgeConfig.from_seed({"instanceId": "a"}, transport="streams").transport == "streams"  # ours beside
    with pytest.raises(ConfigError, match="from_seed: unknown field 'keyprefix' .*keyPrefix"):
        BridgeConfig.from_seed({"keyprefix": "ws:"})
    with pytest.raises(ConfigError, match="port: must be a whole number"):
        BridgeConfig.from_seed({"port": "6379"})

    async def go():
        async with RedisEventBridge(cfg) as host, RedisEventBridge(BridgeConfig.from_seed(
                {**seed, "instanceId": "bot", "enablePublishing": False, "enableSubscription": True})) as bot:
            got = collect(bot)
            await host.publish("ticker", {"symbol": "BTC/USDT"})
            await wait_for(lambda: len(got) == 1, what="the seed-configured host's event at the bot")

    arun(go())


# -- issue 23: one behaviour for one mistake ------------------------------------------------------------

def test_unknown_types_publish_only_handlers_and_closed_bridges_fail_the_same_way(redis_url):
    from fanout.errors import NotPublisher, NotSubscriber

    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="host", enable_subscription=False,
                                                 event_types=("ticker",))) as host:
            with pytest.raises(ConfigError, match=r"publish\('tickr'\): this bridge's event types are ticker"):
                await host.publish("tickr", {})
            with pytest.raises(ConfigError, match=r"publish\('tickr'\)"):
                host.publish_nowait("tickr", {})
            with pytest.raises(NotSubscriber, match="enable_subscription=False.*never run"):
                host.on("ticker", print)
            with pytest.raises(NotSubscriber, match="enable_subscription=False"):
                host.on_gap(print)
        with pytest.raises(PublishError, match="closed"):
            await host.publish("ticker", {})
        with pytest.raises(PublishError, match="closed"):
            host.publish_nowait("ticker", {})
        fresh = RedisEventBridge(BridgeConfig(url=redis_url, instance_id="x"))
        with pytest.raises(PublishError, match="not started"):
            fresh.publish_nowait("ticker", {})
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="bot", enable_publishing=False)) as bot:
            with pytest.raises(NotPublisher):
                await bot.publish("ticker", {})
            with pytest.raises(ConfigError, match=r"on\('tickr'\)"):
                bot.on("tickr", print)

    arun(go())


def test_envelopes_are_hashable_by_their_id():
    from fanout import Envelope

    a = Envelope("ticker", {"p": 1}, 5, "s", 1, "e1", stream="ticker")
    b = Envelope("ticker", {"p": 1}, 5, "s", 1, "e1", stream="ticker")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1 and {a: 1}[b] == 1
    seed = Envelope("ticker", {"p": [1]}, 5, "s")          # no id: hashed by its header, data unhashable is fine
    assert hash(seed) == hash(Envelope("ticker", {"p": [1]}, 5, "s"))


def test_events_iterates_with_a_bounded_queue_and_counts_what_it_drops(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="host", enable_subscription=False)) as host, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="bot", enable_publishing=False)) as bot:
            trades = bot.events("trade", maxsize=5)
            every = bot.events()
            for k in range(12):
                await host.publish("trade", {"k": k})
            await host.publish("ticker", {"k": "t"})
            await wait_for(lambda: bot.metrics()["received"] == 13, what="13 events received")
            got = []
            async for env in trades:
                got.append(env.data["k"])
                if len(got) == 5:
                    break
            # drop-oldest: the newest 5 kept, the 7 before them dropped and counted
            assert got == [7, 8, 9, 10, 11] and bot.metrics()["events_dropped"] == 7
            assert [(await every.__anext__()).data["k"] for _ in range(13)] == [*range(12), "t"]
            with pytest.raises(ConfigError, match="events: maxsize"):
                bot.events("trade", maxsize=0)
            with pytest.raises(ConfigError, match=r"events\('tradez'\)"):
                bot.events("tradez")
        # closing ends every iterator
        assert [e async for e in every] == []

    arun(go())


def test_a_sync_handler_that_holds_the_reader_is_said_and_counted(redis_url, caplog):
    import time as _time

    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="host", enable_subscription=False)) as host, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="bot", enable_publishing=False,
                                              slow_handler_s=0.05)) as bot:
            bot.on("ticker", lambda env: _time.sleep(0.2))
            bot.on("trade", lambda env: None)
            with caplog.at_level("WARNING", logger="fanout"):
                for k in range(3):
                    await host.publish("ticker", {"k": k})
                await host.publish("trade", {"k": 0})
                await wait_for(lambda: bot.metrics()["received"] == 4, what="4 events")
            m = bot.metrics()
            assert 3 <= m["slow_handlers"] <= 4   # the three sleeps (a no-op is never that slow, but a loaded host ...)
            said = [r.getMessage() for r in caplog.records if "held the reader" in r.getMessage()]
            assert len(said) == 1 and "<lambda>" in said[0] and "async def" in said[0]

    arun(go())
