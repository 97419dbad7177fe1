"""A long run over time: what an hour of traffic does to the bridges, to Redis and to latency.

:func:`soak_series` turns a RunRecord into one row per interval (10 s by default, on the same
clock-aligned boundaries as the summary's time series, ``fanout.lab.summary.SERIES_NS``): the
delivery rows and the latency of the first deliveries in it (from the summary's per-interval
HdrHistograms, merged exactly), each instrument process's CPU and RSS, Redis's memory, CPU,
clients and largest client output buffer (from the resource samples), and the reconnects that
began in it (the record's outages).

:func:`soak_drift` fits a straight line to each memory series (RSS per process, Redis
``used_memory``) and to p99 latency, against time, by least squares over the whole intervals
inside the run's window (the partial first one holds the start-up, the partial last one the end
of the drain): the slope per hour with its 95 % interval, slope ± t(0.975, n − 2) · standard
error. It calls a slope *drift* only when both

* the interval excludes zero, and
* the change the line makes over the run is material: at least :data:`DRIFT_FLOOR_MIB` MiB
  (memory) or :data:`DRIFT_FLOOR_MS` ms (p99), and either at least :data:`DRIFT_SHARE` of the
  series' mean or, for memory, at least :data:`DRIFT_MIB` MiB whatever the mean;

and says "no drift measured: ... within ±X at 95 %" otherwise. With fewer than
:data:`MIN_INTERVALS` intervals that carry a value there is no slope, and it says so.

The interval assumes independent residuals around the line. A memory series is not independent
from one interval to the next (memory is a level, not a count), so the true uncertainty is wider
than stated; the materiality thresholds keep a small, steady slope from being called drift.
Memory is in MiB (1024² bytes), as everywhere in the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fanout.lab.record import RunRecord
from fanout.lab.resources import positive_deltas
from fanout.percentiles import carried, min_samples

#: the series' interval (s): the summary's own, or a whole multiple of it
SOAK_INTERVAL_S = 10
#: a slope needs at least this many intervals with a value
MIN_INTERVALS = 3
#: the interval's confidence
CONFIDENCE = 0.95
#: drift must change the series by at least this share of its mean over the run ...
DRIFT_SHARE = 0.05
#: ... or, for memory, by at least this many MiB whatever the mean
DRIFT_MIB = 10.0
#: a change smaller than this is never drift: memory (MiB) ...
DRIFT_FLOOR_MIB = 1.0
#: ... and p99 latency (ms)
DRIFT_FLOOR_MS = 0.5

#: resource samples count from this long before ``t0`` to this long after ``t_end`` (one sample
#: interval of a long run: fanout.lab.resources.COARSE_INTERVAL_S); later ones measure the record
#: being built, not the run
WINDOW_SLACK_S = 1.0

MIB = 1024 * 1024
#: per-process columns: ``cpu_pct/<target>`` (% of one core) and ``rss_mib/<target>``
CPU_PREFIX, RSS_PREFIX = "cpu_pct/", "rss_mib/"
SERIES_COLUMNS = ["t_s", "span_s", "deliveries", "deliveries_per_s", "lat_count", "p50_ms", "p99_ms", "max_ms",
                  "redis_mib", "redis_cpu_pct", "clients", "omem_max_bytes", "reconnects", "missing"]
RECONNECT_COLUMNS = ["instance", "t_down_s", "t_up_s", "why"]


# ------------------------------------------------------------------ the series


def soak_series(record: RunRecord, interval_s: float = SOAK_INTERVAL_S) -> pd.DataFrame:
    """One row per interval of ``interval_s`` (a whole multiple of the summary's 10 s) from the
    one holding ``record.t0`` to the one holding ``record.t_end``, and any other that saw a
    delivery; columns :data:`SERIES_COLUMNS`, then ``cpu_pct/<target>`` and ``rss_mib/<target>``
    per instrument process (:func:`process_targets`).

    * ``t_s``: the interval's start, seconds after ``t0`` (the first may start before it);
      ``span_s``: how much of it lies in the run's window ``[t0, t_end]`` (``deliveries_per_s``
      divides by it);
    * ``deliveries`` (every delivery row), ``lat_count`` (first deliveries with a latency),
      ``p50_ms``/``p99_ms`` (from the merged histograms, 2 significant digits; NaN where the
      interval's samples do not carry the percentile, :func:`fanout.percentiles.carried`),
      ``max_ms`` (exact): from ``record.summary``, else a summary made from the frames;
    * per process: CPU % of one core (its CPU-time deltas over the sampled time in the interval)
      and RSS (the largest sample), from the samples within :data:`WINDOW_SLACK_S` of the run's
      window; ``redis_mib`` (largest ``used_memory``), ``redis_cpu_pct``,
      ``clients`` (most), ``omem_max_bytes`` (largest client output buffer; -1 where no sample
      could read it), summed over a cluster's masters (omem: the largest); NaN where not sampled;
    * ``reconnects``: outages (lost subscriptions) whose ``t_down`` falls in the interval;
    * ``missing``: (event, receiver) pairs never delivered, by the interval the event was due in
      (:func:`fanout.analysis.accounting.missing_due_times`).
    """
    from fanout.lab.summary import SERIES_DIGITS, SERIES_NS, Latency, new_histogram

    step = round(float(interval_s) * 1e9)
    if step <= 0 or step % SERIES_NS:
        raise ValueError(f"interval_s: a whole multiple of the summary's {SERIES_NS / 1e9:g} s, got {interval_s!r}")
    summary = record.summary
    if summary is None:
        from fanout.lab.summary import Summary

        summary = Summary.from_record(record)
    t0, t_end = int(record.t0), int(record.t_end or record.t0)
    merged: dict[int, Latency] = {}
    for k10, x in summary.series.items():
        k = (int(k10) * SERIES_NS) // step
        m = merged.get(k)
        if m is None:
            m = merged[k] = Latency(new_histogram(SERIES_DIGITS))
        m.merge(x)
    keys = sorted(set(range(t0 // step, max(t0, t_end - 1) // step + 1)) | set(merged))
    rows = []
    for k in keys:
        lo, hi = k * step, (k + 1) * step
        span = (min(hi, t_end) - max(lo, t0)) / 1e9
        span = span if span > 0 else step / 1e9
        x = merged.get(k)
        n_rows, n_lat = (x.rows, x.count) if x is not None else (0, 0)
        rows.append({
            "t_s": (lo - t0) / 1e9, "span_s": span, "deliveries": int(n_rows), "deliveries_per_s": n_rows / span,
            "lat_count": int(n_lat),
            "p50_ms": _pct(x, 50.0), "p99_ms": _pct(x, 99.0),
            "max_ms": x.max_ns / 1e6 if n_lat else math.nan,
        })
    out = pd.DataFrame(rows, columns=SERIES_COLUMNS[:8])
    samples = record.resources
    if samples is not None and len(samples):
        slack = int(WINDOW_SLACK_S * 1e9)
        samples = samples[(samples["t"] >= t0 - slack) & (samples["t"] <= t_end + slack)]
    res = _resources(samples, keys, step)
    out = pd.concat([out, res.reset_index(drop=True)], axis=1)
    out["reconnects"] = _reconnects_per_interval(record.outages, keys, step)
    out["missing"] = _missing_per_interval(record, keys, step)
    procs = [c for c in res.columns if c.startswith((CPU_PREFIX, RSS_PREFIX))]
    out = out[SERIES_COLUMNS + procs]
    out.attrs["interval_s"] = step / 1e9
    return out


def _pct(x, q: float) -> float:
    if x is None or not carried(q, x.count):
        return math.nan
    return x.hist.get_value_at_percentile(q) / 1e6


def _per_interval(g: pd.DataFrame, step: int) -> pd.DataFrame:
    """One target's samples per interval: CPU % (deltas over sampled time, each delta in the
    interval of its later sample), largest memory, most clients, largest readable omem."""
    g = g.sort_values("t")
    k = g["t"] // step
    dt = g["t"].diff() / 1e9
    cpu = positive_deltas(g["cpu_s"].astype(float))
    omem = g["omem_max_bytes"].where(g["omem_max_bytes"] >= 0)
    by = pd.DataFrame({"k": k, "dt": dt, "cpu": cpu, "mem": g["memory_bytes"], "clients": g["clients"],
                       "omem": omem}).groupby("k")
    agg = by.agg(dt=("dt", "sum"), cpu=("cpu", "sum"), mem=("mem", "max"), clients=("clients", "max"),
                 omem=("omem", "max"))
    agg["cpu_pct"] = (agg["cpu"] / agg["dt"].where(agg["dt"] > 0)) * 100.0
    return agg


def _resources(resources: pd.DataFrame, keys: list[int], step: int) -> pd.DataFrame:
    idx = pd.Index(keys, name="k")
    cols: dict[str, pd.Series] = {}
    res = resources if resources is not None else pd.DataFrame(columns=["kind"])
    redis = res[res["kind"] == "redis"] if len(res) else res
    nodes = [_per_interval(g, step).reindex(idx) for _, g in redis.groupby("target", sort=True)] if len(redis) else []
    if nodes:
        cols["redis_mib"] = sum(n["mem"] for n in nodes) / MIB
        cols["redis_cpu_pct"] = sum(n["cpu_pct"] for n in nodes)
        cols["clients"] = sum(n["clients"] for n in nodes)
        sampled = pd.concat([n["clients"].notna() for n in nodes], axis=1).any(axis=1)
        omem = pd.concat([n["omem"] for n in nodes], axis=1).max(axis=1)
        cols["omem_max_bytes"] = omem.where(omem.notna(), np.where(sampled, -1, np.nan))
    else:
        for c in ("redis_mib", "redis_cpu_pct", "clients", "omem_max_bytes"):
            cols[c] = pd.Series(math.nan, index=idx)
    # a process row with no RSS is a process that had ended (sampled as a zombie by older samplers)
    procs = res[(res["kind"] == "process") & (res["memory_bytes"] > 0)] if len(res) else res
    for target, g in (procs.groupby("target", sort=False) if len(procs) else []):
        p = _per_interval(g, step).reindex(idx)
        cols[f"{CPU_PREFIX}{target}"] = p["cpu_pct"]
        cols[f"{RSS_PREFIX}{target}"] = p["mem"] / MIB
    return pd.DataFrame(cols, index=idx)


def _reconnects_per_interval(outages: pd.DataFrame, keys: list[int], step: int) -> list[int]:
    if outages is None or not len(outages):
        return [0] * len(keys)
    counts = (outages["t_down"].astype("int64") // step).value_counts()
    return [int(counts.get(k, 0)) for k in keys]


def _missing_per_interval(record: RunRecord, keys: list[int], step: int) -> list[int]:
    from fanout.analysis.accounting import missing_due_times

    names = [str(x) for x in record.instances["instance"]]
    wanted = (record.scenario or {}).get("receivers")
    receivers = [n for n in names if wanted is None or n in {str(x) for x in wanted}]
    due = missing_due_times(record, receivers)
    if due.size == 0:
        return [0] * len(keys)
    k, n = np.unique(due // step, return_counts=True)
    got = dict(zip(k.tolist(), n.tolist()))
    return [int(got.get(key, 0)) for key in keys]


def process_targets(series: pd.DataFrame) -> list[str]:
    """The instrument processes a series has columns for, in its order."""
    return [c[len(RSS_PREFIX):] for c in series.columns if c.startswith(RSS_PREFIX)]


def reconnect_rows(record: RunRecord) -> pd.DataFrame:
    """Every lost subscription of the run, in time order: ``instance``, ``t_down_s`` and ``t_up_s``
    (seconds after ``t0``; ``t_up_s`` NaN when it never came back) and ``why`` (the reason)."""
    o = record.outages
    if o is None or not len(o):
        return pd.DataFrame(columns=RECONNECT_COLUMNS)
    o = o.sort_values("t_down")
    t0 = int(record.t0)
    up = o["t_up"].astype("int64")
    return pd.DataFrame({"instance": o["instance"].astype(str).to_numpy(),
                         "t_down_s": ((o["t_down"].astype("int64") - t0) / 1e9).to_numpy(),
                         "t_up_s": ((up - t0) / 1e9).where(up > 0).to_numpy(),
                         "why": o["reason"].astype(str).to_numpy()}, columns=RECONNECT_COLUMNS)


# ------------------------------------------------------------------ slopes


def linear_fit(x, y, confidence: float = CONFIDENCE) -> dict[str, Any] | None:
    """Least squares ``y = intercept + slope · x`` with the slope's interval (slope ± t · stderr,
    t the ``(1 + confidence) / 2`` quantile with n − 2 degrees of freedom); None with fewer than
    :data:`MIN_INTERVALS` points or no spread in x."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = int(x.size)
    if n < max(3, MIN_INTERVALS) or float(np.ptp(x)) <= 0:
        return None
    fit = stats.linregress(x, y)
    slope, intercept, stderr = float(fit.slope), float(fit.intercept), float(fit.stderr)
    t = float(stats.t.ppf((1 + confidence) / 2, n - 2))
    return {"n": n, "slope": slope, "intercept": intercept, "stderr": stderr, "t": t,
            "lo": slope - t * stderr, "hi": slope + t * stderr}


