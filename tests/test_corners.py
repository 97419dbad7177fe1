"""Corners of the core that the end-to-end tests pass by: the publisher's void-range bookkeeping
(``Route.add_void``/``acked``), the receiver's limits (``MAX_SOURCES``, ``MAX_EPOCHS``,
``MAX_VOID_RANGES``), batching with a delay (the ``call_later`` branch), close and abort with
batches still open (``Batcher.flush_all``/``drop_all``) and ``Delivery.settle`` on pub/sub.
Each test says in its docstring what it guards; each was seen to fail on that bug planted."""
from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from conftest import arun, wait_for
from fanout import BridgeConfig, PublishError, RedisEventBridge
from fanout.events import MAX_VOID_RANGES
from fanout.publishing import VOID_HOLD_S, Route
from fanout.sequencing import DUPLICATE, IN_ORDER, MAX_EPOCHS, MAX_SOURCES, SequenceTracker, void_count


def route() -> Route:
    return Route("ws:trade", "trade", b"")


def ranges(r: Route) -> list[tuple[int, int]]:
    return [(v.first, v.last) for v in r.void]


# -- the publisher's void ranges ----------------------------------------------------------
def test_add_void_joins_the_two_ranges_a_seq_fills_the_hole_between():
    """Guards the join: [1,1] and [3,3] plus 2 is one range [1,3] (announced as such), not
    [1,2],[3,3] spending two of the MAX_VOID_RANGES budget."""
    r = route()
    for seq in (1, 3, 2):
        r.add_void(seq)
    assert ranges(r) == [(1, 3)]
    assert r.void_json == b',"void":[[1,3]]'
    # the other way round too: the hole filled from the right-hand range's side
    r = route()
    for seq in (7, 5, 9, 8, 6):
        r.add_void(seq)
    assert ranges(r) == [(5, 9)]


def test_add_void_grows_a_range_on_either_side_and_a_grown_range_is_announced_again():
    """Guards growth and re-announcement: a seq next to a range extends it (below or above), one
    inside changes nothing, and a range that grew after it was carried (or acknowledged) is carried
    again by the next envelope (carrier -1, acked_at 0), else receivers would miss the new seq."""
    r = route()
    r.add_void(5)
    r.add_void(4)
    r.add_void(6)
    r.add_void(5)
    assert ranges(r) == [(4, 6)] and r.void_json == b',"void":[[4,6]]'
    assert r.carry(7) == b',"void":[[4,6]]' and r.void[0].carrier == 7
    r.acked(7)
    assert r.void[0].acked_at > 0
    r.add_void(8)                      # separate: a second range
    r.add_void(3)                      # grows the first one
    assert ranges(r) == [(3, 6), (8, 8)]
    assert (r.void[0].carrier, r.void[0].acked_at) == (-1, 0.0)
    r.carry(9)
    assert [v.carrier for v in r.void] == [9, 9]
    r.acked(9)
    r.add_void(7)                      # fills the hole: [3,6] and [8,8] joined, announced again
    assert ranges(r) == [(3, 8)] and (r.void[0].carrier, r.void[0].acked_at) == (-1, 0.0)
    r.acked(10)
    r.add_void(9)                      # grows it upwards after it was acknowledged
    assert ranges(r) == [(3, 9)] and (r.void[0].carrier, r.void[0].acked_at) == (-1, 0.0)


def test_more_than_max_void_ranges_drops_the_oldest_range():
    """Guards the eviction: past MAX_VOID_RANGES separate holes the lowest (oldest) range goes,
    the newest are kept (receivers count the dropped one as gaps); the list stays sorted."""
    r = route()
    holes = [2 * k for k in range(1, MAX_VOID_RANGES + 2)]      # 17 separate seqs
    for seq in reversed(holes):                                  # out of order: kept sorted
        r.add_void(seq)
    assert ranges(r) == [(s, s) for s in sorted(holes)[1:]]
    assert len(r.void) == MAX_VOID_RANGES


