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


def plot_curve(d: dict):
    """Latency (p50 and p99) against delivered events/s, one panel per instance count (None when
    the result holds no curve). Built without pyplot, so it is shown once, where it is placed."""
    import seaborn as sns
    from matplotlib.figure import Figure

    c = curve_frame(d)
    if c.empty:
        return None
    counts = sorted(c["instances"].unique())
    fig = Figure(figsize=(4.2 * len(counts), 3.6), layout="constrained")
    axes = fig.subplots(1, len(counts), squeeze=False, sharey=True)[0]
    for ax, n in zip(axes, counts):
        part = c[c["instances"] == n].sort_values("deliveries_per_s")
        long = part.melt(id_vars=["harness", "deliveries_per_s", "passed"], value_vars=["p50_ms", "p99_ms"],
                         var_name="percentile", value_name="ms")
        sns.lineplot(data=long, x="deliveries_per_s", y="ms", hue="harness", style="percentile", marker="o", ax=ax)
        ax.set_yscale("log")
        ax.set_title(f"{n} instances")
        ax.set_xlabel("deliveries per second")
        ax.set_ylabel("latency from due time (ms, log)")
        if ax is not axes[0] and ax.get_legend():
            ax.get_legend().remove()
    fig.suptitle("Latency against throughput (the load benchmark's knee search)")
    return fig


def load_markdown(d: dict | None) -> str:
    """The benchmark's tables with where and when it ran (``templates/load.md.j2``)."""
    from fanout.report.prose import render
    from fanout.report.tables import md, md_noted

    if d is None:
        return ""
    return render("load.md.j2", d=d, machine=_machine(d), latency=md_noted(latency_frame(d)),
                  knee=md(knee_frame(d), align={"why the next step failed": "left"}),
                  facts=d.get("comparison", {}).get("lines") or [])
