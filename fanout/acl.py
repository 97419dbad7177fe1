"""Least-privilege Redis ACL users per role: the publishing host may only publish on the fleet's
channels, bots may only subscribe to them (Redis >= 6 ACLs; sharded pub/sub and Streams included).

    for line in setuser_lines("ws:", "pubsub"):
        print(line)        # ACL SETUSER fanout-host on ><host-password> resetkeys resetchannels &ws:* -@all +publish ...

Every role may also ``PING`` (health checks), ``INFO`` (the transports read the server's version),
``CLIENT SETNAME`` (bridges name their connections) and ``SELECT``. Nothing else: no keys for
pub/sub users, no channels for Streams users, and only the keys or channels under the prefix.
"""
from __future__ import annotations

from dataclasses import dataclass

from fanout.errors import ConfigError
from fanout.transports import TRANSPORT_NAMES

ROLES = ("host", "bot", "peer")
#: what every connection of a bridge needs
BASE = ("+ping", "+info", "+client|setname", "+select")
#: (transport, role) -> the commands that role runs; "peer" (mesh: publishes and subscribes) is both
COMMANDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("pubsub", "host"): ("+publish",),
    ("pubsub", "bot"): ("+subscribe", "+unsubscribe"),
    ("sharded", "host"): ("+spublish", "+cluster|slots", "+cluster|shards"),
    ("sharded", "bot"): ("+ssubscribe", "+sunsubscribe", "+cluster|slots", "+cluster|shards"),
    ("streams", "host"): ("+xadd", "+xinfo|stream"),
    ("streams", "bot"): ("+xread", "+xinfo|stream", "+hset", "+hgetall"),
}


@dataclass(frozen=True)
class RoleUser:
    role: str
    name: str
    rules: tuple[str, ...]   # everything after ``ACL SETUSER <name>`` but the password

    def setuser(self, password: str | None = None) -> list[str]:
        """The ``ACL SETUSER`` arguments; ``password`` None: a placeholder, for printing."""
        secret = f">{password}" if password is not None else f"><{self.role}-password>"
        return ["ACL", "SETUSER", self.name, "reset", "on", secret, *self.rules]

    def line(self) -> str:
        return " ".join(self.setuser())


def role_user(prefix: str, transport: str, role: str, name: str | None = None) -> RoleUser:
    if transport not in TRANSPORT_NAMES:
        raise ConfigError(f"transport: {transport!r} is not one of {', '.join(TRANSPORT_NAMES)}")
    if role not in ROLES:
        raise ConfigError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if not prefix or any(c.isspace() for c in prefix) or any(c in prefix for c in "*?[]"):
        raise ConfigError(f"prefix: {prefix!r} must be non-empty, without spaces or glob characters")
    parts = ("host", "bot") if role == "peer" else (role,)
    commands = list(dict.fromkeys([*BASE, *(c for r in parts for c in COMMANDS[(transport, r)])]))
    scope = [f"~{prefix}*", "resetchannels"] if transport == "streams" else ["resetkeys", f"&{prefix}*"]
    return RoleUser(role, name or f"fanout-{role}", tuple([*scope, "-@all", *commands]))


def role_users(prefix: str, transport: str, roles: tuple[str, ...] = ("host", "bot")) -> list[RoleUser]:
    return [role_user(prefix, transport, r) for r in roles]
