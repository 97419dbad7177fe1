"""FaultProxy against a real redis-server: pass-through, delay without throttling,
reset and blackhole partitions, heal, and a bounded close."""
from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from fanout.lab.servers import RedisServer
from fanout.lab.proxy import FaultProxy

from conftest import arun, wait_for

T = 10.0  # every test is bounded by this


def client(url: str, socket_timeout: float = 2.0) -> aredis.Redis:
    """A client that fails at once instead of retrying, so faults show up as errors."""
    return aredis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0),
    )


def n_clients(srv: RedisServer) -> int:
    """Connections Redis itself sees right now (including the one asking)."""
    with redis.Redis.from_url(srv.url, socket_timeout=2) as r:
        return len(r.client_list())


def queued_up(proxy: FaultProxy) -> int:
    """Chunks the proxy has read from its clients and holds (delayed), not yet sent to Redis."""
    return sum(len(p.fifo) for link in proxy._links for p in link.pipes if p.direction == "up")


# -- addresses -------------------------------------------------------------------------
def test_url_for_keeps_credentials_and_db():
    async def main():
        with RedisServer(password="s3cret") as srv:
            async with FaultProxy(srv.host, srv.port) as proxy:
                url = proxy.url_for(f"redis://:s3cret@{srv.host}:{srv.port}/3?protocol=2")
                assert url == f"redis://:s3cret@127.0.0.1:{proxy.port}/3?protocol=2"
                assert proxy.url_for("redis://u:p@db.example:6380") == f"redis://u:p@127.0.0.1:{proxy.port}"
                with pytest.raises(ValueError):
                    proxy.url_for("unix:///tmp/redis.sock")
                r = client(proxy.url_for(srv.url))
                try:
                    assert await r.ping()  # AUTH went through the proxy
                finally:
                    await r.aclose()
    arun(main(), T)


# -- 1. pass-through -------------------------------------------------------------------
def test_pass_through_commands_pubsub_and_byte_counts(redis_server):
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port) as proxy:
            url = proxy.url_for(redis_server.url)
            r, direct = client(url), client(redis_server.url)
            try:
                value = b"x" * 10_000
                assert await r.set("k", value)
                assert await r.get("k") == value
                assert await direct.get("k") == value  # it really reached Redis

                ps = r.pubsub()
                await ps.subscribe("ch")
                assert (await ps.get_message(timeout=2))["type"] == "subscribe"
                assert await direct.publish("ch", "hello") == 1
                msg = await ps.get_message(ignore_subscribe_messages=True, timeout=2)
                assert msg is not None and msg["data"] == b"hello"
                await ps.aclose()

                s = proxy.stats()
                assert s["bytes_up"] >= 10_000 and s["bytes_down"] >= 10_000
                assert s["connections_total"] >= 1 and s["connections_open"] >= 1
                assert s["dropped_chunks"] == 0 and s["refused"] == 0
            finally:
                await r.aclose()
                await direct.aclose()
            # Clients closing is forwarded (EOF both ways) and the links go away.
            await wait_for(lambda: proxy.stats()["connections_open"] == 0, 3, "links to close")
    arun(main(), T)


