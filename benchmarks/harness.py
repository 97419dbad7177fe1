"""One measured step: a fresh redis-server, a CPU sampler, one run of one harness, the facts.

``measure(harness, instances, rate, ...)`` returns a plain dict (JSON-able) with delivery,
open-loop latency (from the time each event was *due*), achieved rate, schedule lag,
disconnections, the Python process's and redis-server's CPU over the active window, and the
verdict of the knee criteria (``passed``, ``reason``).

Harnesses:

* ``fanout`` - ``fanout.lab.run.simulate`` in one process (``process_mode="single"``): N
  ``RedisEventBridge`` s, one ``publish_nowait`` loop per instance, every delivery recorded;
* ``fanout-processes`` - the same, the instances spread over one worker process per core;
* ``fanout-batch64`` - ``fanout-processes`` with ``batch_max=64`` (several events per message);
* ``fanout-auto`` - ``process_mode="auto"`` (what ``fanout run`` does: processes above one
  event loop's load);
* ``baseline`` - ``benchmarks.baseline``: redis-py PubSub subscribers, one publisher awaiting
  each publish;
* ``baseline-pipelined`` - the same, sending everything due at once in one pipeline.

The baselines and ``fanout`` run in this one Python process (one event loop); the process
harnesses' CPU is their workers' (``environment["instrument"]``). Every harness talks to a
redis-server on the same machine.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fanout.lab.instrument import run as run_loop
from fanout.lab.options import RunOptions
from fanout.lab.run import simulate
from fanout.analysis import analyse
from fanout.analysis.latency import latency_samples, raw_percentile_ms
from fanout.lab.servers.redis import RedisServer
from fanout.lab.scenario import Scenario

from .baseline import run_baseline

HARNESSES = ("fanout", "fanout-processes", "fanout-batch64", "fanout-auto", "baseline", "baseline-pipelined")
#: the harnesses that are fanout (the rest are the yardsticks)
FANOUT_HARNESSES = ("fanout", "fanout-processes", "fanout-batch64", "fanout-auto")
#: every event type, so message sizes span small tickers to order-book snapshots
EVENT_TYPES = ("ticker", "trade", "orderbook", "candle")
#: a step that has not finished after its schedule + this many seconds is abandoned (a hang is a bug)
STEP_SLACK_S = 60.0


@dataclass(frozen=True)
class Criteria:
    """When a step does not count as lossless and sustainable."""

    min_achieved_fraction: float = 0.95   # achieved rate >= 95 % of the target
    max_schedule_lag_p99_ms: float = 100.0  # publisher: p99 of (sent - due)
    max_latency_p99_ms: float = 500.0     # receivers keep up: p99 of (received - due)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery": "100 % of expected (every event to every other instance) within the drain bound",
            "disconnections": "no subscriber reconnect, seq gap, or output-buffer-limit disconnection",
            "publish_errors": "no failed publish",
            "min_achieved_fraction": self.min_achieved_fraction,
            "max_schedule_lag_p99_ms": self.max_schedule_lag_p99_ms,
            "max_latency_p99_ms": self.max_latency_p99_ms,
        }


#: a step whose Python or redis-server main thread waited for a CPU this share of the time was starved
CONTENDED_WAIT_PCT = 10.0


def _schedstat(path: str) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of one thread, from /proc schedstat."""
    try:
        with open(path) as f:
            run_ns, wait_ns, _ = f.read().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return float("nan"), float("nan")


