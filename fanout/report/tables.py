"""Tables and markdown for the notebooks and the validation report.

Everything the report says is computed here from :class:`~fanout.record.RunRecord` and
:class:`~fanout.analysis.Findings`; the notebooks only call these functions and display the
result. Tables are DataFrames of display strings; :func:`md_table` renders them as markdown
(GitHub pipe tables) so they read the same in the HTML export, the markdown export and a
notebook. Latencies are milliseconds with three decimals, rates two decimals, counts whole.

Nothing here prints, runs scenarios or writes files.
"""
from __future__ import annotations

import platform
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fanout import formatting as fmt
from fanout.analysis import Findings, compare, latency_samples
from fanout.lab.record import RunRecord
from fanout.redact import redact_url

REPORT_TITLE = "Redis Multi-Instance Testing Report"
PASS_MARK, FAIL_MARK = "✅", "❌"
#: package versions stated in the provenance (those that are installed)
PROVENANCE_PACKAGES = ("redis", "hiredis", "pandas", "numpy", "pyarrow", "seaborn", "matplotlib", "papermill",
                       "nbconvert", "ipykernel")


@dataclass
class ScenarioRun:
    """One scenario as the report ran it: the Scenario used, its record and findings, and what
    was changed from the scenario file (``changes``: field -> (file value, value used))."""

    scenario: Any  # fanout.scenario.Scenario
    record: RunRecord
    findings: Findings
    source: str = ""
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.findings.scenario.get("name", self.record.run_id))

    @property
    def path(self) -> str:
        return _rel(self.record.path) if self.record.path else "(not saved)"


# ---------------------------------------------------------------- formatting


def _rel(p: Path | str | None) -> str:
    if p is None:
        return ""
    p = Path(p)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def mark(ok: bool) -> str:
    return PASS_MARK if ok else FAIL_MARK


def status_text(passed: bool) -> str:
    return f"{mark(passed)} {'PASS' if passed else 'FAIL'}"






