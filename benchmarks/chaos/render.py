"""The suite's table (printed, and in docs/reliability.md) from the results the runner collected."""
from __future__ import annotations

from typing import Any

import pandas as pd

COLUMNS = ["case", "injected", "lost", "attributed", "left behind", "result", "load"]


def left_behind(r: dict[str, Any]) -> str:
    lb = r.get("left_behind") or {}
    parts = []
    if lb.get("processes"):
        parts.append(f"{len(lb['processes'])} process(es): " + "; ".join(lb["processes"][:2]))
    if lb.get("dirs"):
        parts.append(f"{len(lb['dirs'])} item(s) in TMPDIR: " + ", ".join(lb["dirs"][:3]))
    keys = lb.get("keys") or []
    if keys:
        parts.append(f"{len(keys)} key(s) in Redis: " + ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else ""))
    return "; ".join(parts) or "nothing"


def result(r: dict[str, Any]) -> str:
    failed = [c for c in r["checks"] if not c["passed"]]
    if not failed:
        return f"PASS ({len(r['checks'])} checks)"
    return "FAIL: " + "; ".join(c["name"] + (f" ({_short(c['measured'])})" if c.get("measured") is not None else "")
                                for c in failed)


def _short(v: Any, n: int = 90) -> str:
    s = str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def load(r: dict[str, Any]) -> str:
    m = r.get("machine") or {}
    if not m:
        return ""
    return (f"{m['loadavg_start']:.2f}→max {m['loadavg_max']:.2f} ({m['cores']} cores); "
            f"case {m['case_wall_s']:g} s, {m['case_cpu_pct']:g}% CPU")


def table(results: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{"case": r["case"], "injected": r.get("injected", ""), "lost": r.get("lost", ""),
             "attributed": r.get("attributed", ""), "left behind": left_behind(r), "result": result(r),
             "load": load(r)} for r in results]
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(results: list[dict[str, Any]]) -> str:
    return table(results).to_markdown(index=False)


def text(results: list[dict[str, Any]]) -> str:
    """The table as plain text for a terminal: one block per case."""
    out = []
    for _, row in table(results).iterrows():
        out.append(f"== {row['case']}: {row['result']}")
        for k in COLUMNS[1:5] + ["load"]:
            if row[k]:
                out.append(f"   {k:<12} {row[k]}")
    return "\n".join(out)
