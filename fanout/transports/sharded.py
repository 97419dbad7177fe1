"""Sharded pub/sub on Redis Cluster: SPUBLISH to the node owning the channel's slot, SSUBSCRIBE
on one connection per node that owns some of the subscriber's channels.

Same envelope and bridge API as ``pubsub`` (fire-and-forget; the bridge's sequence check makes
a loss visible). What is different:

* **Channels.** With ``shard_partitions == 1`` the channel of an event type is the pub/sub one,
  ``{prefix}{type}``, and lands on whatever slot its name hashes to. With ``P > 1`` every type
  has ``P`` channels ``{prefix}{type}:{<tag>}``; the hash tag of partition ``p`` is chosen
  (:func:`~fanout.channels.partition_tag`) so its slot lies in the middle of the ``p``-th of
  ``P`` equal slot ranges: on a cluster whose slots are split evenly (``redis-cli --cluster
  create``), partition ``p`` lives on master ``p * masters // P``, so partitions spread over
  every node. A publisher picks the partition from the event's symbol (``crc32(symbol) % P``),
  so one symbol's events from one source stay on one channel, in order. The bridge keeps
  ``seq`` per channel, so partitions do not look like gaps.
* **Topology.** ``CLUSTER SLOTS`` from any reachable node (the configured URL first, then every
  node seen before), refreshed on every (re)subscribe, on ``MOVED``, and (in the background,
  at most every ``REFRESH_MIN_S``) after a failed publish.
* **Publisher.** One pipelined :class:`~fanout.transports.common.PubConn` per master;
  ``SPUBLISH`` goes to the connection of the slot's owner. ``MOVED``/``ASK``: refresh, then the
  same command is sent once more to the new owner.
* **Subscriber.** One lean connection per owning node, one ``SSUBSCRIBE`` per slot (a command's
  channels must share a slot), every channel confirmed before ``open_subscriber`` returns; every
  connection hands messages to the bridge from ``data_received`` and pings when idle. A
  ``sunsubscribe`` pushed by the server (the slot moved away), a lost or silent connection on
  *any* node ends the subscription: the bridge reconnects, which re-resolves the topology.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.crc import key_slot

from fanout.channels import SLOTS, partition_channels, partition_of, partition_tag  # noqa: F401
from fanout.errors import RedisUnavailable
from fanout.transports.base import Subscriber, Transport
from fanout.transports.common import PubConn, conn_options, one_line, require_server
from fanout.transports.connection import open_connection
from fanout.transports.frames import NeverSent
from fanout.transports.pubsub import subscribe_on
from fanout.transports.resp import RespProtocol

log = logging.getLogger(__name__)

#: least time between two background topology refreshes after failed publishes
REFRESH_MIN_S = 0.1
MAX_PARTITIONS = 1024

_pack = hiredis.pack_command
_SPUBLISH = b"SPUBLISH"

Addr = tuple[str, int]


class Topology:
    """Slot ranges -> owning node, from one ``CLUSTER SLOTS`` reply."""

    def __init__(self, reply, seed_host: str) -> None:
        ranges = []
        self.nodes: set[Addr] = set()
        for entry in reply:
            start, end = int(entry[0]), int(entry[1])
            addrs = []
            for node in entry[2:]:
                host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
                addrs.append((host if host and host != "?" else seed_host, int(node[1])))
            ranges.append((start, end, addrs[0]))
            self.nodes.update(addrs)
        ranges.sort()
        self._starts = [r[0] for r in ranges]
        self._ranges = ranges
        self.masters = {r[2] for r in ranges}

    def owner(self, slot: int) -> Addr:
        i = bisect.bisect_right(self._starts, slot) - 1
        if i < 0 or not (self._ranges[i][0] <= slot <= self._ranges[i][1]):
            raise ConnectionError(f"no node owns slot {slot} (cluster topology incomplete)")
        return self._ranges[i][2]


def _addr_text(a: Addr) -> str:
    return f"{a[0]}:{a[1]}"


class _Lost:
    """The first reason any of a subscriber's connections gave for ending."""

    def __init__(self) -> None:
        self.fut = asyncio.get_running_loop().create_future()

    def lost(self, exc) -> None:
        if not self.fut.done():
            self.fut.set_result(one_line(exc) if exc else "connection closed")

    def unsubscribed(self, channel: bytes) -> None:
        if not self.fut.done():
            self.fut.set_result(f"the server unsubscribed {channel.decode(errors='replace')} (its slot moved)")


