"""Transports: one file per way of moving envelopes through Redis."""
from __future__ import annotations

from .base import Loss, Subscriber, Transport


def _pubsub():
    from .pubsub import PubSubTransport
    return PubSubTransport


def _streams():
    from .streams import StreamsTransport
    return StreamsTransport


def _sharded():
    from .sharded import ShardedTransport
    return ShardedTransport


#: name -> zero-argument loader of the transport class (imported lazily)
TRANSPORTS = {"pubsub": _pubsub, "streams": _streams, "sharded": _sharded}


def make_transport(config) -> Transport:
    return TRANSPORTS[config.transport]()(config)


__all__ = ["TRANSPORTS", "Loss", "Subscriber", "Transport", "make_transport"]