def test_large_values_survive_delay_and_backpressure(redis_server):
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port) as proxy:
            r = client(proxy.url_for(redis_server.url), socket_timeout=5)
            try:
                proxy.set_delay(0.02)
                big = bytes(range(256)) * (12 * 1024 * 1024 // 256)  # 12 MiB > HIGH_WATER
                assert await r.set("big", big)
                assert await r.get("big") == big
                # 2 x 12 MiB is ~384 reads of 64 KiB; backpressure (HIGH_WATER) splits each transfer into
                # a few bursts, each shifted by the delay once, never each read held on its own
                assert proxy.stats()["long_waits"] <= 384 // 10, proxy.stats()
            finally:
                await r.aclose()
    arun(main(), T)


# -- 2. delay --------------------------------------------------------------------------
def test_delay_applies_both_ways_without_throttling(redis_server):
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port) as proxy:
            r = client(proxy.url_for(redis_server.url))
            try:
                assert await r.ping()  # connect (and handshake) before measuring
                assert proxy.stats()["long_waits"] == 0  # no delay: nothing held back

                # held: the proxy waits out the delay once each way (a long wait: the chunk was due at least
                # delay/2 ahead when its turn came; 0.5 s leaves a starved loop 250 ms to get there)
                proxy.set_delay(0.5)
                assert await r.ping()
                assert proxy.stats()["long_waits"] == 2  # one wait each way

                async with r.pipeline(transaction=False) as pipe:
                    for i in range(20):
                        pipe.ping()
                    res = await pipe.execute()
                assert res == [True] * 20
                assert 2 + 2 <= proxy.stats()["long_waits"] <= 4 + 2  # held each way, one burst, not 20 round trips

                proxy.set_delay(0)
                waits = proxy.stats()["long_waits"]
                assert await r.ping()
                assert proxy.stats()["long_waits"] == waits  # the delay is gone
            finally:
                await r.aclose()
    arun(main(), T)


def test_delay_does_not_throttle_throughput(redis_server):
    """2.5 MiB each way under a 200 ms delay: far more than one read (64 KiB) per
    direction, yet it is held about once per direction (counted as long waits, not timed).
    Sleeping 200 ms per chunk before forwarding would be ~40 long waits per direction."""
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port) as proxy:
            r = client(proxy.url_for(redis_server.url), socket_timeout=5)
            try:
                assert await r.ping()
                proxy.set_delay(0.2)
                value = b"v" * (128 * 1024)
                async with r.pipeline(transaction=False) as pipe:
                    for i in range(20):
                        pipe.set(f"big{i}", value)
                    res = await pipe.execute()
                assert res == [True] * 20
                held_up = proxy.stats()["long_waits"]
                async with r.pipeline(transaction=False) as pipe:
                    for i in range(20):
                        pipe.get(f"big{i}")
                    res = await pipe.execute()
                assert res == [value] * 20
                assert held_up >= 2 and proxy.stats()["long_waits"] >= held_up + 2  # each held one round trip
                # 2.5 MiB each way is ~40 reads of 64 KiB: shifted once per burst, not held once per read
                assert proxy.stats()["long_waits"] <= 8, proxy.stats()
            finally:
                await r.aclose()
    arun(main(), T)


def test_lowering_the_delay_keeps_order(redis_server):
    """A chunk sent with delay 0 right after one sent with 0.3 s waits behind it."""
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port) as proxy:
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            try:
                proxy.set_delay(2.0)
                writer.write(b"SET order first\r\n")
                # the proxy has read it, stamped with 2 s, and holds it (nothing went up yet)
                await wait_for(lambda: queued_up(proxy) == 1, 3, "the first chunk held by the proxy")
                assert proxy.stats()["bytes_up"] == 0, "sent before the delay was lowered: a loop starved 2 s"
                proxy.set_delay(0)
                writer.write(b"SET order second\r\nGET order\r\n")
                # read with no delay, it queues behind "first", which is still held
                await wait_for(lambda: queued_up(proxy) >= 2, 3, "the second chunk queued behind the first")
                assert proxy.stats()["bytes_up"] == 0
                expected = b"+OK\r\n+OK\r\n$6\r\nsecond\r\n"
                got = await asyncio.wait_for(reader.readexactly(len(expected)), 8)
                assert got == expected  # "second" (written while "first" was held) reached Redis after it
            finally:
                writer.transport.abort()
    arun(main(), T)


