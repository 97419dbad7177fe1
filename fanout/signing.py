"""Signed envelopes (opt-in): a shared-secret HMAC-SHA256 over the exact bytes a writer made.

A signed message is the unsigned message with its signature put in front of the closing
bracket, so the signed bytes are recovered by cutting it off again (no re-encoding)::

    {"source":...,"data":{...}}                       the writer's bytes (what is signed)
    {"source":...,"data":{...},"kid":"k2","sig":"<43 chars>"}
    [{...},{...}]                                     a batch (what is signed)
    [{...},{...},{"kid":"k2","sig":"<43 chars>"}]

``sig`` is the unpadded base64 (standard alphabet) of ``HMAC-SHA256(key[kid], signed bytes)``. A receiver with
keys accepts a message only when ``kid`` names one of its keys and the signature matches
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


class Signer:
    """Signs with the first key, verifies against all of them."""

    __slots__ = ("kid", "_mac", "_macs", "_dict_head", "_list_head")

    def __init__(self, keys: dict[str, bytes]) -> None:
        keys = check_keys(keys)
        self.kid = next(iter(keys))
        # one keyed HMAC per key, copied per message (hmac.digest looks the algorithm up on every call)
        self._macs = {kid.encode(): hmac.new(key, digestmod=hashlib.sha256) for kid, key in keys.items()}
        self._mac = self._macs[self.kid.encode()]
        self._dict_head = _DICT_TAIL + self.kid.encode() + _MID
        self._list_head = _LIST_TAIL + self.kid.encode() + _MID

    def sign(self, msg: bytes) -> bytes:
        """``msg`` (an object or a batch, as the writer made it) with its signature."""
        h = self._mac.copy()
        h.update(msg)
        sig = _b2a(h.digest(), newline=False)[:SIG_CHARS]
        if msg[-1:] == b"]":
            return b'%b%b%b"}]' % (msg[:-1], self._list_head, sig)
        return b'%b%b%b"}' % (msg[:-1], self._dict_head, sig)

    def verify(self, payload: bytes) -> bool:
        """True when ``payload`` carries a valid signature by one of the keys."""
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
