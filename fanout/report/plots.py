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
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from fanout.analysis import Findings, analyse, latency_samples
from fanout.errors import ConfigError
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


def _distinct(labels: Sequence[str]) -> list[str]:
    """Labels made unique (a repeated scenario's runs share a name): the second and later runs of
    a label get `` #2``, `` #3`` …, so no two bars are drawn at one place."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} #{seen[lab]}")
    return out


def _rotate_names(ax, n: int) -> None:
    ax.tick_params(axis="x", labelsize=8)
    if n > 3:  # keep the scenario names apart
        for t in ax.get_xticklabels():
            t.set_rotation(35)
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")


def scenario_comparison(findings: Sequence[Findings], labels: Sequence[str] | None = None) -> Figure:
    """Across scenarios: latency percentiles (p50, p95, p99 bars, average as a marker; log axis)
    and, when any run lost events, the events each run lost (a count axis, the run's status as the
    bar's colour). When no run lost any, that panel is left out and the title says so: six bars
    at 100 % on a percentage axis show nothing a sentence does not."""
    labels = _distinct(list(labels) if labels is not None else [_label(f) for f in findings])
    lost = [int(f.overall.get("missing", 0) or 0) for f in findings]
    any_lost = any(lost)
    fig, axes = _figure(height_in=4.8, ncols=2 if any_lost else 1)
    ax_lat = axes[0]
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
    if any_lost:
        ax_del = axes[1]
        status = ["PASS" if f.status == "PASS" else "FAIL" for f in findings]
        deliv = pd.DataFrame({"scenario": labels, "lost": lost, "status": status})
        palette = {"PASS": "#2a9d8f", "FAIL": "#d62828"}
        sns.barplot(data=deliv, x="scenario", y="lost", order=labels, ax=ax_del, hue="status",
                    palette={k: v for k, v in palette.items() if k in set(status)}, dodge=False)
        for container in ax_del.containers:
            ax_del.bar_label(container, fmt="%d", fontsize=8, padding=2)
        ax_del.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_del.set_ylim(bottom=0)
        ax_del.margins(y=0.12)
        ax_del.set_xlabel("scenario")
        ax_del.set_ylabel("events lost (count)")
        ax_del.set_title("Events lost per run")
        _rotate_names(ax_del, len(labels))
    _rotate_names(ax_lat, len(labels))
    handles, texts = [], []
    for ax in axes:
        h, t = ax.get_legend_handles_labels()
        handles += h
        texts += [f"run {x}" if x in ("PASS", "FAIL") else x for x in t]
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, texts, loc="outside lower center", fontsize=8, ncols=len(texts), frameon=False)
    fig.suptitle("Latency and lost events across scenarios" if any_lost else
                 f"Latency across scenarios (0 events lost in every one of the {len(findings)} runs)", fontsize=13)
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


#: the small multiples' y axis (logit): from the 1st to the 99.9th percentile of deliveries
ECDF_Y_LIMITS = (0.01, 0.999)
#: a run's ECDF is drawn through at most this many points (every sample below it; above it,
#: evenly spaced ranks plus every sample of the top 0.5 %, so the tail stays exact)
ECDF_MAX_POINTS = 4_000
#: the marks on each run's line: (key in Findings.latency, quantile, marker)
RUN_MARKS = (("p50_ms", 0.50, "o"), ("p99_ms", 0.99, "^"))


def _ecdf_from_samples(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of an ECDF at Hazen plotting positions, ``(i + 0.5) / n``: never 0 or 1, so a logit
    axis can draw every point; thinned to :data:`ECDF_MAX_POINTS` (the top 0.5 % kept whole)."""
    x = np.sort(vals)
    n = len(x)
    y = (np.arange(n) + 0.5) / n
    if n > ECDF_MAX_POINTS:
        tail = max(1, n // 200)
        keep = np.unique(np.concatenate([np.linspace(0, n - tail - 1, ECDF_MAX_POINTS - tail).astype(int),
                                         np.arange(n - tail, n)]))
        x, y = x[keep], y[keep]
    return x, y


def _ecdf_from_histogram(lat) -> tuple[np.ndarray, np.ndarray]:
    """(x ms, y) of an ECDF from a summary's merged HdrHistogram (:class:`fanout.lab.summary.Latency`):
    each recorded bucket's highest equivalent value at the share of samples up to its middle. Its
    negative samples (recorded as 0) are left out, as a log axis cannot draw them."""
    xs, cs = [], []
    for item in lat.hist.get_recorded_iterator():
        xs.append(item.value_iterated_to)
        cs.append(item.count_added_in_this_iter_step)
    if not xs:
        return np.empty(0), np.empty(0)
    x, c = np.asarray(xs, dtype=float) / 1e6, np.asarray(cs, dtype=float)
    c[0] -= min(c[0], float(lat.negative))
    total = c.sum()
    if total <= 0:
        return np.empty(0), np.empty(0)
    y = (np.cumsum(c) - c / 2) / total
    keep = c > 0
    return x[keep], y[keep]


def _run_latency(record: RunRecord, findings: Findings | None) -> dict:
    """One run's latency for the small multiples: its ECDF points, where they came from (``rows``:
    every first delivery; ``histogram``: the summary's histograms, for a run analysed from its
    summary or whose rows were not kept), its p50/p99 (the findings', else the drawn samples'),
    each only where the samples carry it, and the samples <= 0 ms left out."""
    if latency_source(record, findings) == "histogram":
        lat = record.summary.latency_of()
        x, y = _ecdf_from_histogram(lat)
        n, left_out, source = int(lat.count), int(lat.negative), "histogram"
        stats = findings.latency if findings is not None else None
        if stats is None:
            from fanout.analysis.latency import hist_stats

            stats = hist_stats(lat)
    else:
        try:
            s = latency_samples(record)
        except ConfigError as e:  # a record that keeps neither its rows nor a summary: the panel says so
            return {"x": np.empty(0), "y": np.empty(0), "n": 0, "left_out": 0, "source": f"no samples ({e})",
                    "marks": {}}
        vals = s["lat_ms"].to_numpy(dtype=float)
        pos = vals[vals > 0]
        x, y = _ecdf_from_samples(pos)
        n, left_out, source = len(vals), len(vals) - len(pos), "rows"
        stats = findings.latency if findings is not None else {
            key: float(np.percentile(vals, q * 100)) if carried(q * 100, len(vals)) else None
            for key, q, _m in RUN_MARKS} | {"count": len(vals)}
    return {"x": x, "y": y, "n": n, "left_out": left_out, "source": source,
            "marks": {key: stats.get(key) for key, _q, _m in RUN_MARKS}}


def _ms2(v: float) -> str:
    """A latency in a legend: three significant digits (0.153 ms, 1.05 ms, 14.9 ms, 2,340 ms)."""
    return f"{v:,.0f} ms" if v >= 100 else f"{v:.3g} ms"


def _round(record: RunRecord, position: int) -> int:
    """The run's repeat round (``environment["repeat"]["round"]``), else its place among its
    scenario's runs (1-based)."""
    rep = (record.environment or {}).get("repeat") or {}
    try:
        return int(rep["round"])
    except (KeyError, TypeError, ValueError):
        return position


def scenarios_latency(records: Sequence[RunRecord], findings: Sequence[Findings] | None = None,
                      ncols: int = 2) -> Figure:
    """Small multiples: one panel per scenario (the runs grouped by scenario name, in the order
    given), every run of it as its own ECDF line, all panels on one log-ms x axis and one logit y
    axis (the share of deliveries at or below x, 1 % to 99.9 %: a logit axis gives the median and
    the tail equal room, where a linear one squeezes p99 against the top). Each run's p50 is a
    circle and its p99 a triangle on its line, where its samples carry them; its legend entry says
    its round and both numbers. A run analysed from its summary is drawn from the summary's
    histograms and says so. Stays readable at 8 scenarios × 5 runs on :data:`WIDTH_IN`."""
    findings = list(findings) if findings is not None else [None] * len(records)
    groups: dict[str, list[tuple[RunRecord, Findings | None]]] = {}
    for rec, f in zip(records, findings):
        name = str((f.scenario if f is not None else rec.scenario).get("name", rec.run_id))
        groups.setdefault(name, []).append((rec, f))
    n = max(1, len(groups))
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(WIDTH_IN, 2.0 * nrows + 0.9), layout="constrained")
        axes = list(fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    drawn_any = False
    k_max = max((len(g) for g in groups.values()), default=1)
    colors = _palette(max(k_max, 1))
    for ax, (name, runs) in zip(axes, groups.items()):
        sc = (runs[0][1].scenario if runs[0][1] is not None else runs[0][0].scenario) or {}
        notes = []
        drawn = 0
        for i, (rec, f) in enumerate(runs):
            d = _run_latency(rec, f)
            rnd = _round(rec, i + 1)
            color = colors[(rnd - 1) % len(colors)]
            label = f"#{rnd}: " + ", ".join(
                f"{key.removesuffix('_ms')} {_ms2(d['marks'].get(key))}" if d["marks"].get(key) is not None
                else f"{key.removesuffix('_ms')} — (n={d['n']:,})" for key, _q, _m in RUN_MARKS)
            if d["source"] == "histogram":
                label += " (summary)"
            if len(d["x"]) == 0:
                notes.append(f"#{rnd}: {d['source'] if d['source'].startswith('no samples') else 'no deliveries'}")
                continue
            ax.plot(d["x"], d["y"], color=color, linewidth=1.3, drawstyle="steps-post", label=label,
                    linestyle="--" if d["source"] == "histogram" else "-")
            for key, q, marker in RUN_MARKS:
                v = d["marks"].get(key)
                if v is not None and v > 0:
                    ax.plot([v], [q], marker=marker, color=color, markersize=6, markeredgecolor="0.1",
                            markeredgewidth=0.7, linestyle="none", zorder=4)
            if d["left_out"]:
                notes.append(f"#{rnd}: {d['left_out']} sample(s) <= 0 ms not drawn")
            drawn += 1
        drawn_any = drawn_any or bool(drawn)
        title = (f"{name} — {sc.get('instances', '?')} inst, {float(sc.get('rate_per_s') or 0):g}/s, "
                 f"{len(runs)} run{'s' if len(runs) != 1 else ''}")
        ax.set_title(title, fontsize=9)
        if drawn:
            ax.legend(loc="lower right", fontsize=6.5, frameon=True, framealpha=0.85, handlelength=1.6,
                      borderaxespad=0.3, labelspacing=0.25)
        if notes:
            ax.text(0.01, 0.98, "\n".join(notes), transform=ax.transAxes, va="top", ha="left", fontsize=6.5,
                    color="0.35")
        if not drawn:
            _no_data(ax)
        ax.tick_params(labelsize=7)
    first = axes[0]
    first.set_xscale("log")
    first.set_yscale("logit")
    first.set_ylim(*ECDF_Y_LIMITS)
    if drawn_any:
        _log_ms_axis(first.xaxis)
    first.yaxis.set_major_locator(FixedLocator([0.01, 0.1, 0.5, 0.9, 0.99, 0.999]))
    first.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    first.yaxis.set_minor_formatter(NullFormatter())
    for i, ax in enumerate(axes[:n]):
        if i + ncols >= n:  # no panel below it: its x axis is labelled
            ax.set_xlabel("latency from intended send time (ms, log scale)", fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)
        if i % ncols == 0:
            ax.set_ylabel("share of deliveries ≤ x\n(logit scale)", fontsize=8)
    keys = [Line2D([], [], color="0.5", marker=m, linestyle="none", markersize=6, markeredgecolor="0.1",
                   label=f"{key.removesuffix('_ms')} of the run") for key, _q, m in RUN_MARKS]
    keys.append(Line2D([], [], color="0.3", linestyle="-", label="from every delivery"))
    if any(latency_source(rec, f) == "histogram" for rec, f in zip(records, findings)):
        keys.append(Line2D([], [], color="0.3", linestyle="--", label="from the run's summary histogram"))
    fig.legend(handles=keys, loc="outside lower center", ncols=len(keys), fontsize=8, frameon=False)
    fig.suptitle("Latency distribution of every run, one panel per scenario "
                 "(#: the run's round; legend: its p50 and p99)", fontsize=11)
    return fig


def latency_source(record: RunRecord, findings: Findings | None) -> str:
    """``histogram`` for a run analysed from its summary or that kept no rows (and has a summary),
    else ``rows``."""
    analysed_from = (findings.overall.get("analysed_from") if findings is not None else None) or "rows"
    no_rows = not record.rows_loaded and getattr(record, "parts", None) is None
    return "histogram" if record.summary is not None and (analysed_from == "summary" or no_rows) else "rows"


__all__ = ["latency_ecdf", "expected_vs_received", "latency_over_time", "scenario_comparison",
           "latency_ecdf_by_scenario", "scenarios_latency", "latency_source", "PERCENTILE_MARKERS"]
