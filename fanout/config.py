"""BridgeConfig: how a bridge reaches Redis and what it does there (the seed's fields, plus ours)."""
from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
from dataclasses import dataclass, field, fields
from typing import Any, Mapping
from urllib.parse import quote

from redis.exceptions import RedisError

from fanout.channels import HEARTBEAT, channel_for, heartbeat_channel, partition_channels, partition_of
from fanout.errors import ConfigError, RedisUnavailable
from fanout.events import EVENT_TYPES, MAX_SOURCE_CHARS
from fanout.redact import redact_url
from fanout.signing import check_keys
from fanout.transports import TRANSPORTS

log = logging.getLogger(__name__)

#: ``compat``: "fanout" (every feature) or "seed" (only messages the seed's bridge reads: no batches)
COMPAT_MODES = ("fanout", "seed")
#: what a key prefix may end with (a prefix is joined to the type as it is: ``ws:`` + ``ticker``)
PREFIX_SEPARATORS = ":./-_|#"
#: the seed's configuration fields (camelCase) -> ours (:meth:`BridgeConfig.from_seed`)
SEED_FIELDS = {"host": "host", "port": "port", "password": "password", "keyPrefix": "key_prefix",
               "instanceId": "instance_id", "enablePublishing": "enable_publishing",
               "enableSubscription": "enable_subscription"}
#: a heartbeat not back within this many ``heartbeat_s`` (while PING answers) marks the subscription stale
HEARTBEAT_BOUND = 3
#: every field given in seconds (a number > 0)
SECONDS = ("connect_timeout_s", "command_timeout_s", "publish_timeout_s", "reconnect_initial_s", "reconnect_max_s",
           "health_check_interval_s", "health_check_timeout_s", "signed_max_age_s", "signed_max_skew_s",
           "slow_handler_s")


