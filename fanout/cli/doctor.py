"""``fanout doctor``: every Redis/Valkey server binary found here, what each supports, which one
a run would use and why; with ``--redis-url``, what a given server is and supports.

Needs no extra: only the server discovery (stdlib) and, for ``--redis-url``, redis-py.
"""
from __future__ import annotations

import argparse
import os

from fanout.cli import EXIT_PASS, EXIT_REDIS, redis_url


def add_parser(sub) -> None:
    doc = sub.add_parser("doctor", help="list the Redis/Valkey servers found, what each supports, which one runs")
    doc.add_argument("--redis-url", metavar="URL", default=None,
                     help="also check this server: what it is, which transports it supports (default: $REDIS_URL)")


def _support_text(server) -> str:
    from fanout.capabilities import REQUIREMENTS, requirement_text, supports

    if server is None:
        return "-"
    ok = [t for t in REQUIREMENTS if supports(t, server)]
    no: dict[str, list[str]] = {}
    for t in REQUIREMENTS:
        if t not in ok:
            no.setdefault(requirement_text(t).split(" (")[0], []).append(t)
    return "; ".join([", ".join(ok)] + [f"not {', '.join(ts)} (need {need})" for need, ts in no.items()])


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def local_report() -> tuple[list[str], bool]:
    """Lines describing the binaries found and the choice; whether a server was chosen."""
    from fanout.errors import RedisServerNotFound
    from fanout.lab.servers.discovery import ENV, candidates, chosen_server, why_chosen

    found = candidates()
    env = os.environ.get(ENV)
    lines = [f"Server binaries found ({ENV}={env})" if env else f"Server binaries found ({ENV} not set):"]
    try:
        chosen = chosen_server()
    except RedisServerNotFound as exc:
        chosen, missing = None, str(exc)
    if chosen is not None and chosen.origin == ENV and not any(
            os.path.realpath(c.path) == os.path.realpath(chosen.path) for c in found):
        found.insert(0, chosen)
    if found:
        rows = [("", "server", "binary", "from", "transports")]
        for c in found:
            mark = "*" if chosen is not None and os.path.realpath(c.path) == os.path.realpath(chosen.path) else ""
            rows.append((mark, str(c.server) if c.server else f"unusable: {c.error}", c.path, c.source,
                         _support_text(c.server)))
        lines += _table(rows)
    else:
        lines.append("  (none on PATH and no embedded wheel installed)")
    if chosen is None:
        lines.append(f"Chosen: none. {missing}")
        return lines, False
    lines.append(f"Chosen (*): {chosen.describe()}: {why_chosen(chosen, found)}.")
    lines.append(f"  A throwaway server runs it; it supports {_support_text(chosen.server)}.")
    return lines, True


def url_report(url: str) -> list[str]:
    """Lines describing the server at ``url`` (raises RedisUnavailable when it does not answer)."""
    import redis

    from fanout.capabilities import server_identity
    from fanout.redact import redact_url
    from fanout.transports.pubsub import explain

    c = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        info = c.info("server")
        cluster = c.info("cluster").get("cluster_enabled") in (1, "1")
    except (redis.RedisError, OSError) as exc:
        raise explain(exc, url) from None
    finally:
        c.close()
    ident = server_identity(info)
    lines = [f"Server at {redact_url(url)}: {ident}", f"  it supports {_support_text(ident)}."]
    lines.append("  It runs in cluster mode: the sharded transport can use it." if cluster else
                 "  It is not a cluster (cluster_enabled:0): the sharded transport needs a Redis Cluster.")
    return lines


def main(args: argparse.Namespace) -> int:
    lines, chosen = local_report()
    print("\n".join(lines))
    url = redis_url(args)
    if url:
        print()
        print("\n".join(url_report(url)))
        return EXIT_PASS
    return EXIT_PASS if chosen else EXIT_REDIS
