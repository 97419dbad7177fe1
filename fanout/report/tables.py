"""The report's tables: pandas DataFrames of display strings, rendered with
``DataFrame.to_markdown`` (GitHub pipe tables, so they read the same in the HTML export, the
Markdown export and a notebook). Latencies are milliseconds with three decimals, rates two
decimals, counts whole (:mod:`fanout.formatting`). A percentile the samples do not carry reads
``— (n=…)`` (:func:`fanout.formatting.percentile`), and :func:`md_noted` says the rule once under
a table that has one. Nothing here writes prose: sentences live in the templates
(:mod:`fanout.report.prose`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fanout import formatting as fmt
from fanout.analysis import Findings
from fanout.analysis.frames import LATENCY_ROWS
from fanout.metrics import COUNTERS
from fanout.report import saturation

#: what the report's own counts mean (the bridge's counters are fanout.metrics.COUNTERS)
DEFINITIONS: dict[str, str] = {
    "expected": "every event the other instances published (ok publishes only)",
    "missing": "expected deliveries that never arrived",
    "lost": "missing deliveries, each attributed to the fault that caused it (or unexplained)",
    "unexplained": "missing deliveries no injected fault accounts for (must be 0)",
    "not_published": "publishes that failed within the bound: the publisher was told, nobody expects them",
    "recovered": "sent while a fault lasted and still delivered after it ended (Streams' catch-up)",
    "self_received": "an instance handed its own event (self-filtering failed)",
    "unknown": "deliveries of an id no publication names",
    "duplicates": "second and later deliveries of one event to one instance",
    "gaps": COUNTERS["gaps"],
    "unsent": COUNTERS["unsent"],
    "foreign": "deliveries from sources outside the run (live traffic on a shared Redis): never missing or duplicates",
    "suspicious": COUNTERS["suspicious"],
    "rejected": COUNTERS["rejected"],
    "id_conflicts": COUNTERS["id_conflicts"],
    "reconnects": COUNTERS["reconnects"],
    "errors": COUNTERS["errors"],
}
STATE_WORDS = {saturation.WITHIN: "within capacity",
               saturation.BEHIND: "over capacity — the publisher fell behind",
               saturation.RECEIVERS: "over capacity — the receivers fell behind",
               saturation.INSTRUMENT: "over capacity — the instrument saturated",
               saturation.NOT_JUDGED: "not judged (fault run)"}


def _escape(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _numeric(series: pd.Series) -> bool:
    vals = [str(v) for v in series if str(v) not in ("", "n/a", "not measured") and WITHHELD_MARK not in str(v)]
    strip = str.maketrans("", "", ",%+−-~ ")
    if not vals:  # a column of withheld percentiles stays where its numbers would be
        return any(WITHHELD_MARK in str(v) for v in series)
    return all(v.removesuffix("ms").translate(strip).replace(".", "", 1).isdigit() for v in vals)


def md(df: pd.DataFrame, index: bool = False, align: dict[str, str] | None = None) -> str:
    """A DataFrame as a Markdown pipe table (``to_markdown``, via tabulate), cells as given:
    numbers-looking columns right-aligned unless ``align`` says otherwise."""
    if index:
        df = df.reset_index()
    df = df.astype(object).map(_escape) if len(df) else df.astype(object)
    align = dict(align or {})
    colalign = [align.get(str(c), "right" if _numeric(df[c]) else "left") for c in df.columns]
    if not len(df):
        return "| " + " | ".join(_escape(c) for c in df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return df.to_markdown(index=False, colalign=colalign, disable_numparse=True) + "\n"


WITHHELD_MARK = "— (n="


def md_noted(df: pd.DataFrame, index: bool = False, align: dict[str, str] | None = None) -> str:
    """:func:`md`, with the percentile rule said once under the table when a cell withholds one."""
    table = md(df, index=index, align=align)
    if not any(WITHHELD_MARK in str(v) for v in df.astype(object).to_numpy().ravel()):
        return table
    return f"{table}\n*{fmt.percentile_rule()}*\n"


def _p(stats: dict, key: str) -> str:
    """A percentile of a latency dict (``count`` is its n) as a table cell."""
    return fmt.percentile(stats.get(key), stats.get("count"), key, short=True)


def status_word(passed: bool) -> str:
    """PASS/FAIL as a coloured word (an emoji beside it, never alone)."""
    return ('<span class="verdict-pass">✅ PASS</span>' if passed
            else '<span class="verdict-fail">❌ FAIL</span>')


def load_state(load: saturation.Load | dict | None) -> str:
    """A load state in words, from a :class:`~fanout.report.saturation.Load` or its facts dict."""
    if load is None:
        return ""
    state, near = (load["state"], load["near_limit"]) if isinstance(load, dict) else (load.state, load.near_limit)
    return "within capacity, the instrument at its limit" if near else STATE_WORDS[state]


# ---------------------------------------------------------------- one scenario


def overall_table(f: Findings) -> pd.DataFrame:
    """The seed's "Overall Statistics", each count with what it counts beside it."""
    o = f.overall
    d = DEFINITIONS
    rows = [
        ("Instances", fmt.count(o["instances"]), ""),
        ("Test duration", fmt.seconds(o["duration_s"]), "publishing time (the drain after it is not counted)"),
        ("Events published", fmt.count(o["published"]), COUNTERS["published"]),
        ("Expected deliveries", fmt.count(o["expected"]), d["expected"]),
        ("Received (distinct)", fmt.count(o["received"]), COUNTERS["received"]),
        ("Delivery rate", fmt.pct(o["delivery_pct"]), "received / expected"),
        ("Missing", fmt.count(o["missing"]), d["missing"]),
        ("Duplicates", fmt.count(o["duplicates"]), d["duplicates"]),
        ("Self-received", fmt.count(o["self_received"]), d["self_received"]),
        ("Unknown / unexpected", f"{fmt.count(o['unknown'])} / {fmt.count(o['unexpected'])}", d["unknown"]),
        ("Not published (publish failed)", fmt.count(o["publish_failed"]), d["not_published"]),
        ("Sequence gaps (transit loss)", fmt.count(o["gaps"]), d["gaps"]),
        ("Unsent (announced by their publisher)", fmt.count(o.get("unsent", 0)), d["unsent"]),
        ("Foreign deliveries", fmt.count(o.get("foreign", 0)), d["foreign"]),
        ("Suspicious / rejected / id conflicts",
         f"{fmt.count(o.get('suspicious', 0))} / {fmt.count(o.get('rejected', 0))} / {fmt.count(o.get('id_conflicts', 0))}",
         "forged or conflicting traffic the bridges saw (see docs/wire-format.md)"),
        ("Reconnects", fmt.count(o["reconnects"]), d["reconnects"]),
        ("Errors", fmt.count(o["errors"]), d["errors"]),
        ("Target / achieved publish rate",
         f"{fmt.rate(o['target_rate_per_s'])} / {fmt.rate(o['achieved_rate_per_s'])} events/s",
         "achieved: between the first and last due time"),
        ("Schedule lag p50 / p99 / max",
         f"{_lag(o, 'schedule_lag_p50_ms')} / {_lag(o, 'schedule_lag_p99_ms')} / {fmt.ms(o['schedule_lag_max_ms'])}",
         "send time − due time: how far the publisher fell behind its schedule"),
    ]
    return pd.DataFrame(rows, columns=["Statistic", "Value", "What it counts"])


