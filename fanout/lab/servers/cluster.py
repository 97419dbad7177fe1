"""Throwaway local Redis Cluster and Sentinel setups, for runs, tests and benchmarks.

    with LocalCluster(masters=3, replicas=1) as cl:    # 6 redis-servers, slots split evenly
        cl.url                      # one live node's URL (a bridge's startup node)
        cl.masters()                # RedisServer of every live master
        cl.fail_over()              # kill a master, wait until its replica took over (bounded)

    with LocalSentinel() as st:                        # master + replica + 3 sentinels
        st.url                      # the current master's URL
        st.sentinels                # ("127.0.0.1:P1", ...)
        st.fail_over()              # kill the master, wait until Sentinel promoted the replica

Both are real processes on loopback ports (``RedisServer`` underneath), every wait is
bounded, and ``bridge_options()`` gives the :class:`~fanout.bridge.BridgeConfig` keyword
arguments a bridge needs to use the setup (the simulator adds them to every bridge).
"""
from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from fanout.errors import RedisServerError
from fanout.lab.servers.redis import RedisServer, Throwaway, find_redis_server, free_port, redis_server_version

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SENTINEL_MASTER = "fanout-master"


def _cmd(host: str, port: int, *args: str, timeout: float = 1.0) -> str | list | int | None:
    """One command on a fresh connection (sync, bounded); the decoded reply, or an exception."""
    import redis

    c = redis.Redis(host=host, port=port, socket_connect_timeout=timeout, socket_timeout=timeout,
                    decode_responses=True)
    try:
        return c.execute_command(*args)
    finally:
        c.close()


def _info(host: str, port: int, section: str | None = None) -> dict[str, str]:
    """INFO [section] or CLUSTER INFO as a plain {key: value} dict (values as strings)."""
    raw = _cmd(host, port, *(("CLUSTER", "INFO") if section == "cluster" else ("INFO", section or "default")))
    if isinstance(raw, dict):  # redis-py parses INFO
        return {k: str(v) for k, v in raw.items()}
    out = {}
    for line in str(raw).splitlines():
        k, _, v = line.partition(":")
        if v:
            out[k.strip()] = v.strip()
    return out


def _wait(predicate, timeout_s: float, what: str, interval_s: float = 0.05):
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
    raise RedisServerError(f"{what}: not reached within {timeout_s:g}s" + (f" (last error: {last_exc})" if last_exc else ""))


