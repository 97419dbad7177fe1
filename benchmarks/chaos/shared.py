"""A shared Redis: ``fanout run`` pointed at a Redis that holds someone else's data (a key, a
stream named like the fleet's), without a key prefix, once per transport that keeps state. What
the runs leave there is the debris this case counts; the other data must be untouched."""
from __future__ import annotations

from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario
from fanout.lab.servers import RedisServer

from .common import CaseResult, Sizes, client, data_dir, keys_left

THEIRS = {"theirs:config": "string", "ws:ticker": "stream"}


def run(sz: Sizes) -> CaseResult:
    res = CaseResult(case="runs on a shared Redis · pubsub + streams")
    with RedisServer() as srv:
        with client(srv.url) as c:
            c.set("theirs:config", "keep me")
            c.xadd("ws:ticker", {"price": "1"})
            before = c.xlen("ws:ticker")
        recs = []
        for transport in ("pubsub", "streams"):
            sc = Scenario(name=f"chaos-shared-{transport}", instances=sz.instances, duration_s=3, rate_per_s=100,
                          transport=transport, redis_url=srv.url, drain_timeout_s=3.0, process_mode="single")
            recs.append(run_scenario(sc, progress=False, save_to=str(data_dir())))
        keys = keys_left([srv.url])
        with client(srv.url) as c:
            untouched = c.get("theirs:config") == b"keep me" and c.xlen("ws:ticker") == before
        res.keys_left = [k for k in keys if k.split(" ")[0] not in THEIRS]
    prefixes = [r.environment.get("key_prefix") for r in recs]
    res.injected = ("two runs (pub/sub, Streams; redis_url given, no key prefix, as `fanout run --redis-url`) "
                    "on a Redis holding another application's key and a stream named ws:ticker")
    res.lost = ", ".join(f"{r.scenario['transport']}: "
                         f"{int(r.publications['ok'].sum()) * (sz.instances - 1) - len(r.deliveries):,} missing"
                         for r in recs)
    res.attributed = f"the runs used prefixes {', '.join(map(str, prefixes))}; removed after: " + ", ".join(
        f"{r.scenario['transport']}: {r.environment.get('keys_removed', 'none made')}" for r in recs)
    res.figures.update({"prefixes": prefixes, "keys_after": keys, "untouched": untouched,
                        "keys_removed": [r.environment.get("keys_removed") for r in recs]})
    res.check("the other application's data untouched", untouched)
    res.check("the runs left no key of theirs", not res.keys_left, res.keys_left or None)
    res.check("every run's prefix is its own", all(p and p.startswith("fanout:") for p in prefixes), prefixes)
    res.notes.append("lab defect, fixed (fanout/lab/run.py): a Streams run on a shared Redis left its two streams "
                     "and its positions there, one set per run, forever; now it removes what is under its own prefix "
                     "when it ends (tests/test_chaos.py)")
    return res


CASES = {"shared-redis": run}
