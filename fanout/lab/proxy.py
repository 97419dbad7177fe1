"""A small asyncio TCP proxy between ONE fanout instance and Redis, for fault scenarios.

Fault scenarios put a :class:`FaultProxy` in front of Redis and point one instance at
``proxy.url_for(redis_url)`` instead of Redis itself. The proxy then adds latency and cuts
that instance off, while every other instance keeps talking to Redis directly::

    async with FaultProxy(srv.host, srv.port) as proxy:
        url = proxy.url_for(srv.url)       # same credentials and db, the proxy's host:port
        proxy.set_delay(0.05)              # +50 ms each way, order kept, throughput kept
        proxy.partition()                  # reset every connection, refuse new ones
        proxy.heal()                       # new connections work again
        proxy.partition(mode="blackhole")  # connections stay open, bytes vanish both ways
        proxy.heal()                       # blackholed connections are aborted
        proxy.stats()                      # counters

    async with FaultProxy(srv.host, srv.port, resp=True) as proxy:   # reads Redis's replies frame by frame
        proxy.drop_messages()              # the connections open now lose every pub/sub message, pass the rest

How it works
------------
Each accepted connection is a *link*: the client socket, a socket to Redis, and two
*pipes* (``up``: client -> Redis, ``down``: Redis -> client). A pipe is one reader task,
which stamps every chunk it reads with a due time (arrival + the delay in force at that
moment) and appends it to a FIFO, and one forwarding task, which writes the head of the
FIFO once it is due. So a delay shifts every chunk by the same amount without limiting
throughput, and order is kept per direction even when the delay changes. A FIFO holding
more than :data:`HIGH_WATER` bytes pauses its reader (backpressure, bounded memory).

Faults
------
* ``partition()`` (``mode="reset"``): every open link is aborted on both sides with an
  RST (``SO_LINGER`` 0, then ``transport.abort()``), so the instance and Redis both see
  the connection die; new connections are accepted and reset at once (counted as
  ``refused``) until :meth:`FaultProxy.heal`.
* ``partition(mode="blackhole")``: open links stay open but every byte is read and
  dropped both ways, EOFs included (no FIN ever crosses); new connections are accepted
  and blackholed the same way (no Redis connection is made for them). The instance only
  notices through its own timeouts / health checks. ``heal()`` aborts every blackholed
  link, so the instance reconnects cleanly instead of resuming a torn byte stream.

* ``drop_messages()`` (a proxy made with ``resp=True``): on every link open now, the pub/sub message
  frames Redis pushes (``message``, ``smessage``, ``pmessage``) are dropped and everything else passes:
  replies, PONGs, (un)subscribe confirmations. The subscriber's connection thus answers PING and
  delivers nothing (a subscription left on a demoted master). New connections are not affected;
  ``heal()`` ends it for the old ones too. With ``resp=True`` every link's Redis -> client direction
  is split into RESP frames (:class:`RespFrames`) so the mode can start at any moment, exactly at a
  frame boundary.

Every wait on the network is bounded (connecting to Redis) or cancellable (reads, drains,
delays); :meth:`FaultProxy.close` aborts everything and returns within about 2 s.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

PartitionMode = Literal["reset", "blackhole"]

#: Bytes read per chunk.
READ_SIZE = 64 * 1024
#: A pipe whose FIFO holds more than this many bytes stops reading until it drains.
HIGH_WATER = 4 * 1024 * 1024
#: Bound on connecting to the target (Redis) for a new link.
CONNECT_TIMEOUT_S = 2.0
#: Bound on :meth:`FaultProxy.close` waiting for its tasks after cancelling them.
CLOSE_TIMEOUT_S = 2.0

_EOF = None  # FIFO marker: the source sent EOF
#: the starts of the RESP2 / RESP3 pub/sub message frames drop_messages() drops
_MESSAGE_HEADS = tuple(k + body for k in (b"*", b">") for body in (
    b"3\r\n$7\r\nmessage\r\n", b"3\r\n$8\r\nsmessage\r\n", b"4\r\n$8\r\npmessage\r\n"))


def frame_end(buf: bytes | bytearray, i: int = 0) -> int:
    """Where the RESP (2 or 3) frame starting at ``buf[i]`` ends (exclusive), or -1 when it is incomplete."""
    nl = buf.find(b"\r\n", i)
    if nl < 0:
        return -1
    kind = buf[i:i + 1]
    if kind in (b"$", b"=", b"!"):                  # bulk (or verbatim, bulk error): length, bytes, CRLF
        n = int(buf[i + 1:nl])
        if n < 0:
            return nl + 2
        end = nl + 2 + n + 2
        return end if end <= len(buf) else -1
    if kind in (b"*", b">", b"~", b"%", b"|"):      # aggregates: n elements (maps and attributes: 2n)
        n = int(buf[i + 1:nl])
        if kind in (b"%", b"|"):
            n *= 2
        j = nl + 2
        for _ in range(max(n, 0)):
            j = frame_end(buf, j)
            if j < 0:
                return -1
        if kind == b"|":                            # an attribute precedes the reply it describes
            return frame_end(buf, j)
        return j
    return nl + 2                                   # a simple line: + - : _ , # (


class RespFrames:
    """Splits one direction's bytes into whole RESP frames; drops pub/sub messages when asked."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes, drop: bool) -> tuple[bytes, int]:
        """The whole frames ``chunk`` completes (pub/sub messages left out when ``drop``), and how many were dropped."""
        buf = self._buf
        buf += chunk
        out: list[bytes] = []
        dropped = i = 0
        while i < len(buf):
            end = frame_end(buf, i)
            if end < 0:
                break
            if drop and buf.startswith(_MESSAGE_HEADS, i):
                dropped += 1
            else:
                out.append(bytes(buf[i:end]))
            i = end
        del buf[:i]
        return b"".join(out), dropped


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Drop a connection abruptly: RST to the peer (not FIN), unsent data discarded."""
    if writer is None:
        return
    transport = writer.transport
    if transport.is_closing():
        # Already closing (graceful close in progress): make it abrupt anyway.
        transport.abort()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Pipe:
    """One direction of a link: a reader task feeding a due-time FIFO, and a forwarder."""

    def __init__(self, proxy: FaultProxy, link: _Link, direction: Literal["up", "down"],
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.link = link
        self.direction = direction
        self.reader = reader
        self.writer = writer
        self.fifo: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.pending_bytes = 0
        self._nonempty = asyncio.Event()
        self._below_high = asyncio.Event()
        self._below_high.set()
        #: resp proxies: Redis's replies split into frames (for drop_messages)
        self.frames = RespFrames() if proxy.resp and direction == "down" else None

    def _push(self, chunk: bytes | None) -> None:
        loop = asyncio.get_running_loop()
        self.fifo.append((loop.time() + self.proxy.delay, chunk))
        if chunk:
            self.pending_bytes += len(chunk)
            if self.pending_bytes > HIGH_WATER:
                self._below_high.clear()
        self._nonempty.set()

    def _pop(self) -> tuple[float, bytes | None]:
        item = self.fifo.popleft()
        if item[1]:
            self.pending_bytes -= len(item[1])
            if self.pending_bytes <= HIGH_WATER:
                self._below_high.set()
        if not self.fifo:
            self._nonempty.clear()
        return item

    def drop_pending(self) -> None:
        """Discard everything queued (the link was just blackholed)."""
        while self.fifo:
            _, chunk = self._pop()
            if chunk:
                self.proxy._dropped_chunks += 1

    async def read_loop(self) -> None:
        """Read chunks until EOF; queue them (or drop them while blackholed)."""
        while True:
            await self._below_high.wait()
            try:
                chunk = await self.reader.read(READ_SIZE)
            except OSError:
                if self.link.blackholed:
                    return  # a reset is swallowed like everything else; heal() aborts the link
                raise
            if self.link.blackholed:
                if not chunk:
                    return  # the FIN is swallowed too; heal()/close() aborts the link
                self.proxy._dropped_chunks += 1
                continue
            if self.frames is not None and chunk:
                chunk, dropped = self.frames.feed(chunk, self.link.dropping_messages)
                self.proxy._dropped_messages += dropped
                if not chunk:
                    continue  # an incomplete frame (kept), or only dropped messages
            self._push(chunk or _EOF)
            if not chunk:
                return

    async def forward_loop(self) -> None:
        """Write each queued chunk once due, in order; forward EOF as a half-close."""
        loop = asyncio.get_running_loop()
        while True:
            await self._nonempty.wait()
            due, chunk = self.fifo[0]
            wait = due - loop.time()
            if wait > 0:
                if wait >= self.proxy.delay / 2:
                    self.proxy._long_waits += 1
                await asyncio.sleep(wait)
                continue  # re-check: the FIFO may have been dropped meanwhile
            self._pop()
            if self.link.blackholed:
                if chunk:
                    self.proxy._dropped_chunks += 1
                    continue
                return
            if chunk is _EOF:
                if self.writer.can_write_eof():
                    with contextlib.suppress(OSError, RuntimeError):
                        self.writer.write_eof()
                return
            self.writer.write(chunk)
            if self.direction == "up":
                self.proxy._bytes_up += len(chunk)
            else:
                self.proxy._bytes_down += len(chunk)
            await self.writer.drain()  # returns at once unless the peer is slow; cancellable


class _Link:
    """One proxied client connection (and, unless blackholed from birth, its Redis side)."""

    def __init__(self, proxy: FaultProxy, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, blackholed: bool) -> None:
        self.proxy = proxy
        self.client_reader = reader
        self.client_writer = writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.blackholed = blackholed
        self.dropping_messages = False
        self.pipes: list[_Pipe] = []
        self.task: asyncio.Task[None] | None = None

    def blackhole(self) -> None:
        self.blackholed = True
        for pipe in self.pipes:
            pipe.drop_pending()

    def abort(self) -> None:
        """Reset both sides and stop the link's tasks (it stops counting as open at once)."""
        self.proxy._links.discard(self)
        _reset(self.client_writer)
        _reset(self.upstream_writer)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        graceful = False
        try:
            if self.blackholed:
                # Accepted during a blackhole: swallow what the client sends, never dial Redis.
                while await self.client_reader.read(READ_SIZE):
                    self.proxy._dropped_chunks += 1
                await asyncio.Event().wait()  # held (half-closed) until heal()/close()
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.proxy.target_host, self.proxy.target_port),
                CONNECT_TIMEOUT_S,
            )
            self.upstream_writer = up_writer
            self.pipes = [
                _Pipe(self.proxy, self, "up", self.client_reader, up_writer),
                _Pipe(self.proxy, self, "down", up_reader, self.client_writer),
            ]
            if self.blackholed:  # blackholed while connecting
                self.blackhole()
            for pipe in self.pipes:
                tasks.append(asyncio.create_task(pipe.read_loop()))
                tasks.append(asyncio.create_task(pipe.forward_loop()))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                exc = None if t.cancelled() else t.exception()
                if exc is not None:
                    raise exc
            graceful = True  # both directions reached EOF and were forwarded
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("proxy link ended: %r", exc)
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if graceful:
                self.client_writer.close()
                if self.upstream_writer is not None:
                    self.upstream_writer.close()
            else:
                _reset(self.client_writer)
                _reset(self.upstream_writer)
            self.proxy._links.discard(self)