class LocalCluster(Throwaway):
    """``masters`` x (1 + ``replicas``) cluster-enabled redis-servers joined by ``redis-cli --cluster create``.

    ``cluster-node-timeout`` is 1000 ms (a dead master is replaced within ~2 s) and
    ``cluster-require-full-coverage no`` (the shards that are up keep serving while one fails over).
    """

    def __init__(self, masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 1000,
                 startup_timeout_s: float = 30.0, extra_args: list[str] | None = None) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters (redis-cli --cluster create refuses fewer)")
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.n_masters = masters
        self.n_replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout_s = startup_timeout_s
        self._extra = list(extra_args or [])
        self.nodes: list[RedisServer] = []
        self.killed: list[RedisServer] = []

    # -- addresses ---------------------------------------------------------------------
    def alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running]

    @property
    def url(self) -> str:
        """A live node's URL (the first one still running): what a bridge is given."""
        live = self.alive()
        if not live:
            raise RedisServerError("no cluster node is running")
        return live[0].url

    @property
    def safe_url(self) -> str:
        return self.url

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.alive()]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(n.host, n.port) for n in self.alive()]

    @property
    def logfile(self) -> Path:
        return self.nodes[0].logfile

    def version(self) -> str:
        return redis_server_version(self.nodes[0].binary)

    def bridge_options(self) -> dict:
        return {}

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "LocalCluster":
        total = self.n_masters * (1 + self.n_replicas)
        for _ in range(total):
            srv = RedisServer(host=HOST, port=_cluster_port(), extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-require-full-coverage", "no", "--repl-diskless-sync-delay", "0", *self._extra])
            self.nodes.append(srv)
            srv.start()
        cli = shutil.which("redis-cli") or str(Path(self.nodes[0].binary).with_name("redis-cli"))
        args = [cli, "--cluster", "create", *[f"{n.host}:{n.port}" for n in self.nodes],
                "--cluster-replicas", str(self.n_replicas), "--cluster-yes"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=self.startup_timeout_s)
        if proc.returncode != 0:
            raise RedisServerError(f"redis-cli --cluster create failed ({proc.returncode}): "
                                   f"{(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
        self.wait_ok(self.startup_timeout_s)
        if self.n_replicas:
            _wait(self._replicas_synced, self.startup_timeout_s, "cluster replicas in sync")
        log.debug("cluster of %d nodes ready: %s", total, self.urls)
        return self

    def _state_ok(self) -> bool:
        live = self.alive()
        for n in live:
            info = _info(n.host, n.port, "cluster")
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_assigned") != "16384" \
                    or info.get("cluster_slots_fail", "0") != "0" or int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                return False
        # every live node agrees on who owns each slot range
        views = {tuple(sorted((s[0], s[1], s[2][1]) for s in _cmd(n.host, n.port, "CLUSTER", "SLOTS"))) for n in live}
        return len(views) == 1

    def wait_ok(self, timeout_s: float = 20.0) -> None:
        """Until every live node says ``cluster_state:ok`` and all agree on the slot map (bounded)."""
        _wait(self._state_ok, timeout_s, "cluster_state:ok on every node")

    def _replicas_synced(self) -> bool:
        for n in self.alive():
            info = _info(n.host, n.port, "replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def masters(self) -> list[RedisServer]:
        """Live nodes whose role is master and that own slots."""
        out = []
        for n in self.alive():
            if _info(n.host, n.port, "replication").get("role") == "master":
                out.append(n)
        return out

    def slot_owner(self, slot: int) -> RedisServer:
        n = self.alive()[0]
        for s in _cmd(n.host, n.port, "CLUSTER", "SLOTS"):
            if int(s[0]) <= slot <= int(s[1]):
                return self.node(int(s[2][1]))
        raise RedisServerError(f"no node owns slot {slot}")

    def fail_over(self, master: RedisServer | None = None, *, graceful: bool = False,
                  timeout_s: float = 20.0) -> str:
        """Replace a master by its replica; return what happened. Bounded by ``timeout_s``.

        Default: the last live master (not the node :attr:`url` points at). ``graceful``:
        ``CLUSTER FAILOVER`` on its replica (no data lost); else the master is SIGKILLed and
        the cluster promotes its replica after ``cluster-node-timeout``."""
        if not self.n_replicas:
            raise RedisServerError("fail_over needs a cluster with replicas")
        masters = self.masters()
        if master is None:
            first = self.alive()[0]
            master = [m for m in masters if m is not first][-1]
        mid = _cmd(master.host, master.port, "CLUSTER", "MYID")
        replicas = []
        for n in self.alive():
            if n is not master and _info(n.host, n.port, "replication").get("master_port") == str(master.port):
                replicas.append(n)
        if not replicas:
            raise RedisServerError(f"master {master.port} has no live replica")
        t = time.monotonic()
        if graceful:
            _cmd(replicas[0].host, replicas[0].port, "CLUSTER", "FAILOVER")
        else:
            master.kill()
            self.killed.append(master)

        def promoted():
            for r in replicas:
                if _info(r.host, r.port, "replication").get("role") == "master":
                    return r
            return None

        new = _wait(promoted, timeout_s, f"a replica of {master.port} promoted")
        self.wait_ok(max(1.0, timeout_s - (time.monotonic() - t)))
        how = "graceful CLUSTER FAILOVER" if graceful else "SIGKILL"
        return (f"master :{master.port} ({mid[:8]}) {how}; replica :{new.port} promoted, cluster ok "
                f"after {time.monotonic() - t:.2f}s")

    def cleanup(self) -> None:
        for n in self.nodes:
            n.cleanup()

    def __repr__(self) -> str:
        return f"LocalCluster({[n.port for n in self.nodes]})"


class _SentinelProcess:
    """One ``redis-server <conf> --sentinel`` on a loopback port (its config file is its own)."""

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
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

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


class LocalSentinel(Throwaway):
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
                host, port = _cmd(s.host, s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
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

    @property
    def logfile(self) -> Path:
        return self.servers[0].logfile

    def version(self) -> str:
        return redis_server_version(self.servers[0].binary)

    def start(self) -> "LocalSentinel":
        fast_sync = ["--repl-diskless-sync-delay", "0"]  # the default waits 5 s before a replica's first sync
        master = RedisServer(host=HOST, extra_args=fast_sync)
        self.servers.append(master)
        master.start()
        replica = RedisServer(host=HOST, extra_args=[*fast_sync, "--replicaof", HOST, str(master.port)])
        self.servers.append(replica)
        replica.start()
        _wait(lambda: _info(HOST, replica.port, "replication").get("master_link_status") == "up",
              self.startup_timeout_s, "replica in sync with the master")
        binary = find_redis_server()
        for _ in range(self.n_sentinels):
            self.sentinel_procs.append(_SentinelProcess(master.port, self.name, self.quorum, self.down_after_ms,
                                                        self.failover_timeout_ms, binary))
        _wait(self._sentinels_ready, self.startup_timeout_s, "sentinels see the master, the replica and each other")
        return self

    def _sentinels_ready(self) -> bool:
        for s in self.sentinel_procs:
            m = _cmd(s.host, s.port, "SENTINEL", "MASTER", self.name)
            m = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m
            if int(m.get("num-other-sentinels", 0)) < self.n_sentinels - 1 or int(m.get("num-slaves", 0)) < 1 \
                    or "s_down" in m.get("flags", "") or "o_down" in m.get("flags", ""):
                return False
            reps = _cmd(s.host, s.port, "SENTINEL", "REPLICAS", self.name)
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
                _, port = _cmd(s.host, s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                if int(port) == old.port:
                    return None
            new = self.master
            return new if new in others and _info(new.host, new.port, "replication").get("role") == "master" else None

        new = _wait(promoted, timeout_s, f"Sentinel promoting a replica of :{old.port}", interval_s=0.1)
        return f"master :{old.port} SIGKILL; sentinels promoted :{new.port} after {time.monotonic() - t:.2f}s"

    def cleanup(self) -> None:
        for s in self.sentinel_procs:
            s.cleanup()
        for s in self.servers:
            s.cleanup()

    def __repr__(self) -> str:
        return f"LocalSentinel(servers={[s.port for s in self.servers]}, sentinels={list(self.sentinels)})"


def _cluster_port() -> int:
    """A free port P <= 55535 whose cluster bus port P + 10000 is free too."""
    import random

    for _ in range(200):
        port = random.randint(20000, 55535)
        ok = True
        for q in (port, port + 10000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((HOST, q))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RedisServerError("no free port pair (P, P + 10000) for a cluster node")


__all__ = ["LocalCluster", "LocalSentinel", "SENTINEL_MASTER"]
