"""What ``notebooks/explore.ipynb`` calls to dig into one run: open it by id, prefix, folder or
``"latest"``, and draw what a person asks of it — what was lost and why, who was slow and when,
how latency moved over time, the outages — plus a zoom into a time window.

The numbers come from the run's exploration API (``RunRecord.events()``, ``latency()``,
``outages()``, ``timeline()``: one row per thing, datetimes in UTC, latency in ms); this module
only groups and draws them. Figures are built without pyplot (as :mod:`fanout.report.plots`), so
they work under any backend and show nothing by side effect.

    >>> import fanout.report.explore as explore
    >>> record = explore.open_run("latest")            # doctest: +SKIP
    >>> explore.losses_by_cause(record.events(status="missing"))   # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from fanout.errors import ConfigError

STYLE = "whitegrid"
WIDTH_IN = 9.0
#: scatter plots draw at most this many points (a seeded sample); every count uses all rows
MAX_POINTS = 20_000
#: the zoom's slider moves in steps of this many seconds
ZOOM_STEP_S = 0.1


def _figure(height_in: float, nrows: int = 1, sharex: bool = False) -> tuple[Figure, list]:
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
        axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0].tolist()
    return fig, axes


# ---------------------------------------------------------------------------------- opening


def open_run(run: str | os.PathLike = "latest", root: str | os.PathLike | None = None):
    """The :class:`~fanout.lab.record.RunRecord` ``run`` names: ``"latest"`` (the newest archived
    run, :func:`fanout.lab.runs`), a run id or a unique prefix of one, or a run folder
    (:func:`fanout.lab.load_run`). ``root``: where to look instead of the working directory and
    the repository. A one-line :class:`~fanout.errors.ConfigError` when nothing matches."""
    import fanout.lab as lab

    given = str(run).strip() if run is not None else ""
    if not given:
        raise ConfigError("run: give a run id, a prefix of one, a run folder or 'latest'")
    if given == "latest":
        listed = lab.runs(root)
        if listed.empty:
            where = Path(root) if root is not None else Path.cwd()
            raise ConfigError(f"run: 'latest' but no archived run was found (under {where}: data/runs, reports/*/runs); "
                              "make one with 'fanout run' or give a run folder")
        return lab.load_run(listed.iloc[0]["path"])
    if root is not None and not Path(given).exists():
        from fanout.lab.archive import find_run

        return lab.load_run(find_run(given, root))
    return lab.load_run(given)


def describe(record) -> str:
    """One line: the run id, its scenario, transport, instances and length."""
    sc = record.scenario or {}
    length = (record.t_end - record.t0) / 1e9 if record.t_end and record.t0 else None
    return (f"run {record.run_id}: scenario {sc.get('name', '?')}, {sc.get('instances', '?')} instances, "
            f"{sc.get('transport', 'pubsub')}" + (f", {length:.1f} s recorded" if length else "")
            + (f", faults: {', '.join(str(f.get('kind')) for f in sc.get('faults') or [])}" if sc.get("faults") else ""))


# ---------------------------------------------------------------------------------- what was lost


def losses_by_cause(missing: pd.DataFrame) -> pd.DataFrame:
    """Missing (event, receiver) rows (``events(status="missing")``) counted per cause and
    receiver: one row per cause, one column per receiver, and ``total``; biggest first."""
    if missing.empty:
        return pd.DataFrame(columns=["total"], dtype="int64").rename_axis("cause")
    table = (missing.assign(cause=missing["cause"].fillna("unexplained").astype(str))
             .pivot_table(index="cause", columns="receiver", values="id", aggfunc="count", fill_value=0))
    table.columns = [str(c) for c in table.columns]
    table["total"] = table.sum(axis=1)
    return table.sort_values("total", ascending=False).astype("int64")


def plot_losses(missing: pd.DataFrame, outages: pd.DataFrame | None = None, t0=None,
                faults: pd.DataFrame | None = None) -> Figure | None:
    """Each missing event at its due time, one row per receiver, coloured by cause, over the
    outages (grey, on their instance's row) and the planned faults (orange); None when nothing is missing."""
    if missing.empty:
        return None
    start = _start(missing, t0)
    df = missing.assign(t_s=(missing["due"] - start).dt.total_seconds(),
                        cause=missing["cause"].fillna("unexplained").astype(str))
    fig, (ax,) = _figure(1.2 + 0.45 * df["receiver"].nunique())
    _shade(ax, outages, start, by_receiver=sorted(df["receiver"].astype(str).unique()))
    _shade_faults(ax, faults, start)
    sns.stripplot(data=df, x="t_s", y="receiver", hue="cause", ax=ax, jitter=0.15, size=3,
                  order=sorted(df["receiver"].astype(str).unique()))
    ax.set(xlabel="due time (s since the run started)", ylabel="receiver",
           title=f"{len(df):,} missing deliveries, by cause")
    return fig


# ---------------------------------------------------------------------------------- who was slow


def latency_by_receiver(latency: pd.DataFrame) -> pd.DataFrame:
    """Per receiver: deliveries, p50, p99, max latency (ms, from the due time), slowest first."""
    g = latency.groupby("receiver", observed=True)["latency_ms"]
    out = pd.DataFrame({"deliveries": g.size(), "p50_ms": g.quantile(0.5), "p99_ms": g.quantile(0.99),
                        "max_ms": g.max()})
    return out.sort_values("p99_ms", ascending=False)


def plot_latency_by_receiver(latency: pd.DataFrame) -> Figure | None:
    """Latency (ms, log axis) per receiver as boxes: who was slow."""
    df = latency[latency["latency_ms"] > 0]
    if df.empty:
        return None
    order = latency_by_receiver(df).index.astype(str).tolist()
    fig, (ax,) = _figure(1.2 + 0.4 * len(order))
    sns.boxenplot(data=df.assign(receiver=df["receiver"].astype(str)), x="latency_ms", y="receiver", order=order,
                  ax=ax, log_scale=True)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="latency from due time (ms, log)", ylabel="receiver", title="Latency per receiver, slowest first")
    return fig


