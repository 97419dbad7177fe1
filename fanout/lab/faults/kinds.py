"""One small class per fault kind, in a registry (``FAULT_KINDS``).

A fault kind knows what it needs of the scenario (:meth:`FaultKind.check`, called when a
Scenario is built) and how to inject and undo itself against a live run (:meth:`begin`,
:meth:`end`). One object is made per planned fault, so two faults of one kind (two overlapping
crashes) keep their own state. ``sim`` is the running :class:`fanout.lab.simulator.Simulation`
(the bridges, the throwaway server, the proxies); the kinds use only what each needs of it.

To add a kind: subclass :class:`FaultKind`, set ``name`` (and ``instance`` / ``proxy``), and
add it to ``FAULT_KINDS``; ``scenarios/faults/`` holds one scenario file per kind and transport.
"""
from __future__ import annotations

import asyncio
from typing import Any

from fanout.errors import ConfigError

#: a slow consumer's kernel receive buffer (bytes): small, so Redis's output buffer fills
SLOW_CONSUMER_RCVBUF = 16 * 1024
#: a crashed instance's restart is tried this many times, 0.1 s apart
RESTART_ATTEMPTS = 50


class FaultKind:
    name = "?"
    instance = False   # hits one instance (needs ``instance``), else the server
    proxy = False      # goes through that instance's FaultProxy

    def __init__(self, sim: Any, fault: Any) -> None:  # fault: a fanout.lab.faults.plan.Fault
        self.sim = sim
        self.fault = fault

    throwaway = False  # needs the throwaway server (or cluster, or Sentinel setup) fanout starts

    @classmethod
    def missing(cls, scenario: Any) -> str | None:
        """What ``scenario`` lacks to run this fault (a phrase after "needs"), or None."""
        return None

    @classmethod
    def check(cls, scenario: Any, where: str) -> None:
        """Raise ConfigError (naming ``where``) when ``scenario`` cannot run this fault."""
        if cls.throwaway and scenario.redis_url:
            raise ConfigError(f"{where}: {cls.name} needs the throwaway server fanout starts (leave redis_url empty)")
        why = cls.missing(scenario)
        if why:
            raise ConfigError(f"{where}: {cls.name} {why}")

    async def begin(self) -> str:
        raise NotImplementedError

    async def end(self) -> str:
        return ""


class RedisRestart(FaultKind):
    """The throwaway server stopped (SIGTERM, or SIGKILL with ``hard``) and started again on its port."""

    name = "redis_restart"
    throwaway = True

    @classmethod
    def missing(cls, scenario):
        if scenario.sentinel or scenario.cluster_masters:
            return "needs a single throwaway server, not a cluster or a Sentinel setup"
        return None

    async def begin(self) -> str:
        srv = self.sim.server
        await asyncio.to_thread(srv.kill if self.fault.hard else srv.stop)
        return (f"redis-server {'killed' if self.fault.hard else 'stopped'} "
                f"(aof={'on' if self.sim.sc.redis_aof else 'off'})")

    async def end(self) -> str:
        await asyncio.to_thread(self.sim.server.start)
        return "redis-server started again"


class InstanceCrash(FaultKind):
    """A bridge dies without closing; later a new bridge with the same id starts."""

    name = "instance_crash"
    instance = True

    async def begin(self) -> str:
        sim, i = self.sim, self.fault.instance
        self.t_down = sim.now_ns()
        sim.crash(i, f"instance crashed (fault {self.fault.label})")
        return f"{sim.ids[i]} aborted without closing"

    async def end(self) -> str:
        sim, i = self.sim, self.fault.instance
        for _ in range(RESTART_ATTEMPTS):
            bridge = await sim.restart(i)
            if bridge is not None:
                sim.crash_outages.append((sim.ids[i], self.t_down, sim.now_ns(), self.name))
                return f"{sim.ids[i]} restarted with the same id (epoch {bridge.epoch})"
            await asyncio.sleep(0.1)
        return f"{sim.ids[i]} could not restart"


class SlowConsumer(FaultKind):
    """An instance stops reading (a tiny receive buffer, so the backlog lands in Redis's output buffer)."""

    name = "slow_consumer"
    instance = True

    async def begin(self) -> str:
        self.sim.bridges[self.fault.instance].pause_reading(receive_buffer=SLOW_CONSUMER_RCVBUF)
        return f"{self.sim.ids[self.fault.instance]} stopped reading"

    async def end(self) -> str:
        self.sim.bridges[self.fault.instance].resume_reading()
        return f"{self.sim.ids[self.fault.instance]} reading again"


class Latency(FaultKind):
    """``delay_ms`` added each way between one instance and Redis (its FaultProxy)."""

    name = "latency"
    instance = True
    proxy = True

    async def begin(self) -> str:
        self.sim.proxies[self.fault.instance].set_delay(self.fault.delay_ms / 1000)
        return f"+{self.fault.delay_ms:g} ms each way between {self.sim.ids[self.fault.instance]} and Redis"

    async def end(self) -> str:
        self.sim.proxies[self.fault.instance].set_delay(0)
        return ""


class Partition(FaultKind):
    """One instance cut off from Redis: connections reset, or silently blackholed."""

    name = "partition"
    instance = True
    proxy = True

    async def begin(self) -> str:
        self.sim.proxies[self.fault.instance].partition(mode=self.fault.mode)
        return f"{self.sim.ids[self.fault.instance]} cut off from Redis ({self.fault.mode})"

    async def end(self) -> str:
        self.sim.proxies[self.fault.instance].heal()
        return "partition healed"


class _Failover(FaultKind):
    async def begin(self) -> str:  # LocalCluster / LocalSentinel: kill a master, wait for its successor
        return await asyncio.to_thread(self.sim.server.fail_over)


class NodeFailover(_Failover):
    """A cluster master SIGKILLed; its replica promoted."""

    name = "node_failover"
    throwaway = True

    @classmethod
    def missing(cls, scenario):
        if not (scenario.cluster_masters and scenario.cluster_replicas):
            return "needs a local cluster with replicas (cluster_masters, cluster_replicas: 1)"
        return None


class SentinelFailover(_Failover):
    """The master SIGKILLed; Sentinel promotes the replica."""

    name = "sentinel_failover"
    throwaway = True

    @classmethod
    def missing(cls, scenario):
        return None if scenario.sentinel else "needs sentinel: true"


FAULT_KINDS: dict[str, type[FaultKind]] = {k.name: k for k in (
    RedisRestart, InstanceCrash, SlowConsumer, Latency, Partition, NodeFailover, SentinelFailover)}