def _lag(o: dict, key: str) -> str:
    """A schedule-lag percentile of ``Findings.overall`` as a table cell (n: its publications)."""
    return fmt.percentile(o.get(key), o.get("schedule_lag_samples"), key, short=True)


def arithmetic_table(f: Findings) -> pd.DataFrame:
    """``f.tables["per_instance"]`` (typed) as the report's event-distribution table."""
    rows = [{"Instance": r["instance"], "Published": fmt.count(r["published"]),
             "Should receive (sum of the others)": r["expected_formula"], "Received": fmt.count(r["received"]),
             "Missing": fmt.count(r["missing"]), "Duplicates": fmt.count(r["duplicates"]),
             "Self-received": fmt.count(r["self_received"]), "Exact": "yes" if r["arithmetic_ok"] else "NO"}
            for r in f.tables["per_instance"].to_dict(orient="records")]
    return pd.DataFrame(rows, columns=["Instance", "Published", "Should receive (sum of the others)", "Received",
                                       "Missing", "Duplicates", "Self-received", "Exact"])


def latency_table(f: Findings) -> pd.DataFrame:
    """``f.tables["latency"]`` (typed) as the report shows it: a row per statistic."""
    lat = f.tables["latency"]
    a, b = (lat.loc[m].to_dict() for m in LATENCY_ROWS)
    rows = [("Samples", fmt.count(a["count"]), fmt.count(b["count"]))]
    for label, key in (("Average", "avg_ms"), ("Min (P0)", "min_ms"), ("P50 (median)", "p50_ms"),
                       ("P95", "p95_ms"), ("P99", "p99_ms"), ("P99.9", "p999_ms"), ("Max (P100)", "max_ms")):
        rows.append((label, _p(a, key), _p(b, key)))
    if a.get("negative"):
        rows.append(("Negative samples (clock)", fmt.count(a["negative"]), fmt.count(b.get("negative"))))
    return pd.DataFrame(rows, columns=["Statistic", "From intended send time", "From actual send"])