@dataclass
class SoakDrift:
    """Slopes of a soak series and what they say."""

    #: one entry per series fitted (``metric``, ``label``, ``unit``, ``n``, ``slope_per_h``,
    #: ``lo_per_h``, ``hi_per_h``, ``within_per_h``, ``mean``, ``change`` (over ``span_s``), ``material``,
    #: ``reading``: "drift", "not material", "no drift", "too few intervals", "not sampled" or "no p99",
    #: and ``sentence``)
    slopes: list[dict[str, Any]] = field(default_factory=list)
    #: one plain sentence per slope, made from its numbers only
    drift: list[str] = field(default_factory=list)
    #: intervals in the series
    intervals: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def drifting(self) -> list[dict[str, Any]]:
        return [s for s in self.slopes if s["reading"] == "drift"]


def thresholds() -> dict[str, float]:
    """The drift rule's constants, as report.json keeps them."""
    return {"confidence_pct": CONFIDENCE * 100, "share_pct": DRIFT_SHARE * 100, "mib": DRIFT_MIB,
            "floor_mib": DRIFT_FLOOR_MIB, "floor_ms": DRIFT_FLOOR_MS, "min_intervals": MIN_INTERVALS}


def soak_drift(series: pd.DataFrame) -> SoakDrift:
    """Per process RSS, Redis memory and p99: the slope per hour with its 95 % interval, the
    reading (drift only when the interval excludes zero and the change is material, see the
    module doc) and one sentence each."""
    out = SoakDrift(intervals=len(series), thresholds=thresholds())
    # the interval: as soak_series made it, else the longest span (a whole interval's)
    step = float(series.attrs.get("interval_s") or (series["span_s"].max() if len(series) else SOAK_INTERVAL_S))
    sampled = ("not sampled", "not sampled, so no slope.")
    metrics = [(f"{RSS_PREFIX}{t}", f"RSS of {t}", "MiB", sampled) for t in process_targets(series)]
    metrics += [("redis_mib", "Redis used_memory", "MiB", sampled),
                ("p99_ms", "p99 latency", "ms", ("no p99", (f"no whole interval had the {min_samples(99.0):,} latency "
                                                            "samples a p99 needs, so no slope.")))]
    for col, label, unit, none_why in metrics:
        if col not in series.columns:
            continue
        s = series[["t_s", "span_s", col]].dropna()
        s = s[s["span_s"] >= step - 1e-9]  # whole intervals only
        x_h = (s["t_s"] + s["span_s"] / 2).to_numpy() / 3600.0
        entry = _slope(label, unit, x_h, s[col].to_numpy(dtype=float), none_why)
        entry["metric"] = col
        out.slopes.append(entry)
        out.drift.append(entry["sentence"])
    return out