class FaultProxy:
    """TCP proxy to ``target_host:target_port`` with injectable latency and partitions.

    Counters (:meth:`stats`): ``connections_total`` links served (normal or blackholed),
    ``connections_open`` links open now, ``bytes_up`` / ``bytes_down`` bytes delivered
    to Redis / to the client, ``dropped_chunks`` chunks swallowed by a blackhole,
    ``refused`` connections reset on arrival during a reset partition, ``long_waits`` times a
    forwarder slept half the delay or more before a chunk was due: once per burst, not once per
    chunk, since a delay shifts traffic without throttling it; ``dropped_messages`` pub/sub message frames
    dropped by :meth:`drop_messages`.
    """

    def __init__(self, target_host: str, target_port: int, resp: bool = False) -> None:
        self.resp = resp
        self.target_host = target_host
        self.target_port = target_port
        self.host: str = "127.0.0.1"
        self.port: int = 0
        self.delay: float = 0.0
        self.mode: PartitionMode | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._connections_total = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._dropped_chunks = 0
        self._long_waits = 0
        self._refused = 0
        self._dropped_messages = 0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, listen_host: str = "127.0.0.1", listen_port: int = 0) -> FaultProxy:
        """Listen on ``listen_host:listen_port`` (0: a free port, see :attr:`port`)."""
        if self._server is not None:
            return self
        self._server = await asyncio.start_server(self._accept, listen_host, listen_port)
        sockname = self._server.sockets[0].getsockname()
        self.port = sockname[1]
        self.host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen_host, listen_host)
        log.debug("fault proxy %s:%s -> %s:%s", self.host, self.port, self.target_host, self.target_port)
        return self

    async def close(self) -> None:
        """Stop listening and abort every connection; returns within ~``CLOSE_TIMEOUT_S``."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self._links)
        for link in links:
            link.abort()
        tasks = [link.task for link in links if link.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        if server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 0.5)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- addresses ---------------------------------------------------------------------
    def url_for(self, redis_url: str) -> str:
        """``redis_url`` with its host:port replaced by the proxy's (credentials, db kept)."""
        if not self.port:
            raise RuntimeError("FaultProxy.url_for() before start()")
        parts = urlsplit(redis_url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis:// or rediss:// URL: {parts.scheme}://...")
        userinfo = parts.netloc.rpartition("@")[0]
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = f"{userinfo}@{host}:{self.port}" if userinfo else f"{host}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    # -- faults ------------------------------------------------------------------------
    def set_delay(self, seconds: float) -> None:
        """Forward every chunk arriving from now on ``seconds`` later, both ways (0: none)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self.delay = float(seconds)

    def partition(self, mode: PartitionMode = "reset") -> None:
        """Cut the instance off from Redis until :meth:`heal` (see the module docstring)."""
        if mode not in ("reset", "blackhole"):
            raise ValueError(f"unknown partition mode {mode!r}")
        self.mode = mode
        for link in list(self._links):
            if mode == "reset":
                link.abort()
            else:
                link.blackhole()

    def drop_messages(self) -> None:
        """Drop every pub/sub message frame on the connections open now; pass everything else (see the
        module docstring). Needs ``FaultProxy(..., resp=True)``."""
        if not self.resp:
            raise RuntimeError("drop_messages() needs a proxy made with resp=True (it reads the replies' frames)")
        for link in list(self._links):
            link.dropping_messages = True

    def heal(self) -> None:
        """End a partition; blackholed connections are aborted so clients reconnect; no link drops messages."""
        self.mode = None
        for link in list(self._links):
            link.dropping_messages = False
            if link.blackholed:
                link.abort()

    @property
    def partitioned(self) -> bool:
        return self.mode is not None

    def stats(self) -> dict[str, int]:
        return {
            "connections_total": self._connections_total,
            "connections_open": len(self._links),
            "bytes_up": self._bytes_up,
            "bytes_down": self._bytes_down,
            "dropped_chunks": self._dropped_chunks,
            "refused": self._refused,
            "long_waits": self._long_waits,
            "dropped_messages": self._dropped_messages,
        }

    # -- internals ---------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None or self.mode == "reset":
            self._refused += 1
            _reset(writer)
            return
        link = _Link(self, reader, writer, blackholed=self.mode == "blackhole")
        link.task = asyncio.current_task()
        self._links.add(link)
        self._connections_total += 1
        with contextlib.suppress(asyncio.CancelledError):
            await link.run()

    def __repr__(self) -> str:
        return (f"FaultProxy({self.host}:{self.port} -> {self.target_host}:{self.target_port}, "
                f"delay={self.delay:g}, mode={self.mode})")
