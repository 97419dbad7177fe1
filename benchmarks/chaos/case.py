"""One case, in a process of its own: ``python -m benchmarks.chaos.case NAME [--small] --result FILE``.

The runner starts it with ``TMPDIR``, ``FANOUT_CHAOS_CASE``, ``FANOUT_CHAOS_SECRET`` and
``FANOUT_CHAOS_OUT`` set (see :mod:`benchmarks.chaos.runner`); by hand it runs with defaults.
The result (a :class:`~benchmarks.chaos.common.CaseResult`) is written as JSON to ``--result``;
an exception in the case is the result too (``crashed``), with its one line.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback

from .common import CaseResult, Sizes, out_dir, quiet_logs


def main(argv: list[str] | None = None) -> int:
    from .cases import CASES

    ap = argparse.ArgumentParser(prog="python -m benchmarks.chaos.case")
    ap.add_argument("name", choices=sorted(CASES))
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--result", required=True)
    args = ap.parse_args(argv)
    quiet_logs(out_dir() / "case.log")
    try:
        res = CASES[args.name](Sizes.make(args.small))
    except Exception as exc:  # noqa: BLE001 - a case that raised is a finding: its line goes in the table
        res = CaseResult(case=args.name)
        res.check("the case ran to its end", False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        res.notes.append(traceback.format_exc(limit=6))
    with open(args.result, "w") as f:
        json.dump(res.to_dict(), f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
