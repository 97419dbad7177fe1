"""Early warning of the pub/sub output-buffer cut-off.

Redis keeps what it could not yet write to a subscriber in that client's output buffer and cuts
the subscriber off when the buffer passes ``client-output-buffer-limit pubsub <hard> <soft>
<seconds>`` (default ``32mb 8mb 60``: at once above 32 MB, or after 60 s above 8 MB). The
subscriber learns it only afterwards, from the reconnect and the gap. With
``BridgeConfig.output_buffer_check_s`` set, :class:`OutputBufferCheck` looks before that: one task
per bridge, waking every ``output_buffer_check_s``, reads the subscriber connection's ``omem``
through a control connection of its own (``CLIENT LIST ID <id>``, the id asked with ``CLIENT ID``
on the subscriber connection before it subscribed: a subscribed connection may not ask anything;
sharded pub/sub: each node's subscriber connection, through a control connection to that node, the
largest reading counting) and compares it with the limit:

* the limit is the smaller non-zero of the server's pub/sub hard and soft limits (``CONFIG GET
  client-output-buffer-limit``; a buffer that stays above the soft limit is cut off too), or
  ``BridgeConfig.output_buffer_limit_bytes`` when given (then CONFIG is not asked: managed Redis
  often refuses it);
* at or above ``output_buffer_warn_fraction`` of it: one warning line, ``warnings`` + 1 and
  ``warned_ns``; said again only after the buffer fell below half that threshold;
* a server or ACL user that refuses ``CLIENT ID``, ``CLIENT LIST`` or ``CONFIG GET`` (without a
  configured limit): one log line, and the check turns itself off (``off`` says why);
* a server with no pub/sub limit (both 0): the buffer is still read, never warned about.

The reading is in the bridge's ``metrics()`` (``output_buffer_*``) and, with the Prometheus
exporter, ``fanout_subscriber_output_buffer_bytes``. Nothing here runs on the hot path.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import hiredis

from fanout.errors import FanoutError
from fanout.redact import redact_text, redact_url
from fanout.transports.common import conn_options, one_line
from fanout.transports.connection import open_connection

log = logging.getLogger(__name__)

__all__ = ["OutputBufferCheck", "parse_pubsub_limit", "client_field"]


def parse_pubsub_limit(reply) -> tuple[int, int, int]:
    """``(hard, soft, soft_seconds)`` of the pub/sub class from ``CONFIG GET client-output-buffer-limit``'s
    reply (``[name, "normal 0 0 0 replica ... pubsub 33554432 8388608 60"]``)."""
    text = reply[1] if isinstance(reply, list) and len(reply) >= 2 else reply
    if isinstance(text, bytes):
        text = text.decode()
    words = str(text).split()
    for k in range(len(words) - 3):
        if words[k] == "pubsub":
            return int(words[k + 1]), int(words[k + 2]), int(words[k + 3])
    raise ValueError(f"no pubsub class in {text!r:.120}")


def client_field(client_list: bytes | str, client_id: int, name: str) -> str | None:
    """The field ``name`` (e.g. ``omem``) of the client ``client_id`` in a ``CLIENT LIST`` reply (None: not there)."""
    text = client_list.decode() if isinstance(client_list, bytes) else str(client_list)
    want = f"id={client_id}"
    for line in text.splitlines():
        fields = line.split(" ")
        if fields and fields[0] == want:
            for f in fields:
                k, _, v = f.partition("=")
                if k == name:
                    return v
    return None


class _Refused(FanoutError):
    """The server (or the ACL user) refuses what the check needs."""


def _key(where) -> str:
    """A server's name in log lines and the check's tables: its redacted URL, or host:port."""
    if isinstance(where, str):
        return redact_url(where)
    return str(where.get("path") or f"{where.get('host')}:{where.get('port')}")


def _mib(n: int) -> str:
    return f"{n / 1048576:.2f} MiB"


class OutputBufferCheck:
    """One bridge's output-buffer check (see the module doc). ``subscriber()`` gives the current
    subscription (or None; its ``clients()`` name each subscribing connection's server and CLIENT
    ID: one for pub/sub, one per node for sharded pub/sub); ``who`` names the bridge in log lines."""

    def __init__(self, config, subscriber: Callable[[], object], who: str) -> None:
        self.config = config
        self.interval = float(config.output_buffer_check_s)
        self.fraction = float(config.output_buffer_warn_fraction)
        self._subscriber = subscriber
        self.who = who
        self.bytes: int | None = None        # the last reading: the largest over the subscribing connections
        self.max_bytes: int | None = None    # the largest reading
        self.limit: int | None = None        # what it is compared with: the smallest over their servers (0: none)
        self.limit_from = ""                 # "server" (CONFIG GET) or "config" (output_buffer_limit_bytes)
        self.samples = 0                     # readings taken
        self.warnings = 0                    # times the threshold was crossed (each said in one line)
        self.warned_ns = 0                   # time.time_ns() of the last warning
        self.off: str | None = None          # why the check turned itself off
        self._above = False
        self._conns: dict[str, object] = {}  # server (redacted address) -> control connection
        self._limits: dict[str, int] = {}    # server -> its pub/sub limit (0: none)

    @property
    def threshold(self) -> int | None:
        return int(self.limit * self.fraction) if self.limit else None

    def fields(self) -> dict:
        """What ``metrics()`` shows."""
        return {"output_buffer_bytes": self.bytes, "output_buffer_max_bytes": self.max_bytes,
                "output_buffer_limit_bytes": self.limit, "output_buffer_warnings": self.warnings,
                "output_buffer_warned_ns": self.warned_ns, "output_buffer_samples": self.samples,
                "output_buffer_check": self.off or "on"}

    async def run(self) -> None:
        """The check's one task: sample every ``interval`` until cancelled or turned off."""
        try:
            while self.off is None:
                await asyncio.sleep(self.interval)
                try:
                    await self.sample()
                except _Refused as exc:
                    self.off = str(exc)
                    log.warning("bridge %s: output-buffer check off: %s", self.who, self.off)
                except (ConnectionError, OSError, TimeoutError, FanoutError) as exc:  # down: try at the next tick
                    log.debug("bridge %s: output-buffer check skipped: %s", self.who, redact_text(one_line(exc)))
                    self._drop()
        finally:
            self._drop()

    async def sample(self) -> None:
        """Take one reading (nothing while not subscribed, or while a subscriber just went away)."""
        sub = self._subscriber()
        clients = sub.clients() if sub is not None else []
        if not clients:
            return
        readings, limits = [], []
        for where, cid in clients:
            if cid is None:
                raise _Refused("the subscriber connection's CLIENT ID was refused (the ACL user needs client|id)")
            key = _key(where)
            conn = await self._connect(key, where)
            if key not in self._limits:
                self._limits[key] = await self._read_limit(conn, key)
            omem = await self._omem(conn, cid)
            if omem is None:  # the subscriber is gone (cut off, reconnecting): the bridge's reconnect says it
                return
            readings.append(omem)
            limits.append(self._limits[key])
        for key in [k for k in self._conns if k not in {_key(w) for w, _ in clients}]:
            self._conns.pop(key).abort()  # a server this subscription no longer uses (a moved master)
        n = max(readings)
        self.bytes = n
        self.max_bytes = n if self.max_bytes is None else max(self.max_bytes, n)
        self.samples += 1
        limit = self.limit = min((x for x in limits if x), default=0)
        if not limit:
            return
        threshold = limit * self.fraction
        if n >= threshold and not self._above:
            self._above = True
            self.warnings += 1
            self.warned_ns = time.time_ns()
            log.warning("bridge %s: Redis holds %s for its subscriber, %.0f%% of the %s pub/sub output-buffer "
                        "limit (%s); past it Redis cuts the subscriber off: the handlers are too slow for the flow",
                        self.who, _mib(n), 100 * n / limit, _mib(limit),
                        "client-output-buffer-limit" if self.limit_from == "server" else "output_buffer_limit_bytes")
        elif n < threshold / 2:
            self._above = False

    async def _omem(self, conn, cid: int) -> int | None:
        try:
            reply = await conn.call(b"CLIENT", b"LIST", b"ID", cid)
        except hiredis.ReplyError as exc:
            if "syntax" not in str(exc).lower():  # NOPERM and the like
                raise _Refused(f"CLIENT LIST refused: {one_line(exc)}") from None
            try:  # Redis < 6.2 has no CLIENT LIST ID: every client's line, filtered here
                reply = await conn.call(b"CLIENT", b"LIST")
            except hiredis.ReplyError as exc2:
                raise _Refused(f"CLIENT LIST refused: {one_line(exc2)}") from None
        omem = client_field(reply, cid, "omem")
        return None if omem is None else int(omem)

    async def _read_limit(self, conn, key: str) -> int:
        if self.config.output_buffer_limit_bytes is not None:
            self.limit_from = "config"
            return int(self.config.output_buffer_limit_bytes)
        try:
            reply = await conn.call(b"CONFIG", b"GET", b"client-output-buffer-limit")
        except hiredis.ReplyError as exc:
            raise _Refused(f"CONFIG GET client-output-buffer-limit refused ({one_line(exc)}); give the limit as "
                           f"BridgeConfig.output_buffer_limit_bytes") from None
        try:
            hard, soft, _secs = parse_pubsub_limit(reply)
        except (ValueError, IndexError) as exc:  # renamed or emptied CONFIG: the same as refused
            raise _Refused(f"CONFIG GET client-output-buffer-limit: {exc}; give the limit as "
                           f"BridgeConfig.output_buffer_limit_bytes") from None
        self.limit_from = "server"
        limit = min((x for x in (hard, soft) if x > 0), default=0)
        if not limit:
            log.info("bridge %s: %s sets no pub/sub output-buffer limit: its buffer is read, never warned about",
                     self.who, key)
        return limit

    async def _connect(self, key: str, where):
        conn = self._conns.get(key)
        if conn is not None and conn.connected:
            return conn
        cfg = self.config
        conn = await open_connection(where, **conn_options(cfg, client_name=f"fanout:{cfg.instance_id}:check"))
        self._conns[key] = conn
        return conn

    def _drop(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            conn.abort()
