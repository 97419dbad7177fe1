"""Issue 18's hostile mix (``python -m benchmarks.hostile``): a receiving bridge, a real publisher
sending 100 events, and 1,000 hostile messages published on the same channel with a plain
redis-py client: forged envelopes copying the real source and epoch with far-jumped, near-jumped
or predicted seqs, forged epochs, the receiver's own id as source, replays of real messages,
messages signed with a wrong key, and malformed bytes. ``tests/test_hostile.py`` asserts on it;
``main`` prints what the receiver saw, with signing and without (docs/wire-format.md).
"""
from __future__ import annotations

import asyncio
import os
import random
import sys
import time

import orjson
from redis.asyncio import Redis

from fanout import BridgeConfig, RedisEventBridge

REAL, PER_STEP = 100, 10
NEAR = 50  # the near forged jumps go at most this far ahead
KEY = {"k1": os.urandom(32)}
try:
    from fanout.signing import Signer

    WRONG = Signer({"k1": os.urandom(32)})
except ImportError:  # a fanout from before signing (for the "before" figures): the message as it is
    Signer = WRONG = None


def forged(source, epoch, seq, rng, **extra) -> bytes:
    now = time.time_ns()
    return orjson.dumps({"source": source, "epoch": epoch, "type": "ticker", "seq": seq, "id": f"{epoch}:x:{seq}",
                         "timestamp": now // 1_000_000, "ns": rng.randrange(1_000_000),
                         "data": {"forged": True, "symbol": "BTC/USDT", "last": 1e9}, **extra})


def malformed(rng, i: int) -> bytes:
    return [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
        lambda: b"",
        lambda: orjson.dumps({"type": 7, "data": {}, "source": "x"}),
        lambda: orjson.dumps({"type": "ticker", "source": "x", "seq": "12"}),
        lambda: orjson.dumps([1, 2, 3]),
        lambda: b"[" * 5000,
        lambda: orjson.dumps({"type": "ticker", "data": {}, "source": "x", "seq": 1, "epoch": "e", "ns": -4,
                              "timestamp": 1}),
        lambda: b"{" + b" " * 600_000 + b"}",
    ][i % 8]()


def hostile(rng, k: int, host, receiver: str, captured: list) -> tuple[list[bytes], bool]:
    """The PER_STEP hostile messages sent after real event k (seq k + 1), and whether one is a replay."""
    epoch, nxt = host.epoch, k + 2
    replayed = bool(captured)
    replay = captured[rng.randrange(len(captured))] if replayed else forged("host", epoch, 1, rng)
    msgs = [
        forged("host", epoch, nxt + rng.randint(NEAR + 1, 10 ** 6), rng),          # a far jump
        forged("host", epoch, nxt + rng.randint(1, NEAR), rng),                     # a near jump
        forged("host", os.urandom(4).hex(), rng.randint(1, 10 ** 6), rng),          # a forged epoch
        forged(receiver, os.urandom(4).hex(), rng.randint(1, 100), rng),            # the receiver's own id
        forged("host", epoch, nxt, rng),                                            # the next seq, predicted
        replay,                                                                     # a real message again
        _wrong(forged("host", epoch, nxt + 1, rng)),                                # signed, wrong key
    ]
    return msgs + [malformed(rng, k * PER_STEP + i) for i in range(PER_STEP - len(msgs))], replayed


async def run_mix(url: str, keys, wait_last_s: float = 20.0) -> tuple[RedisEventBridge, list, list, dict]:
    """The mix against a receiving bridge "bot" (signing with ``keys``, or not): the bridge (closed),
    what its handlers got, its gap notices, and what was sent. Waits at most ``wait_last_s`` for
    the last real event."""
    rng = random.Random(18)
    signing = {"signing_keys": keys} if keys else {}
    host = RedisEventBridge(BridgeConfig(url=url, instance_id="host", event_types=("ticker",),
                                         enable_subscription=False, **signing))
    bot = RedisEventBridge(BridgeConfig(url=url, instance_id="bot", event_types=("ticker",),
                                        enable_publishing=False, **signing))
    got, notices = [], []
    bot.on("ticker", got.append)
    bot.on_gap(notices.append)
    await host.start()
    await bot.start()
    r = Redis.from_url(url)
    spy = r.pubsub()
    await spy.subscribe("ws:ticker")
    captured: list[bytes] = []

    async def capture():
        async for msg in spy.listen():
            if msg["type"] == "message" and msg["data"].startswith(b'{"source":"host","epoch":"' + host.epoch.encode()):
                if b'"forged"' not in msg["data"]:
                    captured.append(msg["data"])

    spying = asyncio.create_task(capture())
    sent = {"hostile": 0, "replays": 0, "malformed": 0, "own": 0}
    try:
        for k in range(REAL):
            await host.publish("ticker", {"real": k})
            msgs, replayed = hostile(rng, k, host, "bot", captured)
            sent["replays"] += replayed
            for i, m in enumerate(msgs):
                await r.publish("ws:ticker", m)
                sent["hostile"] += 1
                sent["malformed"] += i >= 7
                sent["own"] += i == 3
        await host.publish("ticker", {"real": REAL})  # the listener still works after the storm
        deadline = time.monotonic() + wait_last_s
        while not any(e.data.get("real") == REAL for e in got) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        spying.cancel()
        await spy.aclose()
        await r.aclose()
        await host.close()
    await bot.close()
    return bot, got, notices, sent


def _wrong(msg: bytes) -> bytes:
    if WRONG is None:
        return msg
    return WRONG.sign(msg, "ws:ticker") if hasattr(WRONG, "bind") else WRONG.sign(msg)


def figures(keys_options=(None, "key")) -> list[dict]:
    """One row per mix run on a throwaway server: the receiver's counters and what reached its handlers."""
    from fanout.lab.servers import RedisServer

    rows = []
    for opt in keys_options:
        if opt and Signer is None:
            continue
        with RedisServer() as srv:
            bot, got, notices, sent = asyncio.run(run_mix(srv.url, KEY if opt else None, wait_last_s=5.0))
        m = bot.metrics()
        rows.append({"signing": bool(opt), "hostile": sent["hostile"], "real_sent": REAL + 1,
                     "real_delivered": len({e.data["real"] for e in got if "real" in e.data}),
                     "forged_delivered": sum(1 for e in got if "forged" in e.data),
                     "seq_gap_notices": sum(1 for n in notices if n.reason == "seq_gap"),
                     **{k: m.get(k) for k in ("gaps", "suspicious", "source_restarts", "id_conflicts", "duplicates",
                                              "self_filtered", "malformed", "rejected")}})
    return rows


def main() -> int:
    rows = figures()
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("—" if r[c] is None else str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
