"""Resource usage beside a run: Redis (``INFO``) and the instrument's own processes (psutil).

A :class:`ResourceSampler` runs on its own thread while a run publishes and drains, every
:data:`SAMPLE_INTERVAL_S` for the first :data:`COARSE_AFTER_S` seconds and every
:data:`COARSE_INTERVAL_S` after that (a soak of an hour keeps about 3,600 rows per target, not
14,400: the rows are dicts in memory until the run ends): for each Redis node it reads ``INFO``
(memory, CPU counters, network byte counters, connected clients) and ``CLIENT LIST`` (the largest
client output buffer, ``omem``: a slow subscriber's backlog), for each process of the instrument
(this one, or the worker processes of a ``processes`` run) its CPU times and RSS. Every read is
bounded by a short socket timeout; a read that fails is counted (``errors``), never raised, so
sampling can never stop or slow a run beyond one read. A server that refuses ``CLIENT LIST`` (a
managed Redis may forbid it, or an ACL user lack it) is asked once: its ``omem_max_bytes`` is -1
(not readable) from then on, the refusal counted once and kept in
``environment["resource_sampling"]["client_list"]``. Before its first sample it reads, once, the
server settings a deployment must size (``CONFIG GET``) and the server's identity (``INFO server``).

The rows become the record's ``resources`` frame (columns: ``RESOURCE_COLUMNS`` in
:mod:`fanout.lab.record`, documented in docs/architecture.md); :func:`summarise` turns them into
per-target rates over the run's measured window ``[t0, t_end]``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pandas as pd

from fanout.lab.record import RESOURCE_COLUMNS, frame
from fanout.redact import redact_url

log = logging.getLogger(__name__)

#: seconds between two samples (the first COARSE_AFTER_S seconds)
SAMPLE_INTERVAL_S = 0.25
#: after this many seconds of sampling, samples are COARSE_INTERVAL_S apart: a long run's rows
#: (kept in memory until it ends) grow by a row per target per second, not four
COARSE_AFTER_S = 60.0
COARSE_INTERVAL_S = 1.0
#: ``omem_max_bytes`` when the server refuses CLIENT LIST (and on a process row: not a Redis client)
NOT_READABLE = -1
#: every Redis read: connect and answer within this
READ_TIMEOUT_S = 0.5
#: the server settings read once per run (CONFIG GET), for the report's deployment section
CONFIG_KEYS = ("client-output-buffer-limit", "maxmemory", "maxmemory-policy", "maxclients", "timeout",
               "tcp-keepalive", "appendonly", "save")
#: what INFO server says about the product (Valkey adds server_name and valkey_version)
SERVER_KEYS = ("redis_version", "server_name", "valkey_version", "redis_mode", "os", "arch_bits", "executable",
               "process_id", "tcp_port")
INSTRUMENT = "instrument"


class ResourceSampler:
    """Samples ``redis`` (target name -> URL) and ``processes`` (target name -> pid) on a thread.

    ``start()`` returns at once; ``stop()`` ends the thread within one read timeout;
    :meth:`attach` puts the rows and the settings read into a RunRecord."""

    def __init__(self, redis: dict[str, str], processes: dict[str, int], *,
                 interval_s: float = SAMPLE_INTERVAL_S, now_ns=time.time_ns, coarse_after_s: float = COARSE_AFTER_S,
                 coarse_interval_s: float = COARSE_INTERVAL_S) -> None:
        self.redis_targets = dict(redis)
        self.process_targets = dict(processes)
        self.interval_s = interval_s
        #: from ``coarse_after_s`` seconds after start on, samples are ``coarse_interval_s`` apart
        #: (never closer than ``interval_s``)
        self.coarse_after_s = coarse_after_s
        self.coarse_interval_s = max(interval_s, coarse_interval_s)
        #: per Redis target: "ok", or why CLIENT LIST is not readable (then it is not asked again)
        self.client_list: dict[str, str] = {}
        self.now_ns = now_ns
        self.rows: list[dict[str, Any]] = []
        self.config: dict[str, dict[str, str]] = {}
        self.server: dict[str, dict[str, str]] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self._procs: dict[str, Any] = {}

    # ---------------------------------------------------------------- life
    def start(self) -> "ResourceSampler":
        self._thread = threading.Thread(target=self._loop, name="fanout-resources", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 4 * READ_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("resource sampler did not stop within its bound; its last rows are left out")
        for c in self._clients.values():
            try:
                c.close()
            except (OSError, RuntimeError) as exc:  # closing a control connection: nothing to report
                log.debug("closing the sampler's connection: %s", exc)

    def __enter__(self) -> "ResourceSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def interval_at(self, elapsed_s: float) -> float:
        """Seconds to the next sample, ``elapsed_s`` after the sampler started."""
        return self.interval_s if elapsed_s < self.coarse_after_s else self.coarse_interval_s

    def _loop(self) -> None:
        self._read_settings()
        started = time.monotonic()
        while True:
            now = time.monotonic()
            t_next = now + self.interval_at(now - started)
            self.sample()
            if self._stop.wait(max(0.0, t_next - time.monotonic())):
                break
        self.sample()  # one last sample at the end, so the window is covered to its end

    # ---------------------------------------------------------------- reads
    def _client(self, name: str):
        c = self._clients.get(name)
        if c is None:
            import redis

            c = redis.Redis.from_url(self.redis_targets[name], socket_timeout=READ_TIMEOUT_S,
                                     socket_connect_timeout=READ_TIMEOUT_S)
            self._clients[name] = c
        return c

    def _read_settings(self) -> None:
        import redis

        for name in self.redis_targets:
            try:
                info = self._client(name).info("server")
                self.server[name] = {k: str(info[k]) for k in SERVER_KEYS if k in info}
            except (redis.RedisError, OSError) as exc:
                self.server[name] = {"error": str(exc).splitlines()[0]}
            settings: dict[str, str] = {}
            for key in CONFIG_KEYS:
                try:
                    got = self._client(name).config_get(key)
                    settings.update({str(k): str(v) for k, v in got.items()})
                except (redis.RedisError, OSError) as exc:  # managed services often forbid CONFIG
                    settings[key] = f"not readable: {str(exc).splitlines()[0]}"
            self.config[name] = settings

    def sample(self) -> None:
        """One row per target, now (a failed read is counted and left out)."""
        import redis

        t = self.now_ns()
        for name in self.redis_targets:
            try:
                i = self._client(name).info()
            except (redis.RedisError, OSError) as exc:
                self.errors += 1
                log.debug("INFO from %s failed: %s", name, exc)
                continue
            self.rows.append({
                "t": t, "target": name, "kind": "redis", "pid": int(i.get("process_id", 0)),
                "cpu_s": float(i.get("used_cpu_sys", 0.0)) + float(i.get("used_cpu_user", 0.0)),
                "memory_bytes": int(i.get("used_memory", 0)), "memory_peak_bytes": int(i.get("used_memory_peak", 0)),
                "net_in_bytes": int(i.get("total_net_input_bytes", 0)),
                "net_out_bytes": int(i.get("total_net_output_bytes", 0)),
                "clients": int(i.get("connected_clients", 0)), "omem_max_bytes": self._omem_max(name),
            })
        for name, pid in self.process_targets.items():
            row = self._process_row(name, pid, t)
            if row is not None:
                self.rows.append(row)

    def _omem_max(self, name: str) -> int:
        """The largest output buffer (``omem``, bytes) over the server's clients in ``CLIENT LIST``:
        a subscriber Redis cannot write to as fast as it publishes holds its backlog there. -1
        when not readable: refused (asked once, counted once) or, this time, failed."""
        import redis

        if self.client_list.get(name, "ok") != "ok":
            return NOT_READABLE
        try:
            clients = self._client(name).client_list()
        except redis.ResponseError as exc:  # NOPERM, or a renamed/disabled command: not asked again
            self.client_list[name] = f"not readable: {str(exc).splitlines()[0]}"
            self.errors += 1
            log.info("CLIENT LIST on %s refused (%s): the output buffers are not sampled", name, exc)
            return NOT_READABLE
        except (redis.RedisError, OSError) as exc:
            self.errors += 1
            log.debug("CLIENT LIST from %s failed: %s", name, exc)
            return NOT_READABLE
        self.client_list[name] = "ok"
        return max((_int(c.get("omem")) for c in clients), default=0)

    def _process_row(self, name: str, pid: int, t: int) -> dict[str, Any] | None:
        import psutil

        try:
            p = self._procs.get(name)
            if p is None:
                p = self._procs[name] = psutil.Process(pid)
            with p.oneshot():
                if p.status() == psutil.STATUS_ZOMBIE:  # ended, not yet reaped: no RSS to speak of
                    return None
                cpu = p.cpu_times()
                rss = int(p.memory_info().rss)
        except (psutil.Error, OSError) as exc:  # the process ended: it is simply not sampled any more
            self.errors += 1
            log.debug("psutil on %s (pid %s) failed: %s", name, pid, exc)
            return None
        return {"t": t, "target": name, "kind": "process", "pid": int(pid), "cpu_s": float(cpu.user + cpu.system),
                "memory_bytes": rss, "memory_peak_bytes": rss, "net_in_bytes": 0, "net_out_bytes": 0, "clients": 0,
                "omem_max_bytes": 0}

    # ---------------------------------------------------------------- into the record
    def frame(self) -> pd.DataFrame:
        return frame(list(self.rows), RESOURCE_COLUMNS)

    def attach(self, record) -> None:
        """Put the samples and the settings read into ``record`` (resources frame, environment)."""
        record.resources = self.frame()
        record.environment["redis_config"] = self.config
        record.environment["redis_info"] = self.server
        record.environment["cpu_model"] = cpu_model()
        record.environment["resource_sampling"] = {"interval_s": self.interval_s, "errors": self.errors,
                                                   "coarse_after_s": self.coarse_after_s,
                                                   "coarse_interval_s": self.coarse_interval_s,
                                                   "client_list": dict(self.client_list),
                                                   "targets": {"redis": list(self.redis_targets),
                                                               "processes": dict(self.process_targets)}}


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def cpu_model() -> str | None:
    """The CPU's model name (Linux ``/proc/cpuinfo``), or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def redis_targets(url: str, server=None) -> dict[str, str]:
    """The Redis nodes to sample: every master of a local cluster, else the run's URL."""
    masters = getattr(server, "masters", None)
    if callable(masters):
        try:
            return {f"redis {redact_url(m.url)}": m.url for m in masters()}
        except (OSError, RuntimeError, ValueError) as exc:  # a cluster that cannot list its masters: the URL
            log.debug("cluster masters not listed: %s", exc)
    return {"redis": url}


