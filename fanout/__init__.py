"""fanout: spread market-data events from publishers to many instances through Redis,
and prove every instance got every other instance's events exactly once.

``import fanout`` is the bridge library alone (redis, hiredis, orjson): the lab that runs
validation scenarios is :mod:`fanout.lab`, the analysis :mod:`fanout.analysis`, the
report :mod:`fanout.report` (each an extra: ``pip install 'fanout[lab]'``, ``'fanout[report]'``).
"""
from __future__ import annotations

__version__ = "0.2.0"

from fanout.bridge import GapNotice, RedisEventBridge
from fanout.config import BridgeConfig
from fanout.errors import (
    AuthenticationFailed,
    Backpressure,
    ConfigError,
    FanoutError,
    MalformedMessage,
    NotPublisher,
    NotSubscriber,
    PublishError,
    RedisUnavailable,
    ServerTooOld,
)
from fanout.events import EVENT_TYPES, Envelope, decode, encode

__all__ = [
    "__version__", "BridgeConfig", "GapNotice", "RedisEventBridge",
    "EVENT_TYPES", "Envelope", "decode", "encode",
    "AuthenticationFailed", "Backpressure", "ConfigError", "FanoutError", "MalformedMessage", "NotPublisher", "NotSubscriber",
    "PublishError", "RedisUnavailable", "ServerTooOld",
]
