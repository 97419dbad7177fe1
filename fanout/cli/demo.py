"""``fanout demo``: one publisher, two subscribers on a throwaway Redis (or yours); their metrics."""
from __future__ import annotations

import argparse
import asyncio

from fanout.cli import EXIT_FAIL, EXIT_PASS, redis_url


def add_parser(sub) -> None:
    demo = sub.add_parser("demo", help="one publisher, two subscribers on a throwaway Redis; print their metrics")
    demo.add_argument("--events", type=int, default=20, help="events to publish (default 20)")
    demo.add_argument("--redis-url", metavar="URL", default=None, help="Redis to use (default: $REDIS_URL, else throwaway)")


def main(args: argparse.Namespace) -> int:
    from fanout import BridgeConfig, RedisEventBridge

    async def go(url: str) -> bool:
        host = RedisEventBridge(BridgeConfig(url=url, instance_id="websocket-host", enable_subscription=False))
        bots = [RedisEventBridge(BridgeConfig(url=url, instance_id=f"bot-{i}", enable_publishing=False)) for i in (1, 2)]
        got = {b.instance_id: 0 for b in bots}
        for b in bots:
            b.on("*", lambda env, b=b: got.__setitem__(b.instance_id, got[b.instance_id] + 1))
        async with host:
            for b in bots:
                await b.start()
            kinds = ("ticker", "trade", "orderbook", "candle")
            for k in range(args.events):
                await host.publish(kinds[k % 4], {"symbol": "BTC/USDT", "k": k})
            for _ in range(200):
                if all(v >= args.events for v in got.values()):
                    break
                await asyncio.sleep(0.01)
            print(f"{'instance':<16}{'connected':>10}{'published':>10}{'received':>10}{'self':>6}{'errors':>7}{'gaps':>6}{'subs':>6}")
            for b in [host, *bots]:
                m = b.metrics()
                print(f"{m['instance_id']!s:<16}{str(m['connected']):>10}{m['published']:>10}{m['received']:>10}"
                      f"{m['self_filtered']:>6}{m['errors']:>7}{m['gaps']:>6}{m['subscriptions']:>6}")
            for b in bots:
                await b.close()
        ok = all(v == args.events for v in got.values())
        print(f"each bot received {'all' if ok else 'NOT all'} {args.events} events: {'PASS' if ok else 'FAIL'}")
        return ok

    url = redis_url(args)
    if url:
        return EXIT_PASS if asyncio.run(go(url)) else EXIT_FAIL
    from fanout.lab.servers import RedisServer  # needs no extra: only a redis-server binary

    with RedisServer() as srv:
        print(f"throwaway redis-server {srv.version()} at {srv.safe_url}")
        return EXIT_PASS if asyncio.run(go(srv.url)) else EXIT_FAIL
