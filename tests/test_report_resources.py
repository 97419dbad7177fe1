"""fanout.lab.resources: the sampler reads a real server's INFO and this process, the record keeps
the samples (resources.parquet), and summarise turns them into rates over the run."""
from __future__ import annotations

import os

from fanout.lab.record import load_run
from fanout.lab.resources import ResourceSampler, summarise
from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario


def test_a_run_samples_redis_and_this_process_and_keeps_it_in_its_record(tmp_path):
    rec = run_scenario(Scenario(name="res", instances=3, duration_s=1.0, rate_per_s=200), progress=False,
                       save_to=str(tmp_path))
    assert (rec.path / "resources.parquet").is_file()
    back = load_run(rec.path)
    assert back.resources.equals(rec.resources)
    s = summarise(back.resources, back.t0, back.t_end).set_index("kind")
    assert s.loc["redis", "cpu_pct"] > 0 and s.loc["redis", "memory_bytes"] > 0
    assert s.loc["redis", "net_out_per_s"] > s.loc["redis", "net_in_per_s"] > 0  # fan-out: more out than in
    assert s.loc["redis", "clients_max"] >= 6  # a publisher and a subscriber connection per instance
    assert s.loc["process", "memory_bytes"] > 0
    conf = back.environment["redis_config"]["redis"]
    assert "pubsub" in conf["client-output-buffer-limit"] and conf["maxclients"].isdigit()
    assert back.environment["redis_info"]["redis"]["redis_version"] == back.environment["server"]["redis_version"]


def test_the_sampler_stops_within_its_bound_and_counts_an_unreachable_server(redis_server):
    sampler = ResourceSampler({"redis": redis_server.url, "gone": "redis://127.0.0.1:1/0"},
                              {"me": os.getpid()}, interval_s=0.05).start()
    import time

    deadline = time.monotonic() + 10  # until it has sampled both targets and failed on the gone one, bounded
    while not ({r["target"] for r in list(sampler.rows)} >= {"redis", "me"} and sampler.errors > 0):
        assert time.monotonic() < deadline, f"no samples of both targets within 10 s: {sampler.rows}"
        time.sleep(0.01)
    sampler.stop()  # bounded by its own join timeout: checked by the thread being gone
    assert not sampler._thread.is_alive()
    kinds = set(sampler.frame()["target"])
    assert kinds == {"redis", "me"} and sampler.errors > 0
    assert sampler.config["gone"]["maxclients"].startswith("not readable")


def test_summarise_counts_a_counter_reset_as_zero_not_negative():
    import pandas as pd

    from fanout.lab.record import RESOURCE_COLUMNS, frame

    rows = [{"t": int(i * 1e9), "target": "redis", "kind": "redis", "pid": 1, "cpu_s": c, "memory_bytes": 10,
             "memory_peak_bytes": 10, "net_in_bytes": 0, "net_out_bytes": 0, "clients": 1}
            for i, c in enumerate([1.0, 1.5, 0.1, 0.6])]  # the server restarted between 1 s and 2 s
    s = summarise(frame(rows, RESOURCE_COLUMNS))
    assert isinstance(s, pd.DataFrame) and round(float(s["cpu_pct"].iloc[0]), 3) == round(100 * 1.0 / 3, 3)


def test_processes_mode_samples_each_worker_process(tmp_path):
    rec = run_scenario(Scenario(name="proc", instances=2, duration_s=1.0, rate_per_s=50, process_mode="processes"),
                       progress=False, save_to=None)
    s = summarise(rec.resources, rec.t0, rec.t_end).set_index("target")
    pids = rec.environment["worker_pids"]
    assert {"coordinator", "worker test-instance-0", "worker test-instance-1", "redis"} <= set(s.index)
    sampled = set(rec.resources.loc[rec.resources["target"].str.startswith("worker"), "pid"])
    assert sampled == set(pids)  # per instance, by its pid
    assert (s.loc[["worker test-instance-0", "worker test-instance-1"], "memory_bytes"] > 0).all()
