"""A soak: the resource sampler's output buffers and long-run interval (fanout.lab.resources), the
series and the drift rule (fanout.analysis.soak), and the report's Soak section, read from facts.

Real throwaway servers (conftest) where a server is read; synthetic series where the rule is the
subject (a slope planted, a flat noisy line)."""
from __future__ import annotations

import math
import os
import socket
import time

import numpy as np
import pandas as pd
import pytest
import redis
from _records import T0, make_record

from fanout.analysis.soak import (
    DRIFT_MIB,
    MIN_INTERVALS,
    RSS_PREFIX,
    linear_fit,
    process_targets,
    reconnect_rows,
    soak_drift,
    soak_series,
)
from fanout.lab.record import OUTAGE_COLUMNS, RESOURCE_COLUMNS, frame
from fanout.lab.resources import COARSE_AFTER_S, COARSE_INTERVAL_S, SAMPLE_INTERVAL_S, ResourceSampler, summarise
from fanout.lab.summary import Summary

S = 1_000_000_000


# ---------------------------------------------------------------- the sampler: output buffers, long runs


def _slow_subscriber(url: str) -> socket.socket:
    """A subscriber that never reads, with a tiny receive buffer: Redis keeps what it cannot send."""
    c = redis.Redis.from_url(url).connection_pool.connection_kwargs
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((c["host"], c["port"]))
    s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nslow\r\n")
    return s


def test_the_largest_output_buffer_is_read_from_a_subscriber_with_a_backlog(redis_server):
    r = redis.Redis.from_url(redis_server.url)
    sub = _slow_subscriber(redis_server.url)
    try:
        deadline = time.monotonic() + 10
        while r.pubsub_numsub("slow")[0][1] < 1:
            assert time.monotonic() < deadline, "the slow subscriber never subscribed"
            time.sleep(0.01)
        for _ in range(60):  # 6 MB: more than the kernel's socket buffers hold, under the 8 MB soft limit
            r.publish("slow", b"x" * 100_000)
        sampler = ResourceSampler({"redis": redis_server.url}, {"me": os.getpid()})
        sampler.sample()
        row = next(x for x in sampler.rows if x["kind"] == "redis")
        slow = max(int(c["omem"]) for c in r.client_list() if c.get("sub") == "1")
        assert row["omem_max_bytes"] > 0 and abs(row["omem_max_bytes"] - slow) <= 200_000, (row, slow)
        if "valkey_version" not in r.info("server"):  # Redis holds the backlog itself in the client's buffer;
            assert row["omem_max_bytes"] >= 1024 * 1024, row  # Valkey 9 references the payloads (used_memory)
        assert next(x for x in sampler.rows if x["kind"] == "process")["omem_max_bytes"] == 0
        assert sampler.client_list == {"redis": "ok"} and sampler.errors == 0
    finally:
        sub.close()


def test_a_server_that_refuses_client_list_gives_minus_one_counted_once_never_raised(redis_server):
    r = redis.Redis.from_url(redis_server.url)
    r.execute_command("ACL", "SETUSER", "nolist", "on", ">pw", "~*", "&*", "+@all", "-client")
    url = redis_server.url.replace("redis://", "redis://nolist:pw@", 1)
    sampler = ResourceSampler({"redis": url}, {})
    for _ in range(4):
        sampler.sample()
    assert [x["omem_max_bytes"] for x in sampler.rows] == [-1] * 4
    assert all(x["memory_bytes"] > 0 for x in sampler.rows)  # INFO is still read
    assert sampler.errors == 1  # the refusal, once: CLIENT LIST is not asked again
    assert sampler.client_list["redis"].startswith("not readable") and "client" in sampler.client_list["redis"]
    s = summarise(sampler.frame())
    assert int(s.loc[s["kind"] == "redis", "omem_max_bytes"].iloc[0]) == -1


