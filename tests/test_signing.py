"""Signed envelopes (fanout.signing): the exact bytes signed, bad signatures refused before
parsing, key rotation with two keys accepted at once, batches signed as one message."""
from __future__ import annotations

import asyncio
import os

import orjson
import pytest
from redis.asyncio import Redis

from conftest import arun, needs_redis7, wait_for
from fanout import BridgeConfig, ConfigError, RedisEventBridge
from fanout.events import EnvelopeWriter, decode, decode_many
from fanout.signing import SIG_CHARS, Signer

OLD, NEW = b"o" * 32, b"n" * 32


def collect(bridge: RedisEventBridge) -> list:
    got: list = []
    bridge.on("*", got.append)
    return got


def test_the_signature_covers_the_channel_and_the_exact_bytes_and_cuts_off_again():
    s = Signer({"k1": OLD}).bind("ws:ticker")
    w = EnvelopeWriter("host", "e1")
    msg = w.write(w.head("ticker"), 1, 1_760_000_000_000_000_001, None, b'{"p":1}')
    signed = s.sign(msg)
    assert signed.startswith(msg[:-1]) and signed.endswith(b'"}') and len(signed) == len(msg) + 20 + SIG_CHARS
    assert s.verify(signed) and decode(signed).data == {"p": 1}  # readers without keys ignore the fields
    batch = s.sign(b"[" + msg + b"," + msg + b"]")
    assert s.verify(batch) and [e.seq for e in decode_many(batch)] == [1, 1]
    assert Signer({"k1": OLD}).bind("ws:ticker") is not s and Signer({"k1": OLD}).verify(signed, b"ws:ticker")
    for bad in (msg, signed.replace(b'"p":1', b'"p":2'), signed[:-5] + b'AAA"}', Signer({"k1": NEW}).sign(msg, "ws:ticker"),
                Signer({"k9": OLD}).sign(msg, "ws:ticker"), b"", b"[]", b'"}',
                b'x,"kid":"k1","sig":"' + b"A" * SIG_CHARS + b'"}',
                Signer({"k1": OLD}).sign(msg, "ws:trade"),        # the same key, another channel
                Signer({"k1": OLD}).sign(msg, "ws:ticke")):       # the channel is length-prefixed
        assert not s.verify(bad), bad
    one = Signer({"k1": OLD})
    assert one.bind("ws:ticker") is one.bind(b"ws:ticker")      # bound once per channel


def test_signing_keys_are_checked_in_one_line():
    for keys, why in (({}, "give a dict"), ({"k 1": OLD}, "key id 'k 1'"), ({"k1": b"short"}, "at least 16 bytes"),
                      ([("k1", OLD)], "give a dict")):
        with pytest.raises(ConfigError, match=why):
            BridgeConfig(signing_keys=keys)
    assert BridgeConfig(signing_keys={"k1": "s" * 16}).signing_keys == {"k1": b"s" * 16}


def test_a_signing_fleet_rejects_what_is_unsigned_or_wrongly_signed_before_it_is_parsed(redis_url):
    async def go():
        keys = {"k1": OLD}
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="host", signing_keys=keys)) as host, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="bot", signing_keys=keys)) as bot, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="plain", event_types=("ticker",))) as plain:
            got, plain_got = collect(bot), collect(plain)
            r = Redis.from_url(redis_url)
            stranger = Signer({"k1": NEW})
            w = EnvelopeWriter("host", host.epoch)  # a forger that knows the real source and epoch
            forged = w.write(w.head("ticker"), 2, 1_760_000_000_000_000_000, None, b'{"fake":1}')
            await host.publish("ticker", {"k": 0})
            for junk in (forged, stranger.sign(forged, "ws:ticker"), b"not json", orjson.dumps({"type": "ticker", "data": {},
                                                                                   "source": "seed", "timestamp": 1})):
                await r.publish("ws:ticker", junk)
            await host.publish("ticker", {"k": 1})
            await wait_for(lambda: len(got) == 2 and bot.metrics()["rejected"] == 4, what="2 real, 4 rejected")
            m = bot.metrics()
            assert [e.data for e in got] == [{"k": 0}, {"k": 1}]
            assert (m["gaps"], m["malformed"], m["suspicious"], m["duplicates"]) == (0, 0, 0, 0)
            # a bridge without keys reads signed messages like any other (the fields are ignored) and cannot
            # tell the forgery: it reaches its handlers (its signed copy is the same event: a duplicate),
            # and the real seq 2 is not suppressed by it (delivered, counted suspicious)
            await wait_for(lambda: sum(1 for e in plain_got if e.source == "host") == 3)
            assert [e.data for e in plain_got if e.source == "host"] == [{"k": 0}, {"fake": 1}, {"k": 1}]
            assert (plain.metrics()["suspicious"], plain.metrics()["duplicates"]) == (1, 1)
            await r.aclose()

    arun(go())


