"""The hot path's correctness on real throwaway servers (its speed lives in benchmarks/):
pipelined publishes matched in order, every publish in flight ending as delivered or counted
when Redis dies or hangs, batching exactly once and in order without a task per batch, the own
echo dropped unparsed, and the issue-12 fixes (kept task references, no asserts, narrow errors)."""
from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from conftest import arun, needs_redis7, wait_for
from fanout import BridgeConfig, Envelope, PublishError, RedisEventBridge
from fanout.lab.servers import RedisServer


def collect(bridge: RedisEventBridge) -> list:
    got: list = []
    bridge.on("*", got.append)
    return got


def outcomes(bridge: RedisEventBridge) -> list:
    out: list = []
    bridge.on_published(lambda token, err: out.append((token, err)))
    return out


def test_pipelined_publishes_are_acknowledged_in_order_and_delivered_in_order(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub", event_types=("trade",))) as pub, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="sub", event_types=("trade",))) as sub:
            acks, got = outcomes(pub), collect(sub)
            ids = []
            for k in range(3000):  # queued a window at a time: one write per turn, replies FIFO
                while (eid := pub.publish_nowait("trade", {"k": k}, token=k)) is None:
                    await pub.writable()
                ids.append(eid)
            await wait_for(lambda: len(acks) == 3000 and len(got) == 3000, timeout=10, what="3000 acks and deliveries")
            assert [t for t, _ in acks] == list(range(3000)) and all(e is None for _, e in acks)
            assert [e.id for e in got] == ids and [e.data["k"] for e in got] == list(range(3000))
            assert pub.metrics()["published"] == 3000 and pub.metrics()["self_filtered"] == 3000
            assert sub.metrics()["received"] == 3000 and sub.metrics()["gaps"] == 0

    arun(go())


def test_a_full_window_refuses_without_using_a_seq_and_writable_waits(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub", enable_subscription=False)) as pub:
            acks = outcomes(pub)
            sent, refused = 0, 0
            while refused == 0:
                if pub.publish_nowait("ticker", {"n": sent}, token=sent) is None:
                    refused += 1
                else:
                    sent += 1
            await pub.writable()
            eid = pub.publish_nowait("ticker", {"n": sent}, token=sent)
            assert eid.endswith(f":ticker:{sent + 1}")  # the refused one used no seq number
            await wait_for(lambda: len(acks) == sent + 1, what="every accepted publish acknowledged")
            assert all(e is None for _, e in acks)

    arun(go())


@pytest.mark.parametrize("how", ["kill", "pause"])
def test_publishes_in_flight_when_redis_dies_or_hangs_each_end_once_within_the_bound(how):
    """N publish_nowait and N awaited publishes in flight; Redis is killed (or stops answering):
    every one ends exactly once, delivered or counted as failed, within publish_timeout_s."""
    n = 2000
    with RedisServer() as srv:
        async def go():
            cfg = dict(url=srv.url, publish_timeout_s=0.5, event_types=("ticker",))
            pub = RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg))
            await pub.start()
            acks = outcomes(pub)
            accepted = 0
            for k in range(n):
                if pub.publish_nowait("ticker", {"k": k}, token=k) is not None:
                    accepted += 1
            awaited = [asyncio.ensure_future(pub.publish("ticker", {"a": k})) for k in range(200)]
            await asyncio.sleep(0)
            srv.kill() if how == "kill" else srv.pause()
            try:  # each ends by its cause (the connection lost, or its 0.5 s deadline: said below), 10 s allowed
                await wait_for(lambda: len(acks) == accepted, timeout=10, what="every publish_nowait to end")
                async with asyncio.timeout(10):
                    results = await asyncio.gather(*awaited, return_exceptions=True)
            finally:
                if how == "pause":
                    srv.resume()
            assert sorted(t for t, _ in acks) == list(range(accepted))  # each exactly once
            ok = sum(1 for _, e in acks if e is None)
            failed = [e for _, e in acks if e is not None]
            assert all(isinstance(e, PublishError) for e in failed)
            for k, r in enumerate(results):  # each awaited publish: its own envelope, or a PublishError
                assert isinstance(r, PublishError) or (type(r) is Envelope and r.data == {"a": k}), (k, r)
            why = {str(e) for e in failed} | {str(r) for r in results if isinstance(r, PublishError)}
            if how == "pause":  # Redis stopped answering: every failure is the deadline firing
                assert all("failed: no answer within 0.5s" in w for w in why), why
            else:  # Redis died: the connection's loss, not the deadline
                assert not any("no answer within" in w for w in why), why
            bad = sum(1 for r in results if isinstance(r, PublishError))
            m = pub.metrics()
            assert m["published"] == ok + (len(results) - bad)
            assert m["publish_errors"] == len(failed) + bad
            assert failed or bad, "Redis went away mid-burst: something must have failed"
            kinds = pub.publish_error_types()  # by kind, adding up to the count (one failure, many events too)
            assert sum(kinds.values()) == m["publish_errors"], (kinds, m["publish_errors"])
            if how == "pause":
                assert set(kinds) == {"timeout"}, kinds
            else:
                assert "timeout" not in kinds, kinds
            pub.abort()

        arun(go(), 30)