class ShardedSubscriber(Subscriber):
    """SSUBSCRIBE connections, one per node; the first one to end ends them all."""

    def __init__(self, protos: dict[Addr, RespProtocol], lost: _Lost, heartbeats: tuple[str, ...] = (),
                 where: dict[Addr, dict] | None = None) -> None:
        self._protos = protos
        self.heartbeats = heartbeats
        self._lost = lost
        self._alive_ns: int | None = None
        self._where = where or {}  # each node's connection parameters (given with the output-buffer check)

    def clients(self) -> list[tuple[Any, int | None]]:
        return [(self._where[a], p.client_id) for a, p in self._protos.items() if a in self._where]

    async def wait_lost(self) -> str:
        why = await asyncio.shield(self._lost.fut)
        self._alive_ns = self.last_alive_ns()
        self.abort()
        return why

    def last_alive_ns(self) -> int:
        """The last sign of life of the connection that ended (the earliest, if several did); of
        them all while every one is up (a pushed sunsubscribe: the node is alive)."""
        if self._alive_ns is not None:
            return self._alive_ns
        ended = [p.last_alive_ns() for p in self._protos.values() if not p.connected]
        return min(ended) if ended else max((p.last_alive_ns() for p in self._protos.values()), default=time.time_ns())

    def pause_reading(self) -> None:
        for p in self._protos.values():
            p.pause_reading()

    def resume_reading(self) -> None:
        for p in self._protos.values():
            p.resume_reading()

    def shrink_receive_buffer(self, nbytes: int) -> None:
        for p in self._protos.values():
            p.set_receive_buffer(nbytes)

    async def close(self) -> None:
        await asyncio.gather(*(p.close(timeout_s=1.0) for p in self._protos.values()))

    def abort(self) -> None:
        for p in self._protos.values():
            p.abort()


