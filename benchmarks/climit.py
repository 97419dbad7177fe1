"""The C limit: a hiredis publisher and subscribers (``cbench/hiredis_fanout.c``) on the same
Redis as the Python harnesses, built here with the system compiler and libhiredis.

``build()`` compiles once into ``benchmarks/build/`` (``cc -O2 ... -lhiredis``; on Debian/Ubuntu
``apt-get install libhiredis-dev``); when it cannot, every figure of this section is skipped with
the reason. ``measure(instances, pipeline)`` runs ``instances - 1`` subscribers (fanout's
deliveries: every other instance) and one publisher keeping ``pipeline`` PUBLISHes in flight,
with messages the mean size of fanout's envelopes (same payloads: ``SyntheticMarket``).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from fanout.events import EVENT_TYPES, EnvelopeWriter
from fanout.lab.market import SyntheticMarket
from fanout.lab.servers.redis import RedisServer

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "cbench" / "hiredis_fanout.c"
BINARY = HERE / "build" / "hiredis_fanout"
#: a C run longer than this is abandoned (the program itself stops after 10 s without progress)
TIMEOUT_S = 120.0


def build() -> tuple[Path | None, str]:
    """(binary, "") or (None, why it could not be built)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None, "no C compiler (cc/gcc/clang) on PATH"
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY, ""
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([cc, "-O2", "-o", str(BINARY), str(SOURCE), "-lhiredis"], capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        first = (p.stderr.strip().splitlines() or ["failed"])[0]
        return None, f"cannot build the C hiredis pair ({first}); apt-get install libhiredis-dev"
    return BINARY, ""


def mean_message_bytes(samples: int = 2000, book_depth: int = 5) -> int:
    """The mean size of fanout's wire envelopes for the simulator's payload mix (all four types)."""
    m = SyntheticMarket(random.Random(1), book_depth=book_depth)
    w = EnvelopeWriter("test-instance-0", "0123abcd")
    total = 0
    for k in range(samples):
        typ = EVENT_TYPES[k % len(EVENT_TYPES)]
        data = orjson.dumps(m.make(typ, "BTC/USDT", 1_760_000_000_000))
        total += len(w.write(w.head(typ, typ), k + 1, time.time_ns(), time.time_ns(), data))
    return total // samples


def measure(binary: Path, instances: int, pipeline: int, events: int, payload: int) -> dict[str, Any]:
    """One run on a fresh redis-server: deliveries/s, CPU µs per delivery (C process and Redis)."""
    import redis

    with RedisServer() as srv:
        c = redis.Redis.from_url(srv.url, socket_timeout=5)
        r0 = c.info("cpu")
        p = subprocess.run([str(binary), "127.0.0.1", str(srv.port), str(max(1, instances - 1)), str(events),
                            str(pipeline), str(payload)], capture_output=True, text=True, timeout=TIMEOUT_S)
        r1 = c.info("cpu")
        c.close()
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[0], "instances": instances, "pipeline": pipeline}
    out = json.loads(p.stdout)
    redis_cpu = (r1["used_cpu_user"] + r1["used_cpu_sys"]) - (r0["used_cpu_user"] + r0["used_cpu_sys"])
    n = max(1, out["deliveries"])
    out.update(instances=instances, client_cpu_us_per_delivery=round(1e6 * out["cpu_s"] / n, 3),
               redis_cpu_us_per_delivery=round(1e6 * redis_cpu / n, 3),
               redis_cpu_pct=round(100 * redis_cpu / out["seconds"], 1) if out["seconds"] else None)
    return out


def run_climit(instances: tuple[int, ...], quick: bool) -> dict[str, Any]:
    binary, why = build()
    payload = mean_message_bytes()
    res: dict[str, Any] = {"payload_bytes": payload, "skipped": why or None, "runs": []}
    if binary is None:
        return res
    for n in instances:
        for pipeline, events in ((64, 50_000 if quick else 400_000), (1, 5_000 if quick else 30_000)):
            res["runs"].append(measure(binary, n, pipeline, events, payload))
    return res


def limit_for(climit: dict[str, Any] | None, instances: int, pipeline: int = 64) -> float | None:
    """Deliveries/s of the C pair at ``instances`` (None when skipped or not measured)."""
    for r in (climit or {}).get("runs", ()):
        if r.get("instances") == instances and r.get("pipeline") == pipeline and r.get("complete"):
            return r["deliveries_per_s"]
    return None
