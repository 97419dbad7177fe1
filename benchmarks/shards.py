"""Deliveries/s against shard count and instance count, with the CPU each side spends.

    python -m benchmarks.shards                                # the table in docs/scaling.md
    python -m benchmarks.shards --shards 1,3 --instances 3,10 --rates 300,2000 --duration 3

One step = a fresh backend (shards=1: one redis-server, transport pubsub; shards=S>=3: a local
S-master Redis Cluster, transport sharded with S partitions, so each master owns one partition of
every event type), then ``fanout.lab.run.simulate`` at a fixed open-loop rate. Reported per step:
offered and achieved deliveries/s (deliveries = events x (instances - 1)), delivery %, p99
latency, the Python process's CPU (``time.process_time``) and every Redis node's CPU
(``INFO cpu``, user + sys, summed and the busiest node) over the step, each per 1,000 deliveries.
Everything runs on this one machine: the clients in one Python process (one event loop).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import redis

from fanout.analysis import analyse
from fanout.lab.servers import LocalCluster
from fanout.lab.servers.redis import RedisServer
from fanout.lab.scenario import Scenario
from fanout.lab.run import simulate

#: six symbols, two per partition when there are three (crc32 % 3), so 3 partitions carry equal load
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "DOGE/USDT", "DOT/USDT", "NEAR/USDT")
EVENT_TYPES = ("ticker", "trade", "orderbook", "candle")


def _cpu(ports: list[int]) -> dict[int, float]:
    out = {}
    for p in ports:
        c = redis.Redis(host="127.0.0.1", port=p, socket_timeout=2)
        try:
            info = c.info("cpu")
            out[p] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        finally:
            c.close()
    return out


def step(shards: int, instances: int, rate: float, duration: float) -> dict:
    sc = Scenario(name=f"shards-{shards}-i{instances}-r{rate:g}", instances=instances, duration_s=duration,
                  rate_per_s=rate, event_types=EVENT_TYPES, symbols=SYMBOLS, drain_timeout_s=3.0,
                  transport="pubsub" if shards == 1 else "sharded",
                  **({} if shards == 1 else {"cluster_masters": shards, "shard_partitions": shards}))
    backend = RedisServer() if shards == 1 else LocalCluster(masters=shards)
    with backend as srv:
        ports = [srv.port] if shards == 1 else [n.port for n in srv.masters()]
        cpu0, py0 = _cpu(ports), time.process_time()
        rec = asyncio.run(simulate(sc, redis_url=srv.url, server=srv, progress=False))
        cpu1, py1 = _cpu(ports), time.process_time()
    f = analyse(rec)
    n_del = len(rec.deliveries)
    expected = int(f.overall["expected"])
    span_s = max(1e-9, (int(rec.deliveries["t_received"].max()) - rec.t0) / 1e9) if n_del else duration
    redis_cpu = {p: cpu1[p] - cpu0[p] for p in ports}
    k = max(n_del, 1) / 1000
    return {
        "shards": shards, "instances": instances, "rate_events_s": rate,
        "offered_deliveries_s": round(rate * (instances - 1)),
        "achieved_deliveries_s": round(n_del / max(duration, span_s)),
        "delivery_pct": round(100.0 * n_del / expected, 2) if expected else None,
        "latency_p99_ms": f.latency.get("p99_ms") if isinstance(f.latency, dict) else None,
        "py_cpu_ms_per_1k": round((py1 - py0) * 1000 / k, 1),
        "redis_cpu_ms_per_1k_total": round(sum(redis_cpu.values()) * 1000 / k, 2),
        "redis_cpu_ms_per_1k_busiest_node": round(max(redis_cpu.values()) * 1000 / k, 2),
        "redis_cpu_s_per_node": [round(v, 3) for v in redis_cpu.values()],
    }


COLUMNS = ["shards", "instances", "rate_events_s", "offered_deliveries_s", "achieved_deliveries_s", "delivery_pct",
           "latency_p99_ms", "py_cpu_ms_per_1k", "redis_cpu_ms_per_1k_total", "redis_cpu_ms_per_1k_busiest_node"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.shards", description=__doc__.splitlines()[0])
    ap.add_argument("--shards", default="1,3")
    ap.add_argument("--instances", default="3,10")
    ap.add_argument("--rates", default="300,2000", help="events/s, total across instances")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    rows = []
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for s in [int(x) for x in a.shards.split(",")]:
        for n in [int(x) for x in a.instances.split(",")]:
            for r in [float(x) for x in a.rates.split(",")]:
                row = step(s, n, r, a.duration)
                rows.append(row)
                cells = []
                for c in COLUMNS:
                    v = row[c]
                    cells.append(f"{v:.2f}" if isinstance(v, float) and c == "latency_p99_ms" else str(v))
                print("| " + " | ".join(cells) + " |", flush=True)
    print(f"# load average after: {os.getloadavg()}; cores: {os.cpu_count()}", file=sys.stderr)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
