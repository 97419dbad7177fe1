"""Recorded runs on disk for the notebook and lab tests (no Redis): a synthetic pub/sub partition
run with losses of two causes, saved with ``record.save`` where ``fanout.lab.runs``/``load_run`` look."""
from __future__ import annotations

from pathlib import Path

from _records import T0, make_record
from fanout.lab.record import FAULT_COLUMNS, OUTAGE_COLUMNS, frame

MS = 1_000_000
NAMES = ("a", "b", "c")


def _sent_in(rec, lo_ms: int, hi_ms: int, receiver: str) -> list[tuple[str, str]]:
    """(receiver, id) of every event another instance sent between lo_ms and hi_ms."""
    p = rec.publications
    return [(receiver, e) for e, s, t in zip(p["id"], p["source"], p["t_sent"])
            if T0 + lo_ms * MS <= t <= T0 + hi_ms * MS and s != receiver]


def partition_run(run_id: str = "20261207-120000-partition-pubsub-0001"):
    """b partitioned 1.0–1.5 s (a planned fault: its loss is the fault's); a disconnected
    0.3–0.7 s on its own (an unplanned outage: its loss is the outage's); one duplicate delivery."""
    probe = make_record(dict.fromkeys(NAMES, 20))
    drop = _sent_in(probe, 1000, 1500, "b") + _sent_in(probe, 300, 700, "a")
    rec = make_record(dict.fromkeys(NAMES, 20), drop=drop, duplicate=[("c", probe.publications["id"][0])],
                      scenario_overrides={"name": "partition-pubsub", "transport": "pubsub",
                                          "faults": [{"kind": "partition", "at_s": 1, "duration_s": 0.5,
                                                      "instance": 1}]})
    rec.run_id = run_id
    rec.faults = frame([{"kind": "partition", "instance": "b", "t_start": T0 + 1000 * MS, "t_end": T0 + 1500 * MS,
                         "detail": "b cut off from Redis (reset); partition healed"}], FAULT_COLUMNS)
    rec.outages = frame([{"instance": "a", "t_down": T0 + 300 * MS, "t_up": T0 + 700 * MS, "reason": "cut off"}],
                        OUTAGE_COLUMNS)
    return rec


def saved(rec, root: Path) -> Path:
    """``rec`` saved under ``root/data/runs`` (where ``fanout.lab.runs(root)`` looks); its folder."""
    return Path(rec.save(root / "data" / "runs"))
