"""Comparisons of repeated runs that say how sure they are (fanout.analysis.significance,
fanout.report.compare, ``fanout compare``): synthetic runs, no Redis. The interval and the null
distribution are checked against brute force (every assignment of ranks enumerated), Holm against
a hand-worked example, the readings on runs with a known shift, and the CLI's exit codes through
a subprocess."""
from __future__ import annotations

import itertools
import math
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from _records import make_record
from conftest import ROOT, fanout_cmd
from fanout.analysis import analyse
from fanout.analysis import significance as sig
from fanout.report import compare as C
from fanout.report.runs import ScenarioRun

_IDS = itertools.count()
MS = 1_000_000


def synthetic_run(name: str, p50_ms: float, *, lost: int = 0, transport: str | None = None,
                  rate: float | None = None) -> ScenarioRun:
    """A run of three instances, 120 deliveries (p50 carried, p99 not) whose latencies spread
    ±10 % around ``p50_ms``; ``lost`` deliveries dropped."""
    lat = [int(p50_ms * MS * f) for f in np.linspace(0.9, 1.1, 7)]
    probe = make_record(dict.fromkeys("abc", 20))
    drop = [("b", e) for e in probe.publications["id"] if not e.startswith("b:")][:lost]
    over = {"name": name} | ({"transport": transport} if transport else {}) | ({"rate_per_s": rate} if rate else {})
    rec = make_record(dict.fromkeys("abc", 20), latency_ns=lat, drop=drop, scenario_overrides=over)
    rec.run_id = f"{name}-{next(_IDS)}"
    return ScenarioRun(scenario=None, record=rec, findings=analyse(rec))


def runs(name: str, centres, **kw) -> list[ScenarioRun]:
    return [synthetic_run(name, c, **kw) for c in centres]


# per-run p50s, a little run-to-run variation (±3 %)
BASE6 = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03]
SLOWER6 = [c * 1.5 for c in [1.01, 0.99, 1.02, 0.98, 1.00, 1.03]]


# ------------------------------------------------------------------ the statistics, against brute force

def brute_u_counts(m: int, n: int) -> np.ndarray:
    """How many of the C(m+n, m) rank assignments give each U (every assignment enumerated)."""
    counts = np.zeros(m * n + 1)
    for base_ranks in itertools.combinations(range(m + n), m):
        chosen = set(base_ranks)
        new_ranks = [r for r in range(m + n) if r not in chosen]
        counts[sum(nr > br for nr in new_ranks for br in base_ranks)] += 1
    return counts


@pytest.mark.parametrize("m, n", [(1, 1), (2, 3), (3, 3), (4, 5), (5, 5), (6, 6), (3, 7)])
def test_the_null_distribution_of_u_is_every_assignment_counted(m, n):
    counts = brute_u_counts(m, n)
    assert counts.sum() == math.comb(m + n, m)
    assert np.allclose(sig.u_distribution(m, n), counts / counts.sum())


def brute_interval(base, new, confidence=0.95):
    """Hodges–Lehmann by its definition: the sorted pairwise differences; the bounds at C where
    C is found from the enumerated distribution (the smallest c with P(U ≤ c) ≥ α/2, at least 1)."""
    d = sorted(y - x for x in base for y in new)
    counts = brute_u_counts(len(base), len(new))
    cdf = np.cumsum(counts) / counts.sum()
    c = max(1, next(k for k in range(len(cdf)) if cdf[k] >= (1 - confidence) / 2))
    mid = len(d) // 2
    median = d[mid] if len(d) % 2 else (d[mid - 1] + d[mid]) / 2
    return median, d[c - 1], d[len(d) - c]


@pytest.mark.parametrize("m, n, seed", [(5, 5, 1), (6, 6, 2), (4, 7, 3), (2, 2, 4), (3, 4, 5)])
def test_hodges_lehmann_and_its_interval_match_brute_force(m, n, seed):
    rng = np.random.default_rng(seed)
    base, new = list(rng.normal(10, 2, m)), list(rng.normal(12, 2, n))
    shift, lo, hi, achieved = sig.hodges_lehmann(base, new)
    assert (shift, lo, hi) == pytest.approx(brute_interval(base, new))
    assert lo <= shift <= hi


