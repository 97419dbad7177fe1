"""Channel names: one per event type (``{prefix}{type}``), or, for the sharded transport with
``shard_partitions > 1``, several per type whose hash tags land on different cluster slots."""
from __future__ import annotations

import functools
import zlib

from redis.crc import key_slot

SLOTS = 16384


def channel_for(key_prefix: str, event_type: str) -> str:
    """Channel (or stream key) of one event type: ``{key_prefix}{type}``, e.g. ``ws:ticker``."""
    return f"{key_prefix}{event_type}"


@functools.lru_cache(maxsize=None)
def partition_tag(p: int, parts: int) -> str:
    """A hash tag whose slot lies in the middle half of the ``p``-th of ``parts`` equal slot ranges."""
    width = SLOTS / parts
    lo, hi = int(p * width + width / 4), int(p * width + 3 * width / 4)
    n = 0
    while True:
        tag = f"{p}.{n}"
        if lo <= key_slot(tag.encode()) <= hi:
            return tag
        n += 1


def partition_channels(prefix: str, event_type: str, parts: int) -> list[str]:
    """Every channel of one event type (``[{prefix}{type}]`` when not partitioned)."""
    if parts <= 1:
        return [f"{prefix}{event_type}"]
    return [f"{prefix}{event_type}:{{{partition_tag(p, parts)}}}" for p in range(parts)]


def partition_of(key, parts: int) -> int:
    """The partition of a key (an event's symbol): stable across processes and hosts."""
    if parts <= 1 or key is None:
        return 0
    return zlib.crc32(str(key).encode()) % parts