def test_key_rotation_accepts_old_and_new_during_the_overlap_and_only_new_after(redis_url):
    async def go():
        def bridge(iid, keys, **kw):
            return RedisEventBridge(BridgeConfig(url=redis_url, instance_id=iid, signing_keys=keys, **kw))

        # during the overlap: one host still signs with k1, another already with k2; the bot accepts both
        async with bridge("old-host", {"k1": OLD, "k2": NEW}, enable_subscription=False) as old_host, \
                bridge("new-host", {"k2": NEW, "k1": OLD}, enable_subscription=False) as new_host, \
                bridge("bot", {"k2": NEW, "k1": OLD}, enable_publishing=False) as bot:
            got = collect(bot)
            for k in range(3):
                await old_host.publish("trade", {"k": k})
                await new_host.publish("trade", {"k": k})
            await wait_for(lambda: len(got) == 6, what="both keys accepted")
            assert bot.metrics()["rejected"] == 0
        # after the overlap: k1 is gone from the bot; what is still signed with it is rejected
        async with bridge("old-host", {"k1": OLD}, enable_subscription=False) as old_host, \
                bridge("new-host", {"k2": NEW}, enable_subscription=False) as new_host, \
                bridge("bot", {"k2": NEW}, enable_publishing=False) as bot:
            got = collect(bot)
            for k in range(3):
                await old_host.publish("trade", {"k": k})
                await new_host.publish("trade", {"k": k})
            await wait_for(lambda: len(got) == 3 and bot.metrics()["rejected"] == 3, what="old key rejected")
            assert {e.source for e in got} == {"new-host"}

    arun(go())


def test_signed_batches_are_delivered_exactly_once_in_order(redis_url):
    async def go():
        keys = {"k1": OLD}
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="host", signing_keys=keys, batch_max=16,
                                                 enable_subscription=False)) as host, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="bot", signing_keys=keys,
                                              enable_publishing=False)) as bot, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="plain", enable_publishing=False)) as plain:
            got, plain_got = collect(bot), collect(plain)
            for k in range(200):
                while host.publish_nowait("ticker", {"k": k}) is None:
                    await host.writable()
                if k % 50 == 0:
                    await asyncio.sleep(0)
            await wait_for(lambda: len(got) == 200 and len(plain_got) == 200, what="200 events each")
            assert [e.seq for e in got] == list(range(1, 201)) == [e.seq for e in plain_got]
            for b in (bot, plain):
                m = b.metrics()
                assert (m["rejected"], m["malformed"], m["gaps"], m["duplicates"]) == (0, 0, 0, 0)

    arun(go())


def test_a_signing_run_passes_and_names_only_the_key_id(tmp_path, monkeypatch):
    from fanout.analysis import analyse
    from fanout.lab.run import run_scenario
    from fanout.lab.scenario import Scenario

    monkeypatch.delenv("FANOUT_SIGNING_KEY", raising=False)
    rec = run_scenario(Scenario(name="signed", instances=3, duration_s=1.0, rate_per_s=60, signing=True,
                                process_mode="single"), progress=False, save_to=str(tmp_path))
    f = analyse(rec)
    assert f.passed, [c for c in f.verdict if not c.passed]
    prot = rec.environment["protection"]
    assert prot == {"signing": True, "key_id": "run-" + rec.run_id.rsplit("-", 1)[-1], "acl_user": None}
    inst = rec.instances.set_index("instance")
    assert (inst["rejected"] == 0).all() and (inst["suspicious"] == 0).all() and (inst["received"] > 0).all()


def test_a_signing_run_over_processes_shares_one_key_from_the_environment_and_never_writes_it(tmp_path,
                                                                                            monkeypatch):
    from fanout.analysis import analyse
    from fanout.errors import FanoutError
    from fanout.lab.run import run_scenario
    from fanout.lab.scenario import Scenario

    secret = os.urandom(32).hex()
    sc = Scenario(name="signed-procs", instances=2, duration_s=1.0, rate_per_s=40, signing=True,
                  process_mode="processes")
    monkeypatch.delenv("FANOUT_SIGNING_KEY", raising=False)
    with pytest.raises(FanoutError, match="needs one key for all of them: set FANOUT_SIGNING_KEY"):
        run_scenario(sc, progress=False, save_to=None)
    monkeypatch.setenv("FANOUT_SIGNING_KEY", f"fleet-7:{secret}")
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path))
    assert analyse(rec).passed
    assert rec.environment["protection"]["key_id"] == "fleet-7"
    assert (rec.instances["rejected"] == 0).all() and (rec.instances["received"] > 0).all()
    for p in tmp_path.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert secret.encode() not in data and bytes.fromhex(secret) not in data, p