def test_the_interval_is_the_set_of_shifts_the_test_does_not_reject():
    """Test inversion: a shift just inside the interval is not rejected at 5 %, one just outside is."""
    rng = np.random.default_rng(7)
    base, new = rng.normal(10, 1, 6), rng.normal(11, 1, 6)
    _shift, lo, hi, achieved = sig.hodges_lehmann(base, new)
    assert achieved >= 0.95
    eps = 1e-9
    for inside in (lo + eps, hi - eps):
        assert mannwhitneyu(new - inside, base, method="exact").pvalue >= 0.05
    for outside in (lo - eps, hi + eps):
        assert mannwhitneyu(new - outside, base, method="exact").pvalue < 0.05


@pytest.mark.parametrize("base, new", [([0, 0, 0, 1], [0, 1, 1, 2]), ([0] * 6, [0, 0, 0, 0, 0, 3]), ([5], [5, 6]),
                                       ([0] * 3, [0] * 3), ([1, 2, 2, 3, 3], [3, 4, 4, 5, 6])])
def test_with_ties_the_p_is_the_exact_permutation_test(base, new):
    from scipy.stats import PermutationMethod

    p = sig.mann_whitney_p(base, new)
    if min(len(base), len(new)) >= 2:
        ref = mannwhitneyu(new, base, alternative="two-sided", method=PermutationMethod(n_resamples=10**5)).pvalue
        assert p == pytest.approx(ref)
    assert 0 < p <= 1


def test_holm_against_a_hand_worked_example():
    # sorted: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04 → 0.06 by monotonicity)
    assert sig.holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert sig.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert sig.holm([]) == []


def test_the_smallest_exact_p_and_the_runs_a_level_needs():
    assert sig.min_p_two_sided(5, 5) == pytest.approx(2 / 252)
    assert mannwhitneyu([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], method="exact").pvalue == pytest.approx(2 / 252)
    assert sig.runs_for_level(0.05) == 4 and sig.runs_for_level(0.05 / 5) == 5 and sig.runs_for_level(0.05 / 12) == 6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=7),
       st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=7))
def test_the_interval_holds_the_shift_and_few_runs_never_read_same(base, new):
    shift, lo, hi, achieved = sig.hodges_lehmann(base, new)
    assert lo <= shift <= hi and 0.0 <= achieved <= 1.0
    [a] = sig.assess_family([(base, new, 1e9)])  # a threshold nothing exceeds
    if min(len(base), len(new)) < sig.MIN_RUNS:
        assert a.reading == sig.INCONCLUSIVE
    else:
        assert a.reading in (sig.SAME, sig.INCONCLUSIVE)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1, 100, allow_nan=False), min_size=3, max_size=7), st.floats(-50, 50))
def test_shifting_every_new_run_shifts_the_estimate_by_as_much(base, delta):
    new = [b + delta for b in base]
    shift, lo, hi, _ = sig.hodges_lehmann(base, new)
    assert shift == pytest.approx(delta, abs=1e-6)


def test_the_readings_from_numbers():
    base = [10.0, 10.2, 9.8, 10.1, 9.9, 10.3]
    worse, better, same, few = sig.assess_family([
        (base, [b * 1.5 for b in base], 2.0), (base, [b * 0.5 for b in base], 2.0),
        (base, [b + 0.05 for b in base], 2.0), (base[:2], [b * 1.5 for b in base[:2]], 2.0)])
    assert (worse.reading, better.reading, same.reading, few.reading) == (sig.WORSE, sig.BETTER, sig.SAME,
                                                                          sig.INCONCLUSIVE)
    assert worse.family == 4 and worse.p_holm >= worse.p and "too few runs" in few.why
    assert few.runs_needed >= sig.MIN_RUNS
    # a real change but a family too large for 3 runs per side to reach: INCONCLUSIVE, add runs
    wide = sig.assess_family([(base[:3], [b * 1.5 for b in base[:3]], 2.0)] * 3)
    assert {a.reading for a in wide} == {sig.INCONCLUSIVE} and all(a.runs_needed for a in wide)


