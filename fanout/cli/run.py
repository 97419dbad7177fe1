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
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve the run's bridges' metrics for Prometheus on http://ADDR:PORT/metrics while it runs "
                          "(needs fanout[prometheus]); single-process runs only: with it, process mode auto runs in "
                          "one process, and process mode processes or --agents is a usage error (their bridges live "
                          "in other processes)")
    run.add_argument("--metrics-addr", metavar="ADDR", default="127.0.0.1",
                     help="the address --metrics-port listens on (default 127.0.0.1; 0.0.0.0 for every interface)")
    run.add_argument("--output-buffer-check", type=float, metavar="S",
                     help="every S seconds each pub/sub (or sharded) receiver reads the output buffer Redis holds for "
                          "it and warns past half its limit (BridgeConfig.output_buffer_check_s); the record's "
                          "instances keep each one's largest reading (output_buffer_max_bytes)")


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


def serve_metrics(sc, port: int, addr: str, sims: list):
    """``--metrics-port``: the scenario held in one process and the exporter serving every bridge of the
    simulations appended to ``sims`` (``RunOptions.on_simulation``); returns (scenario, stop)."""
    from fanout.errors import ConfigError

    if sc.agents or sc.process_mode == "processes":
        raise ConfigError("--metrics-port serves the bridges of this process only: it cannot be used with --agents or "
                          "process mode processes (their bridges run in other processes)")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port: {port} is not a port number")
    try:
        from fanout.exporters.prometheus import serve
    except ImportError:
        raise ConfigError("--metrics-port needs prometheus_client: pip install 'fanout[prometheus]'") from None
    try:
        stop = serve(lambda: [b for s in list(sims) for b in list(s.bridges.values())], port=port, addr=addr)
    except OSError as exc:
        raise ConfigError(f"--metrics-port: cannot listen on {addr}:{port}: {exc.strerror or exc}") from None
    return sc.replace(process_mode="single"), stop


def main(args: argparse.Namespace) -> int:
    from fanout.analysis import analyse
    from fanout.lab.options import RunOptions
    from fanout.errors import Interrupted
    from fanout.lab.run import check_reachable, run_scenario
    from fanout.report.text import render_json, render_text

    sc = scenario_from_args(args)
    stop_metrics, sims = None, []
    if args.metrics_port is not None:
        sc, stop_metrics = serve_metrics(sc, args.metrics_port, args.metrics_addr, sims)
    if sc.redis_url:
        check_reachable(sc.redis_url)
    check_s = getattr(args, "output_buffer_check", None)
    if check_s is not None and not 0 < check_s < float("inf"):
        from fanout.errors import ConfigError

        raise ConfigError(f"--output-buffer-check: give a number of seconds > 0, got {check_s:g}")
    options = RunOptions(agent_wait_s=args.agent_wait, on_simulation=sims.append if stop_metrics else None,
                         bridge_histograms=stop_metrics is not None, output_buffer_check_s=check_s)
    printer = (lambda line: print(line, flush=True)) if sc.verbose and not args.json else None
    try:
        rec = run_scenario(sc, progress=False if (args.no_progress or args.json) else None, printer=printer,
                           save_to=None if args.no_save else args.out, options=options)
    except Interrupted as stopped:  # what was recorded up to the signal, analysed (never a PASS), then stop
        rec = stopped.record  # run_scenario saved it (worker processes: read back from their parts)
        if rec is not None:
            part = analyse(rec)
            rec.set_status(part.status)  # in run.json when saved: fanout.lab.runs() lists it
            print(render_json(part) if args.json else render_text(part), flush=True)
        raise
    finally:
        if stop_metrics is not None:
            stop_metrics()
    findings = analyse(rec)
    rec.set_status(findings.status)  # in run.json when saved: fanout.lab.runs() lists it
    if args.json:
        print(render_json(findings))
    else:
        print(render_text(findings))
        print(f"Server: {server_line(rec.environment)}")
        if rec.path:
            print(f"Run record: {rec.path}")
    return EXIT_PASS if findings.passed else EXIT_FAIL
