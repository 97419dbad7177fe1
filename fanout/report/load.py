"""The separate load benchmark in the report's appendix, from the benchmark's own results.

The load benchmark (``python -m benchmarks``, ``make bench``) takes minutes and measures the
machine at its limit; the report does not re-run it. When a result file exists
(``benchmarks/results/latest.json``) the appendix shows it with the time it was made and the
machine it ran on, labelled as a separate run; otherwise it shows nothing. The report's archive
(``report.json``, ``benchmark``) keeps the results it showed, so a rendering from that report
folder (``from_runs``) shows the same ones on any clone, whatever ``latest.json`` says there.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

LATEST = Path("benchmarks/results/latest.json")


def load_results(path: str | Path = LATEST, from_runs=()) -> dict[str, Any] | None:
    """The benchmark results to show: those the first report folder among ``from_runs`` showed
    (its archive's ``benchmark``; ``None`` when it showed none), else ``path``'s, when there are any."""
    from fanout.report.paths import ARCHIVE_NAME

    for given in from_runs or ():
        archive = Path(given) / ARCHIVE_NAME
        if archive.is_file():
            try:
                return json.loads(archive.read_text()).get("benchmark")
            except (OSError, json.JSONDecodeError):
                return None
    p = Path(path)
    if not p.is_file():
        return None
    try:
        # NaN (a withheld percentile in files written before they were strict JSON) reads as None
        return json.loads(p.read_text(), parse_constant=lambda _name: None)
    except (OSError, json.JSONDecodeError):
        return None


def server(m: dict) -> str:
    """The server the benchmark ran against, as it reported itself (``machine["server"]``, e.g.
    "Valkey 9.1.2 (implements Redis 7.2.4)"); a result that recorded only a version says so
    rather than guess the product."""
    if m.get("server"):
        return str(m["server"])
    v = m.get("redis_server")
    return f"a server reporting version {v} (product not recorded)" if v else "server not recorded"


def _machine(d: dict) -> str:
    m = d.get("machine", {})
    return (f"{m.get('cores')} cores ({m.get('cpu_model')}), {server(m)}, Python {m.get('python')}, "
            f"redis-py {m.get('redis_py')}, hiredis {m.get('hiredis')}")


def _cell(lat: dict, key: str) -> str:
    """A benchmark latency in ms, bare; a percentile its ``count`` does not carry reads ``— (n=…)``
    (results written before the rule still hold the number: it is withheld here all the same)."""
    from fanout.analysis.latency import carried, quantile_of

    q, n = quantile_of(key), lat.get("count")
    if q is not None and n and not carried(q, int(n)):
        return f"— (n={int(n):,})"
    return f"{lat[key]:.3f}" if lat.get(key) is not None else "n/a"


def latency_frame(d: dict) -> pd.DataFrame:
    rows = []
    for r in d.get("latency", {}).get("runs", []):
        lat = r.get("latency") or {}
        rows.append({"rate/s": f"{r['target_rate']:,.0f}", "harness": r["harness"],
                     "achieved/s": f"{r.get('achieved_rate') or 0:,.1f}", "delivery": f"{r['delivery_pct']:.3f}%",
                     "publish failures": r.get("publish_failed", 0),
                     **{k: _cell(lat, k) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}})
    return pd.DataFrame(rows)


def knee_frame(d: dict) -> pd.DataFrame:
    rows = [{"instances": r["instances"], "harness": r["harness"],
             "max lossless events/s": f"{r['knee_rate']:,.0f}" if r.get("knee_rate") else "none",
             "deliveries/s": f"{r['knee_deliveries_per_s']:,.0f}" if r.get("knee_deliveries_per_s") else "n/a",
             "why the next step failed": r.get("reason") or ""}
            for r in d.get("knee", {}).get("results", [])]
    return pd.DataFrame(rows)


def curve_frame(d: dict) -> pd.DataFrame:
    return pd.DataFrame(d.get("knee", {}).get("curve", []))


#: the curve's percentiles: (column, legend word, line style)
CURVE_PERCENTILES = (("p50_ms", "p50", "-"), ("p99_ms", "p99", "--"))


def _k(v: float, _pos=None) -> str:
    """A rate tick: 500, 1k, 2k, 50k (short enough that a narrow panel's labels never touch)."""
    return f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"


def plot_curve(d: dict):
    """Latency (p50 and p99) against delivered events/s, one panel per instance count (None when
    the result holds no curve). One line per harness and percentile, each named in the legend
    (colour: the harness, line style: the percentile), its points joined in the order the knee
    search offered its rates; a step the harness failed (``passed`` false: it fell behind its
    schedule or lost events) is drawn as an open marker. Throughput is on a log axis: the search
    multiplies the rate at each step, so a linear axis crowds its first steps into the corner.
    Built without pyplot, so it is shown once, where it is placed."""
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from fanout.report.plots import WIDTH_IN, _log_ms_axis

    c = curve_frame(d)
    if c.empty:
        return None
    counts = sorted(c["instances"].unique())
    harnesses = list(dict.fromkeys(c.sort_values("harness")["harness"]))
    colors = dict(zip(harnesses, sns.color_palette("tab10" if len(harnesses) <= 10 else "husl", len(harnesses))))
    ncols = min(len(counts), 3)
    nrows = -(-len(counts) // ncols)
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(WIDTH_IN, 3.4 * nrows + 0.9), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    handles: dict[str, Line2D] = {}
    failed_drawn = False
    for ax, n in zip(axes, counts):
        part = c[c["instances"] == n]
        order = "rate" if "rate" in part.columns else "deliveries_per_s"
        for harness in harnesses:
            h = part[part["harness"] == harness].sort_values(order)
            if h.empty:
                continue
            passed = h["passed"].astype(bool) if "passed" in h.columns else pd.Series(True, index=h.index)
            for col, word, style in CURVE_PERCENTILES:
                pts = h[h[col].notna()]
                if pts.empty:
                    continue
                label = f"{harness} {word}"
                (line,) = ax.plot(pts["deliveries_per_s"], pts[col], color=colors[harness], linestyle=style,
                                  linewidth=1.4, label=label)
                ok = passed[pts.index]
                ax.scatter(pts.loc[ok, "deliveries_per_s"], pts.loc[ok, col], color=colors[harness], s=18, zorder=3)
                ax.scatter(pts.loc[~ok, "deliveries_per_s"], pts.loc[~ok, col], facecolors="white",
                           edgecolors=colors[harness], s=26, zorder=3, linewidths=1.3)
                failed_drawn = failed_drawn or bool((~ok).any())
                handles.setdefault(label, Line2D([], [], color=colors[harness], linestyle=style, marker="o",
                                                 markersize=4, linewidth=1.4, label=label))
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(_k))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        _log_ms_axis(ax.yaxis)
        ax.set_title(f"{n} instances", fontsize=10)
        ax.set_xlabel("deliveries per second (log scale)")
        ax.tick_params(labelsize=8)
    for ax in axes[len(counts):]:
        ax.set_visible(False)
    axes[0].set_ylabel("latency from due time (ms, log scale)")
    legend = [handles[k] for k in sorted(handles, key=lambda k: (harnesses.index(k.rsplit(" ", 1)[0]), k))]
    if failed_drawn:
        legend.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none",
                             label="open marker: step failed"))
    fig.legend(handles=legend, loc="outside lower center", ncols=min(4, len(legend)), fontsize=8, frameon=False)
    fig.suptitle("Latency against throughput (the load benchmark's knee search)", fontsize=11)
    return fig


