"""Signed envelopes (opt-in): a shared-secret HMAC-SHA256 over the channel and the exact bytes a writer made.

A signed message is the unsigned message with its signature put in front of the closing
bracket, so the signed bytes are recovered by cutting it off again (no re-encoding)::

    {"source":...,"data":{...}}                       the writer's bytes (what is signed)
    {"source":...,"data":{...},"kid":"k2","sig":"<43 chars>"}
    [{...},{...}]                                     a batch (what is signed)
    [{...},{...},{"kid":"k2","sig":"<43 chars>"}]

``sig`` is the unpadded base64 (standard alphabet) of
``HMAC-SHA256(key[kid], b"fanout-sig/2\n" + b"%d:" % len(channel) + channel + b"\n" + bytes)``
(signature version 2): the MAC binds the message to the channel it was published on (its event
type and partition), so a copy published on another channel has no valid signature there.
The channel's part is fed into a keyed HMAC once per channel (:meth:`Signer.bind`); per message
the bound HMAC is copied and fed the bytes, as before. A receiver with keys accepts a message
only when ``kid`` names one of its keys and the signature matches for the channel it arrived on
(``hmac.compare_digest``); everything else is rejected before it is parsed. Keys rotate by
overlap: a bridge signs with its first key and accepts all of its keys, so during a rotation
the fleet carries both (new first where it already signs with the new one).
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import re

from fanout.errors import ConfigError

#: what a key id may look like (it travels in every signed message)
KID_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}\Z")
MIN_KEY_BYTES = 16
SIG_CHARS = 43  # base64 of 32 bytes, unpadded

_compare, _b2a = hmac.compare_digest, binascii.b2a_base64
_DICT_TAIL, _LIST_TAIL = b',"kid":"', b',{"kid":"'
_MID = b'","sig":"'


def check_keys(keys) -> dict[str, bytes]:
    """``{kid: key}`` (the first signs) as bytes, or raise a one-line :class:`ConfigError`."""
    if not isinstance(keys, dict) or not keys:
        raise ConfigError("signing_keys: give a dict {key_id: secret bytes}, the first one signs")
    out: dict[str, bytes] = {}
    for kid, key in keys.items():
        if not isinstance(kid, str) or not KID_RE.match(kid):
            raise ConfigError(f"signing_keys: key id {kid!r} must be 1-32 of A-Z a-z 0-9 _ . -")
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"signing_keys: the key for {kid!r} must be at least {MIN_KEY_BYTES} bytes")
        out[kid] = bytes(key)
    return out


#: what every MAC starts with: the signature's version (2: the channel is covered)
DOMAIN = b"fanout-sig/2\n"


def channel_part(channel: str | bytes) -> bytes:
    """What the MAC covers of the channel, before the message: ``b"%d:%b\n"`` (length-prefixed)."""
    c = channel.encode() if isinstance(channel, str) else bytes(channel)
    return b"%d:%b\n" % (len(c), c)


class Signer:
    """Signs with the first key, verifies against all of them; per channel through :meth:`bind`."""

    __slots__ = ("kid", "_keys", "_bound")

    def __init__(self, keys: dict[str, bytes]) -> None:
        keys = check_keys(keys)
        self.kid = next(iter(keys))
        self._keys = {kid.encode(): hmac.new(key, DOMAIN, digestmod=hashlib.sha256) for kid, key in keys.items()}
        self._bound: dict[bytes, Bound] = {}

    def bind(self, channel: str | bytes) -> "Bound":
        """The signer of one channel (made once per channel, then reused)."""
        part = channel_part(channel)
        b = self._bound.get(part)
        if b is None:
            b = self._bound[part] = Bound(self.kid, self._keys, part)
        return b

    def sign(self, msg: bytes, channel: str | bytes) -> bytes:
        return self.bind(channel).sign(msg)

    def verify(self, payload: bytes, channel: str | bytes) -> bool:
        return self.bind(channel).verify(payload)


class Bound:
    """One channel's keyed HMACs (the channel already fed in): ``sign`` and ``verify`` per message."""

    __slots__ = ("_mac", "_macs", "_dict_head", "_list_head")

    def __init__(self, kid: str, keys: dict[bytes, "hmac.HMAC"], part: bytes) -> None:
        self._macs = {}
        for k, base in keys.items():
            h = base.copy()
            h.update(part)
            self._macs[k] = h
        self._mac = self._macs[kid.encode()]
        self._dict_head = _DICT_TAIL + kid.encode() + _MID
        self._list_head = _LIST_TAIL + kid.encode() + _MID

    def sign(self, msg: bytes) -> bytes:
        """``msg`` (an object or a batch, as the writer made it) with its signature."""
        h = self._mac.copy()
        h.update(msg)
        sig = _b2a(h.digest(), newline=False)[:SIG_CHARS]
        if msg[-1:] == b"]":
            return b'%b%b%b"}]' % (msg[:-1], self._list_head, sig)
        return b'%b%b%b"}' % (msg[:-1], self._dict_head, sig)

    def verify(self, payload: bytes) -> bool:
        """True when ``payload`` carries a valid signature by one of the keys, for this channel."""
        if payload[-3:] == b'"}]':
            cut = payload.rfind(_LIST_TAIL)
            skip, close, end = len(_LIST_TAIL), b"]", -3
        elif payload[-2:] == b'"}':
            cut = payload.rfind(_DICT_TAIL)
            skip, close, end = len(_DICT_TAIL), b"}", -2
        else:
            return False
        if cut < 0:
            return False
        kid, sep, sig = payload[cut + skip:end].partition(_MID)
        mac = self._macs.get(kid)
        if mac is None or not sep or len(sig) != SIG_CHARS:
            return False
        h = mac.copy()
        h.update(payload[:cut])
        h.update(close)
        return _compare(_b2a(h.digest(), newline=False)[:SIG_CHARS], sig)
