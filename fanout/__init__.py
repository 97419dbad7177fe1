"""fanout: spread market-data events from publishers to many instances through Redis,
and prove every instance got every other instance's events exactly once."""
from __future__ import annotations

__version__ = "0.1.0"

from .bridge import BridgeConfig, GapNotice, RedisEventBridge
from .errors import (
    AuthenticationFailed,
    ConfigError,
    FanoutError,
    MalformedMessage,
    NotPublisher,
    PublishError,
    RedisServerNotFound,
    RedisUnavailable,
)
from .events import EVENT_TYPES, Envelope, decode, encode
from .redis_server import RedisServer

_LAZY = {  # heavier modules (pandas), loaded on first use
    "RunRecord": "record", "load_run": "record", "Scenario": "scenario", "load_scenario": "scenario",
    "simulate": "simulator", "run_scenario": "simulator", "analyse": "analysis", "Findings": "analysis",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fanout' has no attribute {name!r}")


__all__ = [*_LAZY,
    "__version__", "BridgeConfig", "GapNotice", "RedisEventBridge", "RedisServer",
    "EVENT_TYPES", "Envelope", "decode", "encode",
    "AuthenticationFailed", "ConfigError", "FanoutError", "MalformedMessage", "NotPublisher",
    "PublishError", "RedisServerNotFound", "RedisUnavailable",
]
