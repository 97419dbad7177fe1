"""Resource usage per run: Redis's CPU beside instrument CPU (% of one core; instrument CPU as
:func:`fanout.report.saturation.instrument_cpu_detail` defines it, the same number as the tables)."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def cpu_frame(summaries: Sequence[tuple]) -> pd.DataFrame:
    from fanout.report.saturation import instrument_cpu_detail

    rows = []
    for run, s in summaries:
        redis = s[s["kind"] == "redis"]
        if len(redis):
            rows.append({"run": run.name, "who": "Redis (all nodes)", "cpu_pct": float(redis["cpu_pct"].sum())})
        cpu = instrument_cpu_detail(run)["pct"]
        if cpu is not None:
            rows.append({"run": run.name, "who": "instrument CPU", "cpu_pct": float(cpu)})
    return pd.DataFrame(rows, columns=["run", "who", "cpu_pct"])


def plot_cpu(summaries: Sequence[tuple]) -> Figure | None:
    df = cpu_frame(summaries)
    if df.empty:
        return None
    order = list(dict.fromkeys(df["run"]))
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(9.0, 1.2 + 0.32 * len(order)), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
    sns.barplot(data=df, y="run", x="cpu_pct", hue="who", order=order, ax=ax, palette=["#d1495b", "#30638e"])
    ax.axvline(100, color="0.3", linestyle="--", linewidth=1)
    ax.text(100, 1.0, "one core ", transform=ax.get_xaxis_transform(), fontsize=7, va="bottom", ha="right",
            color="0.3")
    ax.set_xlabel("CPU (% of one core, mean over the run)")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("CPU per run: Redis and the instrument")
    ax.legend(loc="lower right", fontsize=8)
    return fig


__all__ = ["cpu_frame", "plot_cpu"]
