"""fanout.lab.summary and the recorder that fills it online: the summary's per-instance counts and
missing events equal the frame path's (``fanout.analysis.analyse``, ``accounting.missing_deliveries``:
the oracle) on synthetic records and on real runs (a fault, worker processes, agents); merging
worker summaries equals one summary of the same deliveries; histogram percentiles are within the
histogram's precision; a run written in parts reads back whole, and so do a killed run's parts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from _records import make_record
from conftest import ROOT
from fanout.analysis import analyse
from fanout.analysis.accounting import missing_deliveries
from fanout.lab.options import RunOptions
from fanout.lab.record import load_run
from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario, load_scenario
from fanout.lab.summary import HIST_HIGHEST_NS, Latency, Summary, new_histogram, record_many

COUNTS = ["instance", "published", "publish_failed", "expected", "received", "missing", "duplicates",
          "self_received", "unexpected", "foreign", "lat_count"]
#: small chunks, so that even a short run closes several and writes several parts
SMALL_CHUNKS = RunOptions(chunk_rows=600, chunk_s=0.5)


def frame_counts(rec) -> list[dict]:
    return analyse(rec).per_instance[COUNTS].to_dict("records")


def summary_counts(rec, summary: Summary) -> list[dict]:
    names = [str(x) for x in rec.instances["instance"]]
    dead = (rec.environment or {}).get("dead_instances") or {}
    return summary.instances(names, rec.scenario.get("receivers"), dead)


def assert_same_accounting(rec, summary: Summary, latency: bool = True) -> None:
    """The summary says what the frames say: every per-instance count and every missing event."""
    want, got = frame_counts(rec), summary_counts(rec, summary)
    if not latency:
        for rows in (want, got):
            for r in rows:
                r.pop("lat_count")
    assert got == want
    names = [str(x) for x in rec.instances["instance"]]
    receivers = names if rec.scenario.get("receivers") is None else list(rec.scenario["receivers"])
    oracle = missing_deliveries(rec, receivers)
    for r in receivers:
        assert sorted(summary.missing_ids(r)) == sorted(oracle[r]), r


def same_summary(a: Summary, b: Summary) -> None:
    assert a.received == b.received and a.duplicates == b.duplicates and a.unsequenced == b.unsequenced
    assert a.published == b.published and a.failed == b.failed and a.failed_unsequenced == b.failed_unsequenced
    assert set(a.latency) == set(b.latency)
    for k, x in a.latency.items():
        y = b.latency[k]
        assert (x.count, x.sum_ns, x.negative, x.min_ns, x.max_ns) == (y.count, y.sum_ns, y.negative, y.min_ns, y.max_ns)
        assert x.hist.get_total_count() == y.hist.get_total_count()
        assert all(x.hist.get_value_at_percentile(q) == y.hist.get_value_at_percentile(q) for q in (50, 99, 99.9))


# ---------------------------------------------------------------- synthetic records (no Redis)

SYNTHETIC = {
    "clean": dict(published_by={"a": 40, "b": 30, "c": 20}),
    "drops, duplicates, self-deliveries, failed publishes": dict(
        published_by={"a": 40, "b": 30, "c": 0},
        drop=[("b", "a:ticker:1"), ("c", "b:trade:3"), ("c", "a:trade:7"), ("a", "b:ticker:15")],
        duplicate=[("a", "b:ticker:2"), ("c", "a:ticker:1"), ("c", "a:ticker:1"), ("b", "a:trade:20")],
        self_deliver=["a", "b"], failed=5, latency_ns=[1_000_000, 2_500_000, 700_000, 90_000_000, -3_000]),
    "host-bots (a publisher that receives nothing)": dict(
        published_by={"host": 50, "bot-1": 0, "bot-2": 0},
        drop=[("bot-2", "host:ticker:4")], duplicate=[("bot-1", "host:trade:9")],
        scenario_overrides={"publishers": ["host"], "receivers": ["bot-1", "bot-2"]}),
}


@pytest.mark.parametrize("case", list(SYNTHETIC))
def test_summary_counts_and_missing_events_equal_the_frame_path(case):
    rec = make_record(**SYNTHETIC[case])
    s = Summary.from_record(rec)
    assert_same_accounting(rec, s)
    back = Summary.from_bytes(s.to_bytes())
    same_summary(s, back)
    assert_same_accounting(rec, back)
    assert Summary.from_bytes(s.to_wire()).instances(["a"]) == s.instances(["a"])  # the JSON links' form


def test_a_foreign_source_is_counted_apart_never_missing_or_duplicate():
    rec = make_record({"a": 10, "b": 10})
    extra = rec.deliveries.iloc[:3].copy()
    extra["source"], extra["id"] = "someone-else", [f"x:ticker:{k}" for k in (1, 2, 2)]
    import pandas as pd

    rec.deliveries = pd.concat([rec.deliveries, extra], ignore_index=True)
    assert_same_accounting(rec, Summary.from_record(rec))


def test_merging_summaries_of_parts_equals_the_summary_of_the_whole():
    rec = make_record(**SYNTHETIC["drops, duplicates, self-deliveries, failed publishes"])
    whole = Summary.from_record(rec)
    # by receiver (as workers host them): exact, latency too
    pubs, d = rec.publications, rec.deliveries
    parts = [Summary.from_frames(pubs, d[d["receiver"] == r], count_publications=False) for r in ("a", "b", "c")]
    parts.append(Summary.from_frames(pubs, d.iloc[:0]))
    same_summary(Summary.merged(parts), whole)
    # one receiver's rows split in time: the seqs in both halves are duplicates, as one summary counts them
    d = d.sort_values("t_received", kind="stable")
    halves = [Summary.from_frames(pubs, d.iloc[: len(d) // 2]),
              Summary.from_frames(pubs, d.iloc[len(d) // 2:], count_publications=False)]
    merged = Summary.merged(halves)
    assert merged.received == whole.received and merged.duplicates == whole.duplicates
    assert summary_counts(rec, merged) == summary_counts(rec, whole)
    # shipped as bytes and merged: the same
    same_summary(Summary.merged(Summary.from_bytes(p.to_bytes()) for p in parts), whole)


def test_restarts_and_partitions_are_streams_of_their_own():
    """A source's new epoch starts again at seq 1 and a sharded partition has its own seqs: in the
    summary each is its own stream, never a duplicate or a gap."""
    s = Summary()
    src = ["p"] * 6
    epochs = ["e1", "e1", "e2", "e2", "e1", "e1"]
    streams = ["ticker", "ticker", "ticker", "ticker", "ticker.1", "ticker.1"]
    seqs = [1, 2, 1, 2, 1, 2]
    s.add_publications(src, epochs, streams, seqs, [True] * 6)
    s.add_deliveries("r", src, epochs, streams, ["ticker"] * 6, seqs, [10] * 6, [5] * 6)
    assert s.instances(["p", "r"])[1] | {} == {
        "instance": "r", "published": 0, "publish_failed": 0, "expected": 6, "received": 6, "missing": 0,
        "duplicates": 0, "self_received": 0, "unexpected": 0, "foreign": 0, "lat_count": 6}
    assert sorted(s.missing_ids("r")) == []
    s.add_deliveries("r", ["p"], ["e2"], ["ticker"], ["ticker"], [2], [11], [5])  # the same event again
    assert s.instances(["p", "r"])[1]["duplicates"] == 1 and s.latency_of("r").count == 6


# ---------------------------------------------------------------- histograms


def test_recording_a_chunk_at_once_equals_recording_one_by_one():
    rng = np.random.default_rng(3)
    ns = np.concatenate([rng.integers(0, 2_000, 500), rng.lognormal(14, 1.5, 20_000).astype(np.int64),
                         [HIST_HIGHEST_NS, 1, 0, 999, 1_000, 1_001, 2**31, 2**33 + 7]])
    one, many = new_histogram(), new_histogram()
    for v in ns:
        assert one.record_value(int(v))
    record_many(many, ns)
    assert list(one.counts) == list(many.counts)
    assert (one.get_total_count(), one.get_min_value(), one.get_max_value()) == \
        (many.get_total_count(), many.get_min_value(), many.get_max_value())


def test_histogram_percentiles_agree_with_exact_ones_within_its_precision():
    rng = np.random.default_rng(11)
    ns = np.concatenate([rng.lognormal(13.5, 0.6, 50_000), rng.lognormal(17, 1.0, 800)]).astype(np.int64)
    lat = Latency()
    for chunk in np.array_split(ns, 7):
        lat.add(chunk)
    h = lat.hist
    exact = np.sort(ns)
    for q in (50.0, 90.0, 95.0, 99.0, 99.9, 99.99):
        rank = max(1, int(q / 100 * ns.size + 0.5))  # HdrHistogram's percentile: the value at this rank
        want = int(exact[rank - 1])
        got = h.get_value_at_percentile(q)
        assert h.get_lowest_equivalent_value(want) <= got <= h.get_highest_equivalent_value(want), (q, want, got)
        assert abs(got - want) <= want * 10 ** -3 + 1_000, (q, want, got)  # 3 significant digits (or 1 µs)
    assert lat.count == ns.size and lat.sum_ns == int(ns.sum()) and (lat.min_ns, lat.max_ns) == (exact[0], exact[-1])


def test_latency_from_the_summary_equals_the_frame_paths_on_a_synthetic_record():
    lats = list(np.random.default_rng(5).integers(200_000, 40_000_000, 997))
    rec = make_record({"a": 700, "b": 600, "c": 500}, latency_ns=lats, duplicate=[("a", "b:ticker:2")])
    f, s = analyse(rec), Summary.from_record(rec)
    x = s.latency_ms()
    assert x["count"] == f.latency["count"] and x["negative"] == f.latency["negative"]
    assert x["avg_ms"] == pytest.approx(f.latency["avg_ms"], rel=1e-12)
    assert (x["min_ms"], x["max_ms"]) == (f.latency["min_ms"], f.latency["max_ms"])
    samples = np.sort(np.asarray([v for v in rec.deliveries.merge(rec.publications[["id", "t_intended"]], on="id")
                                  .eval("t_received - t_intended")]))
    for q, v in x["percentiles"].items():
        want = samples[max(1, int(q / 100 * samples.size + 0.5)) - 1] / 1e6
        assert abs(v - want) <= want * 1e-3 + 1e-3, (q, v, want)


# ---------------------------------------------------------------- real runs


def test_a_run_in_parts_is_read_back_whole_and_its_summary_equals_the_frames(tmp_path):
    sc = Scenario(name="parts", instances=4, duration_s=2.5, rate_per_s=400, warmup_s=0.3,
                  event_types=("ticker", "trade", "orderbook"))
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path), options=SMALL_CHUNKS)
    parts = sorted(p.name for p in (rec.path / "parts").glob("*.parquet"))
    assert sum(p.startswith("deliveries-main-") for p in parts) >= 3, parts
    assert not (rec.path / "deliveries.parquet").exists() and (rec.path / "summary.bin").exists()
    assert rec.environment["recorder"]["parts"] >= 3
    back = load_run(rec.path)
    for name, key in (("publications", ["id"]), ("deliveries", ["receiver", "id"])):
        a = getattr(rec, name).sort_values(key, kind="stable").reset_index(drop=True)
        b = getattr(back, name).sort_values(key, kind="stable").reset_index(drop=True)
        assert a.equals(b), name
        assert dict(b.dtypes.astype(str)) == dict(a.dtypes.astype(str))
    assert len(back.publications) == 1_000 and (back.publications["t_intended"] >= back.t0).all()  # warmup left out
    assert list(back.publications["t_intended"]) == sorted(back.publications["t_intended"])
    assert_same_accounting(back, back.summary)
    same_summary(back.summary, rec.summary)
    # the latency kept online (from the envelope's due time) is the frame path's, within the histogram
    f, x = analyse(back), back.summary.latency_ms()
    assert x["count"] == f.latency["count"] and x["avg_ms"] == pytest.approx(f.latency["avg_ms"], rel=1e-9)
    assert x["max_ms"] == f.latency["max_ms"]
    # and an old-style run folder (whole files, no summary) still reads
    old = back.save(tmp_path / "copy")
    (old / "summary.bin").unlink()
    again = load_run(old)
    assert again.summary is None and again.deliveries.sort_values(["receiver", "id"]).reset_index(drop=True).equals(
        back.deliveries.sort_values(["receiver", "id"]).reset_index(drop=True))


@pytest.mark.parametrize("name", ["instance-crash-streams", "redis-restart-pubsub"])
def test_a_fault_runs_summary_gives_the_frame_paths_counts_and_missing_events(name, tmp_path):
    """A crash (a new epoch, a receiver handed a batch again, publishes not sent) and a Redis
    restart (publishes failed, events lost in flight): the same counts and missing ids."""
    rec = run_scenario(load_scenario(f"faults/{name}"), progress=False, save_to=str(tmp_path), options=SMALL_CHUNKS)
    f = analyse(rec)
    assert f.overall["publish_failed"] > 0
    # online latency also counts an event whose publish was reported failed and still arrived
    assert_same_accounting(rec, rec.summary, latency=f.overall["failed_delivered"] == 0)
    assert_same_accounting(rec, Summary.from_record(rec))
    assert_same_accounting(load_run(rec.path), load_run(rec.path).summary, latency=f.overall["failed_delivered"] == 0)
    if name == "instance-crash-streams":
        epochs = {k[2] for k in rec.summary.published if k[0] == "test-instance-1"}
        assert len(epochs) == 2  # the crashed instance came back as a new epoch


def test_worker_processes_summaries_merge_into_the_one_process_summary(tmp_path):
    sc = Scenario(name="procs", instances=3, duration_s=2, rate_per_s=300, process_mode="processes",
                  event_types=("ticker", "trade"))
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path), options=SMALL_CHUNKS)
    assert rec.environment["process_mode"] == "processes" and len(rec.environment["recorder"]) == 3
    assert len({p.name.split("-")[1] for p in (rec.path / "parts").glob("deliveries-*.parquet")}) == 3
    whole = Summary.from_record(rec)  # one summary of the same deliveries
    merged = rec.summary
    assert merged.received == whole.received and merged.duplicates == whole.duplicates
    assert merged.published == whole.published and merged.failed == whole.failed
    assert {k: v.count for k, v in merged.latency.items()} == {k: v.count for k, v in whole.latency.items()}
    for k, v in merged.latency.items():
        assert v.sum_ns == whole.latency[k].sum_ns and v.max_ns == whole.latency[k].max_ns
    assert_same_accounting(rec, merged)
    same_summary(load_run(rec.path).summary, merged)


def test_agents_ship_summaries_that_merge_into_the_run_summary(redis_url):
    from test_agents import SMALL, finish, start_agent

    agents = [start_agent(redis_url, "sum-a"), start_agent(redis_url, "sum-b", "--clock-skew-ms", "120")]
    rec = run_scenario(Scenario(**SMALL, agents=2, redis_url=redis_url), progress=False, save_to=None)
    finish(agents)
    assert rec.summary is not None and rec.parts is None
    assert_same_accounting(rec, rec.summary)
    whole = Summary.from_record(rec)
    # latency on one clock: the skewed agent's times corrected with every instance's offset
    for k, v in rec.summary.latency.items():
        w = whole.latency[k]
        assert v.count == w.count and abs(v.sum_ns - w.sum_ns) <= v.count * 1_000, k  # to the µs of TIME


def test_a_killed_runs_parts_are_read(tmp_path):
    """kill -9 in the middle: no run.json, but the parts written so far read back as a record
    marked interrupted, and analyse() works on it."""
    script = textwrap.dedent(f"""
        from fanout.lab.options import RunOptions
        from fanout.lab.run import run_scenario
        from fanout.lab.scenario import Scenario
        if __name__ == "__main__":
            run_scenario(Scenario(name="killed", instances=3, duration_s=30, rate_per_s=200), progress=False,
                         save_to={str(tmp_path)!r}, options=RunOptions(chunk_rows=100_000, chunk_s=0.3))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(tmp_path.glob("*/parts/deliveries-*.parquet"))) < 3:
            assert p.poll() is None, "the run ended before it was killed"
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    (folder,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert not (folder / "run.json").exists()
    rec = load_run(folder)
    assert rec.environment["interrupted"]["of_s"] == 30 and rec.summary is None
    parts = sorted((folder / "parts").glob("deliveries-*.parquet"))
    import pandas as pd

    rows = sum(len(pd.read_parquet(f)) for f in parts)
    assert len(rec.deliveries) == rows > 0 and len(rec.publications) > 0
    assert set(rec.deliveries["id"]) <= set(rec.publications["id"]) | set(rec.deliveries["id"])
    assert list(rec.instances["instance"]) == ["test-instance-0", "test-instance-1", "test-instance-2"]
    f = analyse(rec)
    assert not f.passed and f.verdict[0].name == "Run completed"
    assert Summary.from_record(rec).instances(list(rec.instances["instance"])) == \
        [{k: r[k] for k in COUNTS} for r in f.per_instance.to_dict("records")]


def test_publication_rows_written_as_the_run_goes_live_in_a_ring_that_wraps_many_times(tmp_path, monkeypatch):
    """Written as parts, the publication rows are a ring (memory holds a ring, never the run):
    with a 64-slot ring and 1,200 events, every slot is reused many times and the record read
    back is still every event once, in schedule order, with its own time and outcome."""
    from fanout.lab import recorder as recorder_mod
    from fanout.lab.schedule import schedule

    monkeypatch.setattr(recorder_mod, "RING_ROWS", 64)
    sc = Scenario(name="ring", instances=3, duration_s=2.0, rate_per_s=600, event_types=("ticker", "trade"))
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path), options=RunOptions(chunk_rows=200, chunk_s=0.1))
    back = load_run(rec.path)
    plan = schedule(sc)
    p = back.publications
    assert len(p) == len(plan) == 1_200 and p["ok"].all()
    assert p["id"].is_unique and (p["seq"] > 0).all()
    assert list(p["source"]) == [rec.instances["instance"][e.publisher] for e in plan]
    assert list(p["type"]) == [e.type for e in plan]
    assert (p["t_sent"] >= p["t_intended"]).all() and (p["t_acked"] >= p["t_sent"]).all()
    f = analyse(back)
    assert f.overall["missing"] == 0 and f.overall["expected"] == 2 * 1_200
    assert_same_accounting(back, back.summary)


