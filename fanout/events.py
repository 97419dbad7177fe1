"""The wire vocabulary: market events and the envelope that carries them (docs/wire-format.md).

fanout writes one JSON object per event, header first and ``data`` last (wire form v2)::

    {"source":"test-instance-0","epoch":"9f1c2a7b","type":"ticker","seq":17,
     "timestamp":1760700000123,"ns":456789,"data":{...}}

``type``, ``data``, ``timestamp`` (epoch milliseconds) and ``source`` are the seed report's
fields; a message with only those four still decodes, so a publisher written to the seed's
format interoperates. ``seq`` is contiguous per source *and channel* (one counter per event
type, or per partition); ``epoch`` changes every time a bridge starts; ``ns`` is the send
time's nanoseconds within ``timestamp``'s millisecond, so the exact send time is
``timestamp * 1_000_000 + ns`` and every number on the wire stays below 2^53 (JavaScript
reads it exactly). Optional: ``lag`` (ns between when the event was due and when it was sent;
the simulator's open-loop schedule), ``void`` (seqs the publisher never got into Redis, see
:mod:`fanout.sequencing`), and ``kid``/``sig`` (a signature, :mod:`fanout.signing`).

The event id is not on the wire: it is derived, the same way by publisher and receiver, as
``{epoch}:{stream}:{seq}`` (``stream`` = the event type, or ``type.partition``).

The v1 form (``id``, ``ts_ns`` and ``ti_ns`` instead of ``ns`` and ``lag``) still decodes.
Receiving is one ``orjson.loads`` (:func:`parse_message`) and a few type checks
(:func:`envelope_from`); anything unusual takes the thorough path (:func:`decode`'s checks),
so malformed input is refused the same way either way.
"""
from __future__ import annotations

from collections import namedtuple
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
#: longest ``source`` (characters) and ``epoch`` whose seqs a receiver tracks (longer: delivered, suspicious)
MAX_SOURCE_CHARS = 256
MAX_EPOCH_CHARS = 64
#: most ``void`` ranges one envelope may carry
MAX_VOID_RANGES = 16

_MS = 1_000_000
_tnew = tuple.__new__


_Fields = namedtuple("_Fields", "type data timestamp source seq epoch ns lag stream given_id")


class Envelope(_Fields):
    """One event as it travels: ``type``, ``data`` (the market payload), ``timestamp`` (send time,
    epoch ms), ``source`` (a string or an integer), ``seq`` and ``epoch`` (None for a seed-format
    sender), ``ns`` (nanoseconds within the millisecond), ``lag`` (ns between due and sent) and
    ``stream`` (the event type, or ``type.partition``: the seq's counter).

    ``ts_ns`` (exact send time, integer ns), ``ti_ns`` (when it was due) and ``id`` are derived.
    Immutable (a named tuple: made in one C call on the receive path)."""

    __slots__ = ()

    def __new__(cls, type: str, data: Any, timestamp: int, source: str | int, seq: int | None = None,
                epoch: str | None = None, id: str | None = None, ts_ns: int | None = None,
                ti_ns: int | None = None, stream: str | None = None, ns: int | None = None,
                lag: int | None = None) -> "Envelope":
        if ts_ns is not None:  # given as v1 times: keep them exact
            ns = ts_ns - timestamp * _MS
            if ti_ns is not None:
                lag = ts_ns - ti_ns
        return _tnew(cls, (type, data, timestamp, source, seq, epoch, ns, lag, stream, id))

    @property
    def ts_ns(self) -> int | None:
        """The send time in integer ns (``timestamp * 1_000_000 + ns``); None for a seed message."""
        ns = self[6]
        return None if ns is None else self[2] * _MS + ns

    @property
    def ti_ns(self) -> int | None:
        """When the event was due (the simulator's schedule): ``ts_ns - lag``; None when not sent."""
        ns, lag = self[6], self[7]
        return None if lag is None or ns is None else self[2] * _MS + ns - lag

    @property
    def id(self) -> str | None:
        """``{epoch}:{stream}:{seq}``, the event's id (derived; None for a seed-format message)."""
        typ, _, _, _, seq, epoch, _, _, stream, given = self
        if given is None and seq is not None and epoch is not None:
            return f"{epoch}:{stream or typ}:{seq}"
        return given

    def _key(self) -> tuple:
        return (*self[:8], self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Envelope) and self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        """By its id (equal envelopes have equal ids); a seed-format one (no id) by its header."""
        i = self.id
        return hash(i) if i is not None else hash((self[0], self[2], str(self[3]), self[8]))

    def __repr__(self) -> str:
        return (f"Envelope(type={self[0]!r}, source={self[3]!r}, id={self.id!r}, "
                f"timestamp={self[2]!r}, data={self[1]!r})")

    def __reduce__(self):
        return (Envelope, (self[0], self[1], self[2], self[3], self[4], self[5], self[9], None, None, self[8],
                           self[6], self[7]))

    def to_dict(self) -> dict[str, Any]:
        """The wire object (v2), in the order fanout writes it (header first, ``data`` last)."""
        d: dict[str, Any] = {"source": self[3]}
        if self[5] is not None:
            d["epoch"] = self[5]
        d["type"] = self[0]
        if self[4] is not None:
            d["seq"] = self[4]
        d["timestamp"] = self[2]
        if self[6] is not None:
            d["ns"] = self[6]
            if self[7] is not None:
                d["lag"] = self[7]
        d["data"] = self[1]
        return d


