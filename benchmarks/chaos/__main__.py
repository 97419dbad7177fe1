"""``python -m benchmarks.chaos [--small] [--only a,b] [--doc FILE]`` (``make chaos``)."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .runner import ROOT, run_case


def main(argv: list[str] | None = None) -> int:
    from .cases import CASES, bound_s
    from .doc import document

    ap = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    ap.add_argument("--small", action="store_true", help="CI sizes (a few minutes in all); default: full sizes")
    ap.add_argument("--only", metavar="A,B", help=f"these cases only: {', '.join(CASES)}")
    ap.add_argument("--out", metavar="DIR", default=str(ROOT / "benchmarks" / "results"),
                    help="where the JSON goes (default benchmarks/results/)")
    ap.add_argument("--doc", metavar="FILE", default=None,
                    help="write the table into this Markdown file (default: docs/reliability.md for a full run "
                         "of every case, none otherwise)")
    ap.add_argument("--keep", action="store_true", help="keep every case's directory (records, logs)")
    args = ap.parse_args(argv)
    names = list(CASES)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in CASES]
        if unknown:
            print(f"chaos: unknown case(s) {', '.join(unknown)} (known: {', '.join(CASES)})", file=sys.stderr)
            return 2
    from benchmarks.machine import machine_info, one_line

    machine = machine_info()
    started = datetime.now(timezone.utc)
    command = ("python -m benchmarks.chaos" + (" --small" if args.small else "")
               + (f" --only {args.only}" if args.only else ""))
    print(f"fanout reliability suite ({'small' if args.small else 'full'}), {started:%Y-%m-%d %H:%M} UTC", flush=True)
    print(f"machine: {one_line(machine)}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="fanout-chaos-"))
    results = []
    try:
        for name in names:
            t = time.monotonic()
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            r = run_case(name, work, small=args.small, timeout_s=bound_s(name, args.small))
            r["name"] = name
            results.append(r)
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {'PASS' if r['passed'] else 'FAIL'} "
                  f"({time.monotonic() - t:.0f} s)", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"case directories kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    from .render import text

    print(text(results))
    finished = datetime.now(timezone.utc)
    payload = {"mode": "small" if args.small else "full", "command": command, "started": started.isoformat(),
               "finished": finished.isoformat(), "machine": machine, "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    (out / f"chaos-{stamp}.json").write_text(json.dumps(payload, indent=1, default=str))
    (out / "chaos-latest.json").write_text(json.dumps(payload, indent=1, default=str))
    default_doc = ROOT / "docs" / "reliability.md"
    doc = Path(args.doc) if args.doc else (default_doc if not args.small and not args.only else None)
    if doc:
        beside = (ROOT / "benchmarks" / "chaos" / "reliability.json" if doc.resolve() == default_doc
                  else doc.with_suffix(".json"))
        beside.write_text(json.dumps(payload, indent=1, default=str))
        shown = beside.relative_to(ROOT) if beside.resolve().is_relative_to(ROOT) else beside
        doc.write_text(document(payload, str(shown)))
        print(f"table written to {doc}, its JSON to {beside}", file=sys.stderr)
    print(f"JSON: {out / f'chaos-{stamp}.json'}", file=sys.stderr)
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
