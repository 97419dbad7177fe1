"""How often a receiver got an event after one that was due later (the ordering limitation)."""
from __future__ import annotations

from fanout.analysis import latency_samples


def ordering_stats(record) -> dict[str, int]:
    """Per receiver, deliveries in the order its handler ran; an event is out of order when an
    earlier delivery (same grouping) was due after it. Counted within one publisher and one
    channel (``same_channel``: Redis keeps these in order), within one publisher across its
    channels (``same_publisher``), and across all publishers (``any_publisher``)."""
    s = latency_samples(record)
    if s.empty:
        return {"deliveries": 0, "same_channel": 0, "same_publisher": 0, "any_publisher": 0}
    due = record.publications.loc[record.publications["ok"], ["id", "t_intended"]]
    s = s.merge(due, on="id", how="left").sort_values(["receiver", "t_received"], kind="stable")

    def late(keys: list[str]) -> int:
        prev = s.groupby(keys, sort=False)["t_intended"].transform(lambda x: x.cummax().shift())
        return int((s["t_intended"] < prev).sum())

    return {"deliveries": len(s), "same_channel": late(["receiver", "source", "type"]),
            "same_publisher": late(["receiver", "source"]), "any_publisher": late(["receiver"])}


__all__ = ["ordering_stats"]
