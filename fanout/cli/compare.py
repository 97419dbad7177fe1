"""``fanout compare BASE... -- NEW...``: repeated runs side by side, each difference with how sure
it is (Mann–Whitney U over one number per run, the Hodges–Lehmann shift and its interval, Holm
per metric; :mod:`fanout.report.compare`). ``fanout compare A B`` (one path each side, no
``--``) compares the same way; one run per side can only read INCONCLUSIVE, unless its verdict
regressed.

Exit codes, for CI gates: 0 every comparison SAME or BETTER; 1 any WORSE (a regression: a shift
beyond the threshold that the test finds, or a NEW run failing its verdict where every BASE run
passed); 3 none WORSE but some INCONCLUSIVE (add runs); 2 a usage error (one line on stderr).
"""
from __future__ import annotations

import argparse

from fanout.cli import EXIT_FAIL, EXIT_PASS, Parser

#: none regressed, but some comparison could not tell: add runs
EXIT_INCONCLUSIVE = 3


def _flags(parser: argparse.ArgumentParser) -> None:
    from fanout.analysis.significance import ALPHA, LOSS_THRESHOLD_PP, METRIC_KEYS, THRESHOLD_PCT

    parser.add_argument("--threshold", type=float, default=THRESHOLD_PCT, metavar="PCT",
                        help=f"a latency or recovery-time shift smaller than PCT %% of the base median is no change "
                             f"(default {THRESHOLD_PCT:g})")
    parser.add_argument("--loss-threshold", type=float, default=LOSS_THRESHOLD_PP, metavar="PP",
                        help=f"a loss shift smaller than PP percentage points of the expected deliveries is no "
                             f"change (default {LOSS_THRESHOLD_PP:g})")
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help=f"significance level after Holm's correction per metric (default {ALPHA:g})")
    parser.add_argument("--metric", action="append", choices=METRIC_KEYS, metavar="KEY",
                        help=f"compare only this metric (repeatable; {', '.join(METRIC_KEYS)}); the verdict is "
                             "always compared")


def add_parser(sub) -> None:
    cmp = sub.add_parser(
        "compare", help="compare runs or reports (BASE... -- NEW...); 0 same, 1 regressed, 3 inconclusive",
        description="Compare repeated runs: each side one or more run folders, folders of runs, or report "
                    "folders, matched by scenario name. Exit 0 when every comparison is SAME or BETTER, 1 when "
                    "any is WORSE, 3 when none is WORSE but some are INCONCLUSIVE (add runs), 2 on a usage error.",
        usage="fanout compare [options] BASE [BASE ...] -- NEW [NEW ...]\n       fanout compare [options] A B")
    cmp.add_argument("paths", nargs=argparse.REMAINDER, metavar="BASE... -- NEW...",
                     help="the baseline's runs, '--', the candidate's runs (or just A B)")
    _flags(cmp)


def split_sides(tokens: list[str], args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """BASE and NEW paths from the words after ``compare`` (options may sit among them); a usage
    error (:class:`~fanout.errors.ConfigError`) for a missing ``--``, an empty side, an unknown option."""
    from fanout.errors import ConfigError

    flags = Parser(prog="fanout compare", add_help=False)
    _flags(flags)
    if "--" in tokens:
        i = tokens.index("--")
        sides = [tokens[:i], tokens[i + 1:]]
    else:
        sides = [tokens, None]
    paths: list[list[str]] = []
    for side in sides:
        if side is None:
            continue
        _, rest = flags.parse_known_args(side, namespace=args)
        bad = [t for t in rest if t.startswith("-") and t != "-"]
        if bad:
            raise ConfigError(f"unknown option {bad[0]} (see 'fanout compare --help')")
        paths.append(rest)
    if sides[1] is None:
        if len(paths[0]) != 2:
            raise ConfigError("give BASE... -- NEW... (or exactly two paths, A B); "
                              f"got {len(paths[0])} path{'s' * (len(paths[0]) != 1)} and no '--'")
        return [paths[0][0]], [paths[0][1]]
    for name, side in zip(("BASE", "NEW"), paths):
        if not side:
            raise ConfigError(f"{name} is empty: give at least one run folder, folder of runs or report folder "
                              "on each side of '--'")
    return paths[0], paths[1]


def main(args: argparse.Namespace) -> int:
    from fanout.errors import ConfigError
    from fanout.formatting import percentile_rule
    from fanout.report.compare import benchstat, compare_sets, display_frame
    from fanout.report.runs import load_runs

    base_paths, new_paths = split_sides(list(args.paths), args)
    if not 0 < args.alpha < 1 or args.threshold < 0 or args.loss_threshold < 0:
        raise ConfigError("--alpha must lie between 0 and 1, --threshold and --loss-threshold be ≥ 0")
    base, new = load_runs(base_paths), load_runs(new_paths)
    c = compare_sets(base, new, threshold_pct=args.threshold, loss_threshold_pp=args.loss_threshold,
                     alpha=args.alpha, metrics=args.metric)
    if c.rows.empty:
        raise ConfigError(f"no BASE run matches a NEW run by scenario name ({', '.join(c.unmatched)})")
    print(display_frame(c).to_markdown(index=False, disable_numparse=True))
    print()
    print(benchstat(c))
    unsure = c.rows[c.rows["reading"] == "INCONCLUSIVE"]
    if len(unsure):
        print("\nWhy INCONCLUSIVE:")
        for r in unsure.itertuples():
            print(f"  {r.scenario} {r.metric}: {r.why}")
    if c.skipped:
        print(f"\nNot compared (no run of either side gives it): "
              + "; ".join(f"{s} {m}" for s, m in c.skipped))
        if any(m == "p99 latency" for _s, m in c.skipped):
            print(percentile_rule())
    if c.unmatched:
        print(f"\nNot compared (in only one of BASE and NEW): {', '.join(c.unmatched)}")
    print(f"\nSAME: the interval of the shift lies inside ±threshold (latency and recovery {args.threshold:g} % of "
          f"the base median, loss {args.loss_threshold:g} pp); WORSE/BETTER: p < {args.alpha:g} after Holm per "
          "metric, the interval clear of zero and the shift beyond the threshold; a NEW run failing its verdict "
          "where every BASE run passed is WORSE.")
    n = c.readings
    print("Readings: " + ", ".join(f"{k} {v}" for k, v in n.items()))
    if c.regressed:
        print("REGRESSED: " + "; ".join(f"{r.scenario} {r.metric}" for r in c.rows[c.rows["regressed"].astype(bool)]
                                        .itertuples()))
        return EXIT_FAIL
    if c.inconclusive:
        print("INCONCLUSIVE: no regression found, but some comparisons cannot tell yet: add runs.")
        return EXIT_INCONCLUSIVE
    print("No regression.")
    return EXIT_PASS