# -- issue 23: a signed message is bound to where and when it was sent --------------------------------

async def _capture(url: str, channel: str, n: int, publish) -> list[bytes]:
    """What a hostile process sees: ``n`` messages off ``channel`` with a plain Redis client."""
    r = Redis.from_url(url)
    spy = r.pubsub()
    await spy.subscribe(channel)
    got: list[bytes] = []
    await publish()
    while len(got) < n:
        m = await spy.get_message(timeout=5.0)
        if m is None:
            raise AssertionError(f"captured {len(got)} of {n}")
        if m["type"] == "message":
            got.append(m["data"])
    await spy.aclose()
    await r.aclose()
    return got


def test_a_signed_message_replayed_on_another_channel_is_rejected(redis_url):
    """Issue 23: 19 of 20 signed tickers captured off ws:ticker and published on ws:trade reached the
    ticker handler again. The MAC covers the channel: on another channel the signature is not valid."""
    async def go():
        keys = {"k1": OLD}
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="host", signing_keys=keys,
                                                 enable_subscription=False)) as host, \
                RedisEventBridge(BridgeConfig(url=redis_url, instance_id="bot", signing_keys=keys,
                                              enable_publishing=False)) as bot:
            tickers = []
            bot.on("ticker", tickers.append)

            async def send():
                for k in range(20):
                    await host.publish("ticker", {"k": k, "symbol": "BTC/USDT"})

            captured = await _capture(redis_url, "ws:ticker", 20, send)
            await wait_for(lambda: len(tickers) == 20, what="20 real tickers")
            r = Redis.from_url(redis_url)
            for raw in captured:
                await r.publish("ws:trade", raw)
            await r.aclose()
            await wait_for(lambda: bot.metrics()["rejected"] == 20, what="20 cross-channel replays rejected")
            m = bot.metrics()
            assert len(tickers) == 20 and m["received"] == 20
            assert (m["rejected_signature"], m["rejected_channel"], m["rejected_stale"]) == (20, 0, 0)
            assert (m["duplicates"], m["suspicious"]) == (0, 0)

    arun(go())


@pytest.mark.parametrize("wait_s, bounds", [
    (1.5, {"signed_max_age_s": 1.0}),  # older than the age bound
    (2.0, {}),                         # the default bounds (60 s, 1 s): stamped before the bot subscribed
], ids=["older-than-max-age", "before-the-subscription"])
def test_signed_replays_to_a_receiver_started_later_are_rejected_as_stale(redis_url, wait_s, bounds):
    """Issue 23: the same captured messages published to a bot that started 3 s later were all
    delivered as new. A signed message older than ``signed_max_age_s`` is stale; on pub/sub, so is one
    stamped before the receiver subscribed (less ``signed_max_skew_s``): pub/sub delivers nothing
    published before it, however young."""
    async def go():
        keys = {"k1": OLD}
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="host", signing_keys=keys,
                                                 enable_subscription=False)) as host:
            async def send():
                for k in range(20):
                    await host.publish("ticker", {"k": k})

            captured = await _capture(redis_url, "ws:ticker", 20, send)
            await asyncio.sleep(wait_s)  # age, not synchronisation: the bot subscribes this long after the capture
            async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="late", signing_keys=keys,
                                                     enable_publishing=False, **bounds)) as late:
                got = collect(late)
                r = Redis.from_url(redis_url)
                for raw in captured:
                    await r.publish("ws:ticker", raw)
                await host.publish("ticker", {"k": "fresh"})
                await r.aclose()
                await wait_for(lambda: len(got) == 1 and late.metrics()["rejected"] == 20, what="20 stale, 1 fresh")
                m = late.metrics()
                assert got[0].data == {"k": "fresh"}
                assert (m["rejected_stale"], m["rejected_signature"], m["received"]) == (20, 0, 1)

    arun(go())