def _psi_cpu_some_s() -> float:
    """Seconds during which some runnable task waited for a CPU (PSI, whole machine)."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def _proc_stat() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        steal = v[7] if len(v) > 7 else 0
        total = sum(v[:8])
        return (total - idle) / hz, steal / hz, total / hz
    except (OSError, ValueError):
        return float("nan"), float("nan"), float("nan")


SAMPLE_FIELDS = ("python_cpu", "redis_cpu", "python_wait", "redis_wait", "psi_some", "machine_busy",
                 "machine_steal", "machine_total")


class CpuSampler(threading.Thread):
    """Every ``interval_s``: this process's CPU time, redis-server's (INFO cpu used_cpu_user+sys),
    both main threads' run-queue wait (/proc/<pid>/schedstat: runnable but not running, i.e.
    starved by other processes), the machine's CPU pressure (PSI), busy and steal time.

    ``window(a_ns, b_ns)`` interpolates every clock at the window's ends."""

    def __init__(self, url: str, redis_pid: int | None = None, interval_s: float = 0.05) -> None:
        super().__init__(daemon=True, name="bench-cpu-sampler")
        import redis

        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._redis_stat = f"/proc/{redis_pid}/schedstat" if redis_pid else None
        self._self_stat = f"/proc/{os.getpid()}/schedstat"  # the main thread: the event loop
        self.interval_s = interval_s
        self.samples: list[tuple] = []
        self._stop_evt = threading.Event()

    def _redis_cpu(self) -> float:
        try:
            info = self._client.info("cpu")
            return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        except Exception:  # noqa: BLE001 - a missed sample is interpolated over
            return float("nan")

    def sample(self) -> None:
        t = time.time_ns()
        _, py_wait = _schedstat(self._self_stat)
        _, rd_wait = _schedstat(self._redis_stat) if self._redis_stat else (float("nan"), float("nan"))
        busy, steal, total = _proc_stat()
        self.samples.append((t, time.process_time(), self._redis_cpu(), py_wait, rd_wait, _psi_cpu_some_s(),
                             busy, steal, total))

    def run(self) -> None:
        self.sample()
        while not self._stop_evt.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)
        self.sample()
        self._client.close()

    def window(self, a_ns: int, b_ns: int) -> dict[str, float | None]:
        """Deltas of every clock over [a_ns, b_ns] (seconds), and ``wall_s``; None where unknown."""
        out: dict[str, float | None] = {"wall_s": None} | {f: None for f in SAMPLE_FIELDS}
        if len(self.samples) < 2 or b_ns <= a_ns:
            return out
        t_all = np.array([x[0] for x in self.samples], dtype=np.float64)
        a, b = float(max(a_ns, t_all[0])), float(min(b_ns, t_all[-1]))
        if b <= a:
            return out
        out["wall_s"] = (b - a) / 1e9
        for i, name in enumerate(SAMPLE_FIELDS, start=1):
            v = np.array([x[i] for x in self.samples], dtype=np.float64)
            ok = ~np.isnan(v)
            if ok.sum() >= 2:
                out[name] = float(np.interp(b, t_all[ok], v[ok]) - np.interp(a, t_all[ok], v[ok]))
        return out


class LogCounter(logging.Handler):
    """Counts what fanout logs at WARNING and above during a step (instead of printing it):
    under overload a bridge logs every failed publish."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.first is None:
            try:
                self.first = record.getMessage().split("\n")[0][:300]
            except Exception:  # noqa: BLE001
                self.first = str(record.msg)[:300]


@contextlib.contextmanager
def captured_fanout_logs():
    log = logging.getLogger("fanout")
    h = LogCounter()
    old = (log.propagate, log.level)
    log.addHandler(h)
    log.propagate = False
    try:
        yield h
    finally:
        log.removeHandler(h)
        log.propagate, _ = old


class GcWatch:
    """Times every garbage collection during a step (``gc.callbacks``): a full collection over the
    run's recorded deliveries stops the event loop, and shows up as schedule lag."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._t = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((info.get("generation", -1), time.perf_counter() - self._t))

    def __enter__(self) -> "GcWatch":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)

    def facts(self) -> dict[str, Any]:
        p = [d for _, d in self.pauses]
        g2 = [d for g, d in self.pauses if g == 2]
        return {"collections": len(p), "full_collections": len(g2),
                "total_ms": round(1000 * sum(p), 3), "max_pause_ms": round(1000 * max(p), 3) if p else 0.0,
                "max_full_pause_ms": round(1000 * max(g2), 3) if g2 else 0.0}