def _slope(label: str, unit: str, x_h: np.ndarray, y: np.ndarray, none_why: tuple[str, str]) -> dict[str, Any]:
    n = len(y)
    base: dict[str, Any] = {"label": label, "unit": unit, "n": n, "slope_per_h": None, "lo_per_h": None,
                            "hi_per_h": None, "within_per_h": None, "mean": float(y.mean()) if n else None,
                            "change": None, "span_s": None, "material": False}
    if n == 0:
        return base | {"reading": none_why[0], "sentence": f"{label}: {none_why[1]}"}
    fit = linear_fit(x_h, y)
    if fit is None:
        return base | {"reading": "too few intervals",
                       "sentence": f"{label}: {n} interval{'s' if n != 1 else ''} with a value, fewer than "
                                   f"{MIN_INTERVALS}: no slope measured."}
    span_h = float(x_h.max() - x_h.min())
    change = fit["slope"] * span_h
    mean = float(y.mean())
    floor = DRIFT_FLOOR_MIB if unit == "MiB" else DRIFT_FLOOR_MS
    material = abs(change) >= floor and (abs(change) >= DRIFT_SHARE * abs(mean)
                                         or (unit == "MiB" and abs(change) >= DRIFT_MIB))
    excludes_zero = fit["lo"] > 0 or fit["hi"] < 0
    within = max(abs(fit["lo"]), abs(fit["hi"]))
    entry = base | {"slope_per_h": fit["slope"], "lo_per_h": fit["lo"], "hi_per_h": fit["hi"],
                    "within_per_h": within, "change": change, "span_s": span_h * 3600, "material": bool(material)}
    pct = f"{CONFIDENCE * 100:g} %"
    slope = f"{number(fit['slope'], True)} {unit}/h ({pct} interval {number(fit['lo'], True)} to " \
            f"{number(fit['hi'], True)})"
    span_s = span_h * 3600
    span = f"{number(span_s)} s" if span_s < 120 else f"{number(span_s / 60)} min"
    over = f"over {span} ({n} intervals)"
    if excludes_zero and material:
        way = "grew" if fit["slope"] > 0 else "fell"
        sentence = (f"Drift: {label} {way} {slope}, {number(change, True)} {unit} {over} "
                    f"against a mean of {number(mean)} {unit}.")
        reading = "drift"
    elif excludes_zero:
        sentence = (f"No material drift in {label}: {slope}, {number(change, True)} {unit} {over}, under the "
                    f"thresholds ({DRIFT_SHARE * 100:g} % of its mean of {number(mean)} {unit}"
                    + (f", {DRIFT_MIB:g} MiB" if unit == "MiB" else "")
                    + f"; never less than {number(floor)} {unit}).")
        reading = "not material"
    else:
        sentence = f"No drift measured in {label}: within ±{number(within)} {unit}/h at {pct} {over}."
        reading = "no drift"
    return entry | {"reading": reading, "sentence": sentence}


def number(v: float | None, sign: bool = False) -> str:
    """A number with as many decimals as its size needs (three significant digits below 100;
    ``sign``: + or − always); ``n/a`` for None or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(v)
    digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3 if a >= 0.1 else 4 if a >= 0.01 else 5
    text = f"{a:,.{digits}f}"
    if not sign:
        return text if v >= 0 else f"−{text}"
    return ("+" if v >= 0 else "−") + text


__all__ = ["soak_series", "soak_drift", "SoakDrift", "process_targets", "reconnect_rows", "linear_fit",
           "number", "WINDOW_SLACK_S",
           "thresholds", "SOAK_INTERVAL_S", "MIN_INTERVALS", "CONFIDENCE", "DRIFT_SHARE", "DRIFT_MIB",
           "DRIFT_FLOOR_MIB", "DRIFT_FLOOR_MS", "SERIES_COLUMNS", "RECONNECT_COLUMNS", "CPU_PREFIX", "RSS_PREFIX"]
