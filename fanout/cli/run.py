"""``fanout run``: one scenario, the seed-style report and a verdict (exit 0 pass, 1 fail)."""
from __future__ import annotations

import argparse

from fanout.cli import EXIT_FAIL, EXIT_PASS, redis_url


def add_parser(sub) -> None:
    from fanout.lab import params
    from fanout.lab.scenario import Scenario, shipped_scenarios

    run = sub.add_parser("run", help="run one scenario and print the seed-style report and verdict")
    g = run.add_argument_group("scenario (every field of fanout.lab.Scenario; flags override --scenario)")
    g.add_argument("--scenario", metavar="FILE",
                   help=f"a scenario YAML file, or a shipped name ({', '.join(shipped_scenarios())})")
    params.add_arguments(g, Scenario)
    g.add_argument("--processes", action="store_true", help="shortcut for --process-mode processes")
    g.add_argument("--agent-wait", type=float, metavar="S", default=60.0,
                   help="with --agents: seconds to wait for them to register (default 60)")
    run.add_argument("--out", metavar="DIR", default="data/runs", help="where the run record is saved (default data/runs)")
    run.add_argument("--no-save", action="store_true", help="do not save the run record")
    run.add_argument("--json", action="store_true", help="print a machine-readable summary instead of the text report")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def scenario_from_args(args: argparse.Namespace):
    from fanout.lab import params
    from fanout.lab.scenario import Scenario, from_dict, load_scenario

    overrides = params.given(args, Scenario)
    overrides.pop("redis_url", None)
    if redis_url(args):
        overrides["redis_url"] = redis_url(args)
    if args.processes:
        overrides["process_mode"] = "processes"
    if args.scenario:
        return load_scenario(args.scenario, **overrides)
    return from_dict({**Scenario().to_dict(), **overrides})


def server_line(env: dict) -> str:
    """Which server the run used, from its record: product, version, binary (or URL)."""
    facts = env.get("server") or {}
    where = facts.get("binary") or env.get("redis_url") or "?"
    return f"{env.get('redis_server') or 'unknown version'} ({where})"


def main(args: argparse.Namespace) -> int:
    from fanout.analysis import analyse
    from fanout.lab.options import RunOptions
    from fanout.lab.run import check_reachable, run_scenario
    from fanout.report.text import render_json, render_text

    sc = scenario_from_args(args)
    if sc.redis_url:
        check_reachable(sc.redis_url)
    options = RunOptions(agent_wait_s=args.agent_wait)
    printer = (lambda line: print(line, flush=True)) if sc.verbose and not args.json else None
    rec = run_scenario(sc, progress=False if (args.no_progress or args.json) else None, printer=printer,
                       save_to=None if args.no_save else args.out, options=options)
    findings = analyse(rec)
    if args.json:
        print(render_json(findings))
    else:
        print(render_text(findings))
        print(f"Server: {server_line(rec.environment)}")
        if rec.path:
            print(f"Run record: {rec.path}")
    return EXIT_PASS if findings.passed else EXIT_FAIL