def test_long_runs_sample_coarser_after_the_first_minute_and_old_records_get_the_new_column():
    sampler = ResourceSampler({}, {})
    assert sampler.interval_at(0) == sampler.interval_at(COARSE_AFTER_S - 0.1) == SAMPLE_INTERVAL_S
    assert sampler.interval_at(COARSE_AFTER_S) == sampler.interval_at(3600) == COARSE_INTERVAL_S
    assert ResourceSampler({}, {}, interval_s=2.0).interval_at(3600) == 2.0  # never closer than asked
    old = [{"t": 1, "target": "redis", "kind": "redis", "pid": 1, "cpu_s": 0.0, "memory_bytes": 1,
            "memory_peak_bytes": 1, "net_in_bytes": 0, "net_out_bytes": 0, "clients": 1}]  # before omem existed
    df = frame(old, RESOURCE_COLUMNS)
    assert list(df.columns) == list(RESOURCE_COLUMNS) and df["omem_max_bytes"].tolist() == [0]


# ---------------------------------------------------------------- the series


def test_the_series_of_a_real_run_adds_up_to_its_records(tmp_path):
    from fanout.lab.run import run_scenario
    from fanout.lab.scenario import Scenario

    rec = run_scenario(Scenario(name="soak-small", instances=3, duration_s=21.0, rate_per_s=40, process_mode="single"),
                       progress=False, save_to=str(tmp_path))
    assert rec.summary is not None
    s = soak_series(rec)
    assert len(s) >= 3 and s.attrs["interval_s"] == 10
    # every delivery row in exactly one interval: per interval, and in all
    assert int(s["deliveries"].sum()) == len(rec.deliveries)
    step = 10 * S
    by_k = rec.deliveries["t_received"].floordiv(step).value_counts()
    starts = (s["t_s"] * 1e9 + rec.t0).round().astype("int64") // step
    assert [int(by_k.get(k, 0)) for k in starts] == s["deliveries"].tolist()
    # the summary kept online and one made from the frames give the same series
    rec.summary, online = None, rec.summary
    again = soak_series(rec)
    pd.testing.assert_frame_equal(again[["t_s", "deliveries", "lat_count", "p50_ms"]],
                                  s[["t_s", "deliveries", "lat_count", "p50_ms"]])
    rec.summary = online
    frame10 = online.series_frame(rec.t0).set_index("t_s")
    got = s.set_index("t_s").loc[frame10.index]
    assert got["deliveries"].tolist() == frame10["deliveries"].tolist()
    assert got["max_ms"].tolist() == pytest.approx(frame10["max_ms"].tolist())
    # a wider interval merges them exactly
    wide = soak_series(rec, interval_s=20)
    assert int(wide["deliveries"].sum()) == len(rec.deliveries) and len(wide) < len(s)
    with pytest.raises(ValueError, match="multiple"):
        soak_series(rec, interval_s=15)
    # resources: Redis and this process sampled in every interval of the window
    inside = s[s["span_s"] >= 10]
    assert (inside["redis_mib"] > 0).all() and (inside["clients"] >= 6).all()
    assert (inside["omem_max_bytes"] >= 0).all()
    assert process_targets(s) == ["instrument"]
    assert (inside[f"{RSS_PREFIX}instrument"] > 0).all() and (inside["cpu_pct/instrument"] >= 0).all()
    assert int(s["reconnects"].sum()) == len(rec.outages) == 0
    # p99 is withheld where the interval's samples do not carry it (400 per interval < 1,000)
    assert s["p99_ms"].isna().all() and (s.loc[s["lat_count"] >= 20, "p50_ms"] > 0).all()


def test_reconnects_fall_in_the_interval_their_outage_began():
    rec = make_record({"a": 300, "b": 300})
    rec.outages = frame([{"instance": "a", "t_down": T0 + 12 * S, "t_up": T0 + 13 * S, "reason": "connection reset"},
                         {"instance": "b", "t_down": T0 + 15 * S, "t_up": 0, "reason": "server closed"},
                         {"instance": "b", "t_down": T0 + 41 * S, "t_up": T0 + 42 * S, "reason": "timeout"}],
                        OUTAGE_COLUMNS)
    s = soak_series(rec)
    assert s.set_index("t_s")["reconnects"].to_dict() == {0.0: 0, 10.0: 2, 20.0: 0, 30.0: 0, 40.0: 1, 50.0: 0}
    rows = reconnect_rows(rec)
    assert rows["instance"].tolist() == ["a", "b", "b"] and rows["t_down_s"].tolist() == [12.0, 15.0, 41.0]
    assert math.isnan(rows["t_up_s"].iloc[1]) and rows["why"].iloc[0] == "connection reset"