def test_a_signed_replay_of_a_forgotten_epoch_is_rejected_not_taken_as_a_restart(redis_url):
    """Issue 23: a replay of an epoch that has left the receiver's 4-epoch memory was taken as a
    restart and delivered. Signed: an epoch not tracked whose message is older than the current
    epoch's first one is an old life coming back: rejected as stale."""
    async def go():
        keys = {"k1": OLD}
        cfg = dict(url=redis_url, instance_id="host", signing_keys=keys, enable_subscription=False)
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="bot", signing_keys=keys,
                                                 enable_publishing=False)) as bot:
            got = collect(bot)
            async with RedisEventBridge(BridgeConfig(**cfg)) as first:
                async def send():
                    for k in range(5):
                        await first.publish("ticker", {"life": 0, "k": k})

                captured = await _capture(redis_url, "ws:ticker", 5, send)
            for life in range(1, 6):  # five more lives, each further along: the first epoch leaves the bot's memory
                async with RedisEventBridge(BridgeConfig(**cfg)) as again:
                    for k in range(6):
                        await again.publish("ticker", {"life": life, "k": k})
            await wait_for(lambda: len(got) == 35, what="every real event")
            assert bot.metrics()["source_restarts"] == 5
            r = Redis.from_url(redis_url)
            for raw in captured:
                await r.publish("ws:ticker", raw)
            await r.aclose()
            await wait_for(lambda: bot.metrics()["rejected"] == 5, what="5 replays of a forgotten epoch rejected")
            m = bot.metrics()
            assert len(got) == 35 and (m["rejected_stale"], m["source_restarts"], m["duplicates"]) == (5, 5, 0)

    arun(go())


def test_a_message_whose_type_is_not_its_channels_is_rejected_signed_or_not(redis_url):
    """Handlers are chosen by the payload's type: a ticker on ws:trade would reach the ticker handler."""
    async def go():
        async with RedisEventBridge(BridgeConfig(url=redis_url, instance_id="bot", enable_publishing=False)) as bot:
            tickers, trades = [], []
            bot.on("ticker", tickers.append)
            bot.on("trade", trades.append)
            r = Redis.from_url(redis_url)
            w = EnvelopeWriter("intruder", "e1")
            await r.publish("ws:trade", w.write(w.head("ticker"), 1, 1_760_000_000_000_000_000, None, b'{"x":1}'))
            await r.publish("ws:trade", orjson.dumps({"type": "ticker", "data": {}, "timestamp": 1, "source": "seed"}))
            w2 = EnvelopeWriter("intruder", "e2")
            await r.publish("ws:trade", w2.write(w2.head("trade"), 1, 1_760_000_000_000_000_000, None, b'{"x":2}'))
            await r.aclose()
            await wait_for(lambda: len(trades) == 1, what="the trade")
            await wait_for(lambda: bot.metrics()["rejected"] == 2, what="2 rejected")
            m = bot.metrics()
            assert tickers == [] and (m["rejected_channel"], m["rejected_signature"]) == (2, 0)

    arun(go())


@needs_redis7
def test_a_signed_streams_backlog_is_judged_from_when_redis_took_it_and_replays_from_now(redis_url):
    """A Streams bot resuming after longer than signed_max_age_s still gets its backlog (each entry
    judged from its id, the time Redis took it); a captured entry added again later is stale."""
    async def go():
        keys = {"k1": OLD}
        common = dict(url=redis_url, signing_keys=keys, transport="streams", event_types=("ticker",))
        async with RedisEventBridge(BridgeConfig(instance_id="host", enable_subscription=False, **common)) as host:
            async with RedisEventBridge(BridgeConfig(instance_id="bot", enable_publishing=False,
                                                     signed_max_age_s=1.0, **common)) as bot:
                got = collect(bot)
                await host.publish("ticker", {"k": 0})
                await wait_for(lambda: len(got) == 1, what="the first event")
            for k in range(1, 4):
                await host.publish("ticker", {"k": k})
            await asyncio.sleep(1.5)    # the backlog is now older than the bound
            r = Redis.from_url(redis_url)
            entries = await r.xrange("ws:ticker")
            async with RedisEventBridge(BridgeConfig(instance_id="bot", enable_publishing=False,
                                                     signed_max_age_s=1.0, **common)) as bot:
                got = collect(bot)
                await wait_for(lambda: len(got) == 3, what="the 3 events of the backlog")
                for _id, fields in entries:   # a hostile process adds them again
                    await r.xadd("ws:ticker", fields)
                await wait_for(lambda: bot.metrics()["rejected"] == 4, what="4 replays rejected")
                m = bot.metrics()
                assert [e.data["k"] for e in got] == [1, 2, 3] and m["rejected_stale"] == 4
            await r.aclose()

    arun(go())
