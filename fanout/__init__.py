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

__all__ = [
    "__version__", "BridgeConfig", "GapNotice", "RedisEventBridge", "RedisServer",
    "EVENT_TYPES", "Envelope", "decode", "encode",
    "AuthenticationFailed", "ConfigError", "FanoutError", "MalformedMessage", "NotPublisher",
    "PublishError", "RedisServerNotFound", "RedisUnavailable",
]
