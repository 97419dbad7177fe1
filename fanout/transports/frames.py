"""RESP2 pieces the lean connection uses: packing a command (hiredis' C packer, a pure-Python
one if hiredis lacks it), the (un)subscribe confirmation kinds, and the two pending entries that
are not plain tokens or Futures (:class:`Sub`, :class:`Many`, :class:`Probes`), and the error of a
command that never left (:class:`NeverSent`)."""
from __future__ import annotations

import asyncio

import hiredis


def _pack_py(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        t = type(a)
        if t is bytes:
            pass
        elif t is str:
            a = a.encode()
        elif t is int:
            a = b"%d" % a
        elif t is float:
            a = repr(a).encode()
        else:
            raise TypeError(f"cannot send a {t.__name__} to Redis (bytes, str, int or float)")
        out.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(out)


if hasattr(hiredis, "pack_command"):
    _hpack = hiredis.pack_command

    def pack(*args) -> bytes:
        """One command in RESP2: ``pack(b"PUBLISH", "ch", b"payload")``. Arguments are bytes,
        str (UTF-8), int or float (``repr``); anything else (bool too) raises ``TypeError``."""
        return _hpack(args)
else:  # pragma: no cover - hiredis < 2.1
    pack = _pack_py

_PING = pack(b"PING")
_MESSAGE, _SMESSAGE, _PMESSAGE = b"message", b"smessage", b"pmessage"
#: (un)subscribe command -> the kind of its per-channel confirmation
CONFIRMS = {b"SUBSCRIBE": b"subscribe", b"SSUBSCRIBE": b"ssubscribe", b"PSUBSCRIBE": b"psubscribe",
            b"UNSUBSCRIBE": b"unsubscribe", b"SUNSUBSCRIBE": b"sunsubscribe", b"PUNSUBSCRIBE": b"punsubscribe"}
_CONFIRM_KINDS = frozenset(CONFIRMS.values())
_UNSUB_KINDS = frozenset((b"unsubscribe", b"sunsubscribe", b"punsubscribe"))


class Sub:
    """A pending (un)subscribe: done when every channel is confirmed (or its error reply came)."""

    __slots__ = ("fut", "kind", "left")

    def __init__(self, fut: asyncio.Future, kind: bytes, channels: list[bytes]) -> None:
        self.fut, self.kind, self.left = fut, kind, channels


class Many:
    """Pipelined commands answered together: one Future gets every reply (error replies in place)."""

    __slots__ = ("fut", "replies", "n")

    def __init__(self, fut: asyncio.Future, n: int) -> None:
        self.fut, self.replies, self.n = fut, [], n

    def add(self, reply) -> None:
        self.replies.append(reply)
        if len(self.replies) == self.n and not self.fut.done():
            self.fut.set_result(self.replies)


class Probes:
    """PINGs sent while reading was paused (one entry however many: memory stays bounded); their
    replies wait behind the backlog and are consumed, one per probe, once reading resumes."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 1


class NeverSent(ConnectionError):
    """The connection ended before this command was written: it surely did not reach Redis
    (unlike the commands written before it, whose outcome is unknown)."""
