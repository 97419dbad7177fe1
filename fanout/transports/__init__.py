"""Transports: one file per way of moving envelopes through Redis, and the one registry of them.

``TRANSPORTS`` maps each name to a :class:`TransportSpec`; the bridge's config, the scenario,
the CLI's ``--transport`` help and the report all read it, so a new transport is added here once
(and its server requirement in :mod:`fanout.capabilities`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from fanout.transports.base import Loss, Subscriber, Transport


@dataclass(frozen=True)
class TransportSpec:
    name: str
    summary: str
    module: str        # fanout.transports.<module>
    cls: str           # the Transport subclass in it
    cluster: bool = False  # needs a Redis Cluster

    def load(self) -> type[Transport]:
        return getattr(importlib.import_module(f"fanout.transports.{self.module}"), self.cls)


TRANSPORTS: dict[str, TransportSpec] = {s.name: s for s in (
    TransportSpec("pubsub", "Redis pub/sub: fire-and-forget, what a disconnected subscriber misses is gone",
                  "pubsub", "PubSubTransport"),
    TransportSpec("sharded", "sharded pub/sub (SPUBLISH/SSUBSCRIBE) on a Redis Cluster", "sharded",
                  "ShardedTransport", cluster=True),
    TransportSpec("streams", "Redis Streams: kept in Redis, an instance resumes from its last position",
                  "streams", "StreamsTransport"),
)}
TRANSPORT_NAMES: tuple[str, ...] = tuple(TRANSPORTS)


def make_transport(config) -> Transport:
    return TRANSPORTS[config.transport].load()(config)


__all__ = ["TRANSPORTS", "TRANSPORT_NAMES", "TransportSpec", "Loss", "Subscriber", "Transport", "make_transport"]
