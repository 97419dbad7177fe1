"""One run over several agent processes, coordinated through Redis: the same analysis as a
one-process run, clocks corrected, and an agent that dies is named and accounted for."""
from __future__ import annotations

import shutil
import signal
import subprocess
import threading

import pytest
import redis

from conftest import ROOT, fanout_cmd
from fanout.analysis import analyse, latency_samples
from fanout.report.text import render_text
from fanout.lab.scenario import Scenario
from fanout.lab.run import run_scenario

SMALL = dict(instances=3, duration_s=1.5, rate_per_s=30, event_types=("ticker", "trade"), seed=7)


def start_agent(url: str, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*fanout_cmd(), "agent", "--redis-url", url, "--name", name, "--wait", "60", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(p.communicate(timeout=30)[0])
        except subprocess.TimeoutExpired:
            p.kill()
            out.append(p.communicate()[0])
    return out


def test_two_agents_give_the_same_analysis_as_one_process(redis_url):
    agents = [start_agent(redis_url, "agent-a"), start_agent(redis_url, "agent-b")]
    rec = run_scenario(Scenario(**SMALL, agents=2, redis_url=redis_url), progress=False, save_to=None)
    logs = finish(agents)
    assert all(p.returncode == 0 for p in agents), logs
    one = run_scenario(Scenario(**SMALL), progress=False, save_to=None)
    cols = ["instance", "published", "expected", "expected_formula", "received", "missing", "duplicates",
            "self_received", "arithmetic_ok"]
    fa, fo = analyse(rec), analyse(one)
    assert fa.passed, render_text(fa)
    assert fa.per_instance[cols].equals(fo.per_instance[cols])
    key = ["source", "type", "seq", "symbol"]
    assert rec.publications[key].equals(one.publications[key])  # same publisher sequence
    workers = rec.environment["workers"]
    assert set(workers) == {"agent-a", "agent-b"}
    assert sorted(i for w in workers.values() for i in w["instances"]) == [f"test-instance-{i}" for i in range(3)]
    text = render_text(fa)
    assert "Agents (clock offset against Redis TIME" in text and "agent-a: test-instance-0" in text


def test_a_skewed_agent_clock_is_estimated_and_corrected(redis_url):
    skew_ms = 250.0
    agents = [start_agent(redis_url, "straight"), start_agent(redis_url, "skewed", "--clock-skew-ms", str(skew_ms))]
    rec = run_scenario(Scenario(**SMALL, agents=2, redis_url=redis_url), progress=False, save_to=None)
    finish(agents)
    w = rec.environment["workers"]["skewed"]
    straight = rec.environment["workers"]["straight"]
    # Redis ≈ local + offset, and the skewed agent's local clock runs 250 ms ahead
    relative = w["clock_offset_ns"] - straight["clock_offset_ns"]
    bound = w["clock_uncertainty_ns"] + straight["clock_uncertainty_ns"]
    assert abs(relative + skew_ms * 1e6) <= bound, (relative, bound)
    f = analyse(rec)
    assert f.passed and f.overall["negative_latencies"] == 0
    # corrected: what the skewed agent's instances received is not shifted by the skew against the others
    lat = latency_samples(rec)
    on_skewed = lat["receiver"].isin(w["instances"])
    shift_ms = abs(lat.loc[on_skewed, "lat_ms"].median() - lat.loc[~on_skewed, "lat_ms"].median())
    assert shift_ms < skew_ms / 2, shift_ms


def test_an_agent_killed_mid_run_is_named_and_its_losses_attributed(redis_url):
    agents = [start_agent(redis_url, "survivor"), start_agent(redis_url, "victim")]
    sc = Scenario(**{**SMALL, "duration_s": 6.0}, agents=2, redis_url=redis_url, key_prefix="ws:")

    def kill_victim():  # once the run is publishing: after the first event on a channel
        with redis.Redis.from_url(redis_url, socket_timeout=30) as r, r.pubsub() as ps:
            ps.subscribe("ws:ticker", "ws:trade")
            for msg in ps.listen():
                if msg["type"] == "message":
                    break
        agents[1].send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_victim, daemon=True)
    killer.start()
    rec = run_scenario(sc, progress=False, save_to=None)  # bounded: the dead agent's heartbeat expires
    killer.join(5)
    assert not killer.is_alive()
    finish(agents)
    assert rec.environment["workers"]["victim"]["status"] != "ok"
    dead = rec.environment["dead_instances"]
    assert set(dead.values()) == {"victim"}
    f = analyse(rec)
    assert not f.passed
    acc = f.losses
    assert acc.unexplained == 0 and acc.by_cause.get("agent victim died", 0) > 0
    assert "agent victim died" in render_text(f)


@pytest.mark.skipif(shutil.which("ip") is None, reason="no 'ip' command (iproute2) to make network namespaces")
def test_agents_in_separate_network_namespaces(tmp_path):
    from netns_hosts import NetnsHosts, can_make_namespaces

    ok, why = can_make_namespaces()
    if not ok:
        pytest.skip(why)
    with NetnsHosts(2) as hosts:
        from fanout.lab.servers import RedisServer

        with RedisServer(host=hosts.gateway_ip) as srv:
            agents = [hosts.popen(k, [*fanout_cmd(), "agent", "--redis-url", srv.url, "--name", f"ns{k}",
                                      "--wait", "60"], cwd=ROOT) for k in range(2)]
            rec = run_scenario(Scenario(**SMALL, agents=2, redis_url=srv.url), progress=False, save_to=None)
            finish(agents)
    f = analyse(rec)
    assert f.passed, render_text(f)
    assert sorted(rec.environment["workers"]) == ["ns0", "ns1"]
    assert all(w["status"] == "ok" for w in rec.environment["workers"].values())
