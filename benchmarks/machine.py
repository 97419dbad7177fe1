"""What the numbers were measured on: cores, CPU model, virtualisation, load, versions."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from typing import Any


def _cpuinfo() -> dict[str, Any]:
    model, mhz, hypervisor = None, None, False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name" and model is None:
                    model = val
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(val)
                elif key == "flags" and " hypervisor" in f" {val}":
                    hypervisor = True
    except OSError:
        pass
    return {"cpu_model": model or platform.processor() or None, "cpu_mhz": mhz, "hypervisor": hypervisor}


def _server_name() -> str | None:
    """The server a throwaway server runs here, in words ("Valkey 9.1.2 (implements Redis 7.2.4)")."""
    try:
        from fanout.lab.servers.discovery import chosen_server

        return str(chosen_server().server)
    except Exception:  # noqa: BLE001 - a fact we could not get is stated as null
        return None


def _redis_server_version() -> str | None:
    try:
        from fanout.lab.servers.redis import find_redis_server, redis_server_version

        return redis_server_version(find_redis_server())
    except Exception:  # noqa: BLE001 - a fact we could not get is stated as null
        return None


def _version(mod: str) -> str | None:
    try:
        m = __import__(mod)
        return str(getattr(m, "__version__", "installed"))
    except ImportError:
        return None


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _loop_name() -> str:
    """The event loop every harness runs on (``fanout.lab.instrument.run``: uvloop when installed)."""
    from fanout.lab.instrument import loop_name

    return loop_name()


def machine_info() -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        **_cpuinfo(),
        "memory_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "host": platform.node(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "redis_server": _redis_server_version(),
        "server": _server_name(),
        "redis_server_binary": shutil.which("redis-server"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "event_loop": _loop_name(),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "orjson": _version("orjson"),
        "fanout": _version("fanout"),
    }
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fanout"], capture_output=True, text=True,
                               timeout=5, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        info["git_commit"] = rev.stdout.strip() or None
        info["fanout_uncommitted_changes"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def one_line(m: dict[str, Any]) -> str:
    virt = ", virtualised" if m.get("hypervisor") else ""
    server = m.get("server") or f"Redis {m.get('redis_server')}"
    return (f"{m['cores']} cores ({m.get('cpu_model') or 'unknown CPU'}{virt}), {server}, "
            f"Python {m['python']}, redis-py {m.get('redis_py')}, hiredis {m.get('hiredis')}, "
            f"orjson {m.get('orjson')}; load avg at start {m['loadavg_at_start'][0]:.2f}")