# ---------------------------------------------------------------------------------- over time


def plot_timeline(timeline: pd.DataFrame, outages: pd.DataFrame | None = None,
                  faults: pd.DataFrame | None = None) -> Figure | None:
    """The run per interval: deliveries and missing (top), p50/p99 latency where the interval's
    samples carry them (bottom); outages shaded grey, planned faults orange."""
    if timeline.empty:
        return None
    tcol = _time_column(timeline)
    start = timeline[tcol].min()
    x = (timeline[tcol] - start).dt.total_seconds()
    fig, (top, bottom) = _figure(5.2, nrows=2, sharex=True)
    for col, colour in (("deliveries", "tab:blue"), ("missing", "tab:red")):
        if col in timeline:
            top.plot(x, timeline[col], label=col, color=colour, drawstyle="steps-post")
    top.set(ylabel="per interval", title="Deliveries, losses and latency over the run")
    top.legend(loc="upper right")
    drawn = False
    for col, style in (("p50_ms", "-"), ("p99_ms", ":")):
        if col in timeline and timeline[col].notna().any():
            bottom.plot(x, timeline[col], style, label=col.removesuffix("_ms"), color="tab:purple")
            drawn = True
    if drawn:
        _log_ms(bottom)
        bottom.legend(loc="upper right")
    bottom.set(xlabel="time (s since the run started)", ylabel="latency (ms, log)")
    for ax in (top, bottom):
        _shade(ax, outages, start)
        _shade_faults(ax, faults, start)
    return fig


def plot_latency_over_time(events: pd.DataFrame, t0=None) -> Figure | None:
    """Each delivery's latency at its due time (a seeded sample of :data:`MAX_POINTS`), one colour
    per receiver: how latency moved over the run."""
    df = events[events["status"].isin(DELIVERED) & (events["latency_ms"] > 0)]
    if df.empty:
        return None
    start = _start(events, t0)
    if len(df) > MAX_POINTS:
        df = df.sample(MAX_POINTS, random_state=0)
    df = df.assign(t_s=(df["due"] - start).dt.total_seconds(), receiver=df["receiver"].astype(str))
    fig, (ax,) = _figure(4.0)
    sns.scatterplot(data=df, x="t_s", y="latency_ms", hue="receiver", hue_order=sorted(df["receiver"].unique()), s=6,
                    linewidth=0, ax=ax, alpha=0.6)
    _log_ms(ax)
    ax.set(xlabel="due time (s since the run started)", ylabel="latency (ms, log)", title="Latency over the run")
    return fig


def outages_table(outages: pd.DataFrame) -> pd.DataFrame:
    """The outages, longest first (what ``record.outages()`` gives), or an empty frame."""
    if outages.empty or "duration_s" not in outages:
        return outages
    return outages.sort_values("duration_s", ascending=False).reset_index(drop=True)


def zoom(events: pd.DataFrame, outages: pd.DataFrame | None = None, t0=None, faults: pd.DataFrame | None = None):
    """An interactive window on the run: a range slider (seconds since the start) redraws each
    delivery's latency and each missing event in that window, outages shaded. Needs ipywidgets
    (the report extra); without it, the whole run as one figure and a note saying why."""
    if events.empty:
        return None
    start = _start(events, t0)
    t_s = (events["due"] - start).dt.total_seconds()
    end = float(t_s.max()) if len(t_s) else 0.0
    try:
        import ipywidgets as widgets
    except ImportError:
        print("zoom: ipywidgets is not installed (pip install 'fanout[report]'): the whole run instead")
        return _window_figure(events, outages, start, (0.0, end), faults)
    from fanout.report.nbhelpers import show_figure

    slider = widgets.FloatRangeSlider(value=(0.0, end), min=0.0, max=max(end, ZOOM_STEP_S), step=ZOOM_STEP_S,
                                      description="window (s)", continuous_update=False,
                                      layout=widgets.Layout(width="95%"), readout_format=".1f")

    def draw(window):
        show_figure(_window_figure(events, outages, start, window, faults))

    return widgets.interactive(draw, window=slider)


