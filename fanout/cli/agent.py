"""``fanout agent``: host instances for runs coordinated through Redis (``fanout run --agents K``)."""
from __future__ import annotations

import argparse

from fanout.cli import redis_url
from fanout.errors import ConfigError


def add_parser(sub) -> None:
    agent = sub.add_parser("agent", help="host instances for runs coordinated through Redis (fanout run --agents K)")
    agent.add_argument("--redis-url", metavar="URL", default=None, help="the Redis under test (default: $REDIS_URL)")
    agent.add_argument("--name", help="this agent's name (default: host-pid)")
    agent.add_argument("--role", choices=("any", "host", "bot"), default="any",
                       help="host: take the websocket-host in a host-bots run (default any)")
    agent.add_argument("--wait", type=float, default=600.0, metavar="S",
                       help="seconds to wait for a run before exiting (default 600)")
    agent.add_argument("--clock-skew-ms", type=float, default=0.0, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    from fanout.lab.agents import agent_main
    from fanout.lab.run import run_sync  # a signal stops it like a run: deregistered on the way out

    url = redis_url(args)
    if not url:
        raise ConfigError("an agent needs --redis-url (or $REDIS_URL): the Redis every agent and the coordinator reach")
    return run_sync(agent_main(url, args.name, args.role, wait_s=args.wait,
                                  clock_skew_ns=int(args.clock_skew_ms * 1e6),
                                  say=lambda line: print(line, flush=True)))
