"""Redis Sentinel: bridges find the master through Sentinel and follow it when Sentinel promotes
the replica in the middle of a run; the loss account stays exact."""
from __future__ import annotations

import pytest

from conftest import arun, exact_fault_findings, needs_redis7, wait_for
from fanout import BridgeConfig, ConfigError, RedisEventBridge, RedisUnavailable
from fanout.lab.scenario import Scenario, load_scenario
from fanout.lab.run import run_scenario


def test_sentinel_failover_during_a_pubsub_run_accounting_is_exact():
    sc = load_scenario("cluster/sentinel-failover-pubsub")
    assert sc.sentinel and sc.faults[0]["kind"] == "sentinel_failover"
    rec = run_scenario(sc, progress=False, save_to=None)
    acc = exact_fault_findings(rec).losses
    assert set(acc.by_cause) <= {"lost during sentinel_failover"}
    fault = rec.faults.iloc[0]
    assert "sentinels promoted" in fault["detail"], fault["detail"]
    inst = rec.instances
    assert (inst["reconnects"] >= 1).all() and inst["connected"].all()
    # the publishers were told while there was no master, then published to the new one
    assert acc.not_published > 0
    ok = rec.publications[rec.publications["ok"]]
    late = ok[ok["t_sent"] > int(fault["t_end"])]
    assert set(late["source"]) == set(inst["instance"])
    d = rec.deliveries
    assert set(d[d["t_received"] > int(fault["t_end"])]["receiver"]) == set(inst["instance"])


@needs_redis7
def test_sentinel_failover_during_a_streams_run_accounting_is_exact():
    """Streams through Sentinel: readers resume on the promoted replica from their positions.
    Replication is asynchronous, so entries the killed master had not shipped yet could be gone;
    whatever is missing must still be attributed to the failover."""
    sc = load_scenario("cluster/sentinel-failover-streams")
    rec = run_scenario(sc, progress=False, save_to=None)
    acc = exact_fault_findings(rec).losses  # (Streams' zero-loss promise does not cover a failover)
    assert acc.not_published > 0
    assert set(acc.by_cause) <= {"lost during sentinel_failover"}
    assert rec.instances["connected"].all() and (rec.instances["reconnects"] >= 1).all()


def test_bridge_finds_the_master_through_sentinel_and_names_bad_sentinels():
    from fanout.lab.servers import LocalSentinel

    with LocalSentinel() as st:
        async def go():
            cfg = BridgeConfig(instance_id="s0", sentinels=st.sentinels, sentinel_master=st.name,
                               host="127.0.0.1", port=1)  # the host/port are wrong on purpose: Sentinel decides
            got = []
            async with RedisEventBridge(cfg) as a, RedisEventBridge(
                    BridgeConfig(instance_id="s1", sentinels=st.sentinels, sentinel_master=st.name)) as b:
                a.on("*", got.append)
                assert a.resolved_url() == st.url and cfg.resolved_url() != st.url  # the bridge's, not the config's
                await b.publish("ticker", {"symbol": "BTC/USDT"})
                await wait_for(lambda: len(got) == 1, what="the event through the Sentinel-named master")
        arun(go(), 20)

    async def nobody():
        cfg = BridgeConfig(instance_id="x", sentinels=("127.0.0.1:1",), sentinel_master="m", connect_timeout_s=0.5)
        await RedisEventBridge(cfg).start()
    with pytest.raises(RedisUnavailable, match="no sentinel of 127.0.0.1:1 named a master"):
        arun(nobody(), 10)


def test_sentinel_config_mistakes_are_named():
    with pytest.raises(ConfigError, match="sentinels and sentinel_master go together"):
        BridgeConfig(sentinels=("127.0.0.1:26379",))
    with pytest.raises(ConfigError, match="is not host:port"):
        BridgeConfig(sentinels=("nowhere",), sentinel_master="m")
    with pytest.raises(ConfigError, match="sentinel_failover needs sentinel: true"):
        Scenario(faults=[{"kind": "sentinel_failover", "at_s": 1}])
