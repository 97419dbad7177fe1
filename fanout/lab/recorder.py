"""The recorder: every publication and every delivery of a run, as the simulator sees them.

Rows are tuples in the column order of :data:`fanout.lab.record.PUBLICATION_COLUMNS` and
:data:`~fanout.lab.record.DELIVERY_COLUMNS`; the run record turns them into frames.
"""
from __future__ import annotations

from collections.abc import Callable


class Recorder:
    def __init__(self, now_ns: Callable[[], int]) -> None:
        self.now_ns = now_ns
        self.pubs: list[tuple] = []
        self.deliveries: list[tuple] = []
        self._seen: set[tuple[str, str]] = set()
        self.got: dict[str, int] = {}          # receiver -> distinct events received
        self.published_by: dict[str, int] = {}  # source -> acknowledged publications

    def handler(self, receiver: str, say: Callable[[str], None] | None = None, t0: Callable[[], int] = lambda: 0):
        """The bridge handler that records every delivery to ``receiver``."""
        deliveries, seen, got, now_ns = self.deliveries, self._seen, self.got, self.now_ns
        got.setdefault(receiver, 0)

        def on_event(env) -> None:
            t = now_ns()
            src = env.source if type(env.source) is str else str(env.source)
            deliveries.append((env.id, src, receiver, env.type, env.seq if env.seq is not None else -1, t))
            key = (env.id, receiver)
            if key not in seen:
                seen.add(key)
                got[receiver] += 1
            if say:
                say(f"[{(t - t0()) / 1e9:9.3f}s]   {receiver} <- {src} {env.type} {env.id}")

        return on_event

    def published(self, eid: str, src: str, seq: int, typ: str, symbol: str, due: int, t_sent: int) -> None:
        self.pubs.append((eid, src, seq, typ, symbol, due, t_sent, self.now_ns(), True, ""))
        self.published_by[src] = self.published_by.get(src, 0) + 1

    def failed(self, eid: str, src: str, seq: int, typ: str, symbol: str, due: int, t_sent: int, why: str) -> None:
        self.pubs.append((eid, src, seq, typ, symbol, due, t_sent, 0, False, why))
