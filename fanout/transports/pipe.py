"""CommandPipe: one connection, commands written in call order, replies matched in order.

A publisher that waits for each reply before sending the next command is capped at one
command per round trip: 10 events/s per instance when Redis is 50 ms away. The pipe lets many
publishes be in flight on one connection while keeping their order on the wire (so per-source
sequence numbers arrive in order), and still gives every caller its own reply.

* Writes happen under an ``asyncio.Lock`` (FIFO), so the order of ``call()`` is the wire order.
* One reader task pops a future per reply.
* When the oldest reply is overdue (``reply_timeout_s``) or the connection breaks, every
  pending call fails with ``ConnectionError`` and the next call reconnects: nothing waits forever.
"""
from __future__ import annotations

import asyncio
import collections
import time

from redis.asyncio.connection import ConnectionPool
from redis.exceptions import RedisError, ResponseError


class CommandPipe:
    def __init__(self, url: str, reply_timeout_s: float, connect_timeout_s: float, **conn_kwargs) -> None:
        self._pool = ConnectionPool.from_url(url, protocol=2, **conn_kwargs)
        self._reply_timeout = reply_timeout_s
        self._connect_timeout = connect_timeout_s
        self._conn = None
        self._pending: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self._lock = asyncio.Lock()
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
            self._abort_conn(conn)
            raise
        self._conn = conn
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(conn), name="fanout-pipe-reader")
        return conn

    async def call(self, *args):
        """Send one command; return its reply (or raise its error). Order is call order."""
        if self._closed:
            raise ConnectionError("pipe closed")
        fut = asyncio.get_running_loop().create_future()
        async with self._lock:
            conn = await self._ensure()
            self._pending.append((fut, time.monotonic()))
            try:
                await conn.send_packed_command(conn.pack_command(*args), check_health=False)
            except (RedisError, OSError) as exc:
                self._drop(ConnectionError(str(exc) or exc.__class__.__name__))
                raise ConnectionError(str(exc) or exc.__class__.__name__) from exc
        return await fut

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
            self._abort_conn(conn)
        while self._pending:
            fut, _ = self._pending.popleft()
            if not fut.done():
                fut.set_exception(exc)

    @staticmethod
    def _abort_conn(conn) -> None:
        writer = getattr(conn, "_writer", None)
        if writer is not None:
            writer.transport.abort()
        conn._reader = conn._writer = None

    async def close(self) -> None:
        self._closed = True
        self._drop(ConnectionError("pipe closed"))

    def abort(self) -> None:
        self._closed = True
        self._drop(ConnectionError("pipe aborted"))
