"""Findings as text (the seed report's layout), JSON and a markdown per-instance table.

Latencies are always milliseconds with three decimals, rates two decimals, counts whole. A
percentile the samples do not carry reads ``n too small (n=…; p99 needs ≥ 1,000)``
(:func:`fanout.formatting.percentile`); a run that lost nothing states the rule of three's 95 %
upper bound on its loss rate.
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from fanout.analysis import Findings
from fanout.analysis.accounting import KINDS
from fanout.formatting import loss_bound, mark as _mark, ms as fmt_ms, percentile as _pctl, percentile_rule
from fanout.formatting import rate as _rate

RULE = "=" * 60
#: how the header names each transport (fanout.transports.TRANSPORTS)
TRANSPORT_TITLES = {"pubsub": "Pub/Sub", "streams": "Streams", "sharded": "Sharded Pub/Sub (Cluster)"}
#: Above this many instances the per-instance blocks become one line each.
MAX_INSTANCE_BLOCKS = 12


def _compact(formula: str) -> str:
    """The seed's "65+61=126" from "65 + 61 = 126" (a "sum of N others" summary stays as it is)."""
    return formula if formula.startswith("sum of") else formula.replace(" + ", "+").replace(" = ", "=")


def _terms(formula: str, expected: int) -> str:
    """"  (65 + 61)" after an expected count, or "" when it would only repeat the count."""
    terms = formula.rsplit(" = ", 1)[0]
    return "" if terms == str(expected) else f"  ({terms})"


def _overall_lines(f: Findings) -> list[str]:
    o = f.overall
    lag_n = o.get("schedule_lag_samples")
    lag = (f"p50 {_pctl(o['schedule_lag_p50_ms'], lag_n, 'schedule_lag_p50_ms')}, "
           f"p99 {_pctl(o['schedule_lag_p99_ms'], lag_n, 'schedule_lag_p99_ms')}, "
           f"max {fmt_ms(o['schedule_lag_max_ms'])}")
    return [
        "Overall Statistics:",
        f"  Total Instances: {o['instances']}",
        f"  Test Duration: {o['duration_s']:g}s",
        f"  Total Events Published: {o['published']}",
        f"  Total Events Received: {o['received']}",
        f"  Expected Received: {o['expected']}",
        f"  Delivery Rate: {o['delivery_pct']:.2f}%",
        f"  Self-Received Events: {o['self_received']} {_mark(o['self_received'] == 0)}",
        f"  Total Errors: {o['errors']}",
        f"  Missing: {o['missing']}",
        _loss_line(o),
        f"  Duplicates: {o['duplicates']}",
        f"  Unknown / Unexpected Deliveries: {o['unknown']} / {o['unexpected']}",
        f"  Publish Failures: {o['publish_failed']} (delivered anyway: {o['failed_delivered']})",
        f"  Gaps / Reconnects: {o['gaps']} / {o['reconnects']}",
        f"  Target Rate: {_rate(o['target_rate_per_s'], ' events/s')}",
        f"  Achieved Publish Rate: {_rate(o['achieved_rate_per_s'], ' events/s')}",
        f"  Deliveries/s: {_rate(o['deliveries_per_s'])}",
        f"  Schedule Lag: {lag}",
        f"  Transport: {f.scenario.get('transport', 'pubsub')}",
        f"  Run: {f.run_id}",
    ]


def _loss_line(o: dict[str, Any]) -> str:
    """``Loss rate: 0 of 400 (< 0.75 % at 95 % confidence, rule of three)``, or what was lost."""
    missing, expected = o["missing"], o["expected"]
    if not expected:
        return "  Loss rate: n/a (nothing expected)"
    if missing == 0:
        return f"  Loss rate: 0 of {expected:,} ({loss_bound(expected)} at 95 % confidence, rule of three)"
    return f"  Loss rate: {missing:,} of {expected:,} ({100.0 * missing / expected:.2f} %)"


