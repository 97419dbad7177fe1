"""docs/reliability.md from one run of the suite: the command and date, the machine, the table,
then each case's checks, figures and notes (every number in it comes from that run)."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .render import markdown

INTRO = """\
Each case starts its own servers, runs fanout against them, injects one kind of trouble from the
outside (the scenario plans no fault), and states **what was injected, what was lost, what was
attributed** (by `fanout.analysis` from what the bridges saw) **and what was left behind**:
processes still running (found by a marker in their environment, orphans included), files left
in the case's own `TMPDIR`, keys left in Redis (read before its servers stop). Every case runs in
a process of its own, bounded (a hang is killed and reported), and every file it wrote, its
stdout and its stderr are grepped for the password it was given. *Load* is the machine's 1-minute
load average when the case started and its maximum while it ran, and the case's CPU share: on a
shared machine a case whose figures look starved says so there.
"""


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def _figures(r: dict[str, Any]) -> list[str]:
    keep = {k: v for k, v in (r.get("figures") or {}).items() if k not in ("losses", "outages")}
    if not keep:
        return []
    return ["", "<details><summary>figures</summary>", "", "```json", json.dumps(keep, indent=1, default=str),
            "```", "", "</details>"]


def document(payload: dict[str, Any], json_path: str) -> str:
    from benchmarks.machine import one_line

    res = payload["results"]
    n_pass = sum(r["passed"] for r in res)
    L = ["# Reliability: the chaos suite", "",
         f"`{payload['command']}` ({payload['mode']} sizes; `make chaos`), {_when(payload['started'])} to "
         f"{_when(payload['finished'])}, on {one_line(payload['machine'])}, commit "
         f"{payload['machine'].get('git_commit')}"
         + (" (with uncommitted changes in fanout/)" if payload["machine"].get("fanout_uncommitted_changes") else "")
         + ".", ""]
    for again in payload.get("reruns") or []:  # cases run again after a fix, their results in place of the first
        L += [f"Re-run after a fix: {', '.join(again['cases'])}, with `{again['command']}` at "
              f"{_when(again['started'])}, commit {again['commit']}: " + again["why"], ""]
    L += [f"**{n_pass} of {len(res)} cases pass every check.** The JSON of this run: `{json_path}`.",
         "", INTRO, "## The table", "", markdown(res), ""]
    found = [(r["case"], n) for r in res for n in r.get("notes") or [] if "defect" in n.split(":")[0]]
    if found:
        L += ["## Defects the cases name", "",
              ("Each is stated by the case that found it, with where it lives in the code: \"fixed\" names the "
               "fix and its regression test (the case passes); any other is open."), ""]
        L += [f"- **{case}**: {note}" for case, note in found] + [""]
    L += ["## Cases", ""]
    for r in res:
        L.append(f"### {r['case']}")
        L.append("")
        for c in r["checks"]:
            m = "" if c.get("measured") is None else f": {c['measured']}"
            L.append(f"- {'✓' if c['passed'] else '✗ **FAIL**'} {c['name']}{m}")
        for note in r.get("notes") or []:
            if not note.startswith("Traceback"):
                L.append(f"- {note}")
        L.extend(_figures(r))
        L.append("")
    return "\n".join(L).rstrip() + "\n"