def output_buffer_disconnections(srv: RedisServer) -> int:
    """Clients Redis cut off for overrunning their output buffer (INFO on >= 7.2, else the log)."""
    try:
        import redis

        c = redis.Redis.from_url(srv.url, socket_connect_timeout=2, socket_timeout=2)
        try:
            info = c.info("stats")
        finally:
            c.close()
        if "client_output_buffer_limit_disconnections" in info:
            return int(info["client_output_buffer_limit_disconnections"])
    except Exception:  # noqa: BLE001 - fall back to the log
        pass
    try:
        return srv.logfile.read_text(errors="replace").count("overcoming of output buffer limits")
    except OSError:
        return 0


def achieved_rate(pubs) -> float | None:
    """Events per second Redis acknowledged: 1 / slope of a least-squares line through the
    acknowledgement times in schedule order. A constant lag or a short stall barely moves it;
    a publisher falling further and further behind flattens it."""
    if len(pubs) < 3:
        return None
    t = pubs.sort_values("t_intended", kind="stable")["t_acked"].to_numpy(dtype=np.float64) / 1e9
    k = np.arange(len(t), dtype=np.float64)
    slope = np.polyfit(k, t - t[0], 1)[0]
    return float(1.0 / slope) if slope > 0 else None


def _first_error(rec) -> str | None:
    bad = rec.publications.loc[~rec.publications["ok"], "error"]
    return str(bad.iloc[0])[:300] if len(bad) else None