def _latency_lines(f: Findings) -> list[str]:
    lat, sent = f.latency, f.latency_sent

    def p(stats: dict[str, Any], key: str) -> str:
        return _pctl(stats[key], stats["count"], key)

    return [
        "Latency Statistics (from intended send time):",
        f"  Samples: {lat['count']} (negative: {lat['negative']})",
        f"  Average: {fmt_ms(lat['avg_ms'])}",
        f"  Min: {fmt_ms(lat['min_ms'])}",
        f"  Max: {fmt_ms(lat['max_ms'])}",
        f"  P50 (Median): {p(lat, 'p50_ms')}",
        f"  P95: {p(lat, 'p95_ms')}",
        f"  P99: {p(lat, 'p99_ms')}",
        f"  P99.9: {p(lat, 'p999_ms')}",
        f"  From send: average {fmt_ms(sent['avg_ms'])}, P99 {p(sent, 'p99_ms')}, max {fmt_ms(sent['max_ms'])}",
    ]


def _instance_block(row: dict[str, Any]) -> list[str]:
    lines = [
        f"Instance {row['instance']}:",
        f"  Connected: {'Yes' if row['connected'] else 'No'}",
    ]
    if row["role"] != "publisher+receiver":
        lines.append(f"  Role: {row['role']}")
    lines += [
        f"  Published: {row['published']}",
        f"  Received: {row['received']}",
        f"  Expected: {row['expected']}{_terms(row['expected_formula'], row['expected'])}",
        f"  Self-Received: {row['self_received']} {_mark(row['self_received'] == 0)}",
        f"  Avg Latency: {fmt_ms(row['lat_avg_ms'])} (P99 {_pctl(row['lat_p99_ms'], row['lat_count'], 'lat_p99_ms')})",
        f"  Errors: {row['errors']}",
    ]
    extras = ("missing", "duplicates", "unexpected", "publish_failed", "gaps", "reconnects")
    lines += [f"  {k.replace('_', ' ').capitalize()}: {row[k]}" for k in extras if row[k]]
    return lines


def _instance_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per instance, for runs with many instances."""
    width = max([len("instance")] + [len(str(r["instance"])) for r in rows])
    cols = ("published", "expected", "received", "missing", "duplicates", "self_received", "errors")
    head = "  ".join(f"{c:>{len(c)}}" for c in cols)
    lines = [f"  {'instance':<{width}}  conn  {head}  {'avg':<9}  p99"]
    for r in rows:
        counts = "  ".join(f"{r[c]:>{len(c)}}" for c in cols)
        lines.append(f"  {r['instance']:<{width}}  {'yes' if r['connected'] else 'NO':<4}  {counts}  "
                     f"{fmt_ms(r['lat_avg_ms']):<9}  "
                     f"{_pctl(r['lat_p99_ms'], r['lat_count'], 'lat_p99_ms', short=True)}")
    if any("—" in ln for ln in lines):
        lines.append(f"  {percentile_rule()}")
    return lines


def _distribution_line(row: dict[str, Any]) -> str:
    """The seed's "- Instance 0: Published 69, Should receive 65+61=126 ✓ Received 126", plus any faults."""
    line = (f"  - {row['instance']}: Published {row['published']}, Should receive "
            f"{_compact(row['expected_formula'])} {_mark(row['arithmetic_ok'])} Received {row['received']}")
    faults = [f"{k.replace('_', '-')} {row[k]}" for k in ("missing", "duplicates", "self_received", "unexpected")
              if row[k]]
    return line + (f" ({', '.join(faults)})" if faults else "")


def _worker_lines(f: Findings) -> list[str]:
    """Which agent hosted which instances, and its clock against Redis's (multi-host runs)."""
    workers = (f.environment or {}).get("workers") or {}
    if not workers or not str(f.environment.get("process_mode", "")).startswith("agents"):
        return []
    lines = ["Agents (clock offset against Redis TIME ± uncertainty):"]
    for name, w in workers.items():
        lines.append(f"  {name}: {', '.join(w['instances'])}; clock {w['clock_offset_ns'] / 1e6:+.3f}ms "
                     f"± {w['clock_uncertainty_ns'] / 1e6:.3f}ms; {w['status']}")
    return lines + [""]