def _escape(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def md_table(df: pd.DataFrame, index: bool = False, align: dict[str, str] | None = None) -> str:
    """A DataFrame as a GitHub-style markdown pipe table (no ``tabulate`` needed).

    Numeric columns, and columns whose values all look like numbers, are right-aligned;
    ``align`` maps a column to ``"left"``, ``"right"`` or ``"center"`` to override.
    """
    if index:
        df = df.reset_index()
    align = dict(align or {})
    cols = [str(c) for c in df.columns]

    def side(col: str, series: pd.Series) -> str:
        if col in align:
            return align[col]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            return "right"
        vals = [str(v) for v in series if str(v) not in ("", "n/a")]
        numeric = vals and all(v.replace(",", "").replace("%", "").replace("ms", "").replace(" s", "")
                               .replace("~", "").replace(" each", "").strip().lstrip("+-").replace(".", "", 1)
                               .isdigit() for v in vals)
        return "right" if numeric else "left"

    rule = {"left": "---", "right": "---:", "center": ":---:"}
    sides = [side(c, df[orig]) for c, orig in zip(cols, df.columns)]
    lines = ["| " + " | ".join(_escape(c) for c in cols) + " |",
             "|" + "|".join(rule[s] for s in sides) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_escape(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def kv_table(pairs: Iterable[tuple[str, Any]], headers: tuple[str, str] = ("", "")) -> str:
    """Two-column markdown table from (label, value) pairs."""
    return md_table(pd.DataFrame(list(pairs), columns=list(headers)), align={headers[1]: "left"})


# ---------------------------------------------------------------- one scenario


def overall_table(f: Findings) -> pd.DataFrame:
    """The seed's "Overall Statistics", plus the facts it did not state."""
    o = f.overall
    rows = [
        ("Total instances", fmt.count(o["instances"])),
        ("Test duration", fmt.seconds(o["duration_s"])),
        ("Events published", fmt.count(o["published"])),
        ("Events received (distinct, by all instances)", fmt.count(o["received"])),
        ("Expected received (each instance: all published minus its own)", fmt.count(o["expected"])),
        ("Delivery rate", fmt.pct(o["delivery_pct"])),
        ("Missing", fmt.count(o["missing"])),
        ("Duplicates", fmt.count(o["duplicates"])),
        ("Self-received events", f"{fmt.count(o['self_received'])} {mark(o['self_received'] == 0)}"),
        ("Unknown / unexpected deliveries", f"{fmt.count(o['unknown'])} / {fmt.count(o['unexpected'])}"),
        ("Publish failures", fmt.count(o["publish_failed"])),
        ("Errors", fmt.count(o["errors"])),
        ("Sequence gaps / reconnects", f"{fmt.count(o['gaps'])} / {fmt.count(o['reconnects'])}"),
        ("Target publish rate", f"{fmt.rate(o['target_rate_per_s'])} events/s"),
        ("Achieved publish rate", f"{fmt.rate(o['achieved_rate_per_s'])} events/s"),
        ("Deliveries per second (t0 to end of drain)", f"{fmt.rate(o['deliveries_per_s'])} events/s"),
        ("Schedule lag (send − due) p50 / p99 / max",
         f"{fmt.ms(o['schedule_lag_p50_ms'])} / {fmt.ms(o['schedule_lag_p99_ms'])} / {fmt.ms(o['schedule_lag_max_ms'])}"),
    ]
    return pd.DataFrame(rows, columns=["Statistic", "Value"])


def arithmetic_table(f: Findings) -> pd.DataFrame:
    """Per instance: published, should receive (the sum of the others' publications), received,
    and whether the arithmetic is exact (no missing, duplicate, self or unexpected delivery)."""
    rows = []
    for r in f.per_instance.to_dict(orient="records"):
        rows.append({
            "Instance": r["instance"],
            "Published": fmt.count(r["published"]),
            "Should receive (sum of the others)": r["expected_formula"],
            "Received": fmt.count(r["received"]),
            "Missing": fmt.count(r["missing"]),
            "Duplicates": fmt.count(r["duplicates"]),
            "Self-received": fmt.count(r["self_received"]),
            "Exact": mark(bool(r["arithmetic_ok"])),
        })
    return pd.DataFrame(rows, columns=["Instance", "Published", "Should receive (sum of the others)", "Received",
                                       "Missing", "Duplicates", "Self-received", "Exact"])


def latency_table(f: Findings) -> pd.DataFrame:
    """Latency statistics in ms (three decimals): from the intended send time (the headline,
    includes publisher lag) and from the actual send."""
    a, b = f.latency, f.latency_sent
    rows = [("Samples", fmt.count(a["count"]), fmt.count(b["count"]))]
    for label, key in (("Average", "avg_ms"), ("Min (P0)", "min_ms"), ("P50 (median)", "p50_ms"),
                       ("P95", "p95_ms"), ("P99", "p99_ms"), ("P99.9", "p999_ms"), ("Max (P100)", "max_ms")):
        rows.append((label, fmt.ms(a.get(key)), fmt.ms(b.get(key))))
    if a.get("negative"):
        rows.append(("Negative samples (clock)", fmt.count(a["negative"]), fmt.count(b.get("negative"))))
    return pd.DataFrame(rows, columns=["Statistic", "From intended send time", "From actual send"])


def instance_latency_table(f: Findings) -> pd.DataFrame:
    per = f.per_instance
    return pd.DataFrame({
        "Instance": per["instance"].astype(str),
        "Connected": ["yes" if c else "NO" for c in per["connected"]],
        "Avg": [fmt.ms(v) for v in per["lat_avg_ms"]],
        "P50": [fmt.ms(v) for v in per["lat_p50_ms"]],
        "P95": [fmt.ms(v) for v in per["lat_p95_ms"]],
        "P99": [fmt.ms(v) for v in per["lat_p99_ms"]],
        "Max": [fmt.ms(v) for v in per["lat_max_ms"]],
        "Errors": [fmt.count(v) for v in per["errors"]],
    })


def verdict_table(f: Findings) -> pd.DataFrame:
    return pd.DataFrame([(c.name, c.measured, c.threshold, f"{mark(c.passed)} {'pass' if c.passed else 'FAIL'}")
                         for c in f.verdict], columns=["Criterion", "Measured", "Threshold", "Result"])


def configuration_markdown(run_or_findings: ScenarioRun | Findings) -> str:
    """The seed's "Configuration" bullets, with any change from the scenario file stated."""
    run = run_or_findings if isinstance(run_or_findings, ScenarioRun) else None
    f = run.findings if run else run_or_findings
    sc = f.scenario
    changes = run.changes if run else {}

    def note(key: str, unit: str = "") -> str:
        if key in changes:
            was, _now = changes[key]
            return f" (scenario file: {was:g}{unit})" if isinstance(was, (int, float)) else f" (scenario file: {was})"
        return ""

    lines = [
        f"- **Instances**: {sc.get('instances')}",
        f"- **Duration**: {sc.get('duration_s', 0):g} s{note('duration_s', ' s')}",
        f"- **Publish rate**: {sc.get('rate_per_s', 0):g} events/second total ({sc.get('arrivals', 'uniform')} arrivals)",
        f"- **Event types**: {', '.join(sc.get('event_types') or [])}; symbols {', '.join(sc.get('symbols') or [])}",
        f"- **Transport**: {sc.get('transport', 'pubsub')}",
        f"- **Seed**: {sc.get('seed')}{note('seed')}",
        f"- **Warm-up / drain timeout**: {sc.get('warmup_s', 0):g} s / {sc.get('drain_timeout_s', 0):g} s",
        f"- **Pass marks**: delivery >{f.thresholds.min_delivery_pct:g}%{note('min_delivery_pct', '%')}, "
        f"average latency <{f.thresholds.max_avg_latency_ms:g} ms{note('max_avg_latency_ms', ' ms')}",
    ]
    if sc.get("faults"):
        lines.append(f"- **Faults injected**: {_faults_text(sc['faults'])}")
    run_path = run.path if run else ""
    lines.append(f"- **Run**: `{f.run_id}`" + (f" (record: `{run_path}`)" if run_path else ""))
    return "\n".join(lines) + "\n"


def verdict_markdown(f: Findings) -> str:
    failed = [c for c in f.verdict if not c.passed]
    head = f"**Overall status: {status_text(f.passed)}**"
    if failed:
        head += " — failed: " + "; ".join(f"{c.name} (measured {c.measured}, threshold {c.threshold})" for c in failed)
    return md_table(verdict_table(f)) + "\n" + head + "\n"


def scenario_heading(run: ScenarioRun, index: int | None = None) -> str:
    f = run.findings
    prefix = f"Test Scenario {index}: " if index is not None else "Scenario: "
    return f"## {prefix}{run.name} ({f.overall['instances']} Instances) — {status_text(f.passed)}\n"


def scenario_results_markdown(run: ScenarioRun, index: int | None = None) -> str:
    """Heading, configuration, overall statistics and the per-instance arithmetic of one scenario."""
    f = run.findings
    return "\n".join([
        scenario_heading(run, index),
        "### Configuration\n", configuration_markdown(run),
        "### Overall Statistics\n", md_table(overall_table(f), align={"Value": "left"}),
        "### Event Distribution Verification\n",
        "Each instance should receive every event the *other* instances published, exactly once, "
        "and none of its own.\n",
        md_table(arithmetic_table(f), align={"Exact": "center"}),
    ] + agents_markdown(run.record))


def agents_markdown(record: RunRecord) -> list[str]:
    """Which agent hosted which instances, and each agent's clock against Redis (multi-host runs)."""
    env = record.environment or {}
    workers = env.get("workers") or {}
    if not workers or not str(env.get("process_mode", "")).startswith("agents"):
        return []
    rows = [{"Agent": name, "Host": w.get("host", ""), "Instances": ", ".join(w["instances"]),
             "Clock offset (ms)": f"{w['clock_offset_ns'] / 1e6:+.3f}",
             "± (ms)": f"{w['clock_uncertainty_ns'] / 1e6:.3f}", "Status": w["status"]}
            for name, w in workers.items()]
    coord = env.get("coordinator_clock") or {}
    note = (f"Clock offsets are against Redis's `TIME` (Redis ≈ agent clock + offset), each from the round "
            f"trip with the smallest delay; every recorded time was moved onto Redis's clock before analysis. "
            f"The coordinator's own offset: {coord.get('offset_ns', 0) / 1e6:+.3f} ms "
            f"± {coord.get('uncertainty_ns', 0) / 1e6:.3f} ms.\n")
    return ["### Agents\n", md_table(pd.DataFrame(rows), align={"Instances": "left", "Status": "left"}), note]


def scenario_latency_markdown(run: ScenarioRun) -> str:
    f = run.findings
    return "\n".join([
        "### Latency Statistics\n",
        "Latency is measured from when each event was *due* on the open-loop schedule to when the "
        "receiving handler ran (the publisher's own lag is included, not hidden); the time from the "
        "actual send is shown beside it.\n",
        md_table(latency_table(f)),
        "Per instance (as receiver):\n",
        md_table(instance_latency_table(f)),
    ])


def scenario_verdict_markdown(run: ScenarioRun | Findings) -> str:
    f = run.findings if isinstance(run, ScenarioRun) else run
    return "### Verdict\n\n" + verdict_markdown(f)


# ---------------------------------------------------------------- across scenarios


def key_results_table(runs: Sequence[ScenarioRun]) -> pd.DataFrame:
    """The seed's "Key Results" table."""
    return pd.DataFrame([{
        "Test Scenario": r.name,
        "Instances": fmt.count(r.findings.overall["instances"]),
        "Events": fmt.count(r.findings.overall["published"]),
        "Delivery Rate": fmt.pct(r.findings.overall["delivery_pct"]),
        "Avg Latency": fmt.ms(r.findings.latency["avg_ms"]),
        "Self-Received": fmt.count(r.findings.overall["self_received"]),
        "Status": status_text(r.findings.passed),
    } for r in runs], columns=["Test Scenario", "Instances", "Events", "Delivery Rate", "Avg Latency",
                               "Self-Received", "Status"])


def all_scenarios_table(runs: Sequence[ScenarioRun]) -> pd.DataFrame:
    """Metrics as rows, one column per scenario."""
    metrics: list[tuple[str, Any]] = [
        ("Instances", lambda f: fmt.count(f.overall["instances"])),
        ("Duration", lambda f: fmt.seconds(f.overall["duration_s"])),
        ("Target rate (events/s)", lambda f: fmt.rate(f.overall["target_rate_per_s"])),
        ("Published", lambda f: fmt.count(f.overall["published"])),
        ("Delivered", lambda f: fmt.count(f.overall["received"])),
        ("Delivery Rate", lambda f: fmt.pct(f.overall["delivery_pct"])),
        ("Avg Latency", lambda f: fmt.ms(f.latency["avg_ms"])),
        ("P50 Latency", lambda f: fmt.ms(f.latency["p50_ms"])),
        ("P95 Latency", lambda f: fmt.ms(f.latency["p95_ms"])),
        ("P99 Latency", lambda f: fmt.ms(f.latency["p99_ms"])),
        ("Max Latency", lambda f: fmt.ms(f.latency["max_ms"])),
        ("Missing", lambda f: fmt.count(f.overall["missing"])),
        ("Duplicates", lambda f: fmt.count(f.overall["duplicates"])),
        ("Self-Received", lambda f: fmt.count(f.overall["self_received"])),
        ("Errors", lambda f: fmt.count(f.overall["errors"])),
        ("Status", lambda f: status_text(f.passed)),
    ]
    data = {"Metric": [m for m, _ in metrics]}
    for r in runs:
        label = r.name
        while label in data:
            label += "'"
        data[label] = [fn(r.findings) for _, fn in metrics]
    return pd.DataFrame(data)


def comparison_pair(runs: Sequence[ScenarioRun]) -> tuple[ScenarioRun, ScenarioRun] | None:
    """The seed's comparison: standard (3 instances) vs stress (5); otherwise the first two runs
    with different instance counts; otherwise the first two."""
    by_name = {r.name: r for r in runs}
    if "standard" in by_name and "stress" in by_name:
        return by_name["standard"], by_name["stress"]
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a.findings.overall["instances"] != b.findings.overall["instances"]:
                return a, b
    return (runs[0], runs[1]) if len(runs) >= 2 else None


def comparison_table(a: ScenarioRun, b: ScenarioRun) -> pd.DataFrame:
    na, nb = a.findings.overall["instances"], b.findings.overall["instances"]
    labels = (f"{na} Instances ({a.name})", f"{nb} Instances ({b.name})") if na != nb else (a.name, b.name + " ")
    return compare(a.findings, b.findings, labels=labels).reset_index()


def distribution_table(runs: Sequence[ScenarioRun]) -> pd.DataFrame:
    """The seed's "Event Distribution" table with its (n−1) pattern checked."""
    rows = []
    for r in runs:
        o, per = r.findings.overall, r.findings.per_instance
        n, published, delivered = o["instances"], o["published"], o["received"]
        receives = per["received"].to_numpy()
        ratio = delivered / published if published else 0.0
        pattern_ok = delivered == (n - 1) * published
        rows.append({
            "Scenario": r.name,
            "Instances": fmt.count(n),
            "Published": fmt.count(published),
            "Total Delivered": fmt.count(delivered),
            "Per-Instance Receives": (f"~{receives.mean():,.0f} each ({receives.min():,}–{receives.max():,})"
                                      if len(receives) else "n/a"),
            "Ratio": f"{ratio:.0f}:1" if float(ratio).is_integer() else f"{ratio:.3f}:1",
            "(n−1) × published": f"{mark(pattern_ok)} {n - 1} × {published:,} = {(n - 1) * published:,}",
        })
    return pd.DataFrame(rows)


def throughput_table(runs: Sequence[ScenarioRun]) -> pd.DataFrame:
    """The seed's throughput arithmetic: published / duration, delivered / duration, per instance."""
    rows = []
    for r in runs:
        o = r.findings.overall
        d = o["duration_s"] or 0
        pub_s = o["published"] / d if d else None
        del_s = o["received"] / d if d else None
        rows.append({
            "Scenario": r.name,
            "Duration": fmt.seconds(d),
            "Published": fmt.count(o["published"]),
            "Published/s": fmt.rate(pub_s),
            "Delivered": fmt.count(o["received"]),
            "Delivered/s": fmt.rate(del_s),
            "Per instance (received/s)": fmt.rate(del_s / o["instances"] if del_s is not None and o["instances"] else None),
            "Achieved publish rate (events/s)": fmt.rate(o["achieved_rate_per_s"]),
            "Schedule lag p99": fmt.ms(o["schedule_lag_p99_ms"]),
        })
    return pd.DataFrame(rows)


def latency_distribution_table(runs: Sequence[ScenarioRun]) -> pd.DataFrame:
    rows = []
    for r in runs:
        lat = r.findings.latency
        rows.append({
            "Scenario": r.name, "Samples": fmt.count(lat["count"]),
            "P0 (Min)": fmt.ms(lat["min_ms"]), "P50 (Median)": fmt.ms(lat["p50_ms"]), "P95": fmt.ms(lat["p95_ms"]),
            "P99": fmt.ms(lat["p99_ms"]), "P99.9": fmt.ms(lat["p999_ms"]), "P100 (Max)": fmt.ms(lat["max_ms"]),
            "Average": fmt.ms(lat["avg_ms"]),
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- measured facts for the limitations


def ordering_stats(record: RunRecord) -> dict[str, int]:
    """How often a receiver got an event *after* one that was due later.

    Per receiver, deliveries are taken in the order its handler ran; an event is out of order
    when an earlier delivery (same grouping) was due after it. Counted within one publisher and
    one channel (``same_channel``: Redis keeps these in order), within one publisher across its
    channels (``same_publisher``), and across all publishers (``any_publisher``).
    """
    s = latency_samples(record)
    if s.empty:
        return {"deliveries": 0, "same_channel": 0, "same_publisher": 0, "any_publisher": 0}
    due = record.publications.loc[record.publications["ok"], ["id", "t_intended"]]
    s = s.merge(due, on="id", how="left").sort_values(["receiver", "t_received"], kind="stable")

    def late(keys: list[str]) -> int:
        prev = s.groupby(keys, sort=False)["t_intended"].transform(lambda x: x.cummax().shift())
        return int((s["t_intended"] < prev).sum())

    return {"deliveries": len(s), "same_channel": late(["receiver", "source", "type"]),
            "same_publisher": late(["receiver", "source"]), "any_publisher": late(["receiver"])}


def _faults_text(faults: Iterable[dict]) -> str:
    return "; ".join(", ".join(f"{k}={v}" for k, v in dict(fl).items()) for fl in faults) or "none"


def _ms_range(values: Sequence[float]) -> str:
    """"was 1.234ms" for one value, "ranged 1.234ms–5.678ms" for several."""
    if not values:
        return "was n/a"
    lo, hi = min(values), max(values)
    return f"was {fmt.ms(lo)}" if len(values) == 1 or lo == hi else f"ranged {fmt.ms(lo)}–{fmt.ms(hi)}"


def _faulted(run: ScenarioRun) -> bool:
    return bool(run.findings.scenario.get("faults"))


def _streams(run: ScenarioRun) -> bool:
    return run.findings.scenario.get("transport") == "streams"


def _loss_line(label: str, runs: Sequence[ScenarioRun]) -> str:
    missing = sum(r.findings.overall["missing"] for r in runs)
    expected = sum(r.findings.overall["expected"] for r in runs)
    return f"{label}: {missing:,} of {expected:,} expected deliveries missing ({', '.join(r.name for r in runs)})"


def _is_loopback(url: str) -> bool:
    return any(h in url for h in ("127.0.0.1", "localhost", "[::1]", "unix://"))


def failover_markdown(runs: Sequence[ScenarioRun]) -> str:
    """Fault-injection and Streams scenarios, when the report includes any; otherwise says so."""
    special = [r for r in runs if r.findings.scenario.get("faults") or r.findings.scenario.get("transport") != "pubsub"]
    out = ["## Failover and Streams\n"]
    if not special:
        out.append("No scenario in this report injected faults (Redis restart, instance crash, partition, slow "
                   "consumer) or used the Streams transport, so recovery after a failure and durable delivery "
                   "were **not measured here**. Every run used Redis pub/sub with all subscribers connected "
                   "throughout.\n")
        return "\n".join(out)
    rows = []
    for r in special:
        o, sc = r.findings.overall, r.findings.scenario
        losses = getattr(r.findings, "losses", None)
        rows.append({"Scenario": r.name, "Transport": sc.get("transport"),
                     "Faults": _faults_text(sc.get("faults") or []) if sc.get("faults") else "none",
                     "Delivery": fmt.pct(o["delivery_pct"]), "Missing": fmt.count(o["missing"]),
                     "Unexplained": fmt.count(o.get("unexplained", losses.unexplained if losses else None)),
                     "Duplicates": fmt.count(o["duplicates"]), "Publish failures": fmt.count(o["publish_failed"]),
                     "Reconnects": fmt.count(o["reconnects"]), "Status": status_text(r.findings.passed)})
    out.append(md_table(pd.DataFrame(rows), align={"Faults": "left"}))
    out.append("*Missing* counts every expected delivery that did not arrive; *Unexplained* is the part no "
               "injected fault accounts for (it must be 0). Publish failures were reported to the publisher "
               "and are expected nowhere.\n")
    for r in special:
        losses = getattr(r.findings, "losses", None)
        if losses is None or losses.faults is None or losses.faults.empty:
            continue
        ft = losses.faults.copy()
        cols = [c for c in ("fault", "kind", "instance", "receivers", "sent_in_window", "delivered", "lost",
                            "recovered", "recovery_ms") if c in ft.columns]
        ft = ft[cols].rename(columns={"sent_in_window": "sent in window", "recovery_ms": "recovery (ms)"})
        if "recovery (ms)" in ft:
            ft["recovery (ms)"] = [fmt.ms(v).removesuffix("ms") if v is not None and v == v else "n/a"
                                   for v in ft["recovery (ms)"]]
        out.append(f"**{r.name}**: per fault\n")
        out.append(md_table(ft.astype(str), align={"fault": "left", "kind": "left"}))
        if losses.by_cause:
            out.append("Lost events by cause: " + "; ".join(f"{k}: {v:,}" for k, v in losses.by_cause.items())
                       + "\n")
    return "\n".join(out)


def limitations_markdown(runs: Sequence[ScenarioRun]) -> str:
    """The seed's four known limitations, each with what these runs measured about it."""
    if not runs:
        return "## Known Limitations\n\nNo runs.\n"
    order = [ordering_stats(r.record) for r in runs]
    deliveries = sum(o["deliveries"] for o in order)
    same_ch = sum(o["same_channel"] for o in order)
    same_pub = sum(o["same_publisher"] for o in order)
    any_pub = sum(o["any_publisher"] for o in order)
    multi_channel = [r.name for r in runs if len(r.findings.scenario.get("event_types") or []) > 1]
    connected = sum(int(r.findings.per_instance["connected"].sum()) for r in runs)
    n_inst = sum(len(r.findings.per_instance) for r in runs)
    reconnects = sum(r.findings.overall["reconnects"] for r in runs)
    gaps = sum(r.findings.overall["gaps"] for r in runs)
    faulted = [r.name for r in runs if r.findings.scenario.get("faults")]
    streams = [r.name for r in runs if r.findings.scenario.get("transport") == "streams"]
    urls = sorted({str(r.findings.environment.get("redis_url") or "") for r in runs})
    loopback = all(_is_loopback(u) for u in urls)
    calm = [r for r in runs if not _faulted(r)] or list(runs)  # faults add their own delay: leave them out
    avg = [r.findings.latency["avg_ms"] for r in calm if r.findings.latency["avg_ms"] is not None]
    p99 = [r.findings.latency["p99_ms"] for r in calm if r.findings.latency["p99_ms"] is not None]
    calm_note = (f" (scenarios without faults: {', '.join(r.name for r in calm)})" if len(calm) < len(runs)
                 else " (every scenario injected faults; their delays are included)" if any(map(_faulted, runs))
                 else "")
    cores = {r.findings.environment.get("cores") for r in runs}

    lines = ["## Known Limitations\n"]
    lines += [
        "### 1. Event Ordering\n",
        "**Issue**: Redis keeps the order of messages on one channel, not across channels; each event type is "
        "its own channel, and each publisher its own connection.\n",
        f"**Measured**: of {deliveries:,} deliveries, {same_ch:,} arrived after a later-due event from the same "
        f"publisher on the same channel, {same_pub:,} after a later-due event from the same publisher on any "
        f"channel, and {any_pub:,} after a later-due event from any publisher"
        + (f" (scenarios with more than one channel: {', '.join(multi_channel)})." if multi_channel else
           " (every scenario used a single channel, so cross-channel order was not exercised).") + "\n",
        "**Mitigation**: every envelope carries `ts_ns` and a per-channel `seq`; consumers that need an order "
        "across event types must sort by timestamp.\n",
        "### 2. No Message Persistence\n",
        "**Issue**: Redis pub/sub is fire-and-forget: a subscriber that is disconnected misses what is "
        "published meanwhile, and nothing replays it.\n",
        "**Measured**: " + "; ".join(_loss_line(label, group) for label, group in (
            ("pub/sub without faults", [r for r in runs if not _faulted(r) and not _streams(r)]),
            ("pub/sub with faults", [r for r in runs if _faulted(r) and not _streams(r)]),
            ("Streams without faults", [r for r in runs if not _faulted(r) and _streams(r)]),
            ("Streams with faults", [r for r in runs if _faulted(r) and _streams(r)])) if group)
        + f". At the end of their runs {connected}/{n_inst} instances were connected; {reconnects} reconnects, "
          f"{gaps} sequence gaps. "
        + ("No subscriber was taken down in these runs, so loss during an outage was **not measured** here"
           if not faulted else f"The fault scenarios ({', '.join(faulted)}) are detailed under Failover and Streams")
        + ("." if streams else "; the Streams transport (durable, replayable) was not part of this report.") + "\n",
        "### 3. Network Latency\n",
        "**Issue**: the latency here is what one host measures; instances in other hosts or regions add the "
        "network round trip.\n",
        (f"**Measured**: all runs used {'a Redis on this machine (loopback)' if loopback else 'Redis at ' + ', '.join(urls)}"
         f" with {', '.join(str(c) for c in sorted(cores, key=str))} CPU core(s); average latency "
         f"{_ms_range(avg)} and p99 up to {fmt.ms(max(p99)) if p99 else 'n/a'}{calm_note}. "
         + ("Cross-host and cross-region latency was **not measured**." if loopback else
            "Other network paths were not measured.")) + "\n",
        "**Mitigation**: deploy Redis in the same region as the instances; re-run this report against the "
        "production Redis (`--redis-url`) to measure the real path.\n",
        "### 4. Single Point of Failure\n",
        "**Issue**: one Redis server carries every event; when it stops, every instance is isolated.\n",
        "**Measured**: every run used a single Redis server; "
        + (f"fault scenarios ({', '.join(faulted)}) are reported under Failover and Streams."
           if faulted else "no run stopped or restarted it, so failover was **not measured** here.") + "\n",
        "**Mitigation**: Redis Sentinel or Cluster for automatic failover; the bridge reconnects and reports "
        "the gap (`GapNotice`) when a connection comes back.\n",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- report frame: title, provenance, summary


def overall_passed(runs: Sequence[ScenarioRun]) -> bool:
    return bool(runs) and all(r.findings.passed for r in runs)


def _failures(runs: Sequence[ScenarioRun]) -> list[str]:
    out = []
    for r in runs:
        for c in r.findings.verdict:
            if not c.passed:
                out.append(f"{r.name}: {c.name} (measured {c.measured}, threshold {c.threshold})")
    return out


def title_markdown(runs: Sequence[ScenarioRun], generated: datetime | None = None) -> str:
    """Title, date and the overall status in big letters."""
    generated = generated or datetime.now(timezone.utc)
    passed = overall_passed(runs)
    failed = [r.name for r in runs if not r.findings.passed]
    if not runs:
        line = "No scenario was run."
    elif passed:
        line = f"All {len(runs)} scenario(s) met every criterion: {', '.join(r.name for r in runs)}."
    else:
        line = f"{len(failed)} of {len(runs)} scenario(s) failed: {', '.join(failed)}."
    return (f"# {REPORT_TITLE}\n\n"
            f"**Date**: {generated:%Y-%m-%d %H:%M} UTC  \n"
            f"**Scenarios**: {', '.join(r.name for r in runs) or 'none'}\n\n"
            f"# {status_text(passed)}\n\n{line}\n")


def _version(pkg: str) -> str | None:
    try:
        return _metadata.version(pkg)
    except _metadata.PackageNotFoundError:
        return None


def provenance(runs: Sequence[ScenarioRun], parameters: dict[str, Any] | None = None,
               generated: datetime | None = None) -> dict[str, Any]:
    """Where the numbers come from: runs and their records, versions, machine, exact parameters."""
    generated = generated or datetime.now(timezone.utc)
    env = runs[0].findings.environment if runs else {}
    params = dict(parameters or {})
    if params.get("redis_url"):
        params["redis_url"] = redact_url(str(params["redis_url"]))
    return {
        "generated_utc": generated.isoformat(timespec="seconds"),
        "runs": [{
            "scenario": r.name, "run_id": r.record.run_id, "record": r.path,
            "started_utc": (datetime.fromtimestamp(r.record.t0 / 1e9, timezone.utc).isoformat(timespec="seconds")
                            if r.record.t0 else None),
            "redis_server": r.findings.environment.get("redis_server"),
            "redis_url": r.findings.environment.get("redis_url"),
            "source": r.source,
            "changes": {k: {"file": a, "used": b} for k, (a, b) in r.changes.items()},
            "scenario_fields": _plain_scenario(r.findings.scenario),
        } for r in runs],
        "redis_server": sorted({str(r.findings.environment.get("redis_server")) for r in runs}),
        "python": env.get("python") or platform.python_version(),
        "python_executable": sys.executable,
        "fanout": env.get("fanout"),
        "packages": {p: v for p in PROVENANCE_PACKAGES if (v := _version(p))},
        "host": env.get("host") or platform.node(),
        "platform": env.get("platform") or platform.platform(),
        "cores": env.get("cores"),
        "parameters": params,
    }


def _plain_scenario(sc: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in sc.items():
        if k == "redis_url" and v:
            v = redact_url(str(v))
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _value_text(v: Any) -> str:
    """A scenario value for a table: lists comma-separated, floats without trailing zeros."""
    if isinstance(v, (list, tuple)):
        return ", ".join(_value_text(x) if not isinstance(x, dict) else str(x) for x in v) or "(none)"
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _redis_where(urls: Iterable[Any]) -> str:
    """Where Redis was: one line, throwaway servers summarised (their ports differ per run)."""
    import re

    urls = [str(u) for u in urls if u]
    if not urls:
        return "n/a"
    throwaway = [u for u in urls if u.startswith("throwaway")]
    others = sorted(set(urls) - set(throwaway))
    parts = []
    if throwaway:
        hosts = sorted({m.group(1) for u in throwaway if (m := re.search(r"//([^:/]+)", u))})
        parts.append(f"a throwaway redis-server per scenario on {', '.join(hosts) or 'this machine'}")
    parts += others
    return "; ".join(parts)


def provenance_markdown(prov: dict[str, Any]) -> str:
    pk = prov["packages"]
    facts = [
        ("Generated", prov["generated_utc"].replace("T", " ").replace("+00:00", " UTC")),
        ("Redis server", ", ".join(prov["redis_server"]) or "n/a"),
        ("Redis", _redis_where([r["redis_url"] for r in prov["runs"]])),
        ("Client libraries", f"redis-py {pk.get('redis', 'n/a')}, hiredis {pk.get('hiredis', 'not installed')}"),
        ("Python", f"{prov['python']}, fanout {prov['fanout']}"),
        ("Analysis and report", ", ".join(f"{p} {pk[p]}" for p in ("pandas", "numpy", "pyarrow", "seaborn",
                                                                        "matplotlib", "papermill", "nbconvert")
                                          if p in pk)),
        ("Machine", f"{prov['host']}: {prov['cores']} CPU cores, {prov['platform']}"),
    ]
    runs = pd.DataFrame([{
        "Scenario": r["scenario"], "Run id": f"`{r['run_id']}`", "Record": f"`{r['record']}`",
        "Started (UTC)": (r["started_utc"] or "").replace("+00:00", "").replace("T", " "),
        "Redis": r["redis_server"] or "n/a",
    } for r in prov["runs"]], columns=["Scenario", "Run id", "Record", "Started (UTC)", "Redis"])
    fields = ["name", "instances", "duration_s", "rate_per_s", "arrivals", "event_types", "symbols", "transport",
              "seed", "warmup_s", "drain_timeout_s", "min_delivery_pct", "max_avg_latency_ms", "faults"]
    present = {k for r in prov["runs"] for k in r["scenario_fields"]}
    names = [k for k in fields if k in present] + sorted(present - set(fields))
    labels = []
    for r in prov["runs"]:
        label = r["scenario"]
        while label in labels or label == "Field":
            label += "'"
        labels.append(label)
    exact = pd.DataFrame({"Field": names, **{lab: [_value_text(r["scenario_fields"].get(k)) for k in names]
                                              for lab, r in zip(labels, prov["runs"])}})
    changed = [f"`{r['scenario']}`: " + ", ".join(f"{k} {c['file']} → {c['used']}" for k, c in r["changes"].items())
               for r in prov["runs"] if r["changes"]]
    parts = [
        "## Provenance\n",
        kv_table(facts, ("Fact", "Value")),
        "### Runs\n",
        "Raw records (publications, deliveries, instances as parquet, plus `run.json`) are kept under "
        "`data/runs/`; every number in this report is computed from them.\n",
        md_table(runs),
        "### Exact parameters\n",
        "Notebook parameters:\n",
        "```yaml\n" + yaml.safe_dump(prov["parameters"], sort_keys=False, default_flow_style=None).strip() + "\n```\n",
        "Scenario fields as run (each run's `run.json` holds the same):\n",
        md_table(exact, align={lab: "left" for lab in labels}),
    ]
    if changed:
        parts.append("Changed from the scenario files for this report: " + "; ".join(changed) + "\n")
    return "\n".join(parts)


def executive_summary_markdown(runs: Sequence[ScenarioRun]) -> str:
    if not runs:
        return "## Executive Summary\n\nNo scenario was run.\n"
    pub = sum(r.findings.overall["published"] for r in runs)
    rec = sum(r.findings.overall["received"] for r in runs)
    exp = sum(r.findings.overall["expected"] for r in runs)
    selfr = sum(r.findings.overall["self_received"] for r in runs)
    dup = sum(r.findings.overall["duplicates"] for r in runs)
    avg = [r.findings.latency["avg_ms"] for r in runs if r.findings.latency["avg_ms"] is not None]
    p99 = [r.findings.latency["p99_ms"] for r in runs if r.findings.latency["p99_ms"] is not None]
    inst = sorted({r.findings.overall["instances"] for r in runs})
    passed = overall_passed(runs)
    text = (f"{len(runs)} scenario(s) with {', '.join(map(str, inst))} instances published {pub:,} events; "
            f"the instances received {rec:,} of the {exp:,} deliveries expected "
            f"({100.0 * rec / exp if exp else 100.0:.2f}%), with {selfr:,} self-received and {dup:,} duplicate "
            f"events. Average latency per scenario {_ms_range(avg)}, p99 up to "
            f"{fmt.ms(max(p99)) if p99 else 'n/a'}. ")
    text += ("Every scenario met every criterion." if passed else
             "**Not every criterion was met**: " + "; ".join(_failures(runs)) + ".")
    return "\n".join(["## Executive Summary\n", text + "\n", "### Key Results\n", md_table(key_results_table(runs))])


def comparative_markdown(runs: Sequence[ScenarioRun]) -> str:
    parts = ["## Comparative Analysis\n"]
    pair = comparison_pair(runs)
    if pair is None:
        parts.append("Only one scenario was run; there is nothing to compare.\n")
    else:
        a, b = pair
        parts += ["### Performance Scaling\n",
                  f"`{a.name}` ({a.findings.overall['instances']} instances) against `{b.name}` "
                  f"({b.findings.overall['instances']} instances); Difference is relative to the first.\n",
                  md_table(comparison_table(a, b))]
    if len(runs) >= 2:
        parts += ["### All Scenarios\n", md_table(all_scenarios_table(runs))]
    return "\n".join(parts)


def distribution_markdown(runs: Sequence[ScenarioRun]) -> str:
    ok = sum(r.findings.overall["received"] == (r.findings.overall["instances"] - 1) * r.findings.overall["published"]
             for r in runs)
    return "\n".join([
        "### Event Distribution\n", md_table(distribution_table(runs), align={"Per-Instance Receives": "left"}),
        f"**Pattern**: every event is delivered to each of the other n−1 instances, so total deliveries = "
        f"(n−1) × published. It holds exactly in {ok} of {len(runs)} scenario(s).\n",
    ])


def throughput_markdown(runs: Sequence[ScenarioRun]) -> str:
    return "\n".join([
        "### Throughput\n",
        "Published/s and delivered/s divide by the scenario's duration (as the seed did); the achieved "
        "publish rate is measured between the first and last due time.\n",
        md_table(throughput_table(runs)),
    ])


def latency_distribution_markdown(runs: Sequence[ScenarioRun]) -> str:
    return "\n".join(["### Latency Distribution\n", md_table(latency_distribution_table(runs))])


def conclusion_markdown(runs: Sequence[ScenarioRun]) -> str:
    passed = overall_passed(runs)
    lines = ["## Conclusion\n", f"# {status_text(passed)}\n"]
    if passed:
        lines.append(f"All {len(runs)} scenario(s) passed every criterion: every instance received every other "
                     "instance's events exactly once and none of its own, within the latency pass mark. "
                     "This holds for the scenarios and machine stated above; the limitations above say what "
                     "was not measured.\n")
    else:
        lines.append("The system did **not** meet its criteria in these runs:\n")
        lines += [f"- {f}" for f in _failures(runs)]
        lines.append("")
    return "\n".join(lines)


def report_result(runs: Sequence[ScenarioRun], prov: dict[str, Any]) -> dict[str, Any]:
    """What the validation notebook writes to ``result_json`` for its caller."""
    passed = overall_passed(runs)
    return {
        "status": "PASS" if passed else "FAIL",
        "passed": passed,
        "provenance": prov,
        "runs": [{"name": r.name, "run_id": r.record.run_id, "record": r.path, "findings": r.findings.to_dict()}
                 for r in runs],
    }


def scenario_result(run: ScenarioRun) -> dict[str, Any]:
    """What the scenario notebook writes to ``result_json``: Findings.to_dict() plus run id and record."""
    d = run.findings.to_dict()
    d["run_id"] = run.record.run_id
    d["record"] = run.path
    d["kernel_python"] = sys.executable
    return d


__all__ = [
    "ScenarioRun", "md_table", "kv_table", "overall_table", "arithmetic_table", "latency_table",
    "instance_latency_table", "verdict_table", "configuration_markdown", "verdict_markdown",
    "scenario_results_markdown", "scenario_latency_markdown", "scenario_verdict_markdown", "key_results_table",
    "all_scenarios_table", "comparison_pair", "comparison_table", "distribution_table", "throughput_table",
    "latency_distribution_table", "ordering_stats", "failover_markdown", "limitations_markdown", "overall_passed",
    "title_markdown", "provenance", "provenance_markdown", "executive_summary_markdown", "comparative_markdown",
    "distribution_markdown", "throughput_markdown", "latency_distribution_markdown", "conclusion_markdown",
    "report_result", "scenario_result",
]