def _r3(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def scenario_for(instances: int, rate: float, duration_s: float, warmup_s: float, drain_s: float,
                 seed: int = 20251017, harness: str = "fanout") -> Scenario:
    return Scenario(name=f"bench-{instances}x{rate:g}", instances=instances, duration_s=duration_s,
                    rate_per_s=float(rate), warmup_s=warmup_s, drain_timeout_s=drain_s,
                    event_types=EVENT_TYPES, key_prefix="ws:", seed=seed, min_delivery_pct=99.999,
                    max_avg_latency_ms=1e9,
                    health_check_s=30.0, process_mode="auto" if harness == "fanout-auto" else "single",
                    batch_max=64 if harness == "fanout-batch64" else 1)


async def _run(harness: str, sc: Scenario, srv: RedisServer, spin_s: float):
    if harness in ("fanout-processes", "fanout-batch64"):
        from fanout.lab.processes import simulate_processes
        from fanout.lab.simulator import new_run_id

        return await simulate_processes(sc, srv.url, new_run_id(sc), options=RunOptions(spin_s=spin_s),
                                        reason=f"benchmark harness {harness}: a worker process per core",
                                        per_core=True)
    if harness in ("fanout", "fanout-auto"):
        # spin_s: the default (1.5 ms of yielding before each due time) sends on time but keeps the
        # event loop busy whenever an event is less than 1.5 ms away, so CPU% would measure waiting;
        # knee and CPU runs turn it off for both harnesses
        return await simulate(sc, redis_url=srv.url, progress=False, server=srv, options=RunOptions(spin_s=spin_s))
    if harness == "baseline":
        return await run_baseline(sc, srv.url, pipelined=False, spin_s=spin_s)
    if harness == "baseline-pipelined":
        return await run_baseline(sc, srv.url, pipelined=True, spin_s=spin_s)
    raise ValueError(f"unknown harness {harness!r} (known: {', '.join(HARNESSES)})")


def _pct(part: float | None, wall: float | None) -> float | None:
    return None if part is None or not wall else round(100 * part / wall, 3)


def cpu_facts(cpu: dict[str, float | None], received: int, instrument: dict | None = None,
              harness: str = "fanout") -> dict[str, float | None]:
    """CPU over the active window per 1,000 deliveries (= µs per delivery). For the process
    harnesses the Python CPU is the workers' (from the run's instrument block, raw: spin included)."""
    wall = cpu["wall_s"]
    per_k = lambda x: None if x is None or not received else round(1e6 * x / received, 3)  # noqa: E731
    if instrument and instrument.get("process_mode") == "processes" and instrument.get("workers"):
        ws = instrument["workers"].values()
        py = sum(w.get("cpu_s_raw", w["cpu_s"]) for w in ws)
        w_wall = max(w["wall_s"] for w in ws) or None
        return {"window_s": _r3(wall), "python_cpu_pct": _pct(py, w_wall), "redis_cpu_pct": _pct(cpu["redis_cpu"], wall),
                "python_cpu_ms_per_1k_deliveries": per_k(py), "redis_cpu_ms_per_1k_deliveries": per_k(cpu["redis_cpu"]),
                "python_processes": len(instrument["workers"])}
    return {
        "window_s": _r3(wall),
        "python_cpu_pct": _pct(cpu["python_cpu"], wall),
        "redis_cpu_pct": _pct(cpu["redis_cpu"], wall),
        "python_cpu_ms_per_1k_deliveries": per_k(cpu["python_cpu"]),
        "redis_cpu_ms_per_1k_deliveries": per_k(cpu["redis_cpu"]),
    }


def contention_facts(cpu: dict[str, float | None]) -> dict[str, Any]:
    """How much other processes got in the way: run-queue waits, CPU pressure, steal, others' CPU."""
    wall = cpu["wall_s"]
    cores = os.cpu_count() or 1
    total = cpu["machine_total"]
    busy_pct = None if not total else round(100 * cores * (cpu["machine_busy"] or 0) / total, 1)
    steal_pct = None if not total else round(100 * cores * (cpu["machine_steal"] or 0) / total, 1)
    ours = (_pct(cpu["python_cpu"], wall) or 0) + (_pct(cpu["redis_cpu"], wall) or 0)
    out = {
        "python_runqueue_wait_pct": _pct(cpu["python_wait"], wall),
        "redis_runqueue_wait_pct": _pct(cpu["redis_wait"], wall),
        "cpu_pressure_some_pct": _pct(cpu["psi_some"], wall),
        "machine_busy_pct_of_one_core": busy_pct,
        "steal_pct_of_one_core": steal_pct,
        "other_processes_cpu_pct_of_one_core": None if busy_pct is None else round(max(0.0, busy_pct - ours), 1),
    }
    waits = [x for x in (out["python_runqueue_wait_pct"], out["redis_runqueue_wait_pct"]) if x is not None]
    out["contended"] = bool(waits and max(waits) >= CONTENDED_WAIT_PCT)
    return out


def judge(step: dict[str, Any], criteria: Criteria) -> list[str]:
    """Why a step is not lossless and sustainable (empty: it passed). Disconnections first."""
    why: list[str] = []
    cut = step["reconnects"] + step["disconnects"] + step["output_buffer_disconnections"]
    if cut or not step["all_connected"]:
        why.append(f"subscriber disconnected (reconnects {step['reconnects']}, disconnects {step['disconnects']}, "
                   f"output-buffer-limit disconnections {step['output_buffer_disconnections']})")
    if step["publish_failed"]:
        first = step.get("publish_errors_sample")
        why.append(f"{step['publish_failed']} publishes failed" + (f" ({first})" if first else ""))
    if step["gaps"]:
        cause = "after failed publishes" if step["publish_failed"] else "without a failed publish: lost in transit"
        why.append(f"receivers counted {step['gaps']} seq gaps ({cause})")
    if step["delivery_pct"] < 100.0:
        why.append(f"delivery {step['delivery_pct']:.3f}% < 100% ({step['missing']} of {step['expected']} "
                   f"deliveries not received within the {step['drain_timeout_s']:g}s drain)")
    ach = step["achieved_rate"]
    if ach is None or ach < criteria.min_achieved_fraction * step["target_rate"]:
        why.append(f"publisher behind: achieved {ach or 0:.0f}/s < {criteria.min_achieved_fraction:.0%} of "
                   f"{step['target_rate']:g}/s")
    judge = step.get("judge_p99_ms") or {}
    lag = judge.get("schedule_lag", step["schedule_lag_p99_ms"])
    if lag is not None and lag > criteria.max_schedule_lag_p99_ms:
        why.append(f"publisher behind: schedule lag p99 {lag:.1f} ms > {criteria.max_schedule_lag_p99_ms:g} ms")
    p99 = judge.get("latency", step["latency"]["p99_ms"])
    if p99 is not None and p99 > criteria.max_latency_p99_ms:
        why.append(f"receivers not keeping up: latency p99 {p99:.1f} ms > {criteria.max_latency_p99_ms:g} ms")
    return why


def measure(harness: str, instances: int, rate: float, *, duration_s: float, warmup_s: float = 0.5,
            drain_s: float = 2.0, spin_s: float = 0.0, criteria: Criteria = Criteria(),
            sample_interval_s: float = 0.05) -> dict[str, Any]:
    """One step on a fresh redis-server; bounded by the schedule + drain + ``STEP_SLACK_S``."""
    sc = scenario_for(instances, rate, duration_s, warmup_s, drain_s, harness=harness)
    gc.collect()
    load = os.getloadavg()[0]
    try:
        with RedisServer() as srv:
            sampler = CpuSampler(srv.url, srv.pid, sample_interval_s)
            sampler.start()
            try:
                bound = warmup_s + duration_s + drain_s + STEP_SLACK_S
                with captured_fanout_logs() as logs, GcWatch() as gcw:
                    rec = run_loop(asyncio.wait_for(_run(harness, sc, srv, spin_s), bound))
            finally:
                sampler.stop()
            obl = output_buffer_disconnections(srv)
    except Exception as exc:  # noqa: BLE001 - a step that breaks is a failed step, with its reason
        why = f"step error: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return error_step(harness, instances, rate, duration_s, warmup_s, drain_s, spin_s, why, load)
    f = analyse(rec)
    o, lat = f.overall, f.latency
    pubs = rec.publications[rec.publications["ok"]]
    n_ok = len(pubs)
    t_first_due = int(pubs["t_intended"].min()) if n_ok else rec.t0
    achieved = achieved_rate(pubs)
    t_last_rx = int(rec.deliveries["t_received"].max()) if len(rec.deliveries) else rec.t_end
    active_end = max(t_last_rx, int(pubs["t_acked"].max()) if n_ok else 0)
    cpu = sampler.window(t_first_due, active_end)
    received = int(o["received"])
    wall = cpu["wall_s"]
    step: dict[str, Any] = {
        "harness": harness, "instances": instances, "target_rate": float(rate),
        "duration_s": duration_s, "warmup_s": warmup_s, "drain_timeout_s": drain_s, "spin_s": spin_s,
        "published": int(o["published"]), "publish_failed": int(o["publish_failed"]),
        "expected": int(o["expected"]), "received": received, "missing": int(o["missing"]),
        "delivery_pct": float(o["delivery_pct"]),
        "achieved_rate": _r3(achieved),
        "schedule_lag_p99_ms": _r3(o["schedule_lag_p99_ms"]),
        # the knee's judgement screens on p99 whatever the sample count (a percentile too few samples
        # carry is withheld from what is shown, never from what is judged)
        "judge_p99_ms": {"latency": _r3(raw_percentile_ms(latency_samples(rec)["lat_ns"], 99.0)),
                         "schedule_lag": _r3(raw_percentile_ms(pubs["t_sent"] - pubs["t_intended"], 99.0))},
        "deliveries_per_s": _r3(received / wall) if wall else None,
        "latency": {k: _r3(lat[k]) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms", "avg_ms")}
                   | {"count": int(lat["count"]), "negative": int(lat["negative"]), "withheld": dict(lat["withheld"])},
        "latency_from_sent": {k: _r3(f.latency_sent[k]) for k in ("p50_ms", "p99_ms", "max_ms")},
        "reconnects": int(o["reconnects"]), "gaps": int(o["gaps"]),
        "disconnects": int(rec.redis_stats.get("baseline_disconnects", 0)),
        "output_buffer_disconnections": int(obl),
        "all_connected": bool(rec.instances["connected"].all()),
        "duplicates": int(o["duplicates"]), "self_received": int(o["self_received"]),
        "gc": gcw.facts(),
        "warnings_logged": logs.count, "first_warning": logs.first,
        "publish_errors_sample": _first_error(rec),
        "cpu": cpu_facts(cpu, received, rec.environment.get("instrument"), harness),
        "contention": contention_facts(cpu),
        "instrument": rec.environment.get("instrument"),
        "loadavg_1m_before": round(load, 2),
        "redis_version": rec.environment.get("redis_server"),
    }
    why = judge(step, criteria)
    step["passed"] = not why
    step["reason"] = "; ".join(why)
    del rec, f
    gc.collect()
    return step


def error_step(harness: str, instances: int, rate: float, duration_s: float, warmup_s: float, drain_s: float,
               spin_s: float, why: str, load: float) -> dict[str, Any]:
    """A step that could not be measured: every field present, nothing measured, failed with ``why``."""
    return {
        "harness": harness, "instances": instances, "target_rate": float(rate), "duration_s": duration_s,
        "warmup_s": warmup_s, "drain_timeout_s": drain_s, "spin_s": spin_s, "published": 0, "publish_failed": 0,
        "expected": 0, "received": 0, "missing": 0, "delivery_pct": 0.0, "achieved_rate": None,
        "schedule_lag_p99_ms": None, "deliveries_per_s": None,
        "latency": dict.fromkeys(("p50_ms", "p99_ms", "p999_ms", "max_ms", "avg_ms")) | {"count": 0, "negative": 0},
        "latency_from_sent": dict.fromkeys(("p50_ms", "p99_ms", "max_ms")),
        "reconnects": 0, "gaps": 0, "disconnects": 0, "output_buffer_disconnections": 0, "all_connected": False,
        "duplicates": 0, "self_received": 0,
        "gc": {"collections": 0, "full_collections": 0, "total_ms": 0.0, "max_pause_ms": 0.0, "max_full_pause_ms": 0.0},
        "warnings_logged": 0, "first_warning": None, "publish_errors_sample": None,
        "cpu": dict.fromkeys(("window_s", "python_cpu_pct", "redis_cpu_pct", "python_cpu_ms_per_1k_deliveries",
                              "redis_cpu_ms_per_1k_deliveries")),
        "contention": dict.fromkeys(("python_runqueue_wait_pct", "redis_runqueue_wait_pct", "cpu_pressure_some_pct",
                                     "machine_busy_pct_of_one_core", "steal_pct_of_one_core",
                                     "other_processes_cpu_pct_of_one_core")) | {"contended": False},
        "loadavg_1m_before": round(load, 2), "redis_version": None, "passed": False, "reason": why, "error": True,
    }


def bottleneck(step: dict[str, Any] | None, cores: int | None = None) -> str:
    """Which process was saturated during ``step``, and how much other processes got in the way."""
    if not step or step["cpu"]["python_cpu_pct"] is None:
        return "unknown (no CPU samples)"
    py, rd = step["cpu"]["python_cpu_pct"], step["cpu"]["redis_cpu_pct"] or 0.0
    c = step.get("contention") or {}
    pw, rw = c.get("python_runqueue_wait_pct"), c.get("redis_runqueue_wait_pct")
    other = c.get("other_processes_cpu_pct_of_one_core")
    g = (step.get("gc") or {}).get("max_pause_ms")
    ctx = (f"; run-queue wait: Python {_fmt0(pw)}%, redis-server {_fmt0(rw)}%; other processes "
           f"{_fmt0(other)}% of a core; longest GC pause {_fmt0(g)} ms")
    who = "fanout's" if step["harness"] == "fanout" else "the baseline's"
    if py >= 85:
        return f"the Python process ({who} one event loop) is CPU-bound: {py:.0f}% of a core, redis-server {rd:.0f}%" + ctx
    if rd >= 85:
        return f"redis-server is CPU-bound: {rd:.0f}% of a core, Python {py:.0f}%" + ctx
    if c.get("contended"):
        return (f"starved by other processes on the {cores or '?'} cores (Python {py:.0f}%, redis-server {rd:.0f}% "
                f"of a core)" + ctx)
    return (f"neither process saturated a core (Python {py:.0f}%, redis-server {rd:.0f}%): waiting on round "
            f"trips or event-loop stalls, not CPU" + ctx)


def _fmt0(x: float | None) -> str:
    return "?" if x is None else f"{x:.0f}"