def encode(env: Envelope) -> bytes:
    """Serialise an envelope to the JSON bytes published on the wire (v2, unsigned)."""
    return orjson.dumps(env.to_dict())


def encode_batch(envs: list[Envelope]) -> bytes:
    """Several envelopes as one wire message (a JSON array; a fanout-only extension)."""
    return orjson.dumps([e.to_dict() for e in envs])


class EnvelopeWriter:
    """Wire bytes for one bridge's envelopes without building a dict: a constant header per
    event type (source, epoch, type), then seq, times, the optional ``void`` and
    ``orjson.dumps(data)``."""

    __slots__ = ("_head", "own_prefix")

    def __init__(self, source: str | int, epoch: str) -> None:
        #: every message this writer makes starts with these bytes (the bridge's echo check)
        self.own_prefix = b'{"source":' + _dumps(source) + b',"epoch":' + _dumps(epoch) + b","
        self._head: dict[str, bytes] = {}

    def head(self, event_type: str, stream: str | None = None) -> bytes:
        """The constant part for ``event_type`` (the same for every partition of it)."""
        h = self._head.get(event_type)
        if h is None:
            h = self._head[event_type] = self.own_prefix + b'"type":' + _dumps(event_type) + b',"seq":'
        return h

    @staticmethod
    def write(head: bytes, seq: int, ts_ns: int, ti_ns: int | None, data_json: bytes, void: bytes = b"") -> bytes:
        """One envelope: ``void`` is ``b',"void":[[a,b],...]'`` or empty."""
        ms, ns = divmod(ts_ns, 1_000_000)
        if ti_ns is None:
            return b'%b%d,"timestamp":%d,"ns":%d%b,"data":%b}' % (head, seq, ms, ns, void, data_json)
        return b'%b%d,"timestamp":%d,"ns":%d,"lag":%d%b,"data":%b}' % (head, seq, ms, ns, ts_ns - ti_ns, void,
                                                                        data_json)


def void_json(ranges) -> bytes:
    """``,"void":[[a,b],...]`` for ``[[a, b, ...], ...]`` (first two items of each), or ``b""``."""
    if not ranges:
        return b""
    return b',"void":' + _dumps([[r[0], r[1]] for r in ranges])


def _fail(why: str, raw: bytes | str) -> MalformedMessage:
    head = raw[:60] if isinstance(raw, (bytes, str)) else repr(raw)[:60]
    return MalformedMessage(f"malformed message: {why} (starts {head!r}, {len(raw)} bytes)")


def _parse(raw: bytes | str):
    if len(raw) > MAX_MESSAGE_BYTES:
        raise _fail(f"larger than {MAX_MESSAGE_BYTES} bytes", raw)
    try:
        return _loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _fail(f"not JSON ({exc.__class__.__name__})", raw) from None