def curve_notes(d: dict) -> dict[str, Any]:
    """What the curve's caption must explain, from the curve itself: the harnesses (with their
    instance count) that delivered less when offered more (their line turns back to the left),
    the steps whose p99 is not drawn (their samples do not carry it), and whether any step failed."""
    c = curve_frame(d)
    if c.empty:
        return {"turned_back": [], "p99_missing": 0, "failed": 0}
    order = "rate" if "rate" in c.columns else "deliveries_per_s"
    back = []
    for (n, harness), part in c.groupby(["instances", "harness"], sort=True):
        got = part.sort_values(order)["deliveries_per_s"].to_numpy()
        if len(got) > 1 and (got[1:] < got[:-1]).any():
            back.append(f"{harness} ({n} instances)")
    return {"turned_back": back, "p99_missing": int(c["p99_ms"].isna().sum()),
            "failed": int((~c["passed"].astype(bool)).sum()) if "passed" in c.columns else 0}


def load_markdown(d: dict | None) -> str:
    """The benchmark's tables with where and when it ran (``templates/load.md.j2``)."""
    from fanout.report.prose import render
    from fanout.report.tables import md, md_noted

    if d is None:
        return ""
    return render("load.md.j2", d=d, machine=_machine(d), latency=md_noted(latency_frame(d)),
                  knee=md(knee_frame(d), align={"why the next step failed": "left"}),
                  facts=d.get("comparison", {}).get("lines") or [])
