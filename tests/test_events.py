"""The wire format: round trips, the seed's minimal form, and clear errors for garbage."""
from __future__ import annotations

import random

import orjson
import pytest

from fanout import Envelope, MalformedMessage, decode, encode
from fanout.events import EVENT_TYPES
from fanout.lab.market import SyntheticMarket


def test_round_trip_keeps_every_field():
    env = Envelope(type="trade", data={"price": 1.5}, timestamp=1_760_700_000_123, source="test-instance-0",
                   seq=7, epoch="ab12cd34", id="ab12cd34:trade:7", ts_ns=1_760_700_000_123_456_789, ti_ns=5)
    assert decode(encode(env)) == env


def test_seed_minimal_message_decodes_with_numeric_or_string_source():
    for source in (12345, "websocket-host"):
        raw = orjson.dumps({"type": "ticker", "data": {"symbol": "BTC/USDT"}, "timestamp": 1, "source": source})
        env = decode(raw)
        assert (env.type, env.source, env.seq, env.epoch, env.id) == ("ticker", source, None, None, None)


@pytest.mark.parametrize("raw, why", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (orjson.dumps({"data": {}, "source": "x"}), "'type'"),
    (orjson.dumps({"type": "ticker", "data": {}}), "'source'"),
    (orjson.dumps({"type": "ticker", "data": {}, "source": True}), "'source'"),
    (orjson.dumps({"type": "ticker", "source": "x"}), "'data'"),
    (orjson.dumps({"type": "ticker", "data": {}, "source": "x", "seq": "7"}), "'seq' must be an integer"),
    (orjson.dumps({"type": "ticker", "data": {}, "source": "x", "timestamp": "now"}), "'timestamp'"),
    (b"\xff\xfe\x00binary", "not JSON"),
    (b"x" * (1024 * 1024), "larger than"),
])
def test_malformed_messages_raise_a_clear_error(raw, why):
    with pytest.raises(MalformedMessage, match=why):
        decode(raw)


def test_market_payloads_are_realistic_and_reproducible():
    a = SyntheticMarket(random.Random(1))
    b = SyntheticMarket(random.Random(1))
    for t in EVENT_TYPES * 3:
        pa, pb = a.make(t, "BTC/USDT", 1_000), b.make(t, "BTC/USDT", 1_000)
        assert pa == pb and pa["symbol"] == "BTC/USDT"
    trade = a.make("trade", "ETH/USDT", 0)
    assert trade["side"] in ("buy", "sell") and trade["amount"] > 0 and trade["tradeId"].isdigit()
    book1 = a.make("orderbook", "SOL/USDT", 0)
    book2 = a.make("orderbook", "SOL/USDT", 0)
    assert (book1["kind"], book2["kind"]) == ("snapshot", "diff") and book2["updateId"] > book1["updateId"]
    assert all(bid[0] < ask[0] for bid, ask in zip(book1["bids"], book1["asks"]))
    candle = a.make("candle", "BTC/USDT", 125_000)
    assert candle["openTime"] == 120_000 and candle["low"] <= min(candle["open"], candle["close"])
    assert candle["high"] >= max(candle["open"], candle["close"])