def for_run(url: str, server=None, processes: dict[str, int] | None = None) -> ResourceSampler:
    """The sampler for one run: its Redis node(s) and this process (or the given ones)."""
    return ResourceSampler(redis_targets(url, server), processes or {INSTRUMENT: os.getpid()})


# -------------------------------------------------------------------- from samples to rates

SUMMARY_COLUMNS = ["target", "kind", "samples", "cpu_pct", "cpu_pct_max", "memory_bytes", "memory_peak_bytes",
                   "net_in_per_s", "net_out_per_s", "clients_max", "omem_max_bytes"]


def positive_deltas(s: pd.Series) -> pd.Series:
    """Differences of a counter, a reset (the server restarted) counted as zero."""
    d = s.diff().fillna(0.0)
    return d.where(d >= 0, 0.0)


def summarise(resources: pd.DataFrame, t0: int = 0, t_end: int = 0) -> pd.DataFrame:
    """Per target over ``[t0, t_end]`` (the whole frame when not given): CPU % of one core (mean
    and the busiest interval), memory at the end and its peak, network bytes/s in and out, the
    most clients seen, the largest client output buffer seen (-1: not readable; 0 in a record made
    before it was sampled). Empty frame when nothing was sampled."""
    df = resources
    if t0 and t_end and len(df):
        slack = int((SAMPLE_INTERVAL_S if t_end - t0 < COARSE_AFTER_S * 1e9 else COARSE_INTERVAL_S) * 1e9)
        df = df[(df["t"] >= t0 - slack) & (df["t"] <= t_end + slack)]
    out = []
    for (target, kind), g in df.sort_values("t").groupby(["target", "kind"], sort=False):
        if len(g) < 2:
            continue
        dt = g["t"].diff().fillna(0) / 1e9
        span = float(dt.sum())
        cpu = positive_deltas(g["cpu_s"])
        per_interval = (cpu / dt.where(dt > 0)).dropna() * 100.0
        out.append({
            "target": target, "kind": kind, "samples": len(g),
            "cpu_pct": float(cpu.sum() / span * 100.0) if span > 0 else None,
            "cpu_pct_max": float(per_interval.max()) if len(per_interval) else None,
            "memory_bytes": int(g["memory_bytes"].iloc[-1]), "memory_peak_bytes": int(g["memory_peak_bytes"].max()),
            "net_in_per_s": float(positive_deltas(g["net_in_bytes"]).sum() / span) if span > 0 else None,
            "net_out_per_s": float(positive_deltas(g["net_out_bytes"]).sum() / span) if span > 0 else None,
            "clients_max": int(g["clients"].max()), "omem_max_bytes": int(g["omem_max_bytes"].max()),
        })
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


__all__ = ["ResourceSampler", "for_run", "redis_targets", "summarise", "SAMPLE_INTERVAL_S", "COARSE_AFTER_S",
           "COARSE_INTERVAL_S", "NOT_READABLE", "CONFIG_KEYS", "INSTRUMENT", "SUMMARY_COLUMNS"]
