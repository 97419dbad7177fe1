"""Two sets of runs side by side, saying how sure each difference is (``fanout compare BASE... --
NEW...``; the report's comparisons use the same rows).

Runs are matched by scenario name (several runs per name per side: repeated runs); when each
side holds a single scenario name they are matched whatever the names. Each run gives one
number per metric (:func:`fanout.analysis.significance.run_metrics`: p50 and p99 latency where
its samples carry them, lost events, loss %, a fault run's recovery time), and each (scenario,
metric) is one row: the runs on each side, their medians, the Hodges–Lehmann shift new − base
with its distribution-free interval, the two-sided Mann–Whitney p Holm-adjusted **per metric**
across the rows shown, and a reading — SAME, BETTER, WORSE or INCONCLUSIVE — as
:mod:`fanout.analysis.significance` defines them. A metric no run of either side gives (no
recovery time without a fault, a p99 no run's samples carry) has no row; :attr:`Comparison.skipped`
names it.

One fact needs no statistics: a scenario whose NEW runs include a failed verdict where every
BASE run passed is a regression (its ``verdict`` row reads WORSE), whatever the numbers say.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fanout.analysis import significance as sig
from fanout.analysis.significance import ALPHA, LOSS_THRESHOLD_PP, THRESHOLD_PCT

COLUMNS = ["scenario", "metric", "unit", "base_n", "new_n", "base_values", "new_values", "base_median",
           "new_median", "shift", "shift_pct", "ci_low", "ci_high", "confidence", "p", "p_holm", "family",
           "threshold", "reading", "why", "runs_needed", "base_pass", "new_pass", "regressed"]
VERDICT = "verdict"
#: the capacity rows compared (names begin with these): instances at 500 events/s each
CAPACITY_STEPS = (("capacity-3x1500", 3), ("capacity-5x2500", 5), ("capacity-10x5000", 10))
CAPACITY_PAIRS = ((0, 1), (1, 2), (0, 2))


@dataclass(frozen=True)
class Group:
    """What one comparison sets against what: its label, and the runs of each side."""

    label: str
    base: tuple
    new: tuple
    factor: str = ""
    detail: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Comparison:
    rows: pd.DataFrame
    threshold_pct: float = THRESHOLD_PCT
    loss_threshold_pp: float = LOSS_THRESHOLD_PP
    alpha: float = ALPHA
    unmatched: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = field(default=())

    @property
    def readings(self) -> dict[str, int]:
        counts = self.rows["reading"].value_counts() if len(self.rows) else {}
        return {r: int(counts.get(r, 0)) for r in sig.READINGS}

    @property
    def regressed(self) -> bool:
        return bool(self.rows["regressed"].any()) if len(self.rows) else False

    @property
    def inconclusive(self) -> bool:
        return self.readings[sig.INCONCLUSIVE] > 0


def _metric(key: str) -> sig.Metric:
    return next(m for m in sig.METRICS if m.key == key)


def _threshold(metric: sig.Metric, base: list[dict], threshold_pct: float, loss_pp: float) -> float:
    vals = [r[metric.key] for r in base if r[metric.key] is not None]
    if metric.threshold == "loss_pp":
        return loss_pp
    if metric.threshold == "loss_events":
        expected = [r["expected"] for r in base if r["expected"] is not None]
        return loss_pp / 100.0 * float(np.median(expected)) if expected else 0.0
    return threshold_pct / 100.0 * abs(float(np.median(vals))) if vals else 0.0


def _verdict_row(g: Group) -> dict[str, Any]:
    bp, np_ = sum(r.findings.passed for r in g.base), sum(r.findings.passed for r in g.new)
    nb, nn = len(g.base), len(g.new)
    if bp == nb and np_ < nn:
        reading, why = sig.WORSE, "a new run failed its verdict where every base run passed"
    elif bp < nb and np_ == nn:
        reading, why = sig.BETTER, "every new run passed its verdict where a base run failed"
    elif (bp, np_) in ((nb, nn), (0, 0)):
        reading, why = sig.SAME, "every run " + ("passed" if bp else "failed") + " its verdict"
    else:
        reading, why = sig.INCONCLUSIVE, "the verdict differs between runs of one side"
    return dict.fromkeys(COLUMNS) | {
        "scenario": g.label, "metric": VERDICT, "unit": "", "base_n": nb, "new_n": nn, "base_pass": bp,
        "new_pass": np_, "reading": reading, "why": why, "regressed": reading == sig.WORSE}


def compare_groups(groups: Sequence[Group], *, threshold_pct: float = THRESHOLD_PCT,
                   loss_threshold_pp: float = LOSS_THRESHOLD_PP, alpha: float = ALPHA,
                   metrics: Sequence[str] | None = None, unmatched: Sequence[str] = ()) -> Comparison:
    """Every group's rows: one per metric some run gives, Holm per metric across the groups,
    then each group's verdict row."""
    keys = tuple(metrics) if metrics else sig.METRIC_KEYS
    values = [([sig.run_metrics(r.findings) for r in g.base], [sig.run_metrics(r.findings) for r in g.new])
              for g in groups]
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    per_group: list[list[dict]] = [[] for _ in groups]
    for key in keys:
        m = _metric(key)
        shown = [i for i, (b, n) in enumerate(values)
                 if any(r[key] is not None for r in b) or any(r[key] is not None for r in n)]
        skipped += [(groups[i].label, m.label) for i in range(len(groups)) if i not in shown]
        family = [([r[key] for r in values[i][0]], [r[key] for r in values[i][1]],
                   _threshold(m, values[i][0], threshold_pct, loss_threshold_pp)) for i in shown]
        for i, (b, n, _t), a in zip(shown, family, sig.assess_family(family, alpha=alpha)):
            pct = (a.shift / abs(a.base_median) * 100.0
                   if a.shift is not None and a.base_median not in (None, 0.0) else None)
            per_group[i].append({
                "scenario": groups[i].label, "metric": m.label, "unit": m.unit, "base_n": a.base_n, "new_n": a.new_n,
                "base_values": [v for v in b if v is not None], "new_values": [v for v in n if v is not None],
                "base_median": a.base_median, "new_median": a.new_median, "shift": a.shift, "shift_pct": pct,
                "ci_low": a.low, "ci_high": a.high, "confidence": a.confidence, "p": a.p, "p_holm": a.p_holm,
                "family": a.family, "threshold": a.threshold, "reading": a.reading, "why": a.why,
                "runs_needed": a.runs_needed, "base_pass": None, "new_pass": None,
                "regressed": a.reading == sig.WORSE})
    for g, mine in zip(groups, per_group):
        rows += mine + [_verdict_row(g)]
    return Comparison(frame(rows), threshold_pct, loss_threshold_pp, alpha,
                      tuple(unmatched), tuple(skipped))