class ShardedTransport(Transport):
    name = "sharded"

    def __init__(self, config) -> None:
        super().__init__(config)
        parts = urlsplit(config.resolved_url())
        self._seed: Addr = (parts.hostname or "127.0.0.1", parts.port or 6379)
        # credentials in the URL apply to every node (explicit username/password win)
        self._url_auth = {k: unquote(v) for k, v in (("username", parts.username), ("password", parts.password)) if v}
        self._topo: Topology | None = None
        self._known: list[Addr] = [self._seed]
        self._pubs: dict[Addr, PubConn] = {}
        self._route: dict[str, tuple[PubConn, bytes]] = {}  # channel -> (its owner's connection, name)
        self._slot: dict[str, int] = {}
        self._retry: list[tuple] = []                        # (token, command, slot) after MOVED
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = 0.0
        self._refresh_task: asyncio.Task | None = None
        self._version_checked = False
        self._closed = False

    # -- topology ------------------------------------------------------------------------
    def _params(self, addr: Addr) -> dict:
        return {"host": addr[0], "port": addr[1], "db": 0, "username": self._url_auth.get("username"),
                "password": self._url_auth.get("password")}

    async def refresh(self) -> Topology:
        """Ask a reachable node for ``CLUSTER SLOTS`` (the seed first, then every node seen)."""
        async with self._refresh_lock:
            errors = []
            for addr in list(dict.fromkeys([self._seed, *self._known])):
                try:
                    proto = await open_connection(self._params(addr), **conn_options(self.config))
                    try:
                        if not self._version_checked:
                            await require_server(proto, "sharded")
                            self._version_checked = True
                        topo = Topology(await proto.call(b"CLUSTER", b"SLOTS"), addr[0])
                    finally:
                        proto.abort()
                    if not topo.masters:
                        raise ConnectionError("empty slot map")
                except (hiredis.ReplyError, ConnectionError) as exc:  # RedisUnavailable is one
                    errors.append(f"{_addr_text(addr)}: {one_line(exc)}")
                    continue
                self._topo = topo
                self._known = list(dict.fromkeys([*sorted(topo.masters), *sorted(topo.nodes), *self._known]))
                self._refreshed_at = time.monotonic()
                self._route.clear()
                for gone in [a for a in self._pubs if a not in topo.masters]:
                    await self._pubs.pop(gone).close()
                return topo
            raise RedisUnavailable("cannot read the cluster's slot map from any node (" + "; ".join(errors) + ")")

    def _refresh_soon(self) -> None:
        if self._closed or (self._refresh_task is not None and not self._refresh_task.done()):
            return
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_later(), name="fanout-sharded-refresh")

    async def _refresh_later(self) -> None:
        wait = self._refreshed_at + REFRESH_MIN_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await self.connect_publisher()
        except (RedisUnavailable, ConnectionError) as exc:  # the next failure schedules another
            log.debug("topology refresh failed: %s", one_line(exc))
        retry, self._retry = self._retry, []
        for token, cmd, slot in retry:  # MOVED once: the new owner's connection, or fail now
            try:
                pub = self._pubs.get(self._topo.owner(slot)) if self._topo is not None else None
                if pub is None or not pub.up:
                    raise NeverSent(f"no connection to the owner of slot {slot}")
                pub.send(cmd, token, None, force=True)
            except ConnectionError as exc:  # not queued (and the first try was answered MOVED): never run
                self.on_ack(token, exc if isinstance(exc, NeverSent) else NeverSent(str(exc)))

    def slot_of(self, channel: str) -> int:
        s = self._slot.get(channel)
        if s is None:
            s = self._slot[channel] = key_slot(channel.encode())
        return s

    def channel_nodes(self, channels: list[str]) -> dict[str, str]:
        """``channel -> "host:port"`` of the node that owns it (from the last topology read)."""
        if self._topo is None:
            raise ConnectionError("no topology yet: connect the publisher or open a subscriber first")
        return {c: _addr_text(self._topo.owner(self.slot_of(c))) for c in channels}

    # -- publishing ----------------------------------------------------------------------
    async def connect_publisher(self) -> None:
        """Read the topology; open a connection to every master that has none (bounded)."""
        topo = await self.refresh()
        todo = [a for a in sorted(topo.masters) if a not in self._pubs or not self._pubs[a].up]

        async def one(addr: Addr) -> None:
            self._pubs[addr] = await PubConn(self._result, keep_extra=True).open(self._params(addr), self.config)

        results = await asyncio.gather(*(one(a) for a in todo), return_exceptions=True)
        self._route.clear()
        for r in results:
            if isinstance(r, BaseException):
                raise r

    def _result(self, token, reply, cmd) -> None:
        if type(reply) is int:
            self.on_ack(token, None)
            return
        if cmd is not None and isinstance(reply, hiredis.ReplyError) and str(reply).startswith(("MOVED", "ASK")):
            self._retry.append((token, cmd, int(str(reply).split()[1])))  # the slot moved: learn where, retry once
        else:
            self.on_ack(token, reply)
        self._refresh_soon()

    def _conn(self, channel: str) -> tuple[PubConn, bytes]:
        r = self._route.get(channel)
        if r is None or not r[0].up:
            if self._topo is None:
                raise ConnectionError("publisher not connected")
            addr = self._topo.owner(self.slot_of(channel))
            pub = self._pubs.get(addr)
            if pub is None or not pub.up:
                self._refresh_soon()
                raise (pub.proto.exception if pub is not None and pub.proto is not None and pub.proto.exception
                       else ConnectionError(f"no connection to {_addr_text(addr)}"))
            r = self._route[channel] = (pub, channel.encode())
        return r

    def publish_nowait(self, channel: str, payload: bytes, token, force: bool = False) -> bool:
        pub, ch = self._conn(channel)
        cmd = _pack((_SPUBLISH, ch, payload))
        return pub.send(cmd, token, cmd, force)

    def can_send(self, channel: str) -> bool:
        return self._conn(channel)[0].can_send()

    async def writable(self) -> None:
        if not self._pubs:
            raise ConnectionError("publisher not connected")
        for pub in list(self._pubs.values()):
            await pub.writable()

    # -- subscribing ---------------------------------------------------------------------
    async def open_subscriber(self, channels: list[str], sink) -> ShardedSubscriber:
        cfg = self.config
        topo = await self.refresh()
        by_node: dict[Addr, dict[int, list[bytes]]] = {}
        for ch in channels:
            slot = self.slot_of(ch)
            by_node.setdefault(topo.owner(slot), {}).setdefault(slot, []).append(ch.encode())
        beats: list[str] = []
        if cfg.heartbeat_s:  # one heartbeat channel per node, in the slot of one of its channels (same SSUBSCRIBE)
            for slots in by_node.values():
                slot, chans = next(iter(slots.items()))
                beat = cfg.heartbeat_channel(slot_of=chans[0].decode())
                chans.append(beat.encode())
                beats.append(beat)
        lost = _Lost()
        protos: dict[Addr, RespProtocol] = {}

        async def one(addr: Addr, slots: dict[int, list[bytes]]) -> None:
            # one SSUBSCRIBE per slot: a command's channels must share one
            protos[addr] = await subscribe_on(self._params(addr), cfg, b"SSUBSCRIBE", list(slots.values()), sink,
                                              on_unsubscribed=lost.unsubscribed, on_lost=lost.lost,
                                              ask_id=cfg.output_buffer_check_s is not None)

        try:
            async with asyncio.timeout(cfg.connect_timeout_s + cfg.command_timeout_s):
                results = await asyncio.gather(*(one(a, s) for a, s in by_node.items()), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        except BaseException:
            for p in protos.values():
                p.abort()
            raise
        where = {a: self._params(a) for a in protos} if cfg.output_buffer_check_s is not None else None
        return ShardedSubscriber(protos, lost, tuple(beats), where)

    def _drop_retries(self) -> None:
        retry, self._retry = self._retry, []
        for token, _cmd, _slot in retry:  # waiting for a refresh that will not come: failed, counted
            self.on_ack(token, NeverSent("publisher closed before the moved slot's owner was known"))

    async def close(self) -> None:
        self._closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        self._drop_retries()
        await asyncio.gather(*(p.close() for p in self._pubs.values()))
        self._pubs.clear()
        self._route.clear()

    def abort(self) -> None:
        self._closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        self._drop_retries()
        for pub in self._pubs.values():
            pub.abort()
        self._pubs.clear()
        self._route.clear()
