"""Seaborn figures for the notebooks and reports.

Each function takes a run's :class:`~fanout.record.RunRecord` and/or its
:class:`~fanout.analysis.Findings` and returns a :class:`matplotlib.figure.Figure`.
Figures are built without pyplot (no global figure registry, nothing shown as a side effect),
so they work under any backend, including ``Agg`` in tests; the notebooks display them with
:func:`fanout.notebook_runner.show_figure`.

Latency is always in milliseconds, time in seconds since the run's ``t0`` (the first measured
event's due time). Latency axes are logarithmic: the samples span three or more decades, and a
linear axis hides everything but the outliers. A log axis cannot show values <= 0 ms; those
samples (clock oddities, counted by the analysis as ``negative``) are left out of the drawing
and the number left out is stated on the figure. A percentile is drawn only where its samples
carry it (:func:`fanout.analysis.latency.carried`), like everywhere it is printed.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from fanout.analysis import Findings, analyse, latency_samples
from fanout.analysis.latency import carried, min_samples
from fanout.lab.record import RunRecord

#: vertical marker lines on the latency ECDF: (label, key in Findings.latency, line style)
PERCENTILE_MARKERS = (("p50", "p50_ms", "--"), ("p95", "p95_ms", "-."), ("p99", "p99_ms", ":"))
#: scatter plots draw at most this many points (a seeded sample); statistics use every sample
MAX_SCATTER_POINTS = 20_000
#: latency-over-time draws per-window median lines only with at least this many samples per window
#: (and a p99 line only with windows of min_samples(99) samples each)
MIN_WINDOW_SAMPLES = 50
STYLE = "whitegrid"
WIDTH_IN = 9.0


def _figure(height_in: float = 4.6, ncols: int = 1, width_in: float = WIDTH_IN) -> tuple[Figure, list]:
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(width_in, height_in), layout="constrained")
        axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _palette(n: int) -> list:
    return sns.color_palette("tab10" if n <= 10 else "husl", n)


def _log_ms_axis(axis) -> None:
    """A log axis labelled in plain milliseconds at 1-2-5 steps (0.5, 1, 2, 5, 10 ...),
    not 10^0 or 2x10^0, with unlabelled minor ticks."""
    lo, hi = sorted(axis.get_view_interval())
    narrow = lo > 0 and hi / lo < 12  # about one decade: label 1, 1.5, 2, 3 ... as well
    subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0) if narrow else (1.0, 2.0, 5.0)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _legend_outside(fig: Figure, ax, ncols: int = 1) -> None:
    """The axes' legend to the right of the plot, so it never hides data."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, ncols=ncols, frameon=False,
                   markerscale=1.5)


def _title(findings_or_scenario: Findings | dict, what: str) -> str:
    sc = findings_or_scenario.scenario if isinstance(findings_or_scenario, Findings) else findings_or_scenario
    name = sc.get("name", "run")
    n = sc.get("instances")
    return f"{what} — {name} ({n} instances)" if n else f"{what} — {name}"


def _instances(record: RunRecord) -> list[str]:
    return [str(x) for x in record.instances["instance"]]


def _no_data(ax, text: str = "no deliveries recorded") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")


def latency_ecdf(record: RunRecord, findings: Findings | None = None) -> Figure:
    """Latency distribution per receiving instance: one ECDF line per instance on a log x axis,
    with the run's p50, p95 and p99 (over every instance's samples) as vertical lines, each only
    where the samples carry it (a withheld one is ``None`` in the findings)."""
    findings = findings if findings is not None else analyse(record)
    s = latency_samples(record)
    fig, (ax,) = _figure()
    names = _instances(record)
    positive = s[s["lat_ms"] > 0]
    left_out = len(s) - len(positive)
    if positive.empty:
        _no_data(ax)
        ax.set_xscale("log")
    else:
        for name, color in zip(names, _palette(len(names))):
            vals = positive.loc[positive["receiver"] == name, "lat_ms"]
            if vals.empty:
                continue
            sns.ecdfplot(x=vals.to_numpy(), ax=ax, color=color, label=name, linewidth=1.6, log_scale=True)
        for label, key, style in PERCENTILE_MARKERS:
            v = findings.latency.get(key)
            if v is not None and v > 0:
                ax.axvline(v, color="0.15", linestyle=style, linewidth=1.1, label=f"{label} {v:.3f} ms")
        _log_ms_axis(ax.xaxis)
        _legend_outside(fig, ax)
    ax.set_xlabel("latency from intended send time (ms, log scale)")
    ax.set_ylabel("fraction of deliveries (0–1)")
    ax.set_ylim(0, 1.02)
    title = _title(findings, "Latency distribution per instance")
    if left_out:
        title += f"\n{left_out} sample(s) <= 0 ms not drawn"
    ax.set_title(title)
    return fig