def frame(rows: Sequence[dict]) -> pd.DataFrame:
    """Rows as a frame that keeps ``None`` as None and integers as integers (object columns)."""
    return pd.DataFrame([[r.get(c) for c in COLUMNS] for r in rows], columns=COLUMNS, dtype=object)


def by_name(runs: Sequence) -> dict[str, list]:
    """Runs grouped by scenario name, in first-seen order (repeated runs share a name)."""
    out: dict[str, list] = {}
    for r in runs:
        out.setdefault(r.name, []).append(r)
    return out


def compare_sets(base: Sequence, new: Sequence, **kwargs) -> Comparison:
    """BASE runs against NEW runs, matched by scenario name; when each side holds one scenario
    name they are matched whatever the names (``fanout compare A B`` of two different runs)."""
    b, n = by_name(base), by_name(new)
    if len(b) == 1 and len(n) == 1:
        (nb, rb), (nn, rn) = next(iter(b.items())), next(iter(n.items()))
        groups, unmatched = [Group(nb if nb == nn else f"{nb} → {nn}", tuple(rb), tuple(rn))], ()
    else:
        groups = [Group(name, tuple(rb), tuple(n[name])) for name, rb in b.items() if name in n]
        unmatched = tuple(sorted(set(b) ^ set(n)))
    return compare_groups(groups, unmatched=unmatched, **kwargs)


def comparison_pairs(runs: Sequence) -> list[Group]:
    """The report's like-for-like pairs, each changing one factor: **instances** at a fixed rate
    per instance (the capacity rows ``capacity-3x1500``, ``-5x2500``, ``-10x5000``: 500 events/s
    each; 3 vs 5, 5 vs 10, 3 vs 10, on the same transport), and **transport** at a fixed rate and
    instances (``NAME`` vs ``NAME-TRANSPORT``, e.g. ``standard`` vs ``standard-streams``)."""
    named = by_name(runs)
    out: list[Group] = []
    for i, j in CAPACITY_PAIRS:
        (pa, ka), (pb, kb) = CAPACITY_STEPS[i], CAPACITY_STEPS[j]
        for name, rs in named.items():
            if name == pa or name.startswith(pa + "-"):
                other = pb + name[len(pa):]
                if other in named:
                    rate = float(rs[0].findings.scenario.get("rate_per_s") or 0) / ka
                    out.append(Group(f"instances: {ka} vs {kb} bots at {rate:g} events/s each", tuple(rs),
                                     tuple(named[other]), "instances",
                                     {"base_bots": ka, "new_bots": kb, "rate_per_bot": rate}))
    for name, rs in named.items():
        t = rs[0].transport
        base = name.removesuffix(f"-{t}")
        if base != name and base in named and named[base][0].transport != t:
            out.append(Group(f"transport: {named[base][0].transport} vs {t} ({base})", tuple(named[base]),
                             tuple(rs), "transport"))
    return out


# ------------------------------------------------------------------ rendering

def _num(v: Any, unit: str = "", signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    sign = "+" if signed else ""
    return f"{v:{sign}.3f}" if unit in ("ms", "%") else f"{v:{sign}g}"


def _pval(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3g}"


def _interval(r: dict) -> str:
    if r["ci_low"] is None or (isinstance(r["ci_low"], float) and np.isnan(r["ci_low"])):
        return ""
    return (f"{_num(r['ci_low'], r['unit'], True)} … {_num(r['ci_high'], r['unit'], True)}"
            f" ({r['confidence'] * 100:.0f} %)")


def _records(c: Comparison) -> list[dict]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in c.rows.to_dict(orient="records")]