def check_prefix(prefix: Any, field_name: str = "key_prefix") -> str:
    """A key prefix: a string, empty or ending with a separator (``ws:``), with no whitespace; else a
    one-line :class:`ConfigError` (``"ws"`` would make channel ``wsticker``)."""
    if not isinstance(prefix, str):
        raise ConfigError(f"{field_name}: must be a string, got {type(prefix).__name__}")
    if any(c.isspace() for c in prefix):
        raise ConfigError(f"{field_name}: {prefix!r} must not contain whitespace")
    if prefix and prefix[-1] not in PREFIX_SEPARATORS:
        raise ConfigError(f"{field_name}: {prefix!r} must end with a separator (one of {PREFIX_SEPARATORS}), "
                          f"e.g. {prefix + ':'!r}; it is joined to the event type as it is ({prefix + 'ticker'!r})")
    return prefix


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def default_instance_id() -> str:
    """Unique across hosts and containers (which often all run as pid 1): host, pid, a random suffix."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """How a bridge reaches Redis and what it does there (the seed's fields, plus ours).

    Give ``url`` (``redis://``, ``rediss://``, ``unix://``) or ``host``/``port``/``password``/
    ``username``/``db``; explicit ``password``/``username`` override the URL's.

    ``instance_id``: a string or an integer (the seed used ``process.pid``); ids compare by
    type and value, so ``123`` and ``"123"`` are two instances. The default is unique per
    process across hosts and containers. ``signing_keys``: ``{key_id: secret}``, the first
    signs, all are accepted (docs/wire-format.md); with keys, unsigned messages are rejected.
    ``compat="seed"``: only send what the seed's bridge reads (refuses ``batch_max > 1``).

    Frozen: what a bridge learns while it runs (the master Sentinel names) lives in the bridge.
    Every field is checked when the config is made (also by ``dataclasses.replace``): a wrong
    type, range or name is one :class:`~fanout.errors.ConfigError` line naming the field. The
    seed's camelCase fields: :meth:`from_seed`.
    """

    url: str | None = None
    host: str = "localhost"
    port: int = 6379
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    db: int = 0
    key_prefix: str = "ws:"
    instance_id: str | int = field(default_factory=default_instance_id)
    enable_publishing: bool = True
    enable_subscription: bool = True
    event_types: tuple[str, ...] = EVENT_TYPES
    transport: str = "pubsub"
    connect_timeout_s: float = 3.0
    command_timeout_s: float = 3.0
    publish_timeout_s: float = 2.0
    reconnect_initial_s: float = 0.05
    reconnect_max_s: float = 2.0
    health_check_interval_s: float = 5.0
    health_check_timeout_s: float = 3.0
    stream_maxlen: int = 100_000
    stream_maxlen_approx: bool = True
    # Sentinel: ask these ("host:port", ...) where the master named ``sentinel_master`` is, each
    # time the bridge (re)connects; ``url``/``host``/``port`` are then only used before the first answer.
    sentinels: tuple[str, ...] = ()
    sentinel_master: str | None = None
    # sharded transport: channels per event type (> 1: partitioned by the event's symbol)
    shard_partitions: int = 1
    batch_max: int = 1                 # >1: up to this many events per Redis message when the publisher is ahead
    batch_delay_ms: float = 0.0        # with batching: the most a batch waits for company (0: this loop turn only)
    compat: str = "fanout"             # "seed": send only what the seed's bridge understands (no batches)
    signing_keys: dict[str, bytes] | None = field(default=None, repr=False, hash=False)  # {key_id: secret}, first signs
    # with signing: signed messages older (or newer) than this are rejected as stale (replays); it is
    # also the clock-skew allowed between a publisher's clock and a receiver's (or Redis's, for streams)
    signed_max_age_s: float = 60.0
    # with signing, pub/sub: a signed message stamped earlier than this before the receiver's
    # (re)subscription is a replay (pub/sub delivers only what is published after it); the clock skew
    # allowed between publishers and receivers for that check
    signed_max_skew_s: float = 1.0
    # a sync handler that holds the reader longer than this is said (once per decade) and counted
    slow_handler_s: float = 0.1
    # keep the bridge's own histograms (bridge.histograms(), fanout.histograms: delivery latency, publish and
    # sync handler duration): off by default, they cost ~20 % of the receive path (README: "Watching a
    # bridge with Prometheus"); an exporter serving latency needs them on
    histograms: bool = False
    # liveness end to end (README: "Liveness: the heartbeat"): a subscribing bridge publishes a small heartbeat
    # on its own control channel every this many seconds and expects it back within HEARTBEAT_BOUND x this; one
    # that does not come back while PING still answers marks the subscription stale: counted
    # (stale_subscriptions), said, resubscribed on a new connection. None: off (no control channel traffic)
    heartbeat_s: float | None = None
    # early warning of the pub/sub output-buffer cut-off (README: "Before Redis cuts a slow subscriber
    # off"): every this many seconds (None: off) a control connection reads the subscriber connection's
    # ``omem`` (CLIENT LIST ID) and compares it with the server's pub/sub limit (CONFIG GET
    # client-output-buffer-limit, or ``output_buffer_limit_bytes`` when given); at or above
    # ``output_buffer_warn_fraction`` of it: one warning line, metrics()' output_buffer_* fields
    output_buffer_check_s: float | None = None
    output_buffer_warn_fraction: float = 0.5
    output_buffer_limit_bytes: int | None = None

    @classmethod
    def from_seed(cls, seed: Mapping[str, Any], **ours: Any) -> "BridgeConfig":
        """A config from the seed's fields (``host``, ``port``, ``password``, ``keyPrefix``,
        ``instanceId``, ``enablePublishing``, ``enableSubscription``); fanout's own fields may be
        given beside them as keywords. An unknown field is one :class:`ConfigError` line."""
        if not isinstance(seed, Mapping):
            raise ConfigError(f"from_seed: give a mapping of the seed's fields, got {type(seed).__name__}")
        kw: dict[str, Any] = {}
        for k, v in seed.items():
            if k not in SEED_FIELDS:
                close = [f for f in SEED_FIELDS if f.lower() == str(k).lower().replace("_", "")]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"from_seed: unknown field {k!r}{hint}; the seed's fields are "
                                  f"{', '.join(SEED_FIELDS)}")
            kw[SEED_FIELDS[k]] = v
        return cls(**kw, **ours)

    def __post_init__(self) -> None:
        _set = object.__setattr__  # frozen: normalised values are set once, here
        for name in ("enable_publishing", "enable_subscription", "stream_maxlen_approx", "histograms"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: must be True or False, got {getattr(self, name)!r}")
        if self.url is not None and not isinstance(self.url, str):
            raise ConfigError(f"url: must be a string, got {type(self.url).__name__}")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host: must be a non-empty string, got {self.host!r}")
        if not _whole(self.port) or not 1 <= self.port <= 65535:
            raise ConfigError(f"port: must be a whole number from 1 to 65535, got {self.port!r}")
        if not _whole(self.db) or self.db < 0:
            raise ConfigError(f"db: must be a whole number >= 0, got {self.db!r}")
        for name in ("password", "username", "sentinel_master"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name}: must be a string or None, got {type(getattr(self, name)).__name__}")
        if not _whole(self.stream_maxlen):
            raise ConfigError(f"stream_maxlen: must be a whole number (<= 0: no MAXLEN), got {self.stream_maxlen!r}")
        for name in SECONDS:
            v = getattr(self, name)
            if not _number(v) or v <= 0:
                raise ConfigError(f"{name}: must be a number of seconds > 0, got {v!r}")
        check_prefix(self.key_prefix)
        if isinstance(self.event_types, str):
            _set(self, "event_types", (self.event_types,))
        try:
            _set(self, "event_types", tuple(self.event_types))
        except TypeError:
            raise ConfigError(f"event_types: give event type names, got {self.event_types!r}") from None
        if not self.event_types:
            raise ConfigError("event_types: at least one event type is needed")
        for t in self.event_types:
            if not isinstance(t, str) or not t or any(c.isspace() for c in t):
                raise ConfigError(f"event_types: {t!r} is not a valid event type name")
            if t.startswith(HEARTBEAT):
                raise ConfigError(f"event_types: {t!r}: names starting with {HEARTBEAT!r} are the heartbeat's "
                                  "control channels")
        if self.heartbeat_s is not None and (not _number(self.heartbeat_s) or self.heartbeat_s <= 0):
            raise ConfigError(f"heartbeat_s: must be a number of seconds > 0, or None (off), got {self.heartbeat_s!r}")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport: {self.transport!r} is not one of {', '.join(sorted(TRANSPORTS))}")
        iid = self.instance_id
        if isinstance(iid, bool) or not isinstance(iid, (str, int)):
            raise ConfigError(f"instance_id: must be a string or an integer, got {type(iid).__name__}")
        if iid == "":
            raise ConfigError("instance_id: must not be empty")
        if isinstance(iid, str) and len(iid) > MAX_SOURCE_CHARS:
            raise ConfigError(f"instance_id: at most {MAX_SOURCE_CHARS} characters (receivers track no longer source)")
        if self.compat not in COMPAT_MODES:
            raise ConfigError(f"compat: {self.compat!r} is not one of {', '.join(COMPAT_MODES)}")
        if self.signing_keys is not None:
            _set(self, "signing_keys", check_keys(self.signing_keys))
        if not (self.enable_publishing or self.enable_subscription):
            raise ConfigError("enable_publishing and enable_subscription are both off: the bridge would do nothing")
        if self.url is not None and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"url: {redact_url(self.url)!r} must start with redis://, rediss:// or unix://")
        if isinstance(self.sentinels, str):
            _set(self, "sentinels", tuple(x.strip() for x in self.sentinels.split(",") if x.strip()))
        _set(self, "sentinels", tuple(self.sentinels or ()))
        for addr in self.sentinels:
            host, _, port = str(addr).rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"sentinels: {addr!r} is not host:port")
        if bool(self.sentinels) != bool(self.sentinel_master):
            raise ConfigError("sentinels and sentinel_master go together: give both or neither")
        if self.sentinels and self.transport == "sharded":
            raise ConfigError("sentinels: the sharded transport talks to a Redis Cluster, not through Sentinel")
        if isinstance(self.shard_partitions, bool) or not isinstance(self.shard_partitions, int) \
                or not 1 <= self.shard_partitions <= 1024:
            raise ConfigError(f"shard_partitions: must be a whole number from 1 to 1024, got {self.shard_partitions!r}")
        if isinstance(self.batch_max, bool) or not isinstance(self.batch_max, int) or not 1 <= self.batch_max <= 10_000:
            raise ConfigError(f"batch_max: must be a whole number from 1 to 10000, got {self.batch_max!r}")
        if self.batch_max > 1 and self.compat == "seed":
            raise ConfigError("batch_max: compat='seed' sends one event per message (the seed's bridge reads no batches)")
        if self.batch_max > 1 and self.transport == "streams":
            raise ConfigError("batch_max: batching is for pub/sub (a stream entry must stay one event)")
        if not _number(self.batch_delay_ms) or not 0 <= self.batch_delay_ms <= 1000:
            raise ConfigError(f"batch_delay_ms: must be a number from 0 to 1000, got {self.batch_delay_ms!r}")
        if self.output_buffer_check_s is not None:
            v = self.output_buffer_check_s
            if not _number(v) or v <= 0:
                raise ConfigError(f"output_buffer_check_s: must be a number of seconds > 0 or None (off), got {v!r}")
            if self.transport not in ("pubsub", "sharded"):
                raise ConfigError(f"output_buffer_check_s: the check reads a pub/sub subscriber's output buffer; "
                                  f"the {self.transport} transport has none to read")
        if not _number(self.output_buffer_warn_fraction) or not 0 < self.output_buffer_warn_fraction <= 1:
            raise ConfigError(f"output_buffer_warn_fraction: must be a number above 0 and at most 1, "
                              f"got {self.output_buffer_warn_fraction!r}")
        if self.output_buffer_limit_bytes is not None and (
                not _whole(self.output_buffer_limit_bytes) or self.output_buffer_limit_bytes <= 0):
            raise ConfigError(f"output_buffer_limit_bytes: must be a whole number of bytes > 0 or None (ask the "
                              f"server), got {self.output_buffer_limit_bytes!r}")
        if self.shard_partitions > 1 and self.transport != "sharded":
            raise ConfigError("shard_partitions: only the sharded transport partitions channels")

    async def discover_master(self) -> str:
        """Ask the sentinels where the master is now (redis-py's ``redis.asyncio.sentinel.Sentinel``)
        and return its URL (the bridge keeps it: the config does not change). Bounded by the connect
        and command timeouts."""
        from redis.asyncio.sentinel import Sentinel

        addrs = [(h, int(p)) for h, _, p in (str(a).rpartition(":") for a in self.sentinels)]
        sentinel = Sentinel(addrs, socket_timeout=self.command_timeout_s,
                            socket_connect_timeout=self.connect_timeout_s)
        try:
            async with asyncio.timeout(self.connect_timeout_s + self.command_timeout_s):
                host, port = await sentinel.discover_master(self.sentinel_master)
        except (RedisError, OSError, TimeoutError) as exc:  # MasterNotFoundError, timeouts: one line naming them
            raise RedisUnavailable(f"no sentinel of {', '.join(self.sentinels)} named a master "
                                   f"for {self.sentinel_master!r}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}") from None
        finally:
            for client in sentinel.sentinels:
                try:
                    await client.aclose()
                except (RedisError, OSError) as exc:  # closing a connection that already failed
                    log.debug("closing a sentinel connection: %s", exc)
        return f"redis://{self._auth()}{host}:{port}/{self.db}"

    def channels(self, event_type: str) -> list[str]:
        """Every channel of one event type: one, or ``shard_partitions`` for the sharded transport."""
        if self.shard_partitions <= 1:
            return [self.channel(event_type)]
        return partition_channels(self.key_prefix, event_type, self.shard_partitions)

    def resolved_url(self) -> str:
        """The configured URL (given, or built from the fields). With Sentinel, where the master
        is now is the bridge's: ``RedisEventBridge.resolved_url()``."""
        if self.url:
            return self.url
        return f"redis://{self._auth()}{self.host}:{self.port}/{self.db}"

    def _auth(self) -> str:
        """``user:password@`` (URL-quoted) for URLs built from the fields, or ``""``."""
        if self.password is None:
            return ""
        user = quote(self.username, safe="") if self.username else ""
        return f"{user}:{quote(self.password, safe='')}@"

    @property
    def safe_url(self) -> str:
        return redact_url(self.resolved_url())

    def heartbeat_channel(self, slot_of: str | None = None) -> str:
        """This bridge's heartbeat channel (stream key): ``{prefix}_heartbeat:{instance_id}``; sharded, one
        sharing the slot of channel ``slot_of`` (:func:`fanout.channels.heartbeat_channel`)."""
        return heartbeat_channel(self.key_prefix, self.instance_id, slot_of)

    def channel(self, event_type: str, key: Any = None) -> str:
        """The channel an event goes to; with ``shard_partitions > 1`` the partition of ``key`` (its symbol)."""
        if self.shard_partitions <= 1:
            return channel_for(self.key_prefix, event_type)
        return self.channels(event_type)[partition_of(key, self.shard_partitions)]


_FIELDS = frozenset(f.name for f in fields(BridgeConfig))
_SNAKE = {camel: snake for camel, snake in SEED_FIELDS.items() if camel != snake}
_dataclass_init = BridgeConfig.__init__


def _init(self, *args: Any, **kwargs: Any) -> None:
    """The dataclass's ``__init__``, with an unknown field named in one ConfigError line (not a bare TypeError)."""
    unknown = [k for k in kwargs if k not in _FIELDS]
    if unknown:
        k = unknown[0]
        hint = (f"; the seed's {k!r} is {_SNAKE[k]!r} here (or use BridgeConfig.from_seed)" if k in _SNAKE else "")
        raise ConfigError(f"{k}: not a BridgeConfig field{hint}")
    _dataclass_init(self, *args, **kwargs)


_init.__doc__ = _dataclass_init.__doc__
_init.__signature__ = __import__("inspect").signature(_dataclass_init)
BridgeConfig.__init__ = _init