# -- 3. partition (reset) --------------------------------------------------------------
def test_partition_resets_connections_and_refuses_until_heal(redis_server):
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port) as proxy:
            url = proxy.url_for(redis_server.url)
            r = client(url)
            try:
                assert await r.ping()
                assert n_clients(redis_server) == 2  # the proxied one + the one asking

                proxy.partition()
                assert proxy.stats()["connections_open"] == 0
                with pytest.raises(redis.ConnectionError):
                    await asyncio.wait_for(r.ping(), 3)
                # Redis saw its side of the connection die too.
                await wait_for(lambda: n_clients(redis_server) == 1, 3, "Redis to drop the proxied client")

                fresh = client(url)
                try:
                    with pytest.raises(redis.ConnectionError):
                        await asyncio.wait_for(fresh.ping(), 3)
                finally:
                    await fresh.aclose()
                assert proxy.stats()["refused"] >= 1

                proxy.heal()
                fresh = client(url)
                try:
                    assert await fresh.ping()
                    assert await fresh.set("after", "heal")
                finally:
                    await fresh.aclose()
                assert await r.get("after") == b"heal"  # the old client reconnects too
            finally:
                await r.aclose()
    arun(main(), T)


def test_redis_going_away_behind_the_proxy_reaches_the_client(redis_server):
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port) as proxy:
            r = client(proxy.url_for(redis_server.url))
            try:
                assert await r.ping()
                redis_server.kill()
                with pytest.raises(redis.ConnectionError):  # the EOF/reset is passed on
                    await asyncio.wait_for(r.ping(), 3)
                with pytest.raises(redis.ConnectionError):  # nothing to dial: client reset
                    await asyncio.wait_for(r.ping(), 3)
                await wait_for(lambda: proxy.stats()["connections_open"] == 0, 3, "links to end")
                await asyncio.to_thread(redis_server.start)
                assert await r.ping()
            finally:
                await r.aclose()
    arun(main(), T)


# -- 4. blackhole ----------------------------------------------------------------------
def test_blackhole_times_out_then_heal_recovers(redis_server):
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port) as proxy:
            url = proxy.url_for(redis_server.url)
            r = client(url, socket_timeout=0.3)
            try:
                assert await r.ping()
                proxy.partition(mode="blackhole")

                # silence, not an error: the client's own 0.3 s timeout fires (redis.TimeoutError; neither a
                # ConnectionError nor the builtin TimeoutError of the 3 s bound here)
                with pytest.raises(redis.TimeoutError):
                    await asyncio.wait_for(r.ping(), 3)
                # No FIN reached Redis: it still holds the proxied connection.
                assert n_clients(redis_server) == 2

                fresh = client(url, socket_timeout=0.3)  # accepted, then silence
                try:
                    with pytest.raises(redis.TimeoutError):  # its own timeout, as above
                        await asyncio.wait_for(fresh.ping(), 3)
                finally:
                    await fresh.aclose()
                s = proxy.stats()
                assert s["dropped_chunks"] >= 2 and s["refused"] == 0

                proxy.heal()
                await wait_for(lambda: proxy.stats()["connections_open"] == 0, 3, "blackholed links aborted")
                await wait_for(lambda: n_clients(redis_server) == 1, 3, "Redis to drop the blackholed link")
                fresh = client(url, socket_timeout=0.3)
                try:
                    assert await fresh.ping()
                finally:
                    await fresh.aclose()
                assert await r.ping()  # the timed-out client reconnects cleanly
            finally:
                await r.aclose()
    arun(main(), T)


# -- 4b. dropping pub/sub messages -------------------------------------------------------
def test_resp_frames_split_across_any_chunking_and_drop_only_messages():
    from fanout.lab.proxy import RespFrames

    wire = (b"+PONG\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n"
            b":1\r\n*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$0\r\n\r\n*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$1\r\nc\r\n"
            b"$1\r\nx\r\n$-1\r\n*2\r\n*1\r\n$7\r\nmessage\r\n:5\r\n-ERR no\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n"
            b"$1\r\ny\r\n")
    kept = (b"+PONG\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n$-1\r\n*2\r\n*1\r\n$7\r\nmessage\r\n:5\r\n"
            b"-ERR no\r\n")
    for size in (1, 2, 7, len(wire)):
        f, out, dropped = RespFrames(), b"", 0
        for i in range(0, len(wire), size):
            o, n = f.feed(wire[i:i + size], True)
            out, dropped = out + o, dropped + n
        assert (out, dropped) == (kept, 4), size
        assert RespFrames().feed(wire, False) == (wire, 0)


