"""Sharded pub/sub (SPUBLISH/SSUBSCRIBE) on a real local Redis Cluster: exactly-once fan-out to
10 instances over channels spread on several nodes, and a master failover in the middle of a run
with an exact loss account."""
from __future__ import annotations

import pytest
from redis.crc import key_slot

from conftest import arun, exact_fault_findings, needs_redis7
from fanout import BridgeConfig, ConfigError, RedisEventBridge
from fanout.analysis import analyse
from fanout.lab.servers import LocalCluster
from fanout.lab.scenario import Scenario, load_scenario
from fanout.lab.run import run_scenario, simulate
from fanout.transports.sharded import partition_channels, partition_of

pytestmark = needs_redis7  # sharded pub/sub (SPUBLISH/SSUBSCRIBE) is Redis 7


def test_ten_instances_exactly_once_over_channels_on_three_masters():
    sc = load_scenario("cluster/sharded-10")
    assert (sc.transport, sc.instances, sc.cluster_masters, sc.shard_partitions) == ("sharded", 10, 3, 3)
    with LocalCluster(masters=3) as cl:
        # where the channels live, from the cluster itself (CLUSTER SLOTS + key slot)
        channels = [c for t in sc.event_types for c in partition_channels(sc.key_prefix, t, sc.shard_partitions)]
        owner = {c: cl.slot_owner(key_slot(c.encode())).port for c in channels}
        assert len(set(owner.values())) == 3, owner  # every master holds some channels
        # ... and the transport's own view agrees
        async def transport_view():
            b = RedisEventBridge(BridgeConfig(url=cl.url, instance_id="probe", transport="sharded",
                                              event_types=sc.event_types, shard_partitions=3))
            async with b:
                return b._transport.channel_nodes(channels)
        view = arun(transport_view(), 20)
        assert {c: int(a.rsplit(":", 1)[1]) for c, a in view.items()} == owner
        # the symbols used publish to every partition
        assert {partition_of(s, 3) for s in sc.symbols} == {0, 1, 2}

        rec = arun(simulate(sc, redis_url=cl.url, server=cl, progress=False), 40)
    f = analyse(rec)
    assert f.passed, [c for c in f.verdict if not c.passed]
    ok = rec.publications[rec.publications["ok"]]
    assert len(ok) == len(rec.publications) == sc.expected_events
    d = rec.deliveries
    # exactly once: every (event, other instance) pair once, nothing else
    assert not d.duplicated(["id", "receiver"]).any()
    expected = {(e, r) for e, s in zip(ok["id"], ok["source"]) for r in rec.instances["instance"] if r != s}
    assert set(zip(d["id"], d["receiver"])) == expected
    assert (d["source"] != d["receiver"]).all()
    inst = rec.instances
    assert (inst["gaps"] == 0).all() and (inst["duplicates"] == 0).all() and (inst["reconnects"] == 0).all()
    assert (inst["subscriptions"] == len(channels)).all()
    # partitioned channels carry their own seq: events went to all three partitions
    assert {i.split(":")[1].rsplit(".", 1)[1] for i in ok["id"]} == {"0", "1", "2"}


def test_master_failover_during_a_run_accounting_is_exact():
    sc = load_scenario("cluster/node-failover-sharded")
    assert sc.cluster_replicas == 1 and sc.faults[0]["kind"] == "node_failover"
    rec = run_scenario(sc, progress=False, save_to=None)
    acc = exact_fault_findings(rec).losses
    assert set(acc.by_cause) <= {"lost during node_failover"}
    fault = rec.faults.iloc[0]
    assert "promoted" in fault["detail"], fault["detail"]
    # every instance lost its connection to the killed master and came back
    assert (rec.instances["reconnects"] >= 1).all()
    assert rec.instances["connected"].all()
    # and receives the killed master's partition again: events on partition 2 (the last master's
    # slots) sent after the fault, delivered to every other instance
    d = rec.deliveries
    after = d[(d["t_received"] > int(fault["t_end"])) & d["id"].str.contains(r"\.2:")]
    assert set(after["receiver"]) == set(rec.instances["instance"])


def test_sharded_config_mistakes_are_named():
    with pytest.raises(ConfigError, match="shard_partitions: only the sharded transport"):
        BridgeConfig(transport="pubsub", shard_partitions=2)
    with pytest.raises(ConfigError, match="sentinels: the sharded transport"):
        BridgeConfig(transport="sharded", sentinels=("127.0.0.1:26379",), sentinel_master="m")
    assert Scenario(transport="sharded").cluster_masters == 3  # no cluster given: fanout starts one
    assert Scenario(transport="sharded", redis_url="redis://127.0.0.1:7000/0").cluster_masters == 0
    with pytest.raises(ConfigError, match="node_failover needs a local cluster with replicas"):
        Scenario(transport="sharded", cluster_masters=3, faults=[{"kind": "node_failover", "at_s": 1}])
    with pytest.raises(ConfigError, match="cluster_masters: a Redis Cluster needs at least 3"):
        Scenario(transport="sharded", cluster_masters=2)
