"""Who is who in a run: instance ids, publishers and receivers, and which agent hosts whom."""
from __future__ import annotations

from fanout.lab.scenario import Scenario
from fanout.lab.topology import assign, instance_ids, roles


def test_mesh_everyone_publishes_and_receives():
    sc = Scenario(instances=4)
    assert instance_ids(sc) == [f"test-instance-{i}" for i in range(4)]
    assert roles(sc) == ([0, 1, 2, 3], [0, 1, 2, 3])


def test_host_bots_is_the_seeds_deployment():
    sc = Scenario(instances=4, topology="host-bots")
    assert instance_ids(sc) == ["websocket-host", "bot-1", "bot-2", "bot-3"]
    assert roles(sc) == ([0], [1, 2, 3])  # a publish-only host, subscribe-only bots


def test_agents_get_instances_round_robin_and_every_instance_once():
    sc = Scenario(instances=7)
    plan = assign(sc, {"a": {}, "b": {}, "c": {}})
    assert plan == {"a": [0, 3, 6], "b": [1, 4], "c": [2, 5]}
    assert sorted(i for hosted in plan.values() for i in hosted) == list(range(7))


def test_the_host_agent_takes_the_websocket_host_and_the_bots_go_elsewhere():
    sc = Scenario(instances=5, topology="host-bots")
    plan = assign(sc, {"bots-a": {"role": "any"}, "ws": {"role": "host"}, "bots-b": {"role": "bot"}})
    assert plan["ws"] == [0]
    assert sorted(plan["bots-a"] + plan["bots-b"]) == [1, 2, 3, 4]
    assert abs(len(plan["bots-a"]) - len(plan["bots-b"])) <= 1


def test_without_a_host_agent_the_first_takes_the_host_and_a_lone_agent_takes_everything():
    sc = Scenario(instances=3, topology="host-bots")
    assert assign(sc, {"x": {}, "y": {}}) == {"x": [0], "y": [1, 2]}
    assert assign(sc, {"only": {"role": "host"}}) == {"only": [0, 1, 2]}
    assert assign(sc, {}) == {}
