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
#: a panel's y axis ends at this many times the 95th percentile of its bins (a catch-up spike
#: far above would flatten the rest to a line at the bottom); a bin above is clipped and its
#: value written beside it
SPIKE_FACTOR = 3.0


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


def _clip_spikes(ax, tl: pd.DataFrame, palette: dict, bin_ms: int) -> None:
    """End the y axis at :data:`SPIKE_FACTOR` × the 95th percentile of the panel's bins when a
    bin rises above that, and write each clipped bin's value at its top edge (the spike stays
    stated; the rest of the panel stays readable)."""
    if tl.empty:
        ax.set_ylim(bottom=0)
        return
    top = SPIKE_FACTOR * float(np.percentile(tl["per_s"], 95))
    over = tl[tl["per_s"] > top]
    if top <= 0 or over.empty:
        ax.set_ylim(bottom=0)
        return
    ax.set_ylim(0, top)
    for row in over.sort_values("per_s", ascending=False).drop_duplicates("receiver").itertuples(index=False):
        ax.annotate(f"↑ {row.per_s:,.0f}/s", (row.t_s + bin_ms / 2000, top), xytext=(3, -11), textcoords="offset points",
                    ha="left", va="top", fontsize=7, color=palette[str(row.receiver)])


def plot_delivery_around_faults(runs: Sequence, bin_ms: int = BIN_MS) -> Figure | None:
    """A grid, faults as rows and transports as columns: deliveries/s per instance over time."""
    if not runs:
        return None
    faults = list(dict.fromkeys(r.fault for r in runs))
    transports = list(dict.fromkeys(r.transport for r in runs))
    names = list(dict.fromkeys(str(n) for r in runs for n in r.findings.per_instance["instance"]))
    palette = dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))))
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(5.2 * len(transports), 1.6 * len(faults) + 0.8), layout="constrained")
        axes = fig.subplots(len(faults), len(transports), squeeze=False, sharex=False)
    for run in runs:
        ax = axes[faults.index(run.fault)][transports.index(run.transport)]
        tl = delivery_timeline(run, bin_ms)
        for name, part in tl.groupby("receiver", sort=False):
            ax.step(part["t_s"], part["per_s"], where="post", color=palette[str(name)], linewidth=1.1, label=str(name))
        _clip_spikes(ax, tl, palette, bin_ms)
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
        if ax.get_ylim()[0] != 0:
            ax.set_ylim(bottom=0)
    handles = [Line2D([], [], color=palette[n], label=n) for n in names]
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 5), fontsize=8, frameon=False,
               title="receiving instance", title_fontsize=8)
    fig.suptitle(f"Deliveries per instance around each fault ({bin_ms} ms bins; shaded: the fault)", fontsize=11)
    return fig


__all__ = ["delivery_timeline", "plot_delivery_around_faults", "BIN_MS", "SPIKE_FACTOR"]
