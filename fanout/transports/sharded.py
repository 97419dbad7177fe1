"""Sharded pub/sub on Redis Cluster: SPUBLISH to the node owning the channel's slot, SSUBSCRIBE
on one connection per node that owns some of the subscriber's channels.

Same envelope and bridge API as ``pubsub`` (fire-and-forget; the bridge's sequence check makes
a loss visible). What is different:

* **Channels.** With ``shard_partitions == 1`` the channel of an event type is the pub/sub one,
  ``{prefix}{type}``, and lands on whatever slot its name hashes to. With ``P > 1`` every type
  has ``P`` channels ``{prefix}{type}:{<tag>}``; the hash tag of partition ``p`` is chosen
  (:func:`partition_tag`) so its slot lies in the middle of the ``p``-th of ``P`` equal slot
  ranges: on a cluster whose slots are split evenly (``redis-cli --cluster create``), partition
  ``p`` lives on master ``p * masters // P``, so partitions spread over every node. A publisher
  picks the partition from the event's symbol (``crc32(symbol) % P``), so one symbol's events
  from one source stay on one channel, in order. The bridge keeps ``seq`` per channel, so
  partitions do not look like gaps.
* **Topology.** ``CLUSTER SLOTS`` from any reachable node (the configured URL first, then every
  node seen before), refreshed on every (re)subscribe, on ``MOVED``, and (in the background,
  at most every ``REFRESH_MIN_S``) after a failed publish.
* **Publisher.** One :class:`~fanout.transports.pipe.CommandPipe` per master (ordered,
  pipelined); ``SPUBLISH`` goes to the pipe of the slot's owner. ``MOVED``: refresh and retry once.
* **Subscriber.** One connection per owning node, one ``SSUBSCRIBE`` per slot (a command's
  channels must share a slot), every channel confirmed before ``open_subscriber`` returns.
  One reader task per connection feeds a bounded queue. A ``sunsubscribe`` pushed by the server
  (the slot moved away), an error reply, a lost connection or a silent one (PING unanswered)
  on *any* node makes ``read`` raise ``ConnectionError``: the bridge reconnects, which
  re-resolves the topology.

Limits: ``pause_reading`` (slow-consumer fault) stops the bridge, not the reader tasks; they
stop when the bounded queue is full, so the backlog then lands in Redis as with pub/sub.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import time
from urllib.parse import unquote, urlsplit

from redis.asyncio.connection import ConnectionPool
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

try:  # hiredis' "no complete reply buffered yet" marker
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH
except ImportError:  # pragma: no cover
    _NOT_ENOUGH = False

from fanout.channels import SLOTS, partition_channels, partition_of, partition_tag  # noqa: F401
from fanout.errors import RedisUnavailable
from fanout.transports.base import Subscriber, Transport
from fanout.transports.pipe import CommandPipe, abort_connection, set_receive_buffer
from fanout.transports.pubsub import connection_kwargs, explain

log = logging.getLogger(__name__)

#: least time between two background topology refreshes after failed publishes
REFRESH_MIN_S = 0.1
#: message batches the reader tasks may queue ahead of the bridge
QUEUE_BATCHES = 1000
MAX_PARTITIONS = 1024

_SMESSAGE = b"smessage"
_SUNSUBSCRIBE = b"sunsubscribe"
_ERR = object()

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


class ShardedSubscriber(Subscriber):
    """SSUBSCRIBE connections, one per node; ``read`` returns [(channel, payload), ...]."""

    def __init__(self, conns: dict[Addr, object], health_interval_s: float, health_timeout_s: float) -> None:
        self._conns = conns
        self._health_interval = health_interval_s
        self._health_timeout = health_timeout_s
        self._queue: asyncio.Queue = asyncio.Queue(QUEUE_BATCHES)
        self._error: ConnectionError | None = None
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._pump(a, c), name=f"fanout-sharded-{_addr_text(a)}")
                       for a, c in conns.items()]

    async def _pump(self, addr: Addr, conn) -> None:
        last_rx = time.monotonic()
        ping_sent: float | None = None
        wait = min(1.0, self._health_interval)
        try:
            while True:
                resp = await conn.read_response(timeout=wait, disconnect_on_error=True, disable_decoding=True)
                now = time.monotonic()
                if resp is None:
                    if not conn.is_connected:
                        raise ConnectionError("connection closed")
                    if ping_sent is not None:
                        if now - ping_sent > self._health_timeout:
                            raise ConnectionError(f"no answer to PING within {self._health_timeout:g}s")
                    elif now - last_rx > self._health_interval:
                        await conn.send_command("PING", check_health=False)
                        ping_sent = now
                    continue
                last_rx, ping_sent = now, None
                out: list = []
                self._take(resp, out)
                parser = conn._parser
                while True:  # whatever hiredis already buffered, without a syscall
                    more = parser._reader.gets() if getattr(parser, "_reader", None) else False
                    if more is _NOT_ENOUGH or more is False or more is None:
                        break
                    if isinstance(more, Exception):
                        raise more
                    self._take(more, out)
                if out:
                    await self._queue.put(out)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, ConnectionError, TimeoutError) as exc:
            self._error = ConnectionError(f"sharded subscriber on {_addr_text(addr)}: "
                                          f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}")
            try:
                self._queue.put_nowait(_ERR)
            except asyncio.QueueFull:
                pass

    @staticmethod
    def _take(resp, out: list) -> None:
        if isinstance(resp, list) and len(resp) == 3:
            kind = resp[0]
            if kind == _SMESSAGE:
                ch = resp[1]
                out.append((ch.decode() if isinstance(ch, bytes) else ch, resp[2]))
            elif kind == _SUNSUBSCRIBE:
                ch = resp[1].decode() if isinstance(resp[1], bytes) else resp[1]
                raise ConnectionError(f"the server unsubscribed {ch} (its slot moved)")
        elif isinstance(resp, Exception):
            raise ConnectionError(str(resp))

    async def read(self, timeout_s: float) -> list[tuple[str, bytes]]:
        q = self._queue
        if q.empty():
            if self._error is not None:
                raise self._error
            try:
                async with asyncio.timeout(timeout_s):
                    item = await q.get()
            except TimeoutError:
                return []
        else:
            item = q.get_nowait()
        out: list = []
        while True:
            if item is _ERR:
                if out:  # hand over what came before the failure; raise on the next read
                    return out
                raise self._error or ConnectionError("sharded subscriber failed")
            out.extend(item)
            if q.empty() or len(out) >= 2000:
                return out
            item = q.get_nowait()

    def shrink_receive_buffer(self, nbytes: int) -> None:
        for conn in self._conns.values():
            set_receive_buffer(conn, nbytes)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for conn in self._conns.values():
            try:
                await asyncio.wait_for(conn.disconnect(), 1.0)
            except Exception:  # noqa: BLE001
                abort_connection(conn)

    def abort(self) -> None:
        for t in self._tasks:
            t.cancel()
        for conn in self._conns.values():
            abort_connection(conn)


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
        self._pipes: dict[Addr, CommandPipe] = {}
        self._slot: dict[str, int] = {}
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = 0.0
        self._refresh_task: asyncio.Task | None = None
        self._closed = False

    # -- topology ------------------------------------------------------------------------
    def _conn_kwargs(self) -> dict:
        return {**self._url_auth, **connection_kwargs(self.config)}

    def _node_url(self, addr: Addr) -> str:
        return f"redis://{addr[0]}:{addr[1]}/0"

    async def refresh(self) -> Topology:
        """Ask a reachable node for ``CLUSTER SLOTS`` (the seed first, then every node seen)."""
        async with self._refresh_lock:
            cfg = self.config
            errors = []
            for addr in list(dict.fromkeys([self._seed, *self._known])):
                conn = ConnectionPool(host=addr[0], port=addr[1], protocol=2, **self._conn_kwargs()).make_connection()
                try:
                    async with asyncio.timeout(cfg.connect_timeout_s + cfg.command_timeout_s):
                        await conn.connect()
                        await conn.send_command("CLUSTER", "SLOTS", check_health=False)
                        reply = await conn.read_response()
                        await self.check_server(conn, cfg.resolved_url())  # SSUBSCRIBE: Redis 7+
                    topo = Topology(reply, addr[0])
                    if not topo.masters:
                        raise ConnectionError("empty slot map")
                except (RedisError, OSError, ConnectionError, TimeoutError) as exc:
                    errors.append(f"{_addr_text(addr)}: {str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}")
                    continue
                finally:
                    try:
                        await asyncio.wait_for(conn.disconnect(nowait=True), 1.0)
                    except Exception:  # noqa: BLE001
                        pass
                self._topo = topo
                self._known = list(dict.fromkeys([*sorted(topo.masters), *sorted(topo.nodes), *self._known]))
                self._refreshed_at = time.monotonic()
                for gone in [a for a in self._pipes if a not in topo.masters]:
                    await self._pipes.pop(gone).close()
                return topo
            raise RedisUnavailable("cannot read the cluster's slot map from any node (" + "; ".join(errors) + ")")

    def _refresh_soon(self) -> None:
        if self._closed or (self._refresh_task is not None and not self._refresh_task.done()):
            return

        async def later() -> None:
            wait = self._refreshed_at + REFRESH_MIN_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - the next failure schedules another
                log.debug("topology refresh failed: %s", exc)

        self._refresh_task = asyncio.get_running_loop().create_task(later(), name="fanout-sharded-refresh")

    def slot_of(self, channel: str) -> int:
        s = self._slot.get(channel)
        if s is None:
            s = self._slot[channel] = key_slot(channel.encode())
        return s

    def channel_nodes(self, channels: list[str]) -> dict[str, str]:
        """``channel -> "host:port"`` of the node that owns it (from the last topology read)."""
        assert self._topo is not None, "no topology yet"
        return {c: _addr_text(self._topo.owner(self.slot_of(c))) for c in channels}

    # -- publishing ----------------------------------------------------------------------
    def _pipe(self, addr: Addr) -> CommandPipe:
        pipe = self._pipes.get(addr)
        if pipe is None:
            cfg = self.config
            pipe = self._pipes[addr] = CommandPipe(self._node_url(addr), cfg.command_timeout_s,
                                                   cfg.connect_timeout_s, **self._conn_kwargs())
        return pipe

    async def connect_publisher(self) -> None:
        cfg = self.config
        try:
            topo = await self.refresh()
            async with asyncio.timeout(cfg.connect_timeout_s + cfg.command_timeout_s):
                await asyncio.gather(*(self._pipe(a).call("PING") for a in sorted(topo.masters)))
        except (RedisError, OSError, ConnectionError, TimeoutError) as exc:
            await self.close()
            self._closed = False
            raise explain(exc, cfg.resolved_url()) from None

    async def publish(self, channel: str, payload: bytes) -> None:
        topo = self._topo
        assert topo is not None, "publisher not connected"
        slot = self.slot_of(channel)
        try:
            await self._pipe(topo.owner(slot)).call("SPUBLISH", channel, payload)
        except ResponseError as exc:
            msg = str(exc)
            if not msg.startswith(("MOVED", "ASK")):
                self._refresh_soon()
                raise
            topo = await self.refresh()  # the slot moved: learn where, retry once
            await self._pipe(topo.owner(slot)).call("SPUBLISH", channel, payload)
        except BaseException:
            self._refresh_soon()
            raise

    # -- subscribing ---------------------------------------------------------------------
    async def open_subscriber(self, channels: list[str]) -> ShardedSubscriber:
        cfg = self.config
        topo = await self.refresh()
        by_node: dict[Addr, dict[int, list[str]]] = {}
        for ch in channels:
            slot = self.slot_of(ch)
            by_node.setdefault(topo.owner(slot), {}).setdefault(slot, []).append(ch)
        conns: dict[Addr, object] = {}
        try:
            async with asyncio.timeout(cfg.connect_timeout_s + cfg.command_timeout_s):
                await asyncio.gather(*(self._subscribe_node(a, slots, conns) for a, slots in by_node.items()))
        except BaseException as exc:
            for conn in conns.values():
                abort_connection(conn)
            if isinstance(exc, ResponseError):  # MOVED / CLUSTERDOWN: the bridge retries, re-resolving
                raise ConnectionError(str(exc).splitlines()[0]) from None
            if isinstance(exc, (RedisError, OSError, TimeoutError)):
                raise explain(exc, cfg.resolved_url()) from None
            raise
        return ShardedSubscriber(conns, cfg.health_check_interval_s, cfg.health_check_timeout_s)

    async def _subscribe_node(self, addr: Addr, slots: dict[int, list[str]], conns: dict) -> None:
        pool = ConnectionPool(host=addr[0], port=addr[1], protocol=2, **self._conn_kwargs())
        conn = pool.make_connection()
        conns[addr] = conn
        await conn.connect()
        for chans in slots.values():  # one SSUBSCRIBE per slot: a command's channels must share one
            await conn.send_command("SSUBSCRIBE", *chans, check_health=False)
        pending = {c for chans in slots.values() for c in chans}
        while pending:
            resp = await conn.read_response(disable_decoding=False)
            if isinstance(resp, list) and resp and resp[0] in (b"ssubscribe", "ssubscribe"):
                pending.discard(resp[1].decode() if isinstance(resp[1], bytes) else resp[1])

    async def close(self) -> None:
        self._closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        for pipe in self._pipes.values():
            await pipe.close()
        self._pipes.clear()

    def abort(self) -> None:
        self._closed = True
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        for pipe in self._pipes.values():
            pipe.abort()
        self._pipes.clear()
