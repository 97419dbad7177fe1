"""Deliveries around each fault: per instance, per time bin, as steps — an empty bin is drawn as
zero (an instance that received nothing is at zero, not on a line falling towards the next bin),
one colour per instance with a legend naming it, the fault window shaded and labelled."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

BIN_MS = 100


def delivery_timeline(run, bin_ms: int = BIN_MS) -> pd.DataFrame:
    """Deliveries per receiver per bin (``t_s``: the bin's start, seconds since t0), every bin from
    the first to the last delivery present for every receiver (zero when it got nothing)."""
    rec = run.record
    d = rec.deliveries.drop_duplicates(["id", "receiver"])
    receivers = [str(x) for x in run.findings.per_instance.loc[run.findings.per_instance["expected"] > 0, "instance"]]
    if d.empty or not receivers:
        return pd.DataFrame(columns=["receiver", "t_s", "deliveries", "per_s"])
    b = (d["t_received"] - rec.t0) // (bin_ms * 1_000_000)
    counts = d.assign(bin=b).groupby(["receiver", "bin"]).size()
    bins = np.arange(int(min(b.min(), 0)), int(b.max()) + 1)
    full = pd.MultiIndex.from_product([receivers, bins], names=["receiver", "bin"])
    out = counts.reindex(full, fill_value=0).rename("deliveries").reset_index()
    out["t_s"] = out["bin"] * bin_ms / 1000
    out["per_s"] = out["deliveries"] * (1000 / bin_ms)
    return out[["receiver", "t_s", "deliveries", "per_s"]]


def plot_delivery_around_faults(runs: Sequence, bin_ms: int = BIN_MS) -> Figure | None:
    """A grid, faults as rows and transports as columns: deliveries/s per instance over time."""
    if not runs:
        return None
    faults = list(dict.fromkeys(r.fault for r in runs))
    transports = list(dict.fromkeys(r.transport for r in runs))
    names = list(dict.fromkeys(str(n) for r in runs for n in r.findings.per_instance["instance"]))
    palette = dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))))
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(5.2 * len(transports), 2.3 * len(faults) + 0.8), layout="constrained")
        axes = fig.subplots(len(faults), len(transports), squeeze=False, sharex=False)
    for run in runs:
        ax = axes[faults.index(run.fault)][transports.index(run.transport)]
        tl = delivery_timeline(run, bin_ms)
        for name, part in tl.groupby("receiver", sort=False):
            ax.step(part["t_s"], part["per_s"], where="post", color=palette[str(name)], linewidth=1.1, label=str(name))
        for f in run.record.faults.itertuples(index=False):
            lo, hi = (f.t_start - run.record.t0) / 1e9, (f.t_end - run.record.t0) / 1e9
            ax.axvspan(lo, hi, color="tab:red", alpha=0.13, linewidth=0)
            ax.text(lo, 1.0, f" {f.kind}" + (f" ({f.instance})" if f.instance else ""), transform=ax.get_xaxis_transform(),
                    va="top", ha="left", fontsize=7, color="tab:red")
        acc = run.findings.losses
        ax.set_title(f"{run.fault} · {run.transport}: lost {acc.lost}, unexplained {acc.unexplained}", fontsize=9)
        ax.set_xlabel("time since t0 (s)", fontsize=8)
        ax.set_ylabel("deliveries/s", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
    handles = [Line2D([], [], color=palette[n], label=n) for n in names]
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 5), fontsize=8, frameon=False,
               title="receiving instance", title_fontsize=8)
    fig.suptitle(f"Deliveries per instance around each fault ({bin_ms} ms bins; shaded: the fault)", fontsize=11)
    return fig


__all__ = ["delivery_timeline", "plot_delivery_around_faults", "BIN_MS"]
