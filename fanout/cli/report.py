"""``fanout report``: run the validation notebook and export it as HTML and Markdown, or render
it again from archived runs (``--from-runs``). Flags derive from
:class:`fanout.report.params.ReportParams`."""
from __future__ import annotations

import argparse
from pathlib import Path

from fanout.cli import EXIT_FAIL, EXIT_PASS, redis_url
from fanout.errors import ConfigError

#: what quick mode runs (fanout.report.runs.QUICK_DURATION_S, capacity.QUICK_S, runs.SOAK_QUICK_S; not
#: imported here, so that building the parser stays light); how long a report takes is the README's, measured
QUICK_LENGTHS = "scenarios capped at 3 s, capacity rows 2 s, the soak 60 s"


def add_parser(sub) -> None:
    from fanout.lab import params
    from fanout.report.params import ReportParams
    from fanout.report.paths import DEFAULT_OUT

    rep = sub.add_parser("report", help="run the validation report and export it (HTML + Markdown) into "
                                        f"{DEFAULT_OUT}/")
    length = rep.add_mutually_exclusive_group()
    length.add_argument("--quick", action="store_true", dest="quick_mode",
                        help=f"short runs, the default: {QUICK_LENGTHS}")
    length.add_argument("--full", action="store_true", dest="full_mode",
                        help="the scenario files' full lengths (20 s, 30 s, ...; the soak its file's hour, at least "
                             "30 min)")
    g = rep.add_argument_group("report parameters (fanout.report.params.ReportParams)")
    params.add_arguments(g, ReportParams)
    rep.add_argument("--from-runs", nargs="+", metavar="DIR",
                     help="render from archived runs instead of running: run folders, folders of them, or report "
                          "folders (their report.json lists their runs); they are copied into the output folder's runs/")
    rep.add_argument("--out", metavar="DIR", default=str(DEFAULT_OUT),
                     help=f"output folder (default {DEFAULT_OUT}, git-ignored; the committed example is "
                          "reports/example/, made by 'make example')")
    rep.add_argument("--pdf", action="store_true",
                     help="also print the HTML to validation-report.pdf (A4) with a headless Chromium when one is "
                          "installed (chromium, chromium-browser, google-chrome or $FANOUT_CHROMIUM)")
    rep.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                     help="any notebook parameter (YAML value), repeatable")


def parameter_value(text: str):
    """A ``-p NAME VALUE`` value: a number when it reads as one (``1e-9`` too), else YAML."""
    import yaml

    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"-p value {text!r} is not valid YAML ({str(exc).splitlines()[0]})") from None


def report_parameters(args: argparse.Namespace) -> dict:
    """The notebook's parameters from the flags, checked before any kernel starts."""
    from fanout.lab import params as lab_params
    from fanout.report.params import ReportParams, coerce, report_params

    values: dict = {name: parameter_value(value) for name, value in args.parameter}
    values |= {k: list(v) if isinstance(v, tuple) else v for k, v in lab_params.given(args, ReportParams).items()}
    values.pop("redis_url", None)
    if args.full_mode:
        values["quick"] = False
    elif args.quick_mode:
        values["quick"] = True
    if args.from_runs:
        values["from_runs"] = [str(Path(p).resolve()) for p in args.from_runs]
    url = redis_url(args)
    if url:
        values["redis_url"] = url
    unknown = sorted(set(values) - {f for f in ReportParams.__dataclass_fields__})
    if unknown:
        raise ConfigError(f"-p {unknown[0]}: no such report parameter (see 'fanout report --help')")
    report_params(coerce(ReportParams, values))  # one line naming a wrong parameter, before the kernel starts
    return values


def print_pdf(html: Path) -> str:
    """The PDF printed beside ``html``, or why not in one line: a missing Chromium does not fail the
    report (the HTML and Markdown are written)."""
    from fanout.report.pdf import PdfError, print_to_pdf

    try:
        return str(print_to_pdf(html))
    except PdfError as exc:
        return f"not written: {exc}"


def main(args: argparse.Namespace) -> int:
    from fanout.report.build import build_validation_report

    values = report_parameters(args)
    if values.get("redis_url"):
        from fanout.lab.run import check_reachable

        check_reachable(values["redis_url"])
    result = build_validation_report(values, out_dir=Path(args.out))
    print(f"HTML report:     {result.html}")
    print(f"Markdown report: {result.markdown}")
    print(f"Archive:         {result.archive}")
    for label, path in zip(("Alerts:          ", "Dashboard:       "), result.alerts):
        print(f"{label}{path}")
    if args.pdf:
        print(f"PDF report:      {print_pdf(result.html)}")
    print(f"Verdict: {result.status}")
    return EXIT_PASS if result.passed else EXIT_FAIL