def _loss_lines(f: Findings) -> list[str]:
    """Faults and the exact account of every lost event (only when there is something to say)."""
    acc = f.losses
    if acc is None or (not acc.lost and not acc.not_published and acc.faults.empty):
        return []
    lines = ["Faults and Loss Accounting:"]
    for row in acc.faults.to_dict(orient="records"):
        rec = "n/a" if row["recovery_ms"] is None or row["recovery_ms"] != row["recovery_ms"] \
            else f"{row['recovery_ms']:.3f}ms"
        lines.append(f"  {row['kind']} ({row['instance']}): {row['fault']}")
        lines.append(f"    sent in window {row['sent_in_window']}, delivered {row['delivered']}, lost {row['lost']}, "
                     f"recovered {row['recovered']}, receiving again after {rec}")
        if row.get("window_n"):
            n = row["window_n"]
            lines.append(f"    delivered from its window: {n}, p50 {_pctl(row['window_p50_ms'], n, 'p50_ms')}, "
                         f"p99 {_pctl(row['window_p99_ms'], n, 'p99_ms')}, max {fmt_ms(row['window_max_ms'])}; "
                         f"{row['late']} later than {row['bound_ms']:g}ms")
    lines.append(f"  Not published (publisher was told): {acc.not_published}")
    for reason, n in acc.not_published_reasons.items():
        lines.append(f"    {n} × {reason}")
    lines.append(f"  Lost: {acc.lost}")
    for kind in KINDS:
        if acc.by_kind.get(kind):
            lines.append(f"    {kind}: {acc.by_kind[kind]}")
            for r in acc.losses[acc.losses["kind"] == kind].itertuples(index=False):
                where = f" — {r.fault}" if r.fault else ""
                why = f" ({r.evidence})" if r.evidence else ""
                lines.append(f"      {r.receiver}: {r.count} {r.cause}{where}{why}")
    if acc.output_buffer_disconnections is not None:
        lines.append(f"  Redis output-buffer disconnections: {acc.output_buffer_disconnections}")
    lines.append(f"  {_mark(acc.unexplained == 0)} Unexplained: {acc.unexplained}")
    return lines + [""]


def render_text(f: Findings) -> str:
    """The seed's "Test Results" block, plus our extra facts, verdict with measured values."""
    rows = f.per_instance.to_dict(orient="records")
    transport = TRANSPORT_TITLES.get(str(f.scenario.get("transport", "pubsub")), str(f.scenario.get("transport")))
    lines = [RULE, f"Test Results - Multi-Instance Redis {transport}", RULE, ""]
    lines += _overall_lines(f) + [""] + _latency_lines(f) + [""] + _worker_lines(f) + ["Per-Instance Statistics:", ""]
    if len(rows) > MAX_INSTANCE_BLOCKS:
        lines += _instance_table(rows) + [""]
    else:
        for row in rows:
            lines += _instance_block(row) + [""]
    lines += ["Event Distribution Verification:"] + [_distribution_line(r) for r in rows] + [""]
    lines += _loss_lines(f)
    lines.append("Test Verdict:")
    lines += [f"  {_mark(c.passed) if c.judged else '·'} {c.name} (measured {c.measured}; threshold {c.threshold})"
              for c in f.verdict]
    lines += ["", f"{_mark(f.passed)} Overall Status: {f.status}", RULE]
    return "\n".join(lines) + "\n"


def render_json(f: Findings) -> str:
    """``Findings.to_dict()`` as indented JSON (strict: no NaN)."""
    return json.dumps(f.to_dict(), indent=2, allow_nan=False) + "\n"


def distribution_frame(f: Findings) -> pd.DataFrame:
    """Per-instance distribution from ``f.tables["per_instance"]``: instance, published, should
    receive (the sum of the others), received, ✓."""
    per = f.tables["per_instance"]
    return pd.DataFrame({"Instance": per["instance"].astype(str), "Published": per["published"],
                         "Should receive": per["expected_formula"].astype(str), "Received": per["received"],
                         "✓": [_mark(bool(ok)) for ok in per["arithmetic_ok"]]})


def render_markdown_table(f: Findings) -> str:
    """:func:`distribution_frame` as a compact markdown table (instance | published | should
    receive | received | ✓)."""
    df = distribution_frame(f)
    lines = ["| " + " | ".join(df.columns) + " |", "|---|---:|---:|---:|:---:|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