def instance_latency_table(f: Findings) -> pd.DataFrame:
    """``f.tables["per_instance_latency"]`` (typed) as the report shows it."""
    per = f.tables["per_instance_latency"]
    return pd.DataFrame({
        "Instance": per["instance"].astype(str), "Connected": ["yes" if c else "NO" for c in per["connected"]],
        "Avg": [fmt.ms(v) for v in per["avg_ms"]],
        **{label: [fmt.percentile(v, n, key, short=True) for v, n in zip(per[key], per["count"])]
           for label, key in (("P50", "p50_ms"), ("P95", "p95_ms"), ("P99", "p99_ms"))},
        "Max": [fmt.ms(v) for v in per["max_ms"]], "Errors": [fmt.count(v) for v in per["errors"]],
    })


def verdict_table(f: Findings) -> pd.DataFrame:
    """``f.tables["verdict"]`` (typed) as the report shows it: the result as a coloured word."""
    v = f.tables["verdict"]
    return pd.DataFrame([(r.criterion, r.measured, r.threshold, verdict_word(r)) for r in v.itertuples(index=False)],
                        columns=["Criterion", "Measured", "Threshold", "Result"])


def agents_table(record) -> pd.DataFrame | None:
    """Which agent hosted which instances, and each agent's clock against Redis (multi-host runs)."""
    env = record.environment or {}
    workers = env.get("workers") or {}
    if not workers or not str(env.get("process_mode", "")).startswith("agents"):
        return None
    return pd.DataFrame([{"Agent": name, "Host": w.get("host", ""), "Instances": ", ".join(w["instances"]),
                          "Clock offset (ms)": f"{w['clock_offset_ns'] / 1e6:+.3f}",
                          "± (ms)": f"{w['clock_uncertainty_ns'] / 1e6:.3f}", "Status": w["status"]}
                         for name, w in workers.items()])


# ---------------------------------------------------------------- across runs


def key_results_table(runs: Sequence, outcomes: dict) -> pd.DataFrame:
    """Page one: every run in one line, its outcome in words beside its numbers."""
    return pd.DataFrame([{
        "Run": r.name, "Transport": r.transport, "Instances": fmt.count(r.findings.overall["instances"]),
        "Events": fmt.count(r.findings.overall["published"]), "Delivered": fmt.pct(r.findings.overall["delivery_pct"]),
        "p99": _p(r.findings.latency, "p99_ms"), "Outcome": outcomes[r.record.run_id].short,
        "Status": status_word(r.findings.passed),
    } for r in runs], columns=["Run", "Transport", "Instances", "Events", "Delivered", "p99", "Outcome", "Status"])


def spread_cell(sp: dict, unit: str = "ms", digits: int = 3) -> str:
    """A metric over repeated runs: the median, and the range when there are several runs
    (``0.52 (0.49–0.61)``); ``n/a`` when no run has the number (a percentile no run's samples carry)."""
    if not sp or sp.get("median") is None:
        return "n/a"
    def one(v: float) -> str:
        return f"{v:,.{digits}f}"
    text = one(sp["median"])
    if sp["n"] > 1:
        text += f" ({one(sp['min'])}–{one(sp['max'])})" if sp["min"] != sp["max"] else " (all runs)"
    return text + (unit if unit and unit != "ms" else "")


def percentile_spread(g: dict, key: str) -> str:
    """A latency percentile over a configuration's runs (:func:`spread_cell`), or the withheld mark
    with the largest run's sample count when no run's samples carry it."""
    if g[key].get("median") is None and g["latency_samples"].get("max"):
        return fmt.percentile(None, int(g["latency_samples"]["max"]), key, short=True)
    return spread_cell(g[key])


