"""A soak: 5 instances, one worker process each, at 500 events/s for 10 minutes (``--small``: 30 s).

Per instance: its worker's RSS (sampled every 0.25 s by the run's ResourceSampler), the slope of a
least-squares line through it after the first tenth of the run, and how much of that slope the
lab's recorder explains (it keeps every delivery: the bytes it retains per delivery are measured
here with tracemalloc on real envelopes); 0 lost; p99 of the first and the last window
(a minute; 10 s small) of events."""
from __future__ import annotations

import time
import tracemalloc

import numpy as np

from fanout.events import envelope_from, parse_message
from fanout.lab.recorder import Deliveries
from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario
from fanout.lab.servers import RedisServer

from .common import CaseResult, Sizes, data_dir, keys_left, wire_samples
from .summary import account, p99_ms

#: a bridge's own memory may grow this much per minute (beyond the recorder's) and still pass
MAX_SLOPE_MB_MIN = 0.5
#: the last window's p99 may be this much worse than the first's: max(RATIO x, first + SLACK_MS)
RATIO, SLACK_MS = 2.0, 2.0


def recorder_bytes_per_delivery(n: int = 20_000) -> float:
    """Bytes the recorder retains per delivery (preallocated columns aside: they are allocated at
    the start): the id, source and type strings each decoded envelope brings."""
    raws = wire_samples(n, source="test-instance-1", seed=2)
    table = Deliveries("test-instance-0", time.time_ns, n)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for raw in raws:
        table(envelope_from(parse_message(raw), raw))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


def slopes(rec, duration_s: float, skip: float = 0.1) -> dict[str, dict]:
    """Per worker: RSS at the start and end of the publishing stretch, its first tenth left out (MB),
    and its slope (MB/min); the drain and the records' trip to the coordinator are left out too."""
    r = rec.resources
    t_from, t_to = rec.t0 + int(skip * duration_s * 1e9), rec.t0 + int(duration_s * 1e9)
    out = {}
    for target, g in r[r["kind"] == "process"].groupby("target"):
        g = g[(g["t"] >= t_from) & (g["t"] <= t_to)]
        if len(g) < 3:
            continue
        t_min = (g["t"].to_numpy(dtype=float) - rec.t0) / 60e9
        mb = g["memory_bytes"].to_numpy(dtype=float) / 2**20
        slope = float(np.polyfit(t_min, mb, 1)[0])
        out[str(target)] = {"rss_mb_first": round(float(mb[0]), 1), "rss_mb_last": round(float(mb[-1]), 1),
                            "slope_mb_per_min": round(slope, 3), "samples": len(g)}
    return out


def run(sz: Sizes) -> CaseResult:
    res = CaseResult(case="soak · pubsub")
    n, rate, dur, win = sz.soak_instances, sz.soak_rate, sz.soak_duration_s, sz.soak_window_s
    with RedisServer() as srv:
        sc = Scenario(name="chaos-soak", instances=n, duration_s=dur, rate_per_s=rate, transport="pubsub",
                      redis_url=srv.url, key_prefix="ws:", process_mode="processes", drain_timeout_s=5.0)
        rec = run_scenario(sc, progress=False, save_to=str(data_dir()))
        res.keys_left = keys_left([srv.url])
    res.injected = f"nothing but time: {n} instances (one process each) at {rate:g} events/s for {dur:g} s"
    account(res, rec, expect_lossless=True)
    per_delivery = recorder_bytes_per_delivery()
    deliveries_s = rate * (n - 1) / n            # what each instance receives per second
    recorder_slope = deliveries_s * per_delivery * 60 / 2**20
    s = slopes(rec, dur)
    workers = {k: v for k, v in s.items() if k.startswith("worker ")}
    for v in workers.values():
        v["beyond_recorder_mb_per_min"] = round(v["slope_mb_per_min"] - recorder_slope, 3)
    first = p99_ms(rec, due_from_ns=rec.t0, due_to_ns=rec.t0 + int(win * 1e9))
    last = p99_ms(rec, due_from_ns=rec.t0 + int((dur - win) * 1e9), due_to_ns=rec.t0 + int(dur * 1e9))
    res.figures.update({"memory": s, "recorder_bytes_per_delivery": round(per_delivery, 1),
                        "recorder_slope_mb_per_min": round(recorder_slope, 3),
                        "p99_first_window_ms": first, "p99_last_window_ms": last, "window_s": win})
    worst = max((v["beyond_recorder_mb_per_min"] for v in workers.values()), default=None)
    res.check(f"every instance's memory slope beyond the recorder's ≤ {MAX_SLOPE_MB_MIN} MB/min", worst is not None
              and worst <= MAX_SLOPE_MB_MIN, None if worst is None else f"worst {worst:+.3f} MB/min")
    res.check(f"p99 stable: last {win:g} s ≤ max({RATIO:g}× first, first + {SLACK_MS:g} ms)",
              first is not None and last is not None and last <= max(RATIO * first, first + SLACK_MS),
              f"first {first} ms, last {last} ms")
    slopes_txt = ", ".join(f"{k.removeprefix('worker test-instance-')}: {v['slope_mb_per_min']:+.2f}"
                           for k, v in sorted(workers.items()))
    res.notes.append(f"RSS slope per instance (MB/min) {slopes_txt}; the recorder retains {per_delivery:.0f} B per "
                     f"delivery = {recorder_slope:.2f} MB/min at {deliveries_s:g} deliveries/s per instance; p99 "
                     f"first {win:g} s {first} ms, last {win:g} s {last} ms")
    return res


CASES = {"soak": run}
