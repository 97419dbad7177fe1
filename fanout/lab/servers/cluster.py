"""A throwaway local Redis Cluster, for runs, tests and benchmarks.

    with LocalCluster(masters=3, replicas=1) as cl:    # 6 servers, slots split evenly
        cl.url                      # one live node's URL (a bridge's startup node)
        cl.masters()                # RedisServer of every live master
        cl.fail_over()              # kill a master, wait until its replica took over (bounded)

Real processes on loopback ports (``RedisServer`` underneath, the binary
:mod:`fanout.lab.servers.discovery` chose). The cluster is created through the client, as
``redis-cli --cluster create`` would but without needing redis-cli: distinct config epochs,
``CLUSTER ADDSLOTSRANGE`` (``ADDSLOTS`` on Redis < 7), ``CLUSTER MEET``, ``CLUSTER REPLICATE``,
then bounded waits until every node knows every other, says ``cluster_state:ok`` and all
agree on the slot map. ``bridge_options()`` gives the extra BridgeConfig keyword arguments.
"""
from __future__ import annotations

import logging
import socket
import time

from fanout.errors import RedisServerError
from fanout.lab.servers import admin
from fanout.lab.servers.admin import HOST
from fanout.lab.servers.redis import RedisServer, ServerGroup

log = logging.getLogger(__name__)

#: hash slots of a Redis Cluster
SLOTS = 16384


class LocalCluster(ServerGroup):
    """``masters`` x (1 + ``replicas``) cluster-enabled servers joined into one cluster through the client.

    ``cluster-node-timeout`` is 1000 ms (a dead master is replaced within ~2 s) and
    ``cluster-require-full-coverage no`` (the shards that are up keep serving while one fails over).
    """

    def __init__(self, masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 1000,
                 startup_timeout_s: float = 30.0, extra_args: list[str] | None = None) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters (a failover needs a majority of them)")
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

    def members(self) -> list[RedisServer]:
        return self.nodes

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
        self._create()
        self.wait_ok(self.startup_timeout_s)
        if self.n_replicas:
            admin.wait_until(self._replicas_synced, self.startup_timeout_s, "cluster replicas in sync")
        log.debug("cluster of %d nodes ready: %s", total, self.urls)
        return self

    def _create(self) -> None:
        """Join the started nodes into a cluster: what ``redis-cli --cluster create`` does, bounded."""
        bound = self.startup_timeout_s
        masters, replicas = self.nodes[:self.n_masters], self.nodes[self.n_masters:]
        for epoch, n in enumerate(self.nodes, 1):  # distinct epochs: no two masters ever collide
            admin.command(n.host, n.port, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for k, m in enumerate(masters):
            lo, hi = k * SLOTS // len(masters), (k + 1) * SLOTS // len(masters) - 1
            try:
                admin.command(m.host, m.port, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
            except Exception as exc:  # noqa: BLE001 - Redis < 7.0 has no ADDSLOTSRANGE
                if "unknown" not in str(exc).lower():
                    raise RedisServerError(f"CLUSTER ADDSLOTSRANGE {lo} {hi} on :{m.port} failed: {exc}") from None
                admin.command(m.host, m.port, "CLUSTER", "ADDSLOTS", *range(lo, hi + 1), timeout=5.0)
        first = self.nodes[0]
        for n in self.nodes[1:]:
            admin.command(first.host, first.port, "CLUSTER", "MEET", n.host, n.port)
        admin.wait_until(lambda: all(int(admin.info(n.host, n.port, "cluster").get("cluster_known_nodes", 0))
                                     >= len(self.nodes) for n in self.nodes),
                         bound, "every cluster node knows every other (CLUSTER MEET)")
        ids = {m.port: admin.command(m.host, m.port, "CLUSTER", "MYID") for m in masters}
        for j, r in enumerate(replicas):
            master_id = ids[masters[j % len(masters)].port]
            # a node that has not heard of the master as one yet says "Unknown node": ask again
            admin.wait_until(lambda r=r, mid=master_id: admin.command(r.host, r.port, "CLUSTER", "REPLICATE", mid),
                             bound, f"node :{r.port} replicating {master_id[:8]} (CLUSTER REPLICATE)")

    def _state_ok(self) -> bool:
        live = self.alive()
        for n in live:
            info = admin.info(n.host, n.port, "cluster")
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_assigned") != str(SLOTS) \
                    or info.get("cluster_slots_fail", "0") != "0" or int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                return False
        # every live node agrees on who owns each slot range
        views = {tuple(sorted((s[0], s[1], s[2][1]) for s in admin.command(n.host, n.port, "CLUSTER", "SLOTS"))) for n in live}
        return len(views) == 1

    def wait_ok(self, timeout_s: float = 20.0) -> None:
        """Until every live node says ``cluster_state:ok`` and all agree on the slot map (bounded)."""
        admin.wait_until(self._state_ok, timeout_s, "cluster_state:ok on every node")

    def _replicas_synced(self) -> bool:
        for n in self.alive():
            info = admin.info(n.host, n.port, "replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def masters(self) -> list[RedisServer]:
        """Live nodes whose role is master and that own slots."""
        out = []
        for n in self.alive():
            if admin.info(n.host, n.port, "replication").get("role") == "master":
                out.append(n)
        return out

    def slot_owner(self, slot: int) -> RedisServer:
        n = self.alive()[0]
        for s in admin.command(n.host, n.port, "CLUSTER", "SLOTS"):
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
        mid = admin.command(master.host, master.port, "CLUSTER", "MYID")
        replicas = []
        for n in self.alive():
            if n is not master and admin.info(n.host, n.port, "replication").get("master_port") == str(master.port):
                replicas.append(n)
        if not replicas:
            raise RedisServerError(f"master {master.port} has no live replica")
        t = time.monotonic()
        if graceful:
            admin.command(replicas[0].host, replicas[0].port, "CLUSTER", "FAILOVER")
        else:
            master.kill()
            self.killed.append(master)

        def promoted():
            for r in replicas:
                if admin.info(r.host, r.port, "replication").get("role") == "master":
                    return r
            return None

        new = admin.wait_until(promoted, timeout_s, f"a replica of {master.port} promoted")
        self.wait_ok(max(1.0, timeout_s - (time.monotonic() - t)))
        how = "graceful CLUSTER FAILOVER" if graceful else "SIGKILL"
        return (f"master :{master.port} ({mid[:8]}) {how}; replica :{new.port} promoted, cluster ok "
                f"after {time.monotonic() - t:.2f}s")

    def cleanup(self) -> None:
        for n in self.nodes:
            n.cleanup()

    def __repr__(self) -> str:
        return f"LocalCluster({[n.port for n in self.nodes]})"


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


__all__ = ["LocalCluster"]
