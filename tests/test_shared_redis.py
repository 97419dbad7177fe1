"""A validation run on a Redis shared with live traffic: it keeps to its own prefix, says who else
listens, and counts live events from outside the run as foreign (never as loss or duplicates)."""
from __future__ import annotations

import logging
import threading
import time

import orjson
import redis

from fanout.analysis import analyse
from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario

SMALL = dict(instances=3, duration_s=1.5, rate_per_s=40, event_types=("ticker", "trade"))


def test_a_run_on_a_given_redis_uses_its_own_prefix_and_live_bots_hear_nothing(redis_server):
    with redis.Redis.from_url(redis_server.url, socket_timeout=5) as r, r.pubsub() as live:
        live.psubscribe("ws:*")  # a seed-format bot on the default prefix
        live.subscribe("ws:ticker", "ws:trade")
        while live.get_message(timeout=1) is not None:  # the subscribe confirmations
            pass
        rec = run_scenario(Scenario(**SMALL, redis_url=redis_server.url), progress=False, save_to=None)
        heard = []
        while (msg := live.get_message(timeout=0.5)) is not None:
            heard.append(msg)
    prefix = rec.environment["key_prefix"]
    assert prefix.startswith("fanout:") and rec.run_id in prefix
    assert analyse(rec).passed
    assert heard == []
    assert rec.environment["outside_subscribers"] == {}


def test_a_run_told_to_use_a_busy_prefix_says_who_else_listens(redis_server, caplog):
    with redis.Redis.from_url(redis_server.url, socket_timeout=5) as r, r.pubsub() as live:
        live.subscribe("ws:ticker")
        while live.get_message(timeout=1) is not None:
            pass
        with caplog.at_level(logging.WARNING, logger="fanout"):
            rec = run_scenario(Scenario(**SMALL, redis_url=redis_server.url, key_prefix="ws:"), progress=False,
                               save_to=None)
    assert rec.environment["outside_subscribers"] == {"ws:ticker": 1}
    warned = [m for m in caplog.messages if "subscribers outside this run listen on ws:ticker (1)" in m]
    assert len(warned) == 1


def test_live_events_on_the_runs_prefix_are_counted_foreign_and_leave_the_verdict_alone(redis_server):
    sent = 25

    def live_host():  # a TypeScript-style host publishing in the seed's format, during the run
        with redis.Redis.from_url(redis_server.url, socket_timeout=10) as r, r.pubsub() as ps:
            ps.subscribe("shared:ticker")
            for msg in ps.listen():
                if msg["type"] == "message":
                    break  # the run is publishing
            for k in range(sent):
                r.publish("shared:ticker", orjson.dumps({"type": "ticker", "data": {"symbol": "BTC/USDT", "k": k},
                                                         "timestamp": int(time.time() * 1000), "source": 31337}))

    host = threading.Thread(target=live_host, daemon=True)
    host.start()
    rec = run_scenario(Scenario(**{**SMALL, "duration_s": 2.0}, redis_url=redis_server.url, key_prefix="shared:"),
                       progress=False, save_to=None)
    host.join(10)
    f = analyse(rec)
    assert f.passed, [c for c in f.verdict if not c.passed]
    o = f.overall
    assert o["foreign"] == sent * 3 and o["foreign_sources"] == ["31337"]
    assert (o["duplicates"], o["unknown"], o["unexpected"], o["missing"]) == (0, 0, 0, 0)
    assert list(f.per_instance["foreign"]) == [sent] * 3
