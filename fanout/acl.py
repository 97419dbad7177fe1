"""Least-privilege Redis ACL users per role: the publishing host may only publish on the fleet's
channels, bots may only subscribe to them (Redis >= 6 ACLs; sharded pub/sub and Streams included).

    for line in setuser_lines("ws:", "pubsub"):
        print(line)        # ACL SETUSER fanout-host on ><host-password> resetkeys resetchannels &ws:* -@all +publish ...

Every role may also ``PING`` (health checks), ``INFO`` (the transports read the server's version),
``CLIENT SETNAME`` (bridges name their connections) and ``SELECT``. Nothing else: no keys for
pub/sub and sharded users, no channels for Streams users, and only the keys or channels under the prefix.

Streams (Redis >= 7 key selectors): the host may read and write only the event streams
(``~{prefix}{type}`` per event type: XADD, XINFO STREAM), never a read position; a bot may only
*read* the event streams (``%R~{prefix}{type}``) and read and write **its own** read position,
``{prefix}pos:{instance id}`` (HSET, HGETALL): one user per bot (``fanout-bot-{id}``), so no bot
can rewrite another's position. A peer has both, for its own id.
"""
from __future__ import annotations

from dataclasses import dataclass

from fanout.errors import ConfigError
from fanout.events import EVENT_TYPES
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


def _glob_escape(text: str) -> str:
    """``text`` matched literally in an ACL key pattern (Redis glob: ``* ? [ ] \\`` escaped)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def role_user(prefix: str, transport: str, role: str, name: str | None = None, *,
              instance_id: str | int | None = None, event_types: tuple[str, ...] = EVENT_TYPES) -> RoleUser:
    """The ACL user of one role. Streams bots and peers need ``instance_id`` (their read position's
    key); their default name is then ``fanout-{role}-{id}``."""
    from fanout.config import check_prefix

    if transport not in TRANSPORT_NAMES:
        raise ConfigError(f"transport: {transport!r} is not one of {', '.join(TRANSPORT_NAMES)}")
    if role not in ROLES:
        raise ConfigError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    check_prefix(prefix)
    if not prefix or any(c in prefix for c in "*?[]\\"):
        raise ConfigError(f"prefix: {prefix!r} must be non-empty, without glob characters")
    if isinstance(event_types, str):
        event_types = (event_types,)
    parts = ("host", "bot") if role == "peer" else (role,)
    commands = list(dict.fromkeys([*BASE, *(c for r in parts for c in COMMANDS[(transport, r)])]))
    if transport != "streams":
        scope = ["resetkeys", f"&{prefix}*"]
        return RoleUser(role, name or f"fanout-{role}", tuple([*scope, "-@all", *commands]))
    streams = [f"{prefix}{_glob_escape(t)}" for t in event_types]
    if role == "host":
        keys = [f"~{k}" for k in streams]
    else:
        if instance_id is None or instance_id == "":
            raise ConfigError(f"instance_id: a streams {role} writes its read position under '{prefix}pos:<instance id>'"
                              f": give its instance id (one user per {role}, fanout acl --instance ID)")
        position = f"~{prefix}pos:{_glob_escape(str(instance_id))}"
        keys = [*(f"~{k}" if role == "peer" else f"%R~{k}" for k in streams), position]
        name = name or f"fanout-{role}-{instance_id}"
    return RoleUser(role, name or f"fanout-{role}", tuple(["resetchannels", *keys, "-@all", *commands]))


def role_users(prefix: str, transport: str, roles: tuple[str, ...] = ("host", "bot"), *,
               instances: tuple = (), event_types: tuple[str, ...] = EVENT_TYPES) -> list[RoleUser]:
    """One user per role; for Streams, one bot (or peer) user per instance id in ``instances``."""
    out = []
    for r in roles:
        if transport == "streams" and r != "host":
            if not instances:
                raise ConfigError(f"instances: a streams {r} user is per instance (its read position): "
                                  "give the instance ids (fanout acl --instance ID ...)")
            out += [role_user(prefix, transport, r, instance_id=i, event_types=event_types) for i in instances]
        else:
            out.append(role_user(prefix, transport, r, event_types=event_types))
    return out