def test_batching_with_publish_nowait_exactly_once_in_order_and_no_task_per_batch(redis_url):
    async def go():
        cfg = dict(url=redis_url, batch_max=64, event_types=("ticker", "trade"))
        pub = RedisEventBridge(BridgeConfig(instance_id="pub", **cfg))
        subs = [RedisEventBridge(BridgeConfig(instance_id=f"s{i}", **cfg)) for i in range(2)]
        got = [collect(s) for s in subs]
        for b in (pub, *subs):
            await b.start()
        acks = outcomes(pub)
        loop = asyncio.get_running_loop()
        made = []
        default = loop.get_task_factory()
        loop.set_task_factory(lambda lp, coro, **kw: made.append(coro) or asyncio.Task(coro, loop=lp, **kw))
        try:
            for k in range(2000):
                while pub.publish_nowait(("ticker", "trade")[k % 2], {"k": k}, token=k) is None:
                    await pub.writable()
            await wait_for(lambda: len(acks) == 2000, timeout=10, what="2000 acks")
        finally:
            loop.set_task_factory(default)
        assert made == [], "no task per batch (nor per event)"
        stats = await Redis.from_url(redis_url).info("commandstats")
        assert stats["cmdstat_publish"]["calls"] <= 2000 / 20, "events travelled in batches"
        await wait_for(lambda: all(len(g) == 2000 for g in got), timeout=10, what="2000 deliveries each")
        for g, s in zip(got, subs):
            for t in ("ticker", "trade"):
                seqs = [e.seq for e in g if e.type == t]
                assert seqs == list(range(1, 1001)), "exactly once, in per-source order"
            assert s.metrics()["duplicates"] == s.metrics()["gaps"] == 0
        assert pub.metrics()["self_filtered"] == 2000  # its own batches, counted per envelope, unparsed
        for b in (pub, *subs):
            await b.close()

    arun(go())


def test_awaited_publishes_with_batching_start_no_task_per_batch(redis_url):
    """Issue 12: the batcher started a task per batch without keeping it (fire and forget)."""
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="p", batch_max=25,
                                                 enable_subscription=False)) as pub:
            loop = asyncio.get_running_loop()
            count = [0]
            default = loop.get_task_factory()

            def factory(lp, coro, **kw):
                count[0] += 1
                return asyncio.Task(coro, loop=lp, **kw)

            loop.set_task_factory(factory)
            try:
                await asyncio.gather(*(pub.publish("ticker", {"k": k}) for k in range(500)))
            finally:
                loop.set_task_factory(default)
            assert count[0] == 500  # gather's own; none from the batcher
            assert pub.metrics()["published"] == 500

    arun(go())


def test_the_publisher_drops_its_own_echo_without_parsing_it(redis_url, monkeypatch):
    import fanout.delivery as delivery

    parsed = []
    real = delivery.parse_message
    monkeypatch.setattr(delivery, "parse_message", lambda raw: parsed.append(raw) or real(raw))

    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="me", batch_max=8)) as me, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="other", event_types=("trade",))) as other:
            got = collect(me)  # "other" does not read tickers: every ticker parsed would be me's
            for k in range(20):
                await me.publish("ticker", {"k": k})       # one envelope per message
            for k in range(40):
                me.publish_nowait("ticker", {"k": k})      # one turn: batches of 8
            await other.publish("trade", {"from": "other"})
            await wait_for(lambda: len(got) == 1 and me.metrics()["self_filtered"] == 60,
                           what="the other's event and 60 own echoes")
            assert [p for p in parsed if b'"type":"ticker"' in p] == []  # echoes never parsed
            assert got[0].data == {"from": "other"}

    arun(go())


