"""Bounded admin calls the local Cluster and Sentinel setups make to their own nodes (redis-py, sync)."""
from __future__ import annotations

import time

from fanout.errors import RedisServerError

HOST = "127.0.0.1"


def command(host: str, port: int, *args, timeout: float = 1.0):
    """One command on a fresh connection (sync, bounded); the decoded reply, or an exception."""
    import redis

    c = redis.Redis(host=host, port=port, socket_connect_timeout=timeout, socket_timeout=timeout,
                    decode_responses=True)
    try:
        return c.execute_command(*args)
    finally:
        c.close()


def info(host: str, port: int, section: str | None = None) -> dict[str, str]:
    """INFO [section] or CLUSTER INFO (``section="cluster"``) as a plain {key: value} dict of strings."""
    raw = command(host, port, *(("CLUSTER", "INFO") if section == "cluster" else ("INFO", section or "default")))
    if isinstance(raw, dict):  # redis-py parses INFO
        return {k: str(v) for k, v in raw.items()}
    out = {}
    for line in str(raw).splitlines():
        k, _, v = line.partition(":")
        if v:
            out[k.strip()] = v.strip()
    return out


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.05):
    """Call ``predicate()`` until it returns something true (returned); raise RedisServerError after
    ``timeout_s``, naming ``what`` and the last error a call raised."""
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = predicate()
            if got:
                return got
        except Exception as exc:  # noqa: BLE001 - a node still starting; keep asking until the bound
            last_exc = exc
        time.sleep(interval_s)
    raise RedisServerError(f"{what}: not reached within {timeout_s:g}s"
                           + (f" (last error: {str(last_exc).splitlines()[0] if str(last_exc) else last_exc!r})"
                              if last_exc else ""))
