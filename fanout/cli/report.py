"""``fanout report``: run the validation notebook and export it as HTML and Markdown."""
from __future__ import annotations

import argparse
from pathlib import Path

from fanout.cli import EXIT_FAIL, EXIT_PASS, redis_url
from fanout.errors import ConfigError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_parser(sub) -> None:
    rep = sub.add_parser("report", help="run the validation notebook and export reports/validation-report.{html,md}")
    length = rep.add_mutually_exclusive_group()
    length.add_argument("--quick", action="store_true", help="short scenarios, a few minutes in all (the default)")
    length.add_argument("--full", action="store_true", help="the seed's full-length scenarios (20 s, 30 s, ...)")
    rep.add_argument("--scenarios", type=_csv, metavar="A,B",
                     help="which scenarios to run (default standard,stress,scale-10,load-1k)")
    rep.add_argument("--duration-scale", type=float, metavar="X", help="multiply every scenario's duration by X")
    rep.add_argument("--out", metavar="DIR", default="reports", help="output folder (default reports)")
    rep.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="extra notebook parameter (YAML value), repeatable")
    rep.add_argument("--redis-url", metavar="URL", default=None, help="Redis to use (default: $REDIS_URL, else throwaway)")


def parameter_value(text: str):
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


def main(args: argparse.Namespace) -> int:
    from fanout.report.notebooks import build_validation_report

    params: dict = {name: parameter_value(value) for name, value in args.parameter}
    if args.full:
        params["quick"] = False
    elif args.quick:
        params["quick"] = True
    if args.scenarios:
        params["scenarios"] = args.scenarios
    if args.duration_scale is not None:
        params["duration_scale"] = args.duration_scale
    url = redis_url(args)
    if url:
        from fanout.lab.run import check_reachable

        check_reachable(url)
        params["redis_url"] = url
    result = build_validation_report(params, out_dir=Path(args.out))
    print(f"HTML report:     {result.html}")
    print(f"Markdown report: {result.markdown}")
    print(f"Verdict: {result.status}")
    return EXIT_PASS if result.passed else EXIT_FAIL