def scenarios_table(groups: Sequence[dict]) -> pd.DataFrame:
    """One row per configuration, its repeated runs summarised: the median over the runs and their
    range (one number per run each), delivery over all of its runs, and how many passed."""
    rows = []
    for g in groups:
        rows.append({"Scenario": g["name"], "Transport": g["transport"], "Instances": fmt.count(g["instances"]),
                     "Events/s": fmt.count(g["target_rate_per_s"]), "Runs": fmt.count(g["runs"]),
                     "Delivered": f"{fmt.count(g['delivered'])} of {fmt.count(g['expected'])}",
                     "p50 ms: median (range)": percentile_spread(g, "p50_ms"),
                     "p99 ms: median (range)": percentile_spread(g, "p99_ms"),
                     "Exactly once": f"{g['exactly_once']} of {g['runs']}",
                     "Status": status_word(g["passed"] == g["runs"]) + (
                         "" if g["passed"] in (0, g["runs"]) else f" {g['passed']} of {g['runs']}")})
    return pd.DataFrame(rows, columns=["Scenario", "Transport", "Instances", "Events/s", "Runs", "Delivered",
                                       "p50 ms: median (range)", "p99 ms: median (range)", "Exactly once", "Status"])


def faults_table(groups: Sequence[dict]) -> pd.DataFrame:
    """One row per fault and transport over its repeated runs: lost per run, the loss as a rate
    (per second of the fault's window per receiver), recovery and the lateness of what was sent
    during the fault, each a median with its range."""
    rows = []
    for g in groups:
        lost = [v for v in g["lost"]["values"]]
        rows.append({"Fault": g["fault"] or g["name"], "Transport": g["transport"], "Runs": fmt.count(g["runs"]),
                     "Lost per run": ", ".join(fmt.count(v) for v in lost),
                     "Lost / s of fault / receiver": spread_cell(g["lost_per_outage_s"], unit="", digits=2),
                     "Receiving again after (ms)": spread_cell(g["recovery_ms"], digits=0),
                     "Latest of sent during fault (ms)": spread_cell(g["late_max_ms"], digits=0),
                     "Status": status_word(g["passed"] == g["runs"]) + (
                         "" if g["passed"] in (0, g["runs"]) else f" {g['passed']} of {g['runs']}")})
    return pd.DataFrame(rows, columns=["Fault", "Transport", "Runs", "Lost per run", "Lost / s of fault / receiver",
                                       "Receiving again after (ms)", "Latest of sent during fault (ms)", "Status"])


def distribution_table(runs: Sequence) -> pd.DataFrame:
    rows = []
    for r in runs:
        o, per = r.findings.overall, r.findings.per_instance
        n, published, delivered = o["instances"], o["published"], o["received"]
        receivers = int((per["role"].astype(str).str.contains("receiver")).sum())
        receives = per.loc[per["expected"] > 0, "received"].to_numpy()
        rows.append({"Scenario": r.name, "Instances": fmt.count(n), "Published": fmt.count(published),
                     "Delivered": fmt.count(delivered), "Expected": fmt.count(o["expected"]),
                     "Per receiver": (f"{receives.min():,}–{receives.max():,}" if len(receives) else "n/a"),
                     "Receivers × published − own": "exact" if delivered == o["expected"] else "NOT exact",
                     "Receivers": fmt.count(receivers)})
    return pd.DataFrame(rows)


def throughput_table(runs: Sequence, loads: dict, facts: dict) -> pd.DataFrame:
    """Rates per run; deliveries/s over the publishing window, as ``facts`` (report.json) holds it."""
    per = {e["run_id"]: e for e in facts["runs"]}
    rows = []
    for r in runs:
        o = r.findings.overall
        rows.append({"Scenario": r.name, "Target events/s": fmt.rate(o["target_rate_per_s"]),
                     "Achieved events/s": fmt.rate(o["achieved_rate_per_s"]),
                     "Deliveries/s (publishing window)": fmt.rate(per[r.record.run_id]["deliveries_per_s"]),
                     "Schedule lag p99": _lag(o, "schedule_lag_p99_ms"),
                     "Load": load_state(loads[r.record.run_id])})
    return pd.DataFrame(rows)