def test_the_time_series_counts_every_delivery_in_its_interval_and_merges_exactly():
    """Per 10 s interval of t_received: every delivery row and the latency of first deliveries;
    split over two parts and merged, the same as in one; through bytes, the same again."""
    from fanout.lab.summary import SERIES_NS

    t0 = 1_700_000_000 * 10**9
    n = 3_000
    rng = np.random.default_rng(7)
    t_rx = t0 + np.sort(rng.integers(0, 35 * 10**9, n))
    lat = rng.integers(100_000, 5_000_000, n)
    seq = np.arange(1, n + 1)
    seq[10] = seq[9]                      # one duplicate: a row, not a latency sample
    whole, a, b = Summary(), Summary(), Summary()
    args = lambda sl: ("r", ["p"] * len(seq[sl]), ["e"] * len(seq[sl]), ["ticker"] * len(seq[sl]),
                       ["ticker"] * len(seq[sl]), seq[sl], t_rx[sl], t_rx[sl] - lat[sl])
    whole.add_deliveries(*args(slice(None)))
    a.add_deliveries(*args(slice(0, 1_700)))
    b.add_deliveries(*args(slice(1_700, None)))
    merged = Summary().merge(a).merge(b)
    for s in (whole, merged, Summary.from_bytes(whole.to_bytes())):
        ts = s.series_frame(t0)
        buckets = (t_rx // SERIES_NS - t0 // SERIES_NS)
        assert list(ts["deliveries"]) == np.bincount(buckets).tolist()
        assert int(ts["lat_count"].sum()) == n - 1
        first = np.ones(n, dtype=bool)
        first[10] = False
        for k, row in ts.iterrows():
            ns = lat[first & (buckets == k)]
            assert row["max_ms"] == ns.max() / 1e6
            exact = np.sort(ns)[int(np.ceil(0.99 * ns.size)) - 1] / 1e6
            assert row["p99_ms"] == pytest.approx(exact, rel=0.01)   # 2 significant digits


def test_the_publication_ring_gives_back_every_row_it_held_whatever_the_steps(monkeypatch):
    """Rows planned, settled, cut and freed in uneven steps (wrapping the ring at every
    offset, growing it on the way) come out exactly as they went in."""
    from fanout.lab import recorder as recorder_mod

    monkeypatch.setattr(recorder_mod, "RING_ROWS", 32)
    rng = np.random.default_rng(3)
    p = recorder_mod.Publications(0, lambda: 5, ring=True)
    src = p.code(p.sources, "a")
    typ, sym = p.code(p.types, "ticker"), p.code(p.symbols, "X")
    out, k, written = [], 0, 0
    while k < 1_000:
        for _ in range(int(rng.integers(1, 30))):
            if not p.room(k):
                break
            j = p.plan(k, src, typ, sym, 1_000 + k)
            p.ids[j] = f"e:ticker:{k + 1}"
            p.t_sent[j] = 2_000 + k
            p.ack(k, None if k % 7 else "boom")
            k += 1
        upto = p.settled_upto(written)
        assert upto == k
        cut = int(rng.integers(written, upto + 1))
        cols = p.cut(written, cut)()
        p.free(written, cut)
        out.extend(zip(cols["id"], cols["t_intended"], cols["t_sent"], cols["ok"], cols["error"]))
        written = cut
    cols = p.cut(written, k)()
    out.extend(zip(cols["id"], cols["t_intended"], cols["t_sent"], cols["ok"], cols["error"]))
    assert p.cap == 32
    assert out == [(f"e:ticker:{i + 1}", 1_000 + i, 2_000 + i, bool(i % 7), "" if i % 7 else "boom")
                   for i in range(k)]


COUNT_FIELDS = ("published", "publish_failed", "expected", "received", "delivered_rows", "foreign", "foreign_sources",
                "missing", "duplicates", "self_received", "unknown", "from_dead_agents", "unexpected",
                "failed_delivered", "failed_delivered_events", "errors", "gaps", "reconnects", "schedule_lag_samples",
                "unexplained", "lost_by_kind", "lost_untouched")


@pytest.mark.parametrize("variant", ["pubsub-warmup", "streams", "processes"])
def test_a_run_analysed_from_its_summary_says_what_its_rows_say(variant, tmp_path):
    """The summary path (no row read) gives the rows path's counts exactly, per instance and
    overall, and its latency within the histogram's precision."""
    sc = Scenario(name=f"same-{variant}", instances=4, duration_s=2.0, rate_per_s=400,
                  warmup_s=0.3 if variant == "pubsub-warmup" else 0.0,
                  transport="streams" if variant == "streams" else "pubsub",
                  process_mode="processes" if variant == "processes" else "single",
                  event_types=("ticker", "trade"))
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path), options=SMALL_CHUNKS)
    fast = analyse(load_run(rec.path))
    whole = load_run(rec.path)
    whole.deliveries  # noqa: B018 - every row read: the frame path
    slow = analyse(whole)
    assert (fast.overall["analysed_from"], slow.overall["analysed_from"]) == ("summary", "rows")
    assert {k: fast.overall[k] for k in COUNT_FIELDS} == {k: slow.overall[k] for k in COUNT_FIELDS}
    exact = [c for c in slow.per_instance.columns if not c.startswith("lat_") or c == "lat_count"]
    assert fast.per_instance[exact].equals(slow.per_instance[exact])
    assert [c.passed for c in fast.verdict] == [c.passed for c in slow.verdict]
    assert fast.latency["count"] == slow.latency["count"] > 0
    assert fast.latency["max_ms"] == slow.latency["max_ms"]
    assert fast.latency["avg_ms"] == pytest.approx(slow.latency["avg_ms"], rel=1e-9)
    for key in ("p50_ms", "p95_ms", "p99_ms"):   # nearest rank within 3 significant digits vs linear
        if slow.latency[key] is not None:
            assert fast.latency[key] == pytest.approx(slow.latency[key], rel=0.02, abs=0.005), key


def test_a_run_archived_with_its_summary_alone_is_analysed_and_says_what_it_cannot_give(tmp_path):
    """An archive may keep a long run's summary and not its rows (a soak's parts are large): the
    analysis is the same from the summary; whatever needs a row says so in one line, never
    works on an empty frame."""
    import shutil

    from fanout.errors import ConfigError

    sc = Scenario(name="summary-only", instances=3, duration_s=1.5, rate_per_s=300)
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path), options=SMALL_CHUNKS)
    before = analyse(load_run(rec.path))
    shutil.rmtree(rec.path / "parts")
    only = load_run(rec.path)
    after = analyse(only)
    assert after.overall["analysed_from"] == "summary" and after.passed
    assert {k: after.overall[k] for k in COUNT_FIELDS} == {k: before.overall[k] for k in COUNT_FIELDS}
    assert after.per_instance.equals(before.per_instance)
    with pytest.raises(ConfigError, match="keeps only its summary: its rows .* were not archived"):
        only.deliveries  # noqa: B018
