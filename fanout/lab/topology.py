"""Who is who in a run: instance ids, who publishes, who receives, which worker hosts whom."""
from __future__ import annotations

from fanout.lab.scenario import Scenario


def instance_ids(sc: Scenario) -> list[str]:
    """``test-instance-0 .. N-1`` (mesh), or ``websocket-host, bot-1 .. bot-N-1`` (host-bots)."""
    if sc.topology == "host-bots":
        return ["websocket-host", *(f"bot-{i}" for i in range(1, sc.instances))]
    return [f"test-instance-{i}" for i in range(sc.instances)]


def roles(sc: Scenario) -> tuple[list[int], list[int]]:
    """(publishing instance indices, receiving instance indices) of the scenario's topology."""
    everyone = list(range(sc.instances))
    if sc.topology == "host-bots":  # the seed's deployment: one publish-only host, subscribe-only bots
        return [0], everyone[1:]
    return everyone, everyone


def assign(sc: Scenario, agents: dict[str, dict]) -> dict[str, list[int]]:
    """Instance indices per agent: round-robin; in host-bots the agent with ``role: host`` (else the
    first) gets the websocket-host and the bots go to the others (to it too when it is alone)."""
    names = list(agents)
    if not names:
        return {}
    if sc.topology == "host-bots":
        host = next((n for n in names if agents[n].get("role") == "host"), names[0])
        bots_on = [n for n in names if n != host] or [host]
        out: dict[str, list[int]] = {n: [] for n in names}
        out[host].append(0)
        for k, i in enumerate(range(1, sc.instances)):
            out[bots_on[k % len(bots_on)]].append(i)
        return out
    return {n: list(range(k, sc.instances, len(names))) for k, n in enumerate(names)}