def test_acked_holds_a_range_for_void_hold_s_after_an_envelope_carrying_it_was_acknowledged():
    """Guards the hold: a range is marked acknowledged only by the ack of an envelope that carried
    it (seq >= carrier; not an earlier one, not before it was carried), and dropped only once
    VOID_HOLD_S has passed since (here by dating that ack back, not by waiting)."""
    r = route()
    r.add_void(3)
    r.acked(2)                                        # not carried yet: nothing announced
    assert r.void[0].acked_at == 0.0
    r.carry(5)
    r.acked(4)                                        # an envelope before the carrier
    assert r.void[0].acked_at == 0.0
    r.acked(5)
    assert r.void[0].acked_at > 0 and ranges(r) == [(3, 3)]   # held: still announced
    r.add_void(10)
    r.carry(11)
    r.void[0].acked_at = time.monotonic() - VOID_HOLD_S - 1  # [3,3] acknowledged longer ago than the hold
    r.acked(6)                                        # [10,10] was carried by 11: 6 does not mark it
    assert ranges(r) == [(10, 10)] and r.void[0].acked_at == 0.0
    assert r.void_json == b',"void":[[10,10]]'
    r.void[0].acked_at = time.monotonic() - VOID_HOLD_S + 5     # within the hold: kept
    r.acked(12)
    assert ranges(r) == [(10, 10)]


# -- the receiver's limits ------------------------------------------------------------------
def counts() -> dict:
    return {"suspicious": 0, "source_restarts": 0, "unsent": 0, "gaps": 0}


def test_past_max_sources_a_new_source_is_delivered_but_not_tracked():
    """Guards MAX_SOURCES: a flood of made-up sources cannot grow a channel's state without bound;
    the first past the limit is delivered, counted suspicious and not tracked (so its repeat is not
    dropped as a duplicate), the sources already tracked still are."""
    c = counts()
    t = SequenceTracker(c)
    ch = t.channel("ws:trade")
    for s in range(MAX_SOURCES):
        assert t.check(ch, s, "e", 1, 7, {}) == IN_ORDER
    assert len(ch.sources) == MAX_SOURCES and c["suspicious"] == 0
    assert t.check(ch, "one-too-many", "e", 1, 7, {}) == IN_ORDER
    assert len(ch.sources) == MAX_SOURCES and "one-too-many" not in ch.sources and c["suspicious"] == 1
    assert t.check(ch, "one-too-many", "e", 1, 7, {}) == IN_ORDER     # untracked: not a duplicate
    assert t.check(ch, 0, "e", 1, 7, {}) == DUPLICATE                 # a tracked one still is


def test_max_epochs_keeps_the_most_advanced_epochs_not_the_newest_forged_ones():
    """Guards MAX_EPOCHS: at most MAX_EPOCHS - 1 older epochs per source; a flood of new epochs at
    seq 1 pushes out the least advanced, so the live epoch (seq 500) survives and a replay of one of
    its events is still known as a duplicate."""
    c = counts()
    t = SequenceTracker(c)
    ch = t.channel("ws:trade")
    for seq in range(1, 501):
        t.check(ch, "p", "real", seq, seq, {})
    for k in range(2 * MAX_EPOCHS):
        assert t.check(ch, "p", f"forged{k}", 1, 1, {}) == IN_ORDER
    st = ch.sources["p"]
    assert st.epoch == f"forged{2 * MAX_EPOCHS - 1}"
    assert len(st.older) == MAX_EPOCHS - 1
    assert "real" in [o.epoch for o in st.older]
    assert t.check(ch, "p", "real", 500, 500, {}) == DUPLICATE


def test_a_void_with_more_than_max_void_ranges_is_malformed():
    """Guards MAX_VOID_RANGES at the receiver: up to the limit the ranges count (as unsent), one
    more and the field is malformed (-1), so a forged list cannot cost unbounded work."""
    void = [[2 * k, 2 * k] for k in range(1, MAX_VOID_RANGES + 1)]   # 16 ranges: seqs 2 .. 32
    assert void_count(void, 0, 100) == MAX_VOID_RANGES
    assert void_count([*void, [40, 40]], 0, 100) == -1


# -- batching with a delay, close and abort with open batches ---------------------------------
def outcomes(bridge: RedisEventBridge) -> list:
    out: list = []
    bridge.on_published(lambda token, err: out.append((token, err)))
    return out


async def publish_calls(url: str) -> int:
    r = Redis.from_url(url)
    try:
        return (await r.info("commandstats")).get("cmdstat_publish", {}).get("calls", 0)
    finally:
        await r.aclose()


