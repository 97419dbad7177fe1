"""The soak over time, from its facts (report.json ``facts.soak``): one figure, five panels
sharing the time axis — deliveries/s, p50 and p99 latency, RSS per instrument process, Redis's
memory and largest client output buffer, lost subscriptions per interval. Each point is one
interval, drawn at its middle (minutes since the first due event); a percentile an interval's
samples do not carry is not drawn (it is None in the facts)."""
from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fanout.report.plots import _log_ms_axis

MIB = 1024 * 1024


def series_frame(k: dict) -> pd.DataFrame:
    """The soak's series (``facts.soak.runs[i]``) as a frame with ``t_min`` (interval middle, minutes)."""
    df = pd.DataFrame(k["series"])
    if df.empty:
        return df
    df["t_min"] = (df["t_s"].clip(lower=0) + df["span_s"] / 2) / 60.0
    return df


def _long(df: pd.DataFrame, column: str, names: list[str], label: str) -> pd.DataFrame:
    rows = [{"t_min": t, label: name, "value": v.get(name)} for t, v in zip(df["t_min"], df[column])
            for name in names]
    return pd.DataFrame(rows, columns=["t_min", label, "value"]).dropna()


def partial_last(k: dict) -> float | None:
    """The span (s) of the series' last interval when it is shorter than the others (the run's end
    fell inside it), else None."""
    series = k.get("series") or []
    if len(series) < 2 or not k.get("interval_s"):
        return None
    span = float(series[-1]["span_s"])
    return span if span < 0.95 * float(k["interval_s"]) else None


def end_step(k: dict) -> dict | None:
    """The process whose RSS grew most in the last interval, when that growth is more than
    three times the largest it made from one interval to the next before (a step at the end of
    the run, not drift): ``{"process", "mib"}``; None otherwise."""
    series = k.get("series") or []
    if len(series) < 3:
        return None
    best = None
    for name in k.get("processes") or []:
        vals = [r["rss_mib"].get(name) for r in series]
        if any(v is None for v in vals[-2:]):
            continue
        steps = [b - a for a, b in zip(vals[1:-2], vals[2:-1]) if a is not None and b is not None]
        last = vals[-1] - vals[-2]
        if last > 0 and last > 3 * max([abs(x) for x in steps] or [0]) and (best is None or last > best["mib"]):
            best = {"process": name, "mib": float(last)}
    return best


def plot_soak(k: dict) -> Figure | None:
    """The soak's panels (None when the series is empty): the reconnects panel only when there
    was one (otherwise the title says there was none: a panel of zeros shows nothing), a last
    interval shorter than the others drawn with open markers."""
    df = series_frame(k)
    if df.empty:
        return None
    reconnects = int(df["reconnects"].sum())
    n_panels = 5 if reconnects else 4
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(9.0, 1.6 * n_panels + 0.4), layout="constrained")
        axes = fig.subplots(n_panels, 1, sharex=True)
    ax = axes[0]
    sns.lineplot(data=df, x="t_min", y="deliveries_per_s", ax=ax, color="#30638e", marker="o", markersize=3)
    if partial_last(k) is not None:
        last = df.iloc[-1]
        ax.plot([last["t_min"]], [last["deliveries_per_s"]], marker="o", markersize=7, markerfacecolor="white",
                markeredgecolor="#30638e", linestyle="none", zorder=5)
        ax.annotate(f"last interval: {last['span_s']:.1f} s", (last["t_min"], last["deliveries_per_s"]),
                    textcoords="offset points", xytext=(-6, -12), ha="right", fontsize=7, color="0.3")
    ax.set_ylabel("deliveries/s")
    ax.set_ylim(bottom=0)
    if k.get("offered_deliveries_per_s"):
        ax.axhline(k["offered_deliveries_per_s"], color="0.4", linestyle="--", linewidth=1)
        ax.text(0.0, k["offered_deliveries_per_s"], " offered", fontsize=7, va="bottom", color="0.3",
                transform=ax.get_yaxis_transform())
    ax = axes[1]
    lat = df.melt(id_vars="t_min", value_vars=["p50_ms", "p99_ms"], var_name="percentile", value_name="ms").dropna()
    lat["percentile"] = lat["percentile"].str.removesuffix("_ms")
    if len(lat):
        sns.lineplot(data=lat, x="t_min", y="ms", hue="percentile", ax=ax, marker="o", markersize=3,
                     palette={"p50": "#30638e", "p99": "#d1495b"})
        ax.set_yscale("log")
        _log_ms_axis(ax.yaxis)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    ax.set_ylabel("latency (ms)")
    ax = axes[2]
    rss = _long(df, "rss_mib", list(k.get("processes") or []), "process")
    if len(rss):
        sns.lineplot(data=rss, x="t_min", y="value", hue="process", ax=ax, marker="o", markersize=3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    ax.set_ylabel("RSS (MiB)")
    ax = axes[3]
    red = pd.DataFrame({"t_min": df["t_min"], "used_memory": df["redis_mib"],
                        "largest output buffer": df["omem_max_bytes"].where(df["omem_max_bytes"] >= 0) / MIB})
    red = red.melt(id_vars="t_min", var_name="Redis", value_name="MiB").dropna()
    if len(red):
        sns.lineplot(data=red, x="t_min", y="MiB", hue="Redis", ax=ax, marker="o", markersize=3,
                     palette={"used_memory": "#d1495b", "largest output buffer": "#edae49"})
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    ax.set_ylabel("Redis (MiB)")
    ax.set_ylim(bottom=0)
    if reconnects:
        ax = axes[4]
        ax.bar(df["t_min"], df["reconnects"], width=(k.get("interval_s") or 10) / 60 * 0.8, color="#8e6c8a")
        ax.set_ylabel("reconnects")
        ax.set_ylim(bottom=0, top=max(1, int(df["reconnects"].max())) * 1.15)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("minutes since the first due event")
    for a in axes:
        a.tick_params(labelsize=7)
    fig.suptitle(f"Soak `{k['name']}`: per {k.get('interval_s', 10):g} s interval"
                 + ("" if reconnects else " (0 reconnects in every interval: no panel)"), fontsize=11)
    return fig


__all__ = ["plot_soak", "series_frame", "partial_last", "end_step"]
