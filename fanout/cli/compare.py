"""``fanout compare A B``: two runs (or two reports' runs) side by side, with deltas and 95 %
intervals; exit 1 when B regresses beyond the threshold (for CI regression gates)."""
from __future__ import annotations

import argparse

from fanout.cli import EXIT_FAIL, EXIT_PASS


def add_parser(sub) -> None:
    from fanout.report.compare import MAX_DELIVERY_DROP, THRESHOLD_PCT

    cmp = sub.add_parser("compare", help="compare two runs or two report archives; exit 1 when B regressed")
    cmp.add_argument("a", metavar="A", help="the baseline: a run folder, a folder of runs, or a report folder")
    cmp.add_argument("b", metavar="B", help="the candidate, the same kinds")
    cmp.add_argument("--threshold", type=float, default=THRESHOLD_PCT, metavar="PCT",
                     help=f"a latency statistic regresses when B is more than PCT %% higher and the 95 %% interval "
                          f"of the difference lies above zero (default {THRESHOLD_PCT:g})")
    cmp.add_argument("--max-delivery-drop", type=float, default=MAX_DELIVERY_DROP, metavar="PP",
                     help=f"delivery regresses when B's rate is more than PP percentage points below A's "
                          f"(default {MAX_DELIVERY_DROP:g})")


def main(args: argparse.Namespace) -> int:
    from fanout.formatting import percentile_rule
    from fanout.report.compare import compare_sets, display_frame
    from fanout.report.runs import load_runs

    a, b = load_runs([args.a]), load_runs([args.b])
    c = compare_sets(a, b, threshold_pct=args.threshold, max_delivery_drop=args.max_delivery_drop)
    if c.rows.empty:
        print(f"fanout compare: no run of A matches one of B by scenario name ({', '.join(c.unmatched)})")
        return EXIT_FAIL
    shown = display_frame(c)
    print(shown.to_markdown(index=False, disable_numparse=True))
    if shown.astype(str).apply(lambda col: col.str.contains("— (n=", regex=False)).any().any():
        print(f"\n{percentile_rule()}")
    if c.unmatched:
        print(f"\nNot compared (in only one of A and B): {', '.join(c.unmatched)}")
    regressed = c.rows[c.rows["regressed"]]
    print(f"\nThresholds: latency +{args.threshold:g}% outside noise, delivery -{args.max_delivery_drop:g} pp, "
          "verdict PASS -> FAIL")
    if len(regressed):
        print("REGRESSED: " + "; ".join(f"{r.scenario} {r.metric}" for r in regressed.itertuples()))
        return EXIT_FAIL
    print("No regression.")
    return EXIT_PASS