def test_data_that_is_not_json_is_refused_before_a_seq_is_used(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub")) as pub, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="sub")) as sub:
            got = collect(sub)
            await pub.publish("ticker", {"k": 1})
            with pytest.raises(PublishError, match="not JSON"):
                await pub.publish("ticker", {"k": {1, 2}})   # a set: orjson cannot encode it
            await pub.publish("ticker", {"k": 2})
            await wait_for(lambda: len(got) == 2)
            assert [e.seq for e in got] == [1, 2] and sub.metrics()["gaps"] == 0  # no false gap
            assert pub.metrics()["publish_errors"] == 0  # Redis never saw it
            with pytest.raises(PublishError, match="not JSON"):
                pub.publish_nowait("ticker", {"k": object()})

    arun(go())


def test_unconnected_transports_say_so_instead_of_asserting():
    """Issue 12: ``assert`` guarded runtime conditions (gone under ``python -O``)."""
    from fanout.transports import make_transport

    async def go():
        for transport in ("pubsub", "streams", "sharded"):
            t = make_transport(BridgeConfig(instance_id="x", transport=transport))
            with pytest.raises(ConnectionError, match="not connected"):
                t.publish_nowait("ws:ticker", b"{}", 1)
        with pytest.raises(ConnectionError, match="no topology yet"):
            make_transport(BridgeConfig(instance_id="x", transport="sharded")).channel_nodes(["ws:ticker"])

    arun(go())


@needs_redis7
def test_a_transport_loss_reaches_gap_callbacks_before_the_events_after_the_hole():
    """Issue 12: the trimmed-stream notice went out from a task nobody kept, after the batch."""
    with RedisServer() as srv:
        async def go():
            cfg = dict(url=srv.url, transport="streams", event_types=("ticker",), reconnect_initial_s=0.02)
            a = RedisEventBridge(BridgeConfig(instance_id="A", stream_maxlen=20, stream_maxlen_approx=False, **cfg))
            b = RedisEventBridge(BridgeConfig(instance_id="B", **cfg))
            seen: list = []
            b.on("ticker", lambda env: seen.append(("event", env.seq)))
            b.on_gap(lambda n: seen.append((n.reason, n.missing)))
            await a.start()
            await b.start()
            await a.publish("ticker", {})
            await wait_for(lambda: seen == [("event", 1)], what="the first event")
            b.pause_reading()
            for _ in range(100):
                await a.publish("ticker", {})
            b.resume_reading()
            await wait_for(lambda: seen[-1:] == [("event", 101)], what="the last event")
            i = next(k for k, x in enumerate(seen) if x[0] == "trimmed")  # (an XREAD in flight may
            before, after = seen[:i], seen[i + 1:]                       # return one more first)
            assert before == [("event", s) for s in range(1, len(before) + 1)]
            assert after == [("event", s) for s in range(82, 102)]  # the 20 left, right after the notice
            assert seen[i] == ("trimmed", 81 - len(before))
            await a.close()
            await b.close()

        arun(go())


def test_closing_leaves_no_task_behind(redis_url):
    async def go():
        async def slow(env):
            await asyncio.sleep(10)

        before = set(asyncio.all_tasks())
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="a")) as a, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="b")) as b:
            b.on("ticker", slow)
            await a.publish("ticker", {})
            await wait_for(lambda: b.metrics()["received"] == 1)
        await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks() - before if not t.done()]
        assert left == [], left

    arun(go())


# -- issue 23: backpressure you cannot ignore by accident ---------------------------------------------

def test_refused_publishes_are_counted_and_logged_once_per_burst(redis_url, caplog):
    """Issue 23: 3,000 publish_nowait calls in one loop turn: 2,000 refused, and metrics() said
    published 1,000, errors 0, publish_errors 0 — nothing counted or logged the refusals."""
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub", enable_subscription=False)) as pub:
            acks = outcomes(pub)
            with caplog.at_level("WARNING", logger="fanout"):
                ids = [pub.publish_nowait("ticker", {"k": k}, token=k) for k in range(3000)]
                await pub.flush()
                first = [r for r in caplog.records if "refused" in r.getMessage()]
                ids2 = [pub.publish_nowait("ticker", {"k": k}, token=k) for k in range(3000)]  # a second burst
                await pub.flush()
            accepted = sum(i is not None for i in ids)
            m = pub.metrics()
            assert m["refused"] == 3000 - accepted + sum(i is None for i in ids2) > 0
            assert m["published"] == len(acks) == accepted + sum(i is not None for i in ids2)
            assert len(first) == 1 and "in-flight window" in first[0].getMessage()
            # the second burst follows within REFUSED_QUIET_S: counted, not said again
            assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1

    arun(go())


