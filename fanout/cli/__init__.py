"""The ``fanout`` command.

    fanout run [--instances=5 --duration=30 --rate=10 --verbose ...]   one scenario, a verdict
    fanout report [--full]                                              the validation report (HTML + Markdown)
    fanout compare BASE... -- NEW...                                    repeated runs compared; 1 regressed, 3 inconclusive
    fanout agent --redis-url URL                                        host instances for a multi-host run
    fanout demo                                                         one publisher, two subscribers, metrics
    fanout doctor [--redis-url URL]                                     the servers found, which one runs, why
    fanout lab [--no-browser --port N]                                  JupyterLab on a working copy of the notebooks

Exit codes: 0 pass, 1 verdict failed, 2 usage error, 3 Redis unreachable (``compare``: 1
regressed, 3 inconclusive). Every user mistake is one line on stderr, never a traceback.
``REDIS_URL`` in the environment is used when no ``--redis-url`` is given; with neither, a
throwaway redis-server is started.

Each command lives in its own module (``fanout.cli.run`` ...) with ``add_parser(sub)`` and
``main(args)``; a command whose optional part of fanout is not installed says which extra to
install, in one line.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import sys

from fanout import __version__
from fanout.errors import ConfigError, FanoutError, Interrupted, MissingExtra
from fanout.redact import redact_text

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_REDIS = 0, 1, 2, 3

#: command -> (module, the extra it needs, modules that extra installs)
COMMANDS: dict[str, tuple[str, str | None]] = {
    "run": ("fanout.cli.run", "lab"),
    "report": ("fanout.cli.report", "report"),
    "compare": ("fanout.cli.compare", "report"),
    "agent": ("fanout.cli.agent", "lab"),
    "demo": ("fanout.cli.demo", None),
    "acl": ("fanout.cli.acl", None),
    "doctor": ("fanout.cli.doctor", None),
    "lab": ("fanout.cli.lab", "report"),
}
EXTRAS: dict[str, tuple[str, ...]] = {
    "lab": ("pandas", "pyarrow", "numpy", "yaml", "tqdm", "psutil"),
    "report": ("pandas", "pyarrow", "numpy", "yaml", "tqdm", "psutil", "seaborn", "matplotlib", "papermill",
               "nbconvert", "nbformat", "ipykernel", "jinja2", "tabulate"),
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def missing_extra(extra: str | None) -> str | None:
    """The first module of ``extra`` that is not installed, or None."""
    for mod in EXTRAS.get(extra or "", ()):
        if importlib.util.find_spec(mod) is None:
            return mod
    return None


def require_extra(command: str) -> None:
    extra = COMMANDS[command][1]
    gone = missing_extra(extra)
    if gone:
        raise MissingExtra(f"'fanout {command}' needs the {extra} extra ({gone} is not installed): "
                           f"pip install 'fanout[{extra}]'")


def redis_url(args: argparse.Namespace) -> str | None:
    """``--redis-url``, else ``$REDIS_URL``, else None (a throwaway server)."""
    return getattr(args, "redis_url", None) or os.environ.get("REDIS_URL") or None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fanout", description="Fan market-data events out through Redis and prove every instance "
                                               "got them.")
    parser.add_argument("--version", action="version", version=f"fanout {__version__}")
    parser.add_argument("--log-level", default="WARNING", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (module, extra) in COMMANDS.items():
        if missing_extra(extra):  # still listed, so 'fanout NAME' can say what to install
            sub.add_parser(name, help=f"(needs: pip install 'fanout[{extra}]')", add_help=False)
            continue
        importlib.import_module(module).add_parser(sub)
    return parser


def _raise_interrupted(signum: int, _frame) -> None:
    raise Interrupted(signum)


def _stopped_quietly() -> None:
    """Stopped on purpose: a task of what was cancelled on the way (e.g. the notebook client's cell,
    whose kernel the cleanup shut down) may be collected later with its error; that is no news, and
    it must not be the last line."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop like Ctrl-C: every cleanup on the way runs
        signal.signal(sig, _raise_interrupted)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        if command in COMMANDS:
            require_extra(command)
    except MissingExtra as exc:
        print(f"fanout {command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return importlib.import_module(COMMANDS[args.command][0]).main(args)
    except ConfigError as exc:
        print(f"fanout {args.command}: error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except FanoutError as exc:
        print(f"fanout {args.command}: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code if exc.exit_code in (EXIT_USAGE, EXIT_REDIS) else EXIT_FAIL
    except KeyboardInterrupt:
        _stopped_quietly()
        print(f"fanout {args.command}: interrupted by SIGINT", file=sys.stderr)
        return 128 + signal.SIGINT
    except Interrupted as exc:
        _stopped_quietly()
        stopped = (getattr(exc.record, "environment", None) or {}).get("interrupted")
        where = (f" after {stopped['after_s']:.1f} s of {stopped['of_s']:g} s" if stopped else "") + \
            (f"; partial record (marked interrupted, never PASS): {exc.record.path}"
             if getattr(exc.record, "path", None) else "")
        print(f"fanout {args.command}: {exc}{where}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