def expected_vs_received(findings: Findings) -> Figure:
    """Per instance: how many events it should have received (the sum of the others' publications)
    beside how many it did, as grouped bars with their counts."""
    per = findings.per_instance
    long = pd.concat([
        pd.DataFrame({"instance": per["instance"].astype(str), "count": per["expected"].astype(int),
                      "kind": "expected (others' publications)"}),
        pd.DataFrame({"instance": per["instance"].astype(str), "count": per["received"].astype(int),
                      "kind": "received"}),
    ], ignore_index=True)
    fig, (ax,) = _figure()
    if per.empty:
        _no_data(ax, "no instances")
    else:
        sns.barplot(data=long, x="instance", y="count", hue="kind", ax=ax, palette=["#9aa5b1", "#2a9d8f"],
                    order=list(per["instance"].astype(str)))
        for container in ax.containers:
            ax.bar_label(container, fontsize=7 if len(per) > 6 else 8, padding=1)
        _legend_outside(fig, ax)
        if len(per) > 5:
            ax.tick_params(axis="x", labelrotation=30)
        ax.margins(y=0.12)
    ax.set_xlabel("instance")
    ax.set_ylabel("events (count)")
    missing = int(per["missing"].sum()) if not per.empty else 0
    ax.set_title(_title(findings, "Expected vs received events per instance")
                 + (f"\n{missing} missing" if missing else ""))
    return fig