def test_identical_runs_read_same_only_once_the_interval_reaches_its_confidence():
    same = [1.0, 1.1, 0.9, 1.05]
    three, four = sig.assess_family([(same[:3], same[:3], 0.25)]), sig.assess_family([(same, same, 0.25)])
    assert (three[0].reading, round(three[0].confidence, 2), three[0].runs_needed) == (sig.INCONCLUSIVE, 0.9, 4)
    assert four[0].reading == sig.SAME and four[0].confidence >= 0.95


def test_a_side_without_numbers_is_inconclusive_untested():
    [a] = sig.assess_family([([1.0, 2.0, 3.0], [None, None], 1.0)])
    assert a.reading == sig.INCONCLUSIVE and a.p is None and a.family == 0 and "no new run" in a.why


# ------------------------------------------------------------------ runs: the report layer

def test_per_run_metrics_come_from_the_findings():
    r = synthetic_run("standard", 2.0, lost=3)
    m = sig.run_metrics(r.findings)
    assert m["p50_ms"] == pytest.approx(r.findings.latency["p50_ms"]) and m["p99_ms"] is None  # 117 samples
    assert m["lost"] == 3 and m["loss_pct"] == pytest.approx(100 * 3 / r.findings.overall["expected"])
    assert m["recovery_ms"] is None


def test_a_known_latency_shift_over_six_runs_reads_worse_and_better_the_other_way():
    base, slow = runs("standard", BASE6), runs("standard", SLOWER6)
    c = C.compare_sets(base, slow)
    p50 = c.rows[c.rows["metric"] == "p50 latency"].iloc[0]
    assert (p50["base_n"], p50["new_n"], p50["reading"]) == (6, 6, sig.WORSE) and p50["regressed"]
    assert p50["shift_pct"] == pytest.approx(50, abs=6) and p50["ci_low"] > 0
    assert c.regressed
    back = C.compare_sets(slow, base)
    assert back.rows.set_index("metric").loc["p50 latency", "reading"] == sig.BETTER and not back.regressed
    # no p99 row: 117 samples per run carry no p99; no recovery row: no fault
    assert ("standard", "p99 latency") in c.skipped and ("standard", "recovery time") in c.skipped


def test_identical_distributions_read_same_and_two_runs_per_side_inconclusive():
    a, b = runs("standard", BASE6), runs("standard", BASE6[::-1])
    c = C.compare_sets(a, b)
    assert set(c.rows["reading"]) == {sig.SAME}, c.rows[["metric", "reading", "why"]]
    assert not c.regressed and not c.inconclusive
    few = C.compare_sets(a[:2], runs("standard", SLOWER6[:2]))
    assert set(few.rows[few.rows["metric"] != C.VERDICT]["reading"]) == {sig.INCONCLUSIVE}
    assert not few.regressed


def test_a_new_run_failing_its_verdict_where_every_base_run_passed_is_a_regression():
    base = runs("standard", BASE6[:3])
    new = runs("standard", BASE6[3:5]) + [synthetic_run("standard", 1.0, lost=2)]
    c = C.compare_sets(base, new)
    v = c.rows.set_index("metric").loc[C.VERDICT]
    assert (v["base_pass"], v["new_pass"], v["reading"]) == (3, 2, sig.WORSE) and c.regressed


def test_runs_are_matched_by_name_and_the_rest_named():
    base = runs("standard", BASE6[:3]) + runs("stress", BASE6[:3])
    new = runs("standard", BASE6[3:]) + runs("other", BASE6[:3])
    c = C.compare_sets(base, new)
    assert set(c.rows["scenario"]) == {"standard"} and c.unmatched == ("other", "stress")


def test_the_report_pairs_change_one_factor():
    rs = (runs("capacity-3x1500", [1.0]) + runs("capacity-5x2500", [1.0]) + runs("capacity-10x5000", [1.0])
          + runs("standard", [1.0]) + runs("standard-streams", [1.0], transport="streams") + runs("stress", [1.0]))
    pairs = C.comparison_pairs(rs)
    assert [(g.factor, g.base[0].name, g.new[0].name) for g in pairs] == [
        ("instances", "capacity-3x1500", "capacity-5x2500"), ("instances", "capacity-5x2500", "capacity-10x5000"),
        ("instances", "capacity-3x1500", "capacity-10x5000"), ("transport", "standard", "standard-streams")]


