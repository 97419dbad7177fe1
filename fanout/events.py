"""The wire vocabulary: market events and the envelope that carries them.

An envelope on the wire is one JSON object::

    {"source": "test-instance-0", "epoch": "9f1c2a7b", "type": "ticker", "id": "9f1c2a7b:ticker:17",
     "seq": 17, "timestamp": 1760700000123, "ts_ns": 1760700000123456789, "data": {...}}

``type``, ``data``, ``timestamp`` (epoch milliseconds) and ``source`` are the seed report's
fields; a message with only those four still decodes, so a publisher written to the seed's
format interoperates. ``seq`` is contiguous per source *and event type* (one counter per
channel), so a bridge that subscribes to a subset of types can still see a gap; ``epoch``
changes every time a bridge starts, so a restart is not mistaken for loss; ``id`` names the
event uniquely; ``ts_ns`` is the send time in integer nanoseconds (``time.time_ns``).
``ti_ns``, when present, is the time the event was *due* (the simulator's open-loop schedule).

Key order is free for readers (any JSON object decodes); fanout *writes* its header first,
``source`` and ``epoch`` leading and ``data`` last (:class:`EnvelopeWriter`), so a bridge
recognises its own echo by a prefix of the bytes (:meth:`EnvelopeWriter.own_prefix`) without
parsing it. Receiving is one ``orjson.loads`` (:func:`parse_message`) and a few type checks
(:func:`envelope_from`); anything unusual takes the thorough path of :func:`decode`, so
malformed input is refused the same way either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fanout.errors import MalformedMessage

_loads, _dumps = orjson.loads, orjson.dumps

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
        """The wire object, in the order fanout writes it (header first, ``data`` last)."""
        d: dict[str, Any] = {"source": self.source}
        if self.epoch is not None:
            d["epoch"] = self.epoch
        d["type"] = self.type
        if self.id is not None:
            d["id"] = self.id
        if self.seq is not None:
            d["seq"] = self.seq
        d["timestamp"] = self.timestamp
        if self.ts_ns is not None:
            d["ts_ns"] = self.ts_ns
        if self.ti_ns is not None:
            d["ti_ns"] = self.ti_ns
        d["data"] = self.data
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


def parse_message(raw: bytes) -> dict | list:
    """One wire message -> a JSON object (one envelope) or a non-empty list of objects (a batch),
    with one ``orjson.loads``; anything else raises :class:`MalformedMessage`."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _fail(f"larger than {MAX_MESSAGE_BYTES} bytes", raw)
    try:
        obj = _loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _fail(f"not JSON ({exc.__class__.__name__})", raw) from None
    t = type(obj)
    if t is dict:
        return obj
    if t is list and obj and all(type(o) is dict for o in obj):
        return obj
    raise _fail(f"expected a JSON object or a batch (a list of objects), got {t.__name__}", raw)


def envelope_from(obj: dict, raw: bytes) -> Envelope:
    """A parsed envelope object -> :class:`Envelope`. fanout's own full header is checked with
    a few ``type() is`` tests; anything else (the seed's minimal form, a wrong field) goes
    through :func:`decode`'s thorough checks and may raise :class:`MalformedMessage`."""
    try:
        typ, src, seq, epoch, eid, ts, ts_ns = (obj["type"], obj["source"], obj["seq"], obj["epoch"], obj["id"],
                                                obj["timestamp"], obj["ts_ns"])
    except KeyError:
        return _envelope(obj, raw)
    ti = obj.get("ti_ns")
    if (type(typ) is str and typ and type(src) is str and type(seq) is int and type(epoch) is str
            and type(eid) is str and type(ts) is int and type(ts_ns) is int and (ti is None or type(ti) is int)
            and "data" in obj):
        return Envelope(typ, obj["data"], ts, src, seq, epoch, eid, ts_ns, ti)
    return _envelope(obj, raw)


class EnvelopeWriter:
    """Wire bytes for one bridge's envelopes without building a dict: a constant header per
    stream (source, epoch, type, the id's prefix), then seq, times and ``orjson.dumps(data)``."""

    __slots__ = ("_head", "own_prefix", "_epoch")

    def __init__(self, source: str | int, epoch: str) -> None:
        #: every message this writer makes starts with these bytes (the bridge's echo check)
        self.own_prefix = b'{"source":' + _dumps(source) + b',"epoch":' + _dumps(epoch) + b","
        self._head: dict[str, bytes] = {}
        self._epoch = epoch

    def head(self, event_type: str, stream: str) -> bytes:
        """The constant part for ``stream`` (an event type, or ``type.partition``)."""
        h = self._head.get(stream)
        if h is None:
            h = self._head[stream] = (self.own_prefix + b'"type":' + _dumps(event_type) + b',"id":'
                                      + _dumps(f"{self._epoch}:{stream}:")[:-1])
        return h

    @staticmethod
    def write(head: bytes, seq: int, ts_ns: int, ti_ns: int | None, data_json: bytes) -> bytes:
        if ti_ns is None:
            return b'%b%d","seq":%d,"timestamp":%d,"ts_ns":%d,"data":%b}' % (
                head, seq, seq, ts_ns // 1_000_000, ts_ns, data_json)
        return b'%b%d","seq":%d,"timestamp":%d,"ts_ns":%d,"ti_ns":%d,"data":%b}' % (
            head, seq, seq, ts_ns // 1_000_000, ts_ns, ti_ns, data_json)


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
    obj = parse_message(raw)
    if type(obj) is dict:
        return [envelope_from(obj, raw)]
    out: list[Envelope | MalformedMessage] = []
    for o in obj:
        try:
            out.append(envelope_from(o, raw))
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
