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


#: the control channels' name under the prefix: ``{prefix}_heartbeat:...`` (no event type may start so)
HEARTBEAT = "_heartbeat"


def heartbeat_channel(key_prefix: str, instance_id, slot_of: str | None = None) -> str:
    """The channel (or stream key) of one bridge's heartbeats: ``{prefix}_heartbeat:{instance_id}``.

    ``slot_of`` (sharded pub/sub): a channel whose cluster slot the heartbeat channel must share (so
    it lands on that channel's node and may join its SSUBSCRIBE): ``{prefix}_heartbeat:{<tag>}:{id}``,
    the tag being that channel's hash tag (or the whole name), or a searched one when that does not
    give the slot (a name with stray braces)."""
    iid = str(instance_id)
    if slot_of is None:
        return f"{key_prefix}{HEARTBEAT}:{iid}"
    want = key_slot(slot_of.encode())
    i = slot_of.find("{")
    j = slot_of.find("}", i + 1) if i >= 0 else -1
    tag = slot_of[i + 1:j] if i >= 0 and j > i + 1 else slot_of
    name = f"{key_prefix}{HEARTBEAT}:{{{tag}}}:{iid}"
    n = 0
    while key_slot(name.encode()) != want:  # stray braces (in the tag, the prefix or the id): find a tag
        name = f"{key_prefix}{HEARTBEAT}:{{hb.{n}}}:{iid}"
        n += 1
        if n > 20 * SLOTS:  # a prefix with its own hash tag fixes every name's slot: nothing else to try
            raise ValueError(f"no heartbeat channel name under {key_prefix!r} shares the slot of {slot_of!r}")
    return name