def test_drop_messages_keeps_ping_and_replies_on_open_connections_only(redis_server):
    async def main():
        async with FaultProxy(redis_server.host, redis_server.port, resp=True) as proxy:
            url = proxy.url_for(redis_server.url)
            r, direct = client(url), client(redis_server.url)
            ps = r.pubsub()
            try:
                await ps.subscribe("ch")
                assert (await ps.get_message(timeout=2))["type"] == "subscribe"
                assert await r.set("k", "v")
                proxy.drop_messages()
                assert await direct.publish("ch", "lost") == 1  # Redis delivered it ...
                await ps.ping()
                msg = await ps.get_message(timeout=2)             # ... the proxy dropped it; the PONG passed
                assert msg is not None and msg["type"] == "pong", msg
                assert await r.get("k") == b"v"                   # replies pass
                assert proxy.stats()["dropped_messages"] == 1
                fresh = client(url).pubsub()                       # a new connection is not affected
                try:
                    await fresh.subscribe("ch")
                    assert (await fresh.get_message(timeout=2))["type"] == "subscribe"
                    assert await direct.publish("ch", "seen") == 2
                    msg = await fresh.get_message(ignore_subscribe_messages=True, timeout=2)
                    assert msg is not None and msg["data"] == b"seen"
                finally:
                    await fresh.aclose()
                proxy.heal()                                       # and the old one delivers again
                assert await direct.publish("ch", "again") == 2
                msg = await ps.get_message(ignore_subscribe_messages=True, timeout=2)
                assert msg is not None and msg["data"] == b"again", msg
                with pytest.raises(RuntimeError, match="resp=True"):
                    FaultProxy("127.0.0.1", 1).drop_messages()
            finally:
                await ps.aclose()
                await r.aclose()
                await direct.aclose()
    arun(main(), T)


# -- 5. close --------------------------------------------------------------------------
def test_close_with_open_connections_is_bounded(redis_server):
    async def main():
        proxy = await FaultProxy(redis_server.host, redis_server.port).start()
        url = proxy.url_for(redis_server.url)
        idle, busy = client(url, socket_timeout=30), client(url, socket_timeout=30)
        raw_reader, raw_writer = await asyncio.open_connection(proxy.host, proxy.port)
        try:
            assert await idle.ping() and await busy.ping()
            proxy.set_delay(30)  # a command in flight, held by the delay
            in_flight = asyncio.create_task(busy.ping())
            raw_writer.write(b"PING\r\n")
            await wait_for(lambda: queued_up(proxy) == 2, 3, "both PINGs held by the proxy")
            assert proxy.stats()["connections_open"] == 3

            await asyncio.wait_for(proxy.close(), 10)  # bounded although a command is held for 30 s
            assert proxy.stats()["connections_open"] == 0
            with pytest.raises(redis.ConnectionError):
                await asyncio.wait_for(in_flight, 3)
            try:  # dropped (RST or EOF), the delayed PONG never delivered
                assert await asyncio.wait_for(raw_reader.read(), 3) == b""
            except ConnectionResetError:
                pass
            with pytest.raises(redis.ConnectionError):  # nothing listens any more
                await asyncio.wait_for(client(url).ping(), 3)
            await proxy.close()  # idempotent
        finally:
            raw_writer.transport.abort()
            await idle.aclose()
            await busy.aclose()
    arun(main(), T)