def test_resources_per_interval_are_cpu_deltas_over_sampled_time_and_the_largest_memory():
    rec = make_record({"a": 200, "b": 200})
    rows = []
    for i in range(41):  # one sample a second for 40 s
        t = T0 + i * S
        rows.append({"t": t, "target": "redis", "kind": "redis", "pid": 1, "cpu_s": 0.1 * i,
                     "memory_bytes": (2 + i) * 1024 * 1024, "memory_peak_bytes": 0, "net_in_bytes": 0,
                     "net_out_bytes": 0, "clients": 5, "omem_max_bytes": -1 if i < 20 else 1000 * i})
        rows.append({"t": t, "target": "worker w", "kind": "process", "pid": 2, "cpu_s": 0.5 * i,
                     "memory_bytes": 100 * 1024 * 1024, "memory_peak_bytes": 0, "net_in_bytes": 0,
                     "net_out_bytes": 0, "clients": 0, "omem_max_bytes": 0})
    rows[2 * 35]["cpu_s"] = 0.05  # Redis restarted at 35 s: its CPU counter starts again (counts as zero, not < 0)
    for r in rows[2 * 36::2]:
        r["cpu_s"] = 0.05 + 0.1 * (r["t"] - T0 - 35 * S) / S
    rec.resources = frame(rows, RESOURCE_COLUMNS)
    s = soak_series(rec).set_index("t_s")
    assert s.loc[10.0, "redis_cpu_pct"] == pytest.approx(10.0)
    assert s.loc[10.0, "cpu_pct/worker w"] == pytest.approx(50.0)
    assert s.loc[30.0, "redis_cpu_pct"] == pytest.approx(9.0)  # 9 of its 10 one-second deltas, the reset's zero
    assert s.loc[10.0, "redis_mib"] == 21 and s.loc[10.0, "rss_mib/worker w"] == 100
    assert s.loc[10.0, "omem_max_bytes"] == -1 and s.loc[20.0, "omem_max_bytes"] == 29_000  # -1: not readable


# ---------------------------------------------------------------- the drift rule


