"""The ``fanout`` command.

    fanout run [--instances=5 --duration=30 --rate=10 --verbose ...]   one scenario, a verdict
    fanout report [--full]                                              the validation report (HTML + Markdown)
    fanout demo                                                         one publisher, two subscribers, metrics

Exit codes: 0 pass, 1 verdict failed, 2 usage error, 3 Redis unreachable. Every user mistake
is one line on stderr, never a traceback. ``REDIS_URL`` in the environment is used when no
``--redis-url`` is given; with neither, a throwaway redis-server is started.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .errors import ConfigError, FanoutError
from .redact import redact_text

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_REDIS = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_scenario_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scenario (flags override --scenario)")
    g.add_argument("--scenario", metavar="FILE", help="a scenario YAML file, or a shipped name (standard, stress, scale-10, load-1k)")
    g.add_argument("--instances", type=int, metavar="N", help="number of instances (default 3)")
    g.add_argument("--duration", type=float, metavar="S", help="seconds of publishing (default 20)")
    g.add_argument("--rate", type=float, metavar="R", help="events per second, total across instances (default 10)")
    g.add_argument("--arrivals", choices=("uniform", "poisson"), help="arrival process (default uniform)")
    g.add_argument("--event-types", type=_csv, metavar="T,T", help="comma-separated: ticker,trade,orderbook,candle")
    g.add_argument("--transport", help="pubsub (default) or streams")
    g.add_argument("--processes", action="store_true", help="run each instance in its own OS process")
    g.add_argument("--agents", type=int, metavar="K", help="run over K 'fanout agent' processes (any hosts) through Redis")
    g.add_argument("--agent-wait", type=float, metavar="S", default=60.0,
                   help="with --agents: seconds to wait for them to register (default 60)")
    g.add_argument("--topology", choices=("mesh", "host-bots"),
                   help="mesh (default): all publish and subscribe; host-bots: one publish-only host, the rest bots")
    g.add_argument("--seed", type=int, help="random seed: same seed, same publishers, types and payloads")
    g.add_argument("--warmup", type=float, metavar="S", help="seconds published before measuring")
    g.add_argument("--drain-timeout", type=float, metavar="S", help="seconds to wait for late deliveries")
    g.add_argument("--min-delivery", type=float, metavar="PCT", help="verdict: delivery rate must exceed this (default 95)")
    g.add_argument("--max-avg-latency", type=float, metavar="MS", help="verdict: average latency must be below this (default 100)")
    p.add_argument("--redis-url", metavar="URL", default=None,
                   help="Redis to use (default: $REDIS_URL, else a throwaway redis-server)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fanout", description="Fan market-data events out through Redis and prove every instance got them.")
    parser.add_argument("--version", action="version", version=f"fanout {__version__}")
    parser.add_argument("--log-level", default="WARNING", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run one scenario and print the seed-style report and verdict")
    _add_scenario_flags(run)
    run.add_argument("--verbose", action="store_true", help="print every transmission and delivery")
    run.add_argument("--out", metavar="DIR", default="data/runs", help="where the run record is saved (default data/runs)")
    run.add_argument("--no-save", action="store_true", help="do not save the run record")
    run.add_argument("--json", action="store_true", help="print a machine-readable summary instead of the text report")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    rep = sub.add_parser("report", help="run the validation notebook and export reports/validation-report.{html,md}")
    length = rep.add_mutually_exclusive_group()
    length.add_argument("--quick", action="store_true", help="short scenarios, about a minute in all (the default)")
    length.add_argument("--full", action="store_true", help="the seed's full-length scenarios (20 s, 30 s, ...)")
    rep.add_argument("--scenarios", type=_csv, metavar="A,B", help="which scenarios to run (default standard,stress,scale-10,load-1k)")
    rep.add_argument("--duration-scale", type=float, metavar="X", help="multiply every scenario's duration by X")
    rep.add_argument("--out", metavar="DIR", default="reports", help="output folder (default reports)")
    rep.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="extra notebook parameter (YAML value), repeatable")
    rep.add_argument("--redis-url", metavar="URL", default=None, help="Redis to use (default: $REDIS_URL, else throwaway)")

    agent = sub.add_parser("agent", help="host instances for runs coordinated through Redis (fanout run --agents K)")
    agent.add_argument("--redis-url", metavar="URL", default=None, help="the Redis under test (default: $REDIS_URL)")
    agent.add_argument("--name", help="this agent's name (default: host-pid)")
    agent.add_argument("--role", choices=("any", "host", "bot"), default="any",
                       help="host: take the websocket-host in a host-bots run (default any)")
    agent.add_argument("--wait", type=float, default=600.0, metavar="S",
                       help="seconds to wait for a run before exiting (default 600)")
    agent.add_argument("--clock-skew-ms", type=float, default=0.0, help=argparse.SUPPRESS)

    demo = sub.add_parser("demo", help="one publisher, two subscribers on a throwaway Redis; print their metrics")
    demo.add_argument("--events", type=int, default=20, help="events to publish (default 20)")
    demo.add_argument("--redis-url", metavar="URL", default=None, help="Redis to use (default: $REDIS_URL, else throwaway)")
    return parser


def _redis_url(args: argparse.Namespace) -> str | None:
    return args.redis_url or os.environ.get("REDIS_URL") or None


def _scenario_from_args(args: argparse.Namespace):
    from .scenario import Scenario, from_dict, load_scenario

    overrides = {
        "instances": args.instances, "duration_s": args.duration, "rate_per_s": args.rate,
        "arrivals": args.arrivals, "event_types": args.event_types, "transport": args.transport,
        "seed": args.seed, "warmup_s": args.warmup, "drain_timeout_s": args.drain_timeout,
        "min_delivery_pct": args.min_delivery, "max_avg_latency_ms": args.max_avg_latency,
        "redis_url": _redis_url(args), "verbose": True if getattr(args, "verbose", False) else None,
        "process_mode": "processes" if args.processes else None,
        "agents": args.agents, "topology": args.topology,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.scenario:
        return load_scenario(args.scenario, **overrides)
    return from_dict({**Scenario().to_dict(), **overrides})


def cmd_run(args: argparse.Namespace) -> int:
    from .analysis import analyse
    from .report import render_json, render_text
    from .simulator import check_reachable, run_scenario

    sc = _scenario_from_args(args)
    if sc.redis_url:
        check_reachable(sc.redis_url)
    if sc.agents:
        from . import simulator

        simulator.AGENT_WAIT_S = args.agent_wait
    printer = (lambda line: print(line, flush=True)) if sc.verbose and not args.json else None
    rec = run_scenario(sc, progress=False if (args.no_progress or args.json) else None, printer=printer,
                       save_to=None if args.no_save else args.out)
    findings = analyse(rec)
    if args.json:
        print(render_json(findings))
    else:
        print(render_text(findings))
        if rec.path:
            print(f"Run record: {rec.path}")
    return EXIT_PASS if findings.passed else EXIT_FAIL


def _parameter_value(text: str):
    """A ``-p NAME VALUE`` value: a number when it reads as one (``1e-9`` too), else YAML."""
    import yaml

    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"-p value {text!r} is not valid YAML ({str(exc).splitlines()[0]})") from None


def cmd_report(args: argparse.Namespace) -> int:
    from .notebook_runner import build_validation_report

    params: dict = {}
    for name, value in args.parameter:
        params[name] = _parameter_value(value)
    if args.full:
        params["quick"] = False
    elif args.quick:
        params["quick"] = True
    if args.scenarios:
        params["scenarios"] = args.scenarios
    if args.duration_scale is not None:
        params["duration_scale"] = args.duration_scale
    url = _redis_url(args)
    if url:
        from .simulator import check_reachable

        check_reachable(url)
        params["redis_url"] = url
    result = build_validation_report(params, out_dir=Path(args.out))
    print(f"HTML report:     {result.html}")
    print(f"Markdown report: {result.markdown}")
    print(f"Verdict: {result.status}")
    return EXIT_PASS if result.passed else EXIT_FAIL


def cmd_agent(args: argparse.Namespace) -> int:
    from .agents import agent_main

    url = _redis_url(args)
    if not url:
        raise ConfigError("an agent needs --redis-url (or $REDIS_URL): the Redis every agent and the coordinator reach")
    return asyncio.run(agent_main(url, args.name, args.role, wait_s=args.wait,
                                  clock_skew_ns=int(args.clock_skew_ms * 1e6),
                                  say=lambda line: print(line, flush=True)))


def cmd_demo(args: argparse.Namespace) -> int:
    from .bridge import BridgeConfig, RedisEventBridge
    from .redis_server import RedisServer

    async def go(url: str) -> bool:
        host = RedisEventBridge(BridgeConfig(url=url, instance_id="websocket-host", enable_subscription=False))
        bots = [RedisEventBridge(BridgeConfig(url=url, instance_id=f"bot-{i}", enable_publishing=False)) for i in (1, 2)]
        got = {b.instance_id: 0 for b in bots}
        for b in bots:
            b.on("*", lambda env, b=b: got.__setitem__(b.instance_id, got[b.instance_id] + 1))
        async with host:
            for b in bots:
                await b.start()
            kinds = ("ticker", "trade", "orderbook", "candle")
            for k in range(args.events):
                await host.publish(kinds[k % 4], {"symbol": "BTC/USDT", "k": k})
            for _ in range(200):
                if all(v >= args.events for v in got.values()):
                    break
                await asyncio.sleep(0.01)
            print(f"{'instance':<16}{'connected':>10}{'published':>10}{'received':>10}{'self':>6}{'errors':>7}{'gaps':>6}{'subs':>6}")
            for b in [host, *bots]:
                m = b.metrics()
                print(f"{m['instance_id']!s:<16}{str(m['connected']):>10}{m['published']:>10}{m['received']:>10}"
                      f"{m['self_filtered']:>6}{m['errors']:>7}{m['gaps']:>6}{m['subscriptions']:>6}")
            for b in bots:
                await b.close()
        ok = all(v == args.events for v in got.values())
        print(f"each bot received {'all' if ok else 'NOT all'} {args.events} events: {'PASS' if ok else 'FAIL'}")
        return ok

    url = _redis_url(args)
    if url:
        return EXIT_PASS if asyncio.run(go(url)) else EXIT_FAIL
    with RedisServer() as srv:
        print(f"throwaway redis-server {srv.version()} at {srv.safe_url}")
        return EXIT_PASS if asyncio.run(go(srv.url)) else EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    handler = {"run": cmd_run, "report": cmd_report, "demo": cmd_demo, "agent": cmd_agent}[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"fanout {args.command}: error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except FanoutError as exc:
        print(f"fanout {args.command}: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code if exc.exit_code in (EXIT_USAGE, EXIT_REDIS) else EXIT_FAIL
    except KeyboardInterrupt:
        print(f"fanout {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