def parse_message(raw: bytes) -> dict | list:
    """One wire message -> a JSON object (one envelope) or a non-empty list of objects (a batch),
    with one ``orjson.loads``; anything else raises :class:`MalformedMessage`."""
    obj = _parse(raw)
    t = type(obj)
    if t is dict:
        return obj
    if t is list and obj and all(type(o) is dict for o in obj):
        return obj
    raise _fail(f"expected a JSON object or a batch (a list of objects), got {t.__name__}", raw)


def envelope_from(obj: dict, raw: bytes, stream: str | None = None) -> Envelope:
    """A parsed envelope object -> :class:`Envelope`. fanout's v2 header is checked with a few
    ``type() is`` tests; anything else (v1, the seed's minimal form, a wrong field) goes
    through the thorough checks and may raise :class:`MalformedMessage`."""
    try:
        typ, src, seq, epoch, ts, ns = obj["type"], obj["source"], obj["seq"], obj["epoch"], obj["timestamp"], obj["ns"]
    except KeyError:
        return _envelope(obj, raw, stream)
    lag = obj.get("lag")
    if (type(typ) is str and typ and type(src) is str and type(seq) is int and seq > 0 and type(epoch) is str
            and type(ts) is int and type(ns) is int and 0 <= ns < _MS and (lag is None or type(lag) is int)
            and "data" in obj):
        return _tnew(Envelope, (typ, obj["data"], ts, src, seq, epoch, ns, lag, stream, None))
    return _envelope(obj, raw, stream)


def decode(raw: bytes | str) -> Envelope:
    """Parse wire bytes into an :class:`Envelope`, or raise :class:`MalformedMessage`.

    Accepts v2, v1 and the seed's minimal form ``{type, data, timestamp, source}`` where
    ``source`` is a string or a number (the seed used ``process.pid``).
    """
    obj = _parse(raw)
    if not isinstance(obj, dict):
        raise _fail(f"expected a JSON object, got {type(obj).__name__}", raw)
    return _envelope(obj, raw)


def decode_many(raw: bytes | str) -> list[Envelope | MalformedMessage]:
    """A message is one envelope (a JSON object) or a batch of them (a JSON array of objects,
    what a bridge with ``batch_max > 1`` sends; a signed batch ends with its signature
    object, which is left out). A bad element is returned as its :class:`MalformedMessage`
    in place; a message that is no envelope at all raises."""
    obj = parse_message(raw)
    if type(obj) is dict:
        return [envelope_from(obj, raw)]
    out: list[Envelope | MalformedMessage] = []
    for o in batch_items(obj):
        try:
            out.append(envelope_from(o, raw))
        except MalformedMessage as exc:
            out.append(exc)
    return out


def batch_items(objs: list) -> list:
    """A batch's envelopes: without the trailing signature object of a signed batch."""
    last = objs[-1]
    if "sig" in last and "type" not in last:
        return objs[:-1]
    return objs


def _int(obj: dict, key: str, raw, lo: int | None = None, hi: int | None = None) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if type(v) is not int:
        raise _fail(f"field '{key}' must be an integer, got {type(v).__name__}", raw)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _fail(f"field '{key}' is out of range ({v})", raw)
    return v


def _str(obj: dict, key: str, raw) -> str | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, str):
        raise _fail(f"'{key}' must be a string", raw)
    return v


def _envelope(obj: dict, raw: bytes | str, stream: str | None = None) -> Envelope:
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
    epoch = _str(obj, "epoch", raw)
    _str(obj, "id", raw)      # v1: carried, but the id is always derived
    seq = _int(obj, "seq", raw, lo=1)
    ts = int(ts)
    ns, lag = _int(obj, "ns", raw, 0, _MS - 1), _int(obj, "lag", raw)
    ts_ns, ti_ns = _int(obj, "ts_ns", raw), _int(obj, "ti_ns", raw)  # v1
    if ns is None and ts_ns is not None:
        ns = ts_ns % _MS
        lag = None if ti_ns is None else ts_ns - ti_ns
        ts = ts_ns // _MS
    elif ns is None:
        lag = None
    return Envelope(typ, obj["data"], ts, source, seq, epoch, None, None, None, stream, ns, lag)
