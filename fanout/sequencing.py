"""Loss and duplicate detection from the envelope's ``seq`` and ``epoch``, per (source, channel).

State per ``(source, channel)``: ``[epoch, last_seq]``.

* the first message from a pair is remembered, not a gap (we may have joined late);
* a new epoch is a restart of that source: counted, not a loss;
* ``seq == last + 1`` is in order; ``seq > last + 1`` is a gap of ``seq - last - 1``;
* ``seq <= last`` is a duplicate (the bridge does not hand it over again).

:meth:`SequenceTracker.check` answers with one int, so the receive path allocates nothing:
a positive number is the size of a gap (the event is still delivered), the constants below
are the other outcomes.
"""
from __future__ import annotations

IN_ORDER = 0
FIRST = -1       # first message seen from this (source, channel)
RESTART = -2     # a new epoch: the source restarted
DUPLICATE = -3   # already handed over: drop it


class SequenceTracker:
    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state: dict[str, dict[str, list]] = {}   # channel -> source -> [epoch, last_seq]

    def check(self, source: str, channel: str, epoch: str, seq: int) -> int:
        """Record ``seq`` from ``source`` on ``channel``; return IN_ORDER, FIRST, RESTART,
        DUPLICATE or the number of events missing before it (> 0)."""
        per = self._state.get(channel)
        if per is None:
            per = self._state[channel] = {}
        state = per.get(source)
        if state is None:
            per[source] = [epoch, seq]
            return FIRST
        if state[0] != epoch:
            state[0] = epoch
            state[1] = seq
            return RESTART
        last = state[1]
        if seq <= last:
            return DUPLICATE
        state[1] = seq
        return seq - last - 1

    def last(self, source: str, channel: str) -> tuple[str, int] | None:
        """(epoch, last seq) seen from ``source`` on ``channel``, or None."""
        state = self._state.get(channel, {}).get(source)
        return None if state is None else (state[0], state[1])

    def forget_channel(self, channel: str) -> None:
        """Restart every source's baseline on ``channel`` (a hole the transport already counted)."""
        self._state.pop(channel, None)
