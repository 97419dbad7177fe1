"""Every fault on every transport, on throwaway servers: the accounting is exact (nothing
unexplained), pub/sub loses what the fault explains, Streams loses nothing it promises to keep,
and afterwards every instance is connected and receiving again without anyone's help."""
from __future__ import annotations

import pytest

from conftest import exact_fault_findings, needs_redis7
from fanout.errors import ConfigError
from fanout.lab.scenario import SCENARIO_DIR, Scenario, load_scenario
from fanout.lab.run import run_scenario

FAULT_FILES = sorted(p.stem for p in (SCENARIO_DIR / "faults").glob("*.yaml"))
RUNNABLE = [pytest.param(n, marks=needs_redis7) if n.endswith("-streams") else n for n in FAULT_FILES]
#: (fault file) -> the cause its losses must be attributed to on pub/sub
PUBSUB_LOSS_CAUSE = {
    "redis-restart-pubsub": "lost during redis_restart",
    "redis-restart-aof-pubsub": "lost during redis_restart",
    "instance-crash-pubsub": "lost during instance_crash",
    "slow-consumer-pubsub": "cut off by output-buffer limit",
    "partition-pubsub": "lost during partition",
}


def test_every_fault_and_transport_has_a_scenario_file():
    kinds = {"redis-restart", "redis-restart-aof", "instance-crash", "slow-consumer", "latency", "partition"}
    assert set(FAULT_FILES) == {f"{k}-{t}" for k in kinds for t in ("pubsub", "streams")}


@pytest.mark.parametrize("name", RUNNABLE)
def test_fault_scenario_accounting_is_exact(name):
    sc = load_scenario(f"faults/{name}")
    rec = run_scenario(sc, progress=False, save_to=None)
    f = exact_fault_findings(rec)
    acc, per = f.losses, f.per_instance
    assert len(rec.faults) == 1 and rec.faults["t_end"].iloc[0] > rec.faults["t_start"].iloc[0]
    assert int(per["lost_attributed"].sum()) == acc.lost == int(acc.losses["count"].sum())
    if name in PUBSUB_LOSS_CAUSE:
        cause = PUBSUB_LOSS_CAUSE[name]
        assert acc.lost > 0 and set(acc.by_cause) == {cause}, acc.by_cause
        if not name.startswith("instance-crash"):
            # the bridges' own loss signal agrees: each lost event was a seq gap somewhere.
            # (A crashed instance comes back with no memory of what it saw, so it cannot.)
            assert int(rec.instances["gaps"].sum()) >= acc.lost
    elif name == "redis-restart-streams":
        # no persistence: whatever Redis held is gone; counted exactly, never silent
        assert set(acc.by_cause) <= {"lost during redis_restart"}
    else:
        assert acc.lost == 0, f"{name} lost {acc.lost}: {acc.by_cause}"
    if name.startswith("slow-consumer-pubsub"):
        assert acc.output_buffer_disconnections and acc.output_buffer_disconnections >= 1
    if name.startswith("instance-crash") or name.startswith("redis-restart"):
        assert acc.not_published > 0  # the publisher was down or Redis was: told, not silently lost
    if name.startswith(("instance-crash-streams", "partition-streams", "slow-consumer-streams")):
        row = acc.faults.iloc[0]
        assert row["recovered"] > 0, "streams catch up on what was sent during the fault"


def test_fault_plan_mistakes_name_the_fault_and_field():
    with pytest.raises(ConfigError, match=r"faults\[0\]\.kind: 'meteor'"):
        Scenario(faults=[{"kind": "meteor", "at_s": 1}])
    with pytest.raises(ConfigError, match=r"faults\[0\]\.instance: instance_crash needs an instance index 0..2"):
        Scenario(faults=[{"kind": "instance_crash", "at_s": 1, "duration_s": 1}])
    with pytest.raises(ConfigError, match=r"faults\[0\]\.at_s: 30 must be within the run"):
        Scenario(duration_s=20, faults=[{"kind": "redis_restart", "at_s": 30}])
    with pytest.raises(ConfigError, match="redis_restart needs the throwaway server"):
        Scenario(redis_url="redis://127.0.0.1:6379/0", faults=[{"kind": "redis_restart", "at_s": 1}])
    with pytest.raises(ConfigError, match=r"faults\[0\]\.delay_ms"):
        Scenario(faults=[{"kind": "latency", "at_s": 1, "instance": 0}])


def test_two_overlapping_crashes_keep_their_own_downtime():
    """Regression: two instance_crash faults that overlap used to share one crash time, so the first
    instance's downtime started when the second one crashed."""
    sc = Scenario(name="two-crashes", instances=3, duration_s=4, rate_per_s=60, faults=[
        {"kind": "instance_crash", "at_s": 1.0, "duration_s": 1.5, "instance": 0},
        {"kind": "instance_crash", "at_s": 1.6, "duration_s": 0.5, "instance": 2}])
    rec = run_scenario(sc, progress=False, save_to=None)
    exact_fault_findings(rec)
    crash = rec.outages[rec.outages["reason"] == "instance_crash"].set_index("instance")
    faults = rec.faults.set_index("instance")
    assert set(crash.index) == {"test-instance-0", "test-instance-2"}
    for name in crash.index:  # each downtime is its own fault's: from its crash to its restart
        assert faults.at[name, "t_start"] <= crash.at[name, "t_down"] <= faults.at[name, "t_end"]
        assert crash.at[name, "t_up"] >= faults.at[name, "t_end"]
    assert crash.at["test-instance-0", "t_down"] < faults.at["test-instance-2", "t_start"]