def display_frame(c: Comparison) -> pd.DataFrame:
    """The comparison as display strings (for the terminal and the report)."""
    out = []
    for r in _records(c):
        unit = r["unit"]
        if r["metric"] == VERDICT:
            base, new = f"{r['base_pass']}/{r['base_n']} PASS", f"{r['new_pass']}/{r['new_n']} PASS"
            shift = interval = p = ""
        else:
            base = f"{_num(r['base_median'], unit)} (n={r['base_n']})"
            new = f"{_num(r['new_median'], unit)} (n={r['new_n']})"
            shift, interval, p = _num(r["shift"], unit, True), _interval(r), _pval(r["p_holm"])
        reading = r["reading"] + (f" (~{r['runs_needed']} runs per side)" if r.get("runs_needed") else "")
        out.append({"scenario": r["scenario"], "metric": r["metric"] + (f" ({unit})" if unit else ""),
                    "base median": base, "new median": new, "shift (new − base)": shift,
                    "interval of the shift": interval, "p (Holm)": p, "reading": reading})
    return pd.DataFrame(out, columns=["scenario", "metric", "base median", "new median", "shift (new − base)",
                                      "interval of the shift", "p (Holm)", "reading"])


def _spread(values: list[float], median: float | None) -> str:
    """benchstat's ±: the largest distance of a run from the median, as a share of the median."""
    if not values or median in (None, 0.0):
        return ""
    return f"±{max(abs(v - median) for v in values) / abs(median) * 100:.0f}%"


def benchstat(c: Comparison) -> str:
    """Plain text in the manner of Go's benchstat, one block per metric (for CI logs)::

        p50 latency (ms)  base        new         delta
        standard          1.000 ±2%   1.251 ±3%   +25.1% [+19.8% … +30.4%]  (p=0.002 n=6+6)  WORSE

    ``delta`` is the Hodges–Lehmann shift as a share of the base median (in the metric's unit
    when the base median is 0) with its interval; ``~`` stands for SAME, as benchstat writes it
    for "no significant change"."""
    recs = _records(c)
    blocks: list[str] = []
    metrics = list(dict.fromkeys(r["metric"] for r in recs))
    for metric in metrics:
        rows = [r for r in recs if r["metric"] == metric]
        unit = rows[0]["unit"]
        table = []
        for r in rows:
            if metric == VERDICT:
                table.append([r["scenario"], f"{r['base_pass']}/{r['base_n']} PASS",
                              f"{r['new_pass']}/{r['new_n']} PASS", "", r["reading"] + f" ({r['why']})"])
                continue
            base = f"{_num(r['base_median'], unit)} {_spread(r['base_values'], r['base_median'])}".strip()
            new = f"{_num(r['new_median'], unit)} {_spread(r['new_values'], r['new_median'])}".strip()
            if r["shift"] is None:
                delta = "n/a"
            elif r["reading"] == sig.SAME:
                delta = "~"
            elif r["shift_pct"] is not None:
                scale = 100.0 / abs(r["base_median"])
                delta = (f"{r['shift_pct']:+.1f}% [{r['ci_low'] * scale:+.1f}% … {r['ci_high'] * scale:+.1f}%]")
            else:
                delta = f"{_num(r['shift'], unit, True)} [{_num(r['ci_low'], unit, True)} … " \
                        f"{_num(r['ci_high'], unit, True)}] {unit}"
            stats = f"(p={_pval(r['p_holm'])} n={r['base_n']}+{r['new_n']})"
            reading = r["reading"] + (f", ~{r['runs_needed']} runs per side" if r["runs_needed"] else "")
            table.append([r["scenario"], base, new, f"{delta}  {stats}", reading])
        head = [f"{metric}" + (f" ({unit})" if unit else ""), "base", "new", "delta", ""]
        widths = [max(len(str(x[k])) for x in [head, *table]) for k in range(5)]
        blocks.append("\n".join("  ".join(str(x[k]).ljust(widths[k]) for k in range(5)).rstrip()
                                for x in [head, *table]))
    return "\n\n".join(blocks)


def method(c: Comparison) -> dict[str, Any]:
    """How the rows were made, as numbers the wording can quote."""
    return {"test": "Mann–Whitney U, two-sided", "shift": "Hodges–Lehmann", "alpha": c.alpha,
            "interval_pct": round(sig.CONFIDENCE * 100), "threshold_pct": c.threshold_pct,
            "loss_threshold_pp": c.loss_threshold_pp, "min_runs": sig.MIN_RUNS,
            "family": "per metric across the comparisons shown (Holm)"}


__all__ = ["Comparison", "Group", "COLUMNS", "VERDICT", "CAPACITY_STEPS", "compare_groups", "compare_sets",
           "comparison_pairs", "by_name", "frame", "display_frame", "benchstat", "method", "THRESHOLD_PCT",
           "LOSS_THRESHOLD_PP", "ALPHA"]