def test_batch_delay_keeps_a_batch_open_across_loop_turns_until_its_timer(redis_url):
    """Guards the call_later branch (batch_delay_ms > 0): events published in later event-loop
    turns join the open batch, which leaves as one PUBLISH when its timer fires (with the
    call_soon branch taken instead they would be three messages)."""
    async def go():
        cfg = dict(url=redis_url, event_types=("trade",), batch_max=100, batch_delay_ms=1000)
        async with RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg)) as pub, \
                RedisEventBridge(BridgeConfig(instance_id="sub", enable_publishing=False, **cfg)) as sub:
            got = []
            sub.on("trade", got.append)
            acks = outcomes(pub)
            before = await publish_calls(redis_url)
            for k in range(3):
                assert pub.publish_nowait("trade", {"k": k}, token=k) is not None
                await asyncio.sleep(0)             # a later loop turn: a call_soon batch would be gone
                await asyncio.sleep(0)
            assert isinstance(pub._batcher._open["ws:trade"].handle, asyncio.TimerHandle)
            await wait_for(lambda: len(got) == 3 and len(acks) == 3, 10, "the batch after its delay")
            assert [e.data["k"] for e in got] == [0, 1, 2] and acks == [(0, None), (1, None), (2, None)]
            assert await publish_calls(redis_url) - before == 1

    arun(go())


def test_close_sends_the_open_batches_and_abort_fails_them_as_never_sent(redis_url):
    """Guards Batcher.flush_all and drop_all: close() sends what is still batched (delivered,
    acknowledged), abort() fails each batched event once with a PublishError that says it never
    left (maybe_sent False) and voids its seq; nothing of the aborted batch is delivered."""
    async def go():
        cfg = dict(url=redis_url, event_types=("trade", "ticker"), batch_max=100, batch_delay_ms=1000)
        async with RedisEventBridge(BridgeConfig(instance_id="sub", enable_publishing=False, **cfg)) as sub:
            got = []
            sub.on("*", got.append)
            pub = await RedisEventBridge(BridgeConfig(instance_id="closing", enable_subscription=False, **cfg)).start()
            acks = outcomes(pub)
            for k in range(4):
                pub.publish_nowait(("trade", "ticker")[k % 2], {"k": k}, token=k)
            assert len(pub._batcher._open) == 2 and acks == []
            await asyncio.wait_for(pub.close(), 10)
            await wait_for(lambda: len(got) == 4, 10, "the batches sent by close()")
            assert sorted(acks) == [(k, None) for k in range(4)]

            doomed = await RedisEventBridge(BridgeConfig(instance_id="aborting", enable_subscription=False,
                                                         **cfg)).start()
            lost = outcomes(doomed)
            for k in range(3):
                doomed.publish_nowait("trade", {"k": k}, token=k)
            doomed.abort()
            assert [t for t, _ in lost] == [0, 1, 2]
            assert all(isinstance(e, PublishError) and not e.maybe_sent and not e.refused for _, e in lost)
            assert [(v.first, v.last) for v in doomed._routes["trade"].void] == [(1, 3)]
            # a marker from a live publisher after the abort: once it is here, the aborted batch would be too
            async with RedisEventBridge(BridgeConfig(instance_id="after", enable_subscription=False,
                                                     event_types=("trade", "ticker"), url=redis_url)) as after:
                await after.publish("trade", {"marker": True})
            await wait_for(lambda: len(got) == 5, 10, "the marker")
            assert [e.source for e in got].count("aborting") == 0

    arun(go())


# -- Delivery.settle on pub/sub -----------------------------------------------------------------
def test_settle_waits_for_every_queued_async_handler_on_pub_sub(redis_url):
    """Guards Delivery.settle outside Streams: it returns only once every async handler call queued
    so far has finished (not at once while they wait), and at once when nothing is queued."""
    async def go():
        cfg = dict(url=redis_url, event_types=("trade",))
        async with RedisEventBridge(BridgeConfig(instance_id="pub", enable_subscription=False, **cfg)) as pub, \
                RedisEventBridge(BridgeConfig(instance_id="sub", enable_publishing=False, **cfg)) as sub:
            gate, handled = asyncio.Event(), []

            async def slow(env):
                await gate.wait()
                handled.append(env.data["k"])
            sub.on("trade", slow)
            for k in range(3):
                await pub.publish("trade", {"k": k})
            await wait_for(lambda: sub.metrics()["received"] == 3, 10, "3 events received")
            settled = asyncio.ensure_future(sub._rx.settle())
            for _ in range(20):
                await asyncio.sleep(0)
            assert not settled.done() and handled == []    # the handlers wait on the gate: not settled
            gate.set()
            await asyncio.wait_for(settled, 10)
            assert handled == [0, 1, 2]                    # every one finished when settle returned
            await asyncio.wait_for(sub._rx.settle(), 10)   # nothing queued: at once

    arun(go())