def _window_figure(events: pd.DataFrame, outages, start, window, faults=None) -> Figure | None:
    lo, hi = float(window[0]), float(window[1])
    t_s = (events["due"] - start).dt.total_seconds()
    inside = events[(t_s >= lo) & (t_s <= hi)].assign(t_s=t_s, receiver=events["receiver"].astype(str))
    got = inside[inside["status"].isin(DELIVERED) & (inside["latency_ms"] > 0)]
    lost = inside[inside["status"] == "missing"]
    fig, (ax,) = _figure(4.0)
    if len(got) > MAX_POINTS:
        got = got.sample(MAX_POINTS, random_state=0)
    if not got.empty:
        sns.scatterplot(data=got, x="t_s", y="latency_ms", hue="receiver", hue_order=sorted(got["receiver"].unique()),
                        s=8, linewidth=0, ax=ax, alpha=0.7)
        _log_ms(ax)
    if not lost.empty:
        ax.plot(lost["t_s"], [0.02] * len(lost), "|", color="tab:red", transform=ax.get_xaxis_transform(),
                markersize=10, label=f"missing ({len(lost):,})")
        ax.legend(loc="upper right")
    _shade(ax, outages, start)
    _shade_faults(ax, faults, start)
    ax.set_xlim(lo, hi)
    ax.set(xlabel="due time (s since the run started)", ylabel="latency (ms, log)",
           title=f"{lo:.1f}–{hi:.1f} s: {int(inside['status'].isin(DELIVERED).sum()):,} deliveries, "
                 f"{len(lost):,} missing")
    return fig


# ---------------------------------------------------------------------------------- helpers


#: a row of events() that counts as a delivery (its first one; duplicates and self-deliveries not)
DELIVERED = ("delivered", "late")


def _log_ms(ax) -> None:
    """A log latency axis labelled in plain milliseconds (0.5, 1, 2), not 10^0 or 1.0002x10^0."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _time_column(df: pd.DataFrame) -> str:
    for col in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[col]):
            return col
    raise ConfigError("timeline: no datetime column to draw against")


def _start(df: pd.DataFrame, t0=None):
    if t0 is not None:
        return pd.Timestamp(int(t0), unit="ns", tz="UTC") if not isinstance(t0, pd.Timestamp) else t0
    return df["due"].min()


def _shade(ax, outages: pd.DataFrame | None, start, by_receiver: list[str] | None = None) -> None:
    """Shade each outage (columns ``down``/``up`` datetimes, or ``t_down``/``t_up`` ns)."""
    if outages is None or outages.empty:
        return
    down = outages["down"] if "down" in outages else pd.to_datetime(outages["t_down"], unit="ns", utc=True)
    up = outages["up"] if "up" in outages else pd.to_datetime(outages["t_up"], unit="ns", utc=True)
    for d, u, who in zip(down, up, outages["instance"].astype(str)):
        if pd.isna(d):
            continue
        a = (d - start).total_seconds()
        b = (u - start).total_seconds() if not pd.isna(u) else ax.get_xlim()[1]
        if by_receiver is not None and who in by_receiver:
            i = by_receiver.index(who)
            ax.axvspan(a, b, ymin=1 - (i + 1) / len(by_receiver), ymax=1 - i / len(by_receiver),
                       color="grey", alpha=0.2, lw=0)
        elif by_receiver is None:
            ax.axvspan(a, b, color="grey", alpha=0.15, lw=0)


def _shade_faults(ax, faults: pd.DataFrame | None, start) -> None:
    """Shade each planned fault's window (``record.faults``: ``t_start``/``t_end`` ns), labelled by kind."""
    if faults is None or faults.empty:
        return
    for kind, a, b in zip(faults["kind"].astype(str), faults["t_start"], faults["t_end"]):
        lo = (pd.Timestamp(int(a), unit="ns", tz="UTC") - start).total_seconds()
        hi = (pd.Timestamp(int(b), unit="ns", tz="UTC") - start).total_seconds() if int(b) > 0 else ax.get_xlim()[1]
        ax.axvspan(lo, hi, color="tab:orange", alpha=0.15, lw=0)
        ax.annotate(kind, (lo, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=8, color="tab:orange")


__all__ = ["DELIVERED", "open_run", "describe", "losses_by_cause", "plot_losses", "latency_by_receiver", "plot_latency_by_receiver",
           "plot_timeline", "plot_latency_over_time", "outages_table", "zoom"]
