"""cProfile of one short fixed-rate run per harness: where the Python process spends its time.

cProfile slows Python code down (roughly 1.5-2x), so the absolute numbers are not the
benchmark's; the *shares* (which functions, which layers) are the evidence of what limits
throughput. Only the run itself is profiled (not the analysis afterwards).
"""
from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
from typing import Any

from fanout.lab.servers.redis import RedisServer

from .harness import _run, scenario_for

#: how functions are grouped into layers (first match wins, on "file:function")
LAYERS = (
    ("syscalls (socket send/recv, epoll)", ("method 'send'", "method 'recv'", "method 'poll'", "method 'sendall'",
                                            "method 'recv_into'")),
    ("pandas/numpy (record building)", ("pandas", "numpy")),
    ("payload generation (SyntheticMarket)", ("fanout/lab/market.py",)),
    ("JSON encode/decode (orjson)", ("orjson", "fanout/events.py")),
    ("fanout bridge (own echo, decode, self-filter, seq check, handlers)",
     ("fanout/bridge.py", "fanout/delivery.py", "fanout/publishing.py", "fanout/batching.py", "fanout/sequencing.py")),
    ("fanout transport (resp protocol, publishing connections, readers)", ("fanout/transports/",)),
    ("fanout simulator (schedule, publish loop, recorder)", ("fanout/lab/",)),
    ("baseline harness", ("benchmarks/baseline.py",)),
    ("redis-py (parsing, connections, PubSub)", ("redis/",)),
    ("asyncio event loop (tasks, futures, callbacks, timers)", ("asyncio/", "selectors.py", "_asyncio",
                                                                 "Context' objects", "heapq")),
    ("C builtins (isinstance, len, time_ns, ...)", ("~:",)),
)


def _layer(key: str) -> str:
    for name, needles in LAYERS:
        if any(n in key for n in needles):
            return name
    return "other"


#: call counts worth stating per published event: (label, file substring, function name)
PER_EVENT = (
    ("socket send() calls", "~", "<method 'send' of '_socket.socket' objects>"),
    ("socket recv() calls", "~", "<method 'recv' of '_socket.socket' objects>"),
    ("event-loop iterations (epoll)", "~", "<method 'poll' of 'select.epoll' objects>"),
    ("tasks created", "asyncio/base_events.py", "create_task"),
    ("futures created", "asyncio/base_events.py", "create_future"),
    ("timers scheduled (call_at)", "asyncio/base_events.py", "call_at"),
    ("callbacks scheduled (call_soon)", "asyncio/base_events.py", "_call_soon"),
    ("asyncio.wait_for calls", "asyncio/tasks.py", "wait_for"),
    ("orjson.loads calls", "~", "<orjson.loads>"),
)


def profile_run(harness: str, instances: int, rate: float, duration_s: float, *, spin_s: float = 0.0,
                top: int = 12) -> dict[str, Any]:
    sc = scenario_for(instances, rate, duration_s, warmup_s=0.2, drain_s=2.0)
    prof = cProfile.Profile()
    with RedisServer() as srv:
        async def go():
            prof.enable()
            try:
                return await asyncio.wait_for(_run(harness, sc, srv, spin_s), duration_s + 60)
            finally:
                prof.disable()

        rec = asyncio.run(go())
    from fanout.lab.schedule import schedule

    events = len(schedule(sc))  # every event the run published (warm-up included: it was profiled too)
    deliveries = events * (instances - 1)
    st = pstats.Stats(prof, stream=io.StringIO())
    total = st.total_tt or 1e-9
    rows = []
    layers: dict[str, float] = {}
    for (file, line, func), (cc, nc, tt, ct, callers) in st.stats.items():  # type: ignore[attr-defined]
        key = f"{file}:{func}"
        layers[_layer(key)] = layers.get(_layer(key), 0.0) + tt
        rows.append((tt, ct, nc, file, line, func))
    rows.sort(reverse=True)
    per_event = {}
    for label, fsub, fname in PER_EVENT:
        n = sum(v[1] for (file, _, func), v in st.stats.items()  # type: ignore[attr-defined]
                if func == fname and fsub in file)
        per_event[label] = round(n / events, 2) if events else None
    short = lambda f: f.split("site-packages/")[-1].split("/work/main/")[-1].split("lib/python3")[-1]  # noqa: E731
    return {
        "harness": harness, "instances": instances, "rate": rate, "duration_s": duration_s,
        "total_profiled_s": round(total, 3),
        "events": events, "deliveries": deliveries, "delivered": int(len(rec.deliveries)),
        "profiled_us_per_event_incl_setup_and_record": round(1e6 * total / events, 1) if events else None,
        "calls_per_event": per_event,
        "layers_pct_of_self_time": {k: round(100 * v / total, 1) for k, v in sorted(layers.items(), key=lambda x: -x[1])},
        "top_self_time": [
            {"function": f"{short(file)}:{line}({func})", "self_s": round(tt, 3), "cum_s": round(ct, 3),
             "calls": nc, "self_pct": round(100 * tt / total, 1)}
            for tt, ct, nc, file, line, func in rows[:top]
        ],
    }