def test_a_strict_publish_raises_when_the_window_is_full_and_uses_no_seq(redis_url):
    from fanout.errors import Backpressure

    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub", enable_subscription=False)) as pub:
            n = 0
            with pytest.raises(Backpressure, match="in-flight window .* full") as err:
                while True:
                    pub.publish_nowait("ticker", {"k": n}, token=n, strict=True)
                    n += 1
            assert isinstance(err.value, PublishError) and not err.value.maybe_sent
            await pub.writable()
            assert pub.publish_nowait("ticker", {"k": n}, strict=True).endswith(f":ticker:{n + 1}")
            await pub.flush()
            assert pub.metrics()["refused"] == 1 and pub.metrics()["published"] == n + 1

    arun(go())


def test_flush_returns_when_every_accepted_publish_is_settled(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub", enable_subscription=False)) as pub:
            acks = outcomes(pub)
            await pub.flush()  # nothing in flight: at once
            sent = 0
            for k in range(2500):
                if pub.publish_nowait("ticker", {"k": k}, token=k) is None:
                    await pub.writable()
                    continue
                sent += 1
            await pub.flush()
            assert len(acks) == sent  # every one settled when flush returned, none later
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub2", enable_subscription=False,
                                                 batch_max=50)) as pub:
            acks = outcomes(pub)
            for k in range(120):
                pub.publish_nowait("ticker", {"k": k}, token=k)
            await pub.flush()
            assert len(acks) == 120

    arun(go())


def test_flush_also_returns_when_publishes_fail():
    async def go():
        with RedisServer() as srv:
            async with RedisEventBridge(BridgeConfig(url=srv.url, instance_id="pub", enable_subscription=False,
                                                     publish_timeout_s=0.5)) as pub:
                acks = outcomes(pub)
                srv.pause()
                try:
                    for k in range(10):
                        pub.publish_nowait("ticker", {"k": k}, token=k)
                    await pub.flush()
                    assert len(acks) == 10 and all(isinstance(e, PublishError) for _, e in acks)
                finally:
                    srv.resume()

    arun(go())


def test_on_published_adds_callbacks_like_on(redis_url):
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub", enable_subscription=False)) as pub:
            a, b = outcomes(pub), outcomes(pub)
            pub.publish_nowait("ticker", {"k": 1}, token="t")
            await pub.flush()
            assert a == b == [("t", None)]

    arun(go())


def test_sparse_publishes_arm_no_timer_one_deadline_per_connection(redis_url):
    """Issue 23: a publisher whose events are further apart than publish_timeout_s armed one
    TimerHandle per event (the deadline, re-armed by the first publish after it ran out). Now the
    connection's one deadline keeps itself: a publish schedules nothing, however sparse."""
    async def go():
        loop = asyncio.get_running_loop()
        armed = []
        real_later, real_at = loop.call_later, loop.call_at

        def later(delay, cb, *args, **kw):
            armed.append(getattr(cb, "__name__", cb))
            return real_later(delay, cb, *args, **kw)

        def at(when, cb, *args, **kw):
            armed.append(getattr(cb, "__name__", cb))
            return real_at(when, cb, *args, **kw)

        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="pub", enable_subscription=False,
                                                 publish_timeout_s=0.1)) as pub:
            acks = outcomes(pub)
            loop.call_later, loop.call_at = later, at
            try:
                during = []
                for k in range(6):
                    await asyncio.sleep(0.25)      # further apart than publish_timeout_s
                    before = len(armed)
                    pub.publish_nowait("ticker", {"k": k}, token=k)
                    during.append(len(armed) - before)
                assert during == [0] * 6, armed
                await pub.flush()
            finally:
                loop.call_later, loop.call_at = real_later, real_at
            assert [e for _, e in acks] == [None] * 6   # and the deadline still bounds each one (test below)

    arun(go())


def test_the_one_deadline_still_bounds_a_sparse_publish_after_a_paused_spell():
    """The self-keeping deadline must bound a publish sent while idle, also after reading was paused
    and resumed with nothing pending (it rests while paused)."""
    async def go():
        with RedisServer() as srv:
            async with RedisEventBridge(BridgeConfig(url=srv.url, instance_id="pub", enable_subscription=False,
                                                     publish_timeout_s=0.3, health_check_interval_s=60)) as pub:
                acks = outcomes(pub)
                proto = pub._transport._pub.proto   # the publishing connection (white box: the fault hook)
                proto.pause_reading()
                proto.resume_reading()
                await asyncio.sleep(0.7)           # idle longer than the bound
                srv.pause()
                try:
                    pub.publish_nowait("ticker", {"k": 1}, token=1)
                    await wait_for(lambda: len(acks) == 1, timeout=3, what="the publish failed by the deadline")
                    assert isinstance(acks[0][1], PublishError) and acks[0][1].maybe_sent
                finally:
                    srv.resume()

    arun(go())
