"""``fanout acl``: the least-privilege Redis ACL users per role, printed or applied.

    fanout acl --prefix ws: --transport pubsub                  # print the ACL SETUSER lines
    fanout acl --transport streams --instance bot-1 --instance bot-2   # one bot user per instance (its position)
    FANOUT_HOST_PASSWORD=... FANOUT_BOT_PASSWORD=... fanout acl --prefix ws: --apply --redis-url redis://admin@...
"""
from __future__ import annotations

import argparse
import os

from fanout.cli import EXIT_PASS, redis_url
from fanout.errors import ConfigError, RedisUnavailable
from fanout.redact import redact_url

PASSWORD_ENV = "FANOUT_{role}_PASSWORD"


def add_parser(sub) -> None:
    from fanout.acl import ROLES
    from fanout.transports import TRANSPORT_NAMES

    acl = sub.add_parser("acl", help="least-privilege Redis ACL users per role (print or apply ACL SETUSER)")
    acl.add_argument("--prefix", default="ws:", help="the fleet's key prefix (default ws:)")
    acl.add_argument("--transport", choices=TRANSPORT_NAMES, default="pubsub", help="default pubsub")
    acl.add_argument("--roles", default="host,bot",
                     help=f"comma-separated, of {', '.join(ROLES)} (peer: publishes and subscribes; default host,bot)")
    acl.add_argument("--instance", action="append", default=[], metavar="ID",
                     help="streams: a bot (or peer) instance id; one user each, writing only its own read position "
                          "(repeat for every bot)")
    acl.add_argument("--event-types", default=None, metavar="T1,T2",
                     help="streams: the event types (the stream keys); default every type")
    acl.add_argument("--apply", action="store_true",
                     help="run the lines on --redis-url (passwords from $FANOUT_HOST_PASSWORD, $FANOUT_BOT_PASSWORD, "
                          "$FANOUT_PEER_PASSWORD)")
    acl.add_argument("--redis-url", metavar="URL", default=None,
                     help="with --apply: a user allowed to run ACL SETUSER (default: $REDIS_URL)")


def main(args: argparse.Namespace) -> int:
    from fanout.acl import role_user

    from fanout.acl import role_users
    from fanout.events import EVENT_TYPES

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    types = tuple(t.strip() for t in args.event_types.split(",") if t.strip()) if args.event_types else EVENT_TYPES
    for r in roles:
        role_user(args.prefix, args.transport, r, instance_id="x")  # a bad role or prefix: its own line first
    users = role_users(args.prefix, args.transport, tuple(roles), instances=tuple(args.instance), event_types=types)
    if not args.apply:
        for u in users:
            print(u.line())
        return EXIT_PASS
    url = redis_url(args)
    if not url:
        raise ConfigError("--apply needs --redis-url (or $REDIS_URL): a Redis user allowed to run ACL SETUSER")
    passwords = {}
    for u in users:
        env = PASSWORD_ENV.format(role=u.role.upper())
        if not os.environ.get(env):
            raise ConfigError(f"--apply: set {env} to the password of the {u.role} user ({u.name})")
        passwords[u.name] = os.environ[env]
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3) as client:
            for u in users:
                client.execute_command(*u.setuser(passwords[u.name]))
    except redis.exceptions.ResponseError as exc:
        raise ConfigError(f"Redis at {redact_url(url)} refused ACL SETUSER: {str(exc).splitlines()[0]}") from None
    except (redis.exceptions.RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {str(exc).splitlines()[0]}") from None
    for u in users:
        print(f"applied on {redact_url(url)}: {u.line().replace(f'><{u.role}-password>', '>***')}")
    return EXIT_PASS