def latency_distribution_table(runs: Sequence) -> pd.DataFrame:
    rows = []
    for r in runs:
        lat = r.findings.latency
        rows.append({"Scenario": r.name, "Samples": fmt.count(lat["count"]), "P50": _p(lat, "p50_ms"),
                     "P95": _p(lat, "p95_ms"), "P99": _p(lat, "p99_ms"), "P99.9": _p(lat, "p999_ms"),
                     "Max": fmt.ms(lat["max_ms"]), "Average": fmt.ms(lat["avg_ms"])})
    return pd.DataFrame(rows)


def failover_table(entries: Sequence[dict]) -> pd.DataFrame:
    """The one failover table from the fault runs' facts: a row per fault and transport, every
    number behind the verdict, the losses by kind and the lateness of what was sent during the fault."""
    def ms_cell(v) -> str:
        return "n/a" if v is None else f"{v:,.1f}"

    rows = []
    for e in entries:
        late = e.get("lateness") or {}
        kinds = e["by_kind"]
        rows.append({"Fault": e["fault"], "Transport": e["transport"], "Expected": fmt.count(e["expected"]),
                     "Delivered": fmt.count(e["delivered"]), "Lost": fmt.count(e["missing"]),
                     "Planned / unplanned / unexplained": " / ".join(
                         fmt.count(kinds.get(k, 0)) for k in ("planned fault", "unplanned outage", "unexplained")),
                     "Not published": fmt.count(e["not_published"]), "Recovered": fmt.count(e["recovered"]),
                     "Receiving again after": "n/a" if e["recovery_ms"] is None else f"{e['recovery_ms']:.1f} ms",
                     "Bound (ms)": ms_cell(late.get("bound_ms")),
                     "In window: n, p50 / p99 / max (ms)": "n/a" if late.get("window_n") is None else
                     f"{fmt.count(late['window_n'])}, {ms_cell(late.get('window_p50_ms'))} / "
                     f"{ms_cell(late.get('window_p99_ms'))} / {ms_cell(late.get('window_max_ms'))}",
                     "Late": "n/a" if late.get("late") is None else fmt.count(late["late"]),
                     "Status": status_word(e["passed"])})
    return pd.DataFrame(rows)


def verdict_word(c) -> str:
    """PASS/FAIL for a judged criterion; "noted" for one stated, not judged (``judged=False``)."""
    if not getattr(c, "judged", True):
        return '<span class="verdict-note">ℹ️ noted</span>'
    return status_word(c.passed)


def resources_table(entries: Sequence[dict]) -> pd.DataFrame:
    """Run facts -> one row per sampled run: Redis and the instrument side by side (instrument CPU
    as the methodology defines it, * where only the sampled process CPU was there)."""
    def f(v, spec="{:.1f}") -> str:
        return "n/a" if v is None else spec.format(v)

    rows = []
    for e in entries:
        r = e["resources"]
        redis = r.get("sampled_redis")
        rows.append({
            "Scenario": e["name"],
            "Redis CPU % (mean / max)": f"{f(r.get('redis_cpu_pct'))} / {f(r.get('redis_cpu_pct_max'))}"
            if redis else "not sampled",
            "Redis memory MiB (end / peak)": f"{f(r.get('redis_memory_mib'), '{:.2f}')} / "
                                             f"{f(r.get('redis_memory_peak_mib'), '{:.2f}')}" if redis else "",
            "Redis net in / out KiB/s": f"{f(r.get('redis_net_in_kib_s'), '{:,.1f}')} / "
                                        f"{f(r.get('redis_net_out_kib_s'), '{:,.1f}')}" if redis else "",
            "Clients (max)": fmt.count(r.get("redis_clients_max")) if redis else "",
            "Instrument CPU %": f(e["instrument_cpu_pct"]) + ("*" if e["instrument_cpu_source"] == "sampled" else ""),
            "Instrument RSS MiB": f(r.get("instrument_rss_mib")),
            "Instance processes": f"{e['hosting']['processes']}",
        })
    return pd.DataFrame(rows)


__all__ = ["md", "md_noted", "status_word", "load_state", "DEFINITIONS", "STATE_WORDS", "overall_table",
           "arithmetic_table", "latency_table", "instance_latency_table", "verdict_table", "agents_table",
           "key_results_table", "distribution_table", "throughput_table", "latency_distribution_table", "failover_table",
           "verdict_word",
           "resources_table"]
