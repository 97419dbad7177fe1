"""CommandPipe: one connection, commands written in call order, replies matched in order.

A publisher that waits for each reply before sending the next command is capped at one
command per round trip: 10 events/s per instance when Redis is 50 ms away. The pipe lets many
publishes be in flight on one connection while keeping their order on the wire (so per-source
sequence numbers arrive in order), and still gives every caller its own reply.

* Commands are queued in call order and written together once per event-loop turn (one
  ``send()`` for many commands); (re)connecting happens under an ``asyncio.Lock`` (FIFO) that
  later calls queue behind, so the order of ``call()`` is the wire order.
* One reader task pops a future per reply.
* When the oldest reply is overdue (``reply_timeout_s``) or the connection breaks, every
  pending call fails with ``ConnectionError`` and the next call reconnects: nothing waits forever.
"""
from __future__ import annotations

import asyncio
import collections
import socket
import time

from redis.asyncio.connection import ConnectionPool
from redis.exceptions import RedisError, ResponseError  # noqa: F401 (RedisError: read loop)


def abort_connection(conn) -> None:
    """Drop a redis-py connection at once, no goodbye (a crash, or a connection we gave up on)."""
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        writer.transport.abort()
    conn._reader = conn._writer = None


def set_receive_buffer(conn, nbytes: int) -> None:
    """Set the kernel receive buffer (SO_RCVBUF) of a connected redis-py connection."""
    writer = getattr(conn, "_writer", None)
    sock = writer.get_extra_info("socket") if writer is not None else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, nbytes)


class CommandPipe:
    def __init__(self, url: str, reply_timeout_s: float, connect_timeout_s: float, **conn_kwargs) -> None:
        self._pool = ConnectionPool.from_url(url, protocol=2, **conn_kwargs)
        self._reply_timeout = reply_timeout_s
        self._connect_timeout = connect_timeout_s
        self._conn = None
        self._pending: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self._lock = asyncio.Lock()
        self._waiting = 0                  # calls queued behind the lock (a connect in progress)
        self._outbox: list[bytes] = []     # packed commands not yet handed to the socket
        self._flush_scheduled = False
        self._reader: asyncio.Task | None = None
        self._closed = False

    async def connect(self) -> None:
        async with self._lock:
            await self._ensure()

    async def _ensure(self):
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        self._drop(ConnectionError("connection replaced"))
        conn = self._pool.make_connection()
        try:
            await asyncio.wait_for(conn.connect(), self._connect_timeout)
        except BaseException:
            abort_connection(conn)
            raise
        self._conn = conn
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(conn), name="fanout-pipe-reader")
        return conn

    async def call(self, *args):
        """Send one command; return its reply (or raise its error). Order is call order."""
        if self._closed:
            raise ConnectionError("pipe closed")
        conn = self._conn
        if conn is None or self._waiting or not conn.is_connected:
            self._waiting += 1
            try:
                async with self._lock:
                    conn = await self._ensure()
                    fut = self._enqueue(conn, args)
            finally:
                self._waiting -= 1
            return await fut
        return await self._enqueue(conn, args)

    def _enqueue(self, conn, args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((fut, time.monotonic()))
        self._outbox.extend(conn.pack_command(*args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        chunks, self._outbox = self._outbox, []
        conn = self._conn
        writer = getattr(conn, "_writer", None) if conn is not None else None
        if not chunks:
            return
        if writer is None:
            self._drop(ConnectionError("connection lost before the command was sent"))
            return
        try:
            writer.write(b"".join(chunks))
        except (OSError, RuntimeError) as exc:
            self._drop(ConnectionError(str(exc) or exc.__class__.__name__))

    async def _read_loop(self, conn) -> None:
        pending = self._pending
        try:
            while True:
                wait = self._reply_timeout
                if pending:
                    wait = max(0.0, pending[0][1] + self._reply_timeout - time.monotonic())
                resp = await conn.read_response(timeout=max(wait, 0.001), disconnect_on_error=True)
                if resp is None:
                    if pending and time.monotonic() - pending[0][1] >= self._reply_timeout:
                        raise ConnectionError(f"no reply within {self._reply_timeout:g}s")
                    continue
                if not pending:
                    raise ConnectionError("reply with no command waiting for it")
                fut, _ = pending.popleft()
                if not fut.done():
                    fut.set_result(resp)
        except ResponseError as exc:  # an error reply is that command's answer, not the connection's end
            if pending:
                fut, _ = pending.popleft()
                if not fut.done():
                    fut.set_exception(exc)
            if conn is self._conn and not self._closed:
                self._reader = asyncio.get_running_loop().create_task(self._read_loop(conn))
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, ConnectionError) as exc:
            if conn is self._conn:
                self._drop(ConnectionError(str(exc) or exc.__class__.__name__))

    def _drop(self, exc: BaseException) -> None:
        """Forget the connection; fail everything still waiting on it."""
        conn, self._conn = self._conn, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if conn is not None:
            abort_connection(conn)
        self._outbox = []
        while self._pending:
            fut, _ = self._pending.popleft()
            if not fut.done():
                fut.set_exception(exc)

    async def close(self) -> None:
        self._closed = True
        self._drop(ConnectionError("pipe closed"))

    def abort(self) -> None:
        self._closed = True
        self._drop(ConnectionError("pipe aborted"))
