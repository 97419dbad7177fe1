"""A throwaway local Sentinel setup (master + replica + three Sentinels), for runs, tests and benchmarks.

    with LocalSentinel() as st:                        # master + replica + 3 sentinels
        st.url                      # the current master's URL
        st.sentinels                # ("127.0.0.1:P1", ...)
        st.fail_over()              # kill the master, wait until Sentinel promoted the replica

Real processes on loopback ports (``RedisServer`` underneath), every wait bounded. The Sentinels
run the same binary as the servers (``redis-server --sentinel`` or ``valkey-server --sentinel``),
the one :mod:`fanout.lab.servers.discovery` chose.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from fanout.errors import RedisServerError
from fanout.lab.servers import admin
from fanout.lab.servers.admin import HOST
from fanout.lab.servers.redis import RedisServer, ServerGroup, free_port, own_group

SENTINEL_MASTER = "fanout-master"


class _SentinelProcess:
    """One ``<server binary> <conf> --sentinel`` on a loopback port (its config file is its own)."""

    def __init__(self, master_port: int, name: str, quorum: int, down_after_ms: int, failover_timeout_ms: int,
                 binary: str) -> None:
        self.host = HOST
        self.port = free_port(HOST)
        self._dir = tempfile.mkdtemp(prefix="fanout-sentinel-")
        self.conf = Path(self._dir) / "sentinel.conf"
        self.conf.write_text("\n".join([
            f"port {self.port}", f"bind {HOST}", "daemonize no", "protected-mode no",
            f"dir {self._dir}", f"logfile {self._dir}/sentinel.log",
            f"sentinel monitor {name} {HOST} {master_port} {quorum}",
            f"sentinel down-after-milliseconds {name} {down_after_ms}",
            f"sentinel failover-timeout {name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1", ""]))
        self._proc = subprocess.Popen([binary, str(self.conf), "--sentinel"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      **own_group())

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


class LocalSentinel(ServerGroup):
    """A master, one replica (``--replicaof``) and three Sentinels (quorum 2) on loopback.

    ``down_after_ms`` (1000) and ``failover_timeout_ms`` (3000) are small so a failover takes
    about 2-4 s. The master name is :data:`SENTINEL_MASTER`."""

    def __init__(self, *, sentinels: int = 3, quorum: int = 2, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 3000, startup_timeout_s: float = 20.0) -> None:
        self.name = SENTINEL_MASTER
        self.n_sentinels = sentinels
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.startup_timeout_s = startup_timeout_s
        self.servers: list[RedisServer] = []
        self.sentinel_procs: list[_SentinelProcess] = []

    @property
    def sentinels(self) -> tuple[str, ...]:
        return tuple(s.addr for s in self.sentinel_procs)

    def bridge_options(self) -> dict:
        return {"sentinels": self.sentinels, "sentinel_master": self.name}

    def master_addr(self) -> tuple[str, int]:
        """Where the sentinels say the master is (the first sentinel that answers)."""
        for s in self.sentinel_procs:
            try:
                host, port = admin.command(s.host, s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                return host, int(port)
            except Exception:  # noqa: BLE001 - ask the next one
                continue
        raise RedisServerError("no sentinel answered")

    @property
    def master(self) -> RedisServer:
        _, port = self.master_addr()
        return next(s for s in self.servers if s.port == port)

    @property
    def url(self) -> str:
        return self.master.url

    @property
    def safe_url(self) -> str:
        return self.master.safe_url

    def members(self) -> list[RedisServer]:
        return self.servers

    def start(self) -> "LocalSentinel":
        fast_sync = ["--repl-diskless-sync-delay", "0"]  # the default waits 5 s before a replica's first sync
        master = RedisServer(host=HOST, extra_args=fast_sync)
        self.servers.append(master)
        master.start()
        replica = RedisServer(host=HOST, extra_args=[*fast_sync, "--replicaof", HOST, str(master.port)])
        self.servers.append(replica)
        replica.start()
        admin.wait_until(lambda: admin.info(HOST, replica.port, "replication").get("master_link_status") == "up",
              self.startup_timeout_s, "replica in sync with the master")
        binary = master.binary  # the sentinels run what the servers run
        for _ in range(self.n_sentinels):
            self.sentinel_procs.append(_SentinelProcess(master.port, self.name, self.quorum, self.down_after_ms,
                                                        self.failover_timeout_ms, binary))
        admin.wait_until(self._sentinels_ready, self.startup_timeout_s, "sentinels see the master, the replica and each other")
        return self

    def _sentinels_ready(self) -> bool:
        for s in self.sentinel_procs:
            m = admin.command(s.host, s.port, "SENTINEL", "MASTER", self.name)
            m = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m
            if int(m.get("num-other-sentinels", 0)) < self.n_sentinels - 1 or int(m.get("num-slaves", 0)) < 1 \
                    or "s_down" in m.get("flags", "") or "o_down" in m.get("flags", ""):
                return False
            reps = admin.command(s.host, s.port, "SENTINEL", "REPLICAS", self.name)
            reps = [dict(zip(r[::2], r[1::2])) if isinstance(r, list) else r for r in reps]
            if not any(r.get("master-link-status") == "ok" and "s_down" not in r.get("flags", "") for r in reps):
                return False
        return True

    def fail_over(self, timeout_s: float = 30.0) -> str:
        """SIGKILL the master; wait until every sentinel names the replica as master and it
        says ``role:master`` (bounded). Returns what happened."""
        old = self.master
        t = time.monotonic()
        old.kill()
        others = [s for s in self.servers if s is not old and s.running]

        def promoted():
            for s in self.sentinel_procs:
                _, port = admin.command(s.host, s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                if int(port) == old.port:
                    return None
            new = self.master
            return new if new in others and admin.info(new.host, new.port, "replication").get("role") == "master" else None

        new = admin.wait_until(promoted, timeout_s, f"Sentinel promoting a replica of :{old.port}", interval_s=0.1)
        return f"master :{old.port} SIGKILL; sentinels promoted :{new.port} after {time.monotonic() - t:.2f}s"

    def cleanup(self) -> None:
        for s in self.sentinel_procs:
            s.cleanup()
        for s in self.servers:
            s.cleanup()

    def __repr__(self) -> str:
        return f"LocalSentinel(servers={[s.port for s in self.servers]}, sentinels={list(self.sentinels)})"


__all__ = ["LocalSentinel", "SENTINEL_MASTER"]