def test_the_benchstat_text_and_the_table():
    c = C.compare_sets(runs("standard", BASE6), runs("standard", SLOWER6))
    text = C.benchstat(c)
    line = next(ln for ln in text.splitlines() if ln.startswith("standard") and "n=6+6" in ln)
    assert "WORSE" in line and "+5" in line and "±" in line
    shown = C.display_frame(c)
    assert list(shown["reading"])[-1] == sig.SAME  # the verdict: every run passed
    assert shown.loc[shown["metric"] == "p50 latency (ms)", "reading"].item() == sig.WORSE


# ------------------------------------------------------------------ the CLI

@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    out = {}
    for key, rs in {"base": runs("standard", BASE6), "slow": runs("standard", SLOWER6),
                    "same": runs("standard", BASE6[::-1])}.items():
        for r in rs:
            r.record.save(root / key)
        out[key] = root / key
    return out


def cli(*args):
    return subprocess.run([*fanout_cmd(), "compare", *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_cli_exit_codes(folders, tmp_path):
    same = cli(folders["base"], "--", folders["same"])
    assert same.returncode == 0, same.stdout + same.stderr
    assert "No regression." in same.stdout and "SAME" in same.stdout
    slow = cli("--threshold", "20", folders["base"], "--", folders["slow"])
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert "REGRESSED: standard p50 latency" in slow.stdout and "n=6+6" in slow.stdout
    one = sorted(folders["base"].iterdir())[0]
    pair = cli(one, sorted(folders["slow"].iterdir())[0])  # A B: 1 vs 1, the verdict unchanged
    assert pair.returncode == 3, pair.stdout + pair.stderr
    assert "standard p50 latency: too few runs (1+1" in pair.stdout and "REGRESSED" not in pair.stdout
    for args, says in [((one, one, one), "no '--'"), ((one, "--"), "NEW is empty"), (("--", one), "BASE is empty"),
                       ((tmp_path, "--", one), "holds no run"), ((one, "--", one, "--bogus"), "unknown option")]:
        bad = cli(*args)
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stdout, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


# ------------------------------------------------------------------ the report's comparisons

def test_the_reports_comparisons_put_every_number_in_report_json():
    from test_report_facts import archive, missing_from

    from fanout.report import sections
    from fanout.report.context import Report
    from fanout.report.params import ReportParams

    def role(rs, r):
        return [ScenarioRun(scenario=None, record=x.record, findings=x.findings, role=r) for x in rs]

    runs_ = (role(runs("capacity-3x1500", BASE6[:4], rate=1500), "capacity")
             + role(runs("capacity-5x2500", SLOWER6[:4], rate=2500), "capacity")
             + runs("standard", [1.0]) + runs("standard-streams", [1.2], transport="streams"))
    rep = Report(params=ReportParams(scenarios=("standard",), failover=(), capacity=True), runs=runs_)
    F = rep.facts["comparisons"]
    assert [p["factor"] for p in F["pairs"]] == ["instances", "transport"]
    inst = F["pairs"][0]
    assert (inst["base_bots"], inst["new_bots"], inst["rate_per_bot"]) == (3, 5, 500.0)
    p50 = next(r for r in inst["rows"] if r["metric"] == "p50 latency")
    assert (p50["base_n"], p50["new_n"], p50["family"], p50["reading"]) == (4, 4, 2, sig.INCONCLUSIVE)
    assert F["method"]["threshold_pct"] == sig.THRESHOLD_PCT and not F["single_runs"]
    text = sections.comparisons(rep)
    assert "| instances: 3 vs 5 bots at 500 events/s each" in text and "INCONCLUSIVE" in text
    assert missing_from(text, archive(rep)) == []
    assert missing_from(text + "\nan invented shift: +0.123 ms", archive(rep)) == ["0.123"]
