"""The wire vocabulary: market events and the envelope that carries them.

An envelope on the wire is one JSON object::

    {"type": "ticker", "data": {...}, "timestamp": 1760700000123, "source": "test-instance-0",
     "seq": 17, "epoch": "9f1c2a7b", "id": "9f1c2a7b-ticker-17", "ts_ns": 1760700000123456789}

``type``, ``data``, ``timestamp`` (epoch milliseconds) and ``source`` are the seed report's
fields; a message with only those four still decodes, so a publisher written to the seed's
format interoperates. ``seq`` is contiguous per source *and event type* (one counter per
channel), so a bridge that subscribes to a subset of types can still see a gap; ``epoch``
changes every time a bridge starts, so a restart is not mistaken for loss; ``id`` names the
event uniquely; ``ts_ns`` is the send time in integer nanoseconds (``time.time_ns``).
``ti_ns``, when present, is the time the event was *due* (the simulator's open-loop schedule).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fanout.errors import MalformedMessage

TICKER = "ticker"
TRADE = "trade"
ORDERBOOK = "orderbook"
CANDLE = "candle"
EVENT_TYPES: tuple[str, ...] = (TICKER, TRADE, ORDERBOOK, CANDLE)

#: Largest message decode() will parse; anything bigger is counted as malformed, unparsed.
MAX_MESSAGE_BYTES = 512 * 1024


@dataclass(slots=True)
class Envelope:
    """One event as it travels. ``data`` is the market payload (a dict)."""

    type: str
    data: Any
    timestamp: int
    source: str | int
    seq: int | None = None
    epoch: str | None = None
    id: str | None = None
    ts_ns: int | None = None
    ti_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": self.type,
            "data": self.data,
            "timestamp": self.timestamp,
            "source": self.source,
        }
        if self.seq is not None:
            d["seq"] = self.seq
        if self.epoch is not None:
            d["epoch"] = self.epoch
        if self.id is not None:
            d["id"] = self.id
        if self.ts_ns is not None:
            d["ts_ns"] = self.ts_ns
        if self.ti_ns is not None:
            d["ti_ns"] = self.ti_ns
        return d


def encode(env: Envelope) -> bytes:
    """Serialise an envelope to the JSON bytes published on the wire."""
    return orjson.dumps(env.to_dict())


def _fail(why: str, raw: bytes | str) -> MalformedMessage:
    head = raw[:60] if isinstance(raw, (bytes, str)) else repr(raw)[:60]
    return MalformedMessage(f"malformed message: {why} (starts {head!r}, {len(raw)} bytes)")


def _opt_int(obj: dict, key: str, raw: bytes | str) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(f"field '{key}' must be an integer, got {type(v).__name__}", raw)
    return v


def _parse(raw: bytes | str):
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _fail(f"larger than {MAX_MESSAGE_BYTES} bytes", raw)
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _fail(f"not JSON ({exc.__class__.__name__})", raw) from None


def decode(raw: bytes | str) -> Envelope:
    """Parse wire bytes into an :class:`Envelope`, or raise :class:`MalformedMessage`.

    Accepts the seed's minimal form ``{type, data, timestamp, source}`` where ``source``
    is a string or a number (the seed used ``process.pid``).
    """
    obj = _parse(raw)
    if not isinstance(obj, dict):
        raise _fail(f"expected a JSON object, got {type(obj).__name__}", raw)
    return _envelope(obj, raw)


def decode_many(raw: bytes | str) -> list[Envelope | MalformedMessage]:
    """A message is one envelope (a JSON object) or a batch of them (a JSON array of objects,
    what a bridge with ``batch_max > 1`` sends). A bad element is returned as its
    :class:`MalformedMessage` in place; a message that is no envelope at all raises."""
    obj = _parse(raw)
    if isinstance(obj, dict):
        return [_envelope(obj, raw)]
    if not isinstance(obj, list) or not obj or not all(isinstance(o, dict) for o in obj):
        raise _fail(f"expected a JSON object or a batch (a list of objects), got {type(obj).__name__}", raw)
    out: list[Envelope | MalformedMessage] = []
    for o in obj:
        try:
            out.append(_envelope(o, raw))
        except MalformedMessage as exc:
            out.append(exc)
    return out


def encode_batch(envs: list[Envelope]) -> bytes:
    """Several envelopes as one wire message (a JSON array)."""
    return orjson.dumps([e.to_dict() for e in envs])


def _envelope(obj: dict, raw: bytes | str) -> Envelope:
    typ = obj.get("type")
    if not isinstance(typ, str) or not typ:
        raise _fail("missing or non-string 'type'", raw)
    source = obj.get("source")
    if source is None or isinstance(source, bool) or not isinstance(source, (str, int)):
        raise _fail("missing 'source' (a string or an integer)", raw)
    if "data" not in obj:
        raise _fail("missing 'data'", raw)
    ts = obj.get("timestamp")
    if ts is None:
        ts = 0
    elif isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise _fail("'timestamp' must be epoch milliseconds (a number)", raw)
    epoch = obj.get("epoch")
    if epoch is not None and not isinstance(epoch, str):
        raise _fail("'epoch' must be a string", raw)
    eid = obj.get("id")
    if eid is not None and not isinstance(eid, str):
        raise _fail("'id' must be a string", raw)
    return Envelope(
        type=typ,
        data=obj["data"],
        timestamp=int(ts),
        source=source,
        seq=_opt_int(obj, "seq", raw),
        epoch=epoch,
        id=eid,
        ts_ns=_opt_int(obj, "ts_ns", raw),
        ti_ns=_opt_int(obj, "ti_ns", raw),
    )