def _series(n: int, *, rss_per_h: float = 0.0, redis_per_h: float = 0.0, p99_per_h: float = 0.0,
            noise: float = 0.5, seed: int = 1) -> pd.DataFrame:
    """``n`` whole 10 s intervals: one worker's RSS around 100 MiB, Redis around 20 MiB, p99 around
    5 ms, each with a planted slope (per hour) and Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * 10.0
    h = (t + 5) / 3600
    return pd.DataFrame({"t_s": t, "span_s": 10.0,
                         f"{RSS_PREFIX}worker w": 100 + rss_per_h * h + rng.normal(0, noise, n),
                         "redis_mib": 20 + redis_per_h * h + rng.normal(0, noise, n),
                         "p99_ms": 5 + p99_per_h * h + rng.normal(0, noise / 10, n)})


def test_a_planted_memory_slope_is_found_within_its_interval_and_called_drift():
    d = soak_drift(_series(360, rss_per_h=40.0))  # an hour, +40 MiB/h planted in the worker's RSS
    rss = next(x for x in d.slopes if x["metric"] == f"{RSS_PREFIX}worker w")
    assert rss["lo_per_h"] < 40.0 < rss["hi_per_h"] and rss["lo_per_h"] > 0
    assert rss["reading"] == "drift" and rss["material"] and rss["change"] > DRIFT_MIB
    assert rss["sentence"].startswith("Drift: RSS of worker w grew +")
    assert f"{rss['slope_per_h']:.1f}" in rss["sentence"]
    flat = [x for x in d.slopes if x["metric"] != rss["metric"]]
    assert all(x["reading"] in ("no drift", "not material") for x in flat), flat  # the flat ones are not drift
    assert d.drifting == [rss] and d.drift == [x["sentence"] for x in d.slopes]


def test_a_flat_noisy_series_says_no_drift_within_its_interval():
    d = soak_drift(_series(180, noise=2.0, seed=7))
    assert not d.drifting
    for x in d.slopes:
        assert x["reading"] == "no drift" and x["lo_per_h"] < 0 < x["hi_per_h"], x
        assert x["sentence"].startswith("No drift measured in ") and "within ±" in x["sentence"]
        assert f"{x['within_per_h']:.2f}".rstrip("0")[:3] in x["sentence"]


def test_a_real_but_small_slope_is_not_material():
    d = soak_drift(_series(360, redis_per_h=0.5, noise=0.01))  # +0.5 MiB in an hour: under every threshold
    redis_ = next(x for x in d.slopes if x["metric"] == "redis_mib")
    assert redis_["lo_per_h"] > 0 and not redis_["material"] and redis_["reading"] == "not material"
    assert redis_["sentence"].startswith("No material drift in Redis used_memory")


def test_fewer_than_three_intervals_give_no_slope_and_say_so():
    d = soak_drift(_series(MIN_INTERVALS - 1, rss_per_h=1000.0))
    assert all(x["slope_per_h"] is None and x["reading"] == "too few intervals" for x in d.slopes)
    assert all("fewer than 3: no slope measured" in s for s in d.drift)
    partial = _series(5, rss_per_h=1000.0).assign(span_s=[4.0, 10.0, 10.0, 10.0, 3.0])  # 3 whole intervals
    assert next(x for x in soak_drift(partial).slopes if x["metric"] == "redis_mib")["n"] == 3


def test_the_fit_is_least_squares_with_the_textbook_t_interval():
    rng = np.random.default_rng(3)
    x = np.linspace(0, 1, 50)
    y = 3 + 2 * x + rng.normal(0, 0.1, 50)
    fit = linear_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert fit["slope"] == pytest.approx(slope) and fit["intercept"] == pytest.approx(intercept)
    resid = y - (intercept + slope * x)
    se = math.sqrt((resid ** 2).sum() / 48 / ((x - x.mean()) ** 2).sum())
    assert fit["t"] == pytest.approx(2.0106, abs=1e-4)            # t(0.975, 48) from the tables
    assert fit["lo"] == pytest.approx(slope - 2.0106 * se, rel=1e-4)
    assert linear_fit([1, 2], [1, 2]) is None and linear_fit([1, 1, 1], [1, 2, 3]) is None


def test_a_summary_made_from_frames_is_used_when_the_record_has_none():
    rec = make_record({"a": 150, "b": 150})
    assert rec.summary is None
    s = soak_series(rec)
    assert s["deliveries"].tolist() == Summary.from_record(rec).series_frame(rec.t0)["deliveries"].tolist()


# ---------------------------------------------------------------- the report: run role, lengths, section from facts


def test_the_soak_is_its_own_role_sixty_seconds_quick_and_its_files_length_at_least_half_an_hour_full(tmp_path):
    from fanout.cli.report import QUICK_LENGTHS
    from fanout.lab.processes import choose_mode
    from fanout.lab.scenario import load_scenario
    from fanout.report.runs import FULL_SOAK_MIN_S, SOAK_QUICK_S, _role_of, plan_scenarios, report_scenario

    sc = load_scenario("soak")
    assert (sc.topology, sc.instances, sc.rate_per_s, sc.duration_s, sc.transport) == ("host-bots", 11, 5000, 3600,
                                                                                       "pubsub")
    if (os.cpu_count() or 1) > 1:  # 50,000 deliveries/s: the bots spread over worker processes
        assert choose_mode(sc)[0] == "processes"
    [(quick, role, _, changes)] = plan_scenarios(["soak"], quick=True)
    assert role == "soak" and quick.duration_s == SOAK_QUICK_S == 60 and changes["duration_s"] == (3600, 60)
    [(full, role, _, _)] = plan_scenarios(["soak"], quick=False)
    assert role == "soak" and full.duration_s == 3600
    [(scaled, _, _, _)] = plan_scenarios(["soak"], quick=False, duration_scale=0.01)
    assert scaled.duration_s == 36
    short = tmp_path / "soak.yaml"
    short.write_text("name: soak\ninstances: 3\nduration_s: 600\n")
    assert report_scenario(str(short), quick=False, full_min_s=FULL_SOAK_MIN_S)[0].duration_s == 1800
    assert [r for _, r, _, _ in plan_scenarios(["standard", "soak@streams"], quick=True)] == ["scenario", "soak"]
    assert _role_of(make_record({"a": 1, "b": 1}, scenario_overrides={"name": "soak-streams"})) == "soak"
    assert f"the soak {SOAK_QUICK_S:g} s" in QUICK_LENGTHS  # fanout report --help says what quick mode runs


def soak_run(*, rss_step_mib: float = 3.0, name: str = "soak"):
    """A synthetic soak: a host publishing 10 events/s for 60 s to two bots, sampled every second:
    one worker whose RSS grows ``rss_step_mib`` each 10 s, a flat Redis, one lost subscription."""
    from test_report_facts import run_of

    rec = make_record({"websocket-host": 600, "bot-1": 0, "bot-2": 0},
                      scenario_overrides={"name": name, "topology": "host-bots", "publishers": ["websocket-host"],
                                          "receivers": ["bot-1", "bot-2"], "duration_s": 60})
    rows = []
    for i in range(61):
        t = T0 + i * S
        rows.append({"t": t, "target": "redis", "kind": "redis", "pid": 1, "cpu_s": 0.02 * i,
                     "memory_bytes": 20 * 1024 * 1024 + (i % 3) * 1000, "memory_peak_bytes": 0, "net_in_bytes": 0,
                     "net_out_bytes": 0, "clients": 6, "omem_max_bytes": 2048 * (i % 4)})
        rows.append({"t": t, "target": "worker worker-0", "kind": "process", "pid": 2, "cpu_s": 0.3 * i,
                     "memory_bytes": int((100 + rss_step_mib * (i // 10)) * 1024 * 1024), "memory_peak_bytes": 0,
                     "net_in_bytes": 0, "net_out_bytes": 0, "clients": 0, "omem_max_bytes": 0})
    rec.resources = frame(rows, RESOURCE_COLUMNS)
    rec.outages = frame([{"instance": "bot-2", "t_down": T0 + 31 * S, "t_up": T0 + 32 * S,
                          "reason": "connection reset by peer"}], OUTAGE_COLUMNS)
    return run_of(rec, role="soak")


def test_the_soak_section_and_page_one_say_what_the_facts_hold_and_nothing_else():
    from test_report_facts import PAGE_EXEMPT, archive, missing_from, page_one_of, report, run_of

    from fanout.report import figures, sections

    rep = report(run_of(make_record({"a": 20, "b": 20, "c": 20}), name="standard"), soak_run())
    doc = archive(rep)
    [k] = doc["facts"]["soak"]["runs"]
    assert k["intervals"] == 6 and k["whole_intervals"] == 5 and k["reconnects_total"] == 1  # the last ends at t_end
    assert sum(r["deliveries"] for r in k["series"]) == len(rep.soaks[0].record.deliveries) == 1200
    rss = next(s for s in k["slopes"] if s["label"] == "RSS of worker worker-0")
    assert rss["reading"] == "drift" and rss["slope_per_h"] == pytest.approx(3.0 * 360)  # 3 MiB per 10 s
    assert k["drifting"] == ["RSS of worker worker-0"]
    text = sections.soak(rep)
    series = sections.soak_series(rep)  # the appendix: the series per interval, the series that did not drift
    for sentence in k["drift"]:  # every sentence of the rule is in the report, as report.json holds it
        assert f"- {sentence}" in (text if sentence.startswith("Drift") else series)
    assert "Drift: RSS of worker worker-0 grew +1,080 MiB/h" in text  # the planted slope, in words, in the section
    assert "No drift measured in Redis used_memory" in series or "No material drift in Redis used_memory" in series
    assert "| bot-2 " in text and "connection reset by peer" in text and "31.000" in text  # the reconnect, when
    assert "**Drifted**: RSS of worker worker-0" in text
    assert missing_from(text, doc, PAGE_EXEMPT) == []  # every number on the section is in report.json
    assert missing_from(series, doc, PAGE_EXEMPT) == []
    page = page_one_of(rep)
    assert "**Drift over the soak**: `soak` RSS of worker worker-0" in page and "no soak in this report" not in page
    assert missing_from(page, doc) == []
    [(fig, caption)] = figures.soak(rep)
    assert len(fig.axes) == 5 and caption.startswith("*Figure — the soak over time (`soak`")

    flat = report(soak_run(rss_step_mib=0.0))
    text = sections.soak(flat)
    assert "Nothing drifted" in text and "Drift:" not in text and "Drifted" not in text
    assert "**Drift over the soak**" not in page_one_of(flat)


def test_without_a_soak_the_section_is_one_line_and_page_one_says_no_soak():
    from test_report_facts import PAGE_EXEMPT, archive, missing_from, page_one_of, report, run_of

    from fanout.report import figures, sections

    rep = report(run_of(make_record({"a": 20, "b": 20}), name="standard"))
    text = sections.soak(rep)
    body = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("<a ", "## "))]
    assert len(body) == 1 and body[0].startswith("No soak in this report") and "**not measured**" in body[0]
    assert "60 s" in body[0] and "30 min" in body[0]
    assert missing_from(text, archive(rep), PAGE_EXEMPT) == []
    assert "**soak**" in page_one_of(rep) and "**Soak** — no soak in this report" in sections.recommendation(rep)
    assert figures.soak(rep) == []


def test_samples_after_the_run_window_do_not_count():
    """The coordinator builds the record after the drain: samples more than a second past t_end measure that."""
    rec = make_record({"a": 205, "b": 200})  # 405 events at 10/s: t_end just past 40 s
    assert T0 + 40 * S < rec.t_end < T0 + 41 * S
    rows = [{"t": T0 + int(x * S), "target": "coordinator", "kind": "process", "pid": 3, "cpu_s": 0.0,
             "memory_bytes": mib * 1024 * 1024, "memory_peak_bytes": 0, "net_in_bytes": 0, "net_out_bytes": 0,
             "clients": 0, "omem_max_bytes": 0} for x, mib in ((40.5, 150), (41.2, 160), (45.0, 1000))]
    rec.resources = frame(rows, RESOURCE_COLUMNS)
    s = soak_series(rec).set_index("t_s")
    assert s.loc[40.0, "rss_mib/coordinator"] == 160  # 45 s (building the record) is left out


def test_a_process_that_ended_is_not_sampled_as_zero_memory():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    import psutil

    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # ended, not yet reaped
        assert time.monotonic() < deadline, "the child never ended"
        time.sleep(0.01)
    sampler = ResourceSampler({}, {"gone": child.pid, "me": os.getpid()})
    sampler.sample()
    child.wait()
    assert [r["target"] for r in sampler.rows] == ["me"] and sampler.rows[0]["memory_bytes"] > 0
    rec = make_record({"a": 30, "b": 30})
    rec.resources = frame([{"t": T0 + S, "target": "w", "kind": "process", "pid": 1, "cpu_s": 1.0, "memory_bytes": 0,
                            "memory_peak_bytes": 0, "net_in_bytes": 0, "net_out_bytes": 0, "clients": 0}],
                          RESOURCE_COLUMNS)  # an older record's zombie sample
    assert process_targets(soak_series(rec)) == []