def latency_over_time(record: RunRecord, findings: Findings | None = None, bins: int = 40) -> Figure:
    """Every delivery's latency against when it arrived (seconds since t0), one colour per
    receiver, with the median per time window as a line, and the p99 per (wider) window where
    each window carries it."""
    s = latency_samples(record)
    fig, (ax,) = _figure()
    names = _instances(record)
    scen = findings.scenario if findings is not None else record.scenario
    t0 = record.t0 or (int(s["t_received"].min()) if len(s) else 0)
    s = s.assign(t_s=(s["t_received"] - t0) / 1e9)
    positive = s[s["lat_ms"] > 0]
    left_out = len(s) - len(positive)
    sampled = ""
    if positive.empty:
        _no_data(ax)
    else:
        pts = positive
        if len(pts) > MAX_SCATTER_POINTS:
            pts = pts.sample(MAX_SCATTER_POINTS, random_state=0).sort_values("t_s")
            sampled = f"{MAX_SCATTER_POINTS:,} of {len(positive):,} samples drawn"
        palette = dict(zip(names, _palette(len(names))))
        sns.scatterplot(data=pts, x="t_s", y="lat_ms", hue="receiver",
                        hue_order=[n for n in names if n in set(pts["receiver"])], palette=palette,
                        s=9 if len(pts) > 2000 else 22, alpha=0.55, linewidth=0, ax=ax, rasterized=True,
                        legend=len(names) <= 10)
        # median and p99 per time window, when there are enough samples for at least 3 windows
        # (MIN_WINDOW_SAMPLES each for the median, min_samples(99) each for the p99); a window
        # holding fewer than its percentile needs is left out of that line
        span = float(positive["t_s"].max() - positive["t_s"].min())
        for stat, q, per_window, color in (("median", 50.0, max(MIN_WINDOW_SAMPLES, min_samples(50.0)), "0.1"),
                                           ("p99", 99.0, min_samples(99.0), "#d62828")):
            n_windows = min(bins, len(positive) // per_window)
            if span <= 0 or n_windows < 3:
                continue
            width = span / n_windows
            window = (positive["t_s"] - positive["t_s"].min()) // width
            binned = positive.assign(window=positive["t_s"].min() + (window.clip(upper=n_windows - 1) + 0.5) * width)
            grouped = binned.groupby("window")["lat_ms"]
            line = grouped.quantile(q / 100).where(grouped.size().map(lambda n, q=q: carried(q, n)))
            ax.plot(line.index, line.to_numpy(), color=color, linewidth=1.4, label=f"{stat} per {width:.2g} s window")
        ax.set_yscale("log")
        _log_ms_axis(ax.yaxis)
        _legend_outside(fig, ax)
    ax.set_xlabel("time since t0 (s)")
    ax.set_ylabel("latency (ms, log scale)")
    title = _title(scen, "Latency over the run")
    notes = [n for n in (sampled, f"{left_out} sample(s) <= 0 ms not drawn" if left_out else "") if n]
    ax.set_title(title + ("\n" + "; ".join(notes) if notes else ""))
    return fig


def _label(f: Findings) -> str:
    sc = f.scenario
    return f"{sc.get('name', f.run_id)}\n{sc.get('instances', '?')} inst, {sc.get('rate_per_s', 0):g}/s"


def scenario_comparison(findings: Sequence[Findings], labels: Sequence[str] | None = None) -> Figure:
    """Across scenarios: latency percentiles (p50, p95, p99 bars, average as a marker; log axis)
    and delivery rate with the pass mark."""
    labels = list(labels) if labels is not None else [_label(f) for f in findings]
    fig, (ax_lat, ax_del) = _figure(height_in=4.8, ncols=2)
    rows = []
    for lab, f in zip(labels, findings):
        for stat, key in (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms")):
            v = f.latency.get(key)
            if v is not None and v > 0:
                rows.append({"scenario": lab, "statistic": stat, "ms": v})
    lat = pd.DataFrame(rows, columns=["scenario", "statistic", "ms"])
    if lat.empty:
        _no_data(ax_lat)
    else:
        colors = {"p50": "#8ecae6", "p95": "#219ebc", "p99": "#023047"}
        hues = [h for h in colors if h in set(lat["statistic"])]  # a withheld percentile has no bar
        sns.barplot(data=lat, x="scenario", y="ms", hue="statistic", order=labels, ax=ax_lat,
                    hue_order=hues, palette=[colors[h] for h in hues])
        avg = [f.latency.get("avg_ms") for f in findings]
        xs = [i for i, v in enumerate(avg) if v is not None and v > 0]
        ax_lat.scatter(xs, [avg[i] for i in xs], marker="D", color="#fb8500", zorder=5, s=30, label="average")
        ax_lat.set_yscale("log")
        _log_ms_axis(ax_lat.yaxis)
    ax_lat.set_xlabel("scenario")
    ax_lat.set_ylabel("latency (ms, log scale)")
    ax_lat.set_title("Latency percentiles per scenario")

    deliv = pd.DataFrame({"scenario": labels, "pct": [f.overall["delivery_pct"] for f in findings],
                          "status": [f.status for f in findings]})
    colors = ["#2a9d8f" if s == "PASS" else "#d62828" for s in deliv["status"]]
    sns.barplot(data=deliv, x="scenario", y="pct", order=labels, ax=ax_del, palette=colors, hue="scenario",
                legend=False)
    for container in ax_del.containers:
        ax_del.bar_label(container, fmt="%.2f%%", fontsize=8, padding=2)
    marks = sorted({f.thresholds.min_delivery_pct for f in findings})
    for m in marks:
        ax_del.axhline(m, color="#d62828", linestyle="--", linewidth=1, label=f"pass mark >{m:g}%")
    low = min([*deliv["pct"], *marks]) if len(deliv) else 95.0
    ax_del.set_ylim(max(0.0, min(low - 2.0, 90.0)), 101.5)
    ax_del.set_xlabel("scenario")
    ax_del.set_ylabel("delivery rate (%)")
    ax_del.set_title("Delivery rate per scenario")
    for ax in (ax_lat, ax_del):
        ax.tick_params(axis="x", labelsize=8)
        if len(labels) > 3:  # keep the scenario names apart
            for t in ax.get_xticklabels():
                t.set_rotation(35)
                t.set_horizontalalignment("right")
                t.set_rotation_mode("anchor")
    handles, texts = [], []
    for ax in (ax_lat, ax_del):
        h, t = ax.get_legend_handles_labels()
        handles += h
        texts += t
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, texts, loc="outside lower center", fontsize=8, ncols=len(texts), frameon=False)
    fig.suptitle("Latency and delivery across scenarios", fontsize=13)
    return fig


def latency_ecdf_by_scenario(records: Sequence[RunRecord], labels: Sequence[str] | None = None) -> Figure:
    """One latency ECDF per scenario (every instance's samples together), log x axis."""
    labels = list(labels) if labels is not None else [
        f"{r.scenario.get('name', r.run_id)} ({r.scenario.get('instances', '?')} inst)" for r in records]
    fig, (ax,) = _figure()
    drawn = 0
    left_out = 0
    for lab, rec, color in zip(labels, records, _palette(len(records))):
        s = latency_samples(rec)
        vals = s.loc[s["lat_ms"] > 0, "lat_ms"].to_numpy()
        left_out += len(s) - len(vals)
        if len(vals):
            # the legend's percentiles, each only where the drawn samples carry it
            stats = ", ".join(f"{name} {float(np.percentile(vals, q)):.3f} ms" if carried(q, len(vals))
                              else f"{name} — (n={len(vals):,})" for name, q in (("p50", 50.0), ("p99", 99.0)))
            sns.ecdfplot(x=vals, ax=ax, color=color, linewidth=1.8, log_scale=True, label=f"{lab}: {stats}")
            drawn += 1
    if not drawn:
        _no_data(ax)
        ax.set_xscale("log")
    else:
        _log_ms_axis(ax.xaxis)
        handles, texts = ax.get_legend_handles_labels()
        fig.legend(handles, texts, loc="outside lower center", fontsize=8, ncols=2 if drawn > 2 else 1,
                   frameon=False)
    ax.set_xlabel("latency from intended send time (ms, log scale)")
    ax.set_ylabel("fraction of deliveries (0–1)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Latency distribution per scenario" + (f"\n{left_out} sample(s) <= 0 ms not drawn" if left_out else ""))
    return fig


__all__ = ["latency_ecdf", "expected_vs_received", "latency_over_time", "scenario_comparison",
           "latency_ecdf_by_scenario", "PERCENTILE_MARKERS"]
