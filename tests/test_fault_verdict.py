"""A fault run passes only on the fault's own loss: loss on an instance the fault never touched, or
in an unplanned outage, makes it fail; the slow-consumer scenario cuts off only the slow instance
even on a busy machine."""
from __future__ import annotations

import multiprocessing
import os

from _records import T0, make_record
from conftest import exact_fault_findings
from fanout.analysis import analyse
from fanout.analysis.accounting import OUTAGE_KIND, PLANNED, UNEXPLAINED
from fanout.lab.record import FAULT_COLUMNS, OUTAGE_COLUMNS, frame
from fanout.lab.run import run_scenario
from fanout.lab.scenario import load_scenario

MS = 1_000_000
NAMES = ("a", "b", "c")
RULE = "Every lost event lost where a planned fault acted (on the instance it targets, in its window)"


def _faulted(drop, outages=()):
    rec = make_record(dict.fromkeys(NAMES, 20), drop=drop)
    rec.faults = frame([{"kind": "partition", "instance": "b", "t_start": T0 + 1000 * MS,
                         "t_end": T0 + 1500 * MS, "detail": ""}], FAULT_COLUMNS)
    rec.outages = frame(list(outages), OUTAGE_COLUMNS)
    return rec


def _in(rec, lo_ms, hi_ms, receiver):
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    return [(receiver, e) for e in rec.publications["id"]
            if T0 + lo_ms * MS <= sent[e] <= T0 + hi_ms * MS and not e.startswith(receiver + ":")]


def _rule(f):
    return next(c for c in f.verdict if c.name == RULE)


def test_a_fault_run_whose_loss_is_the_faults_own_passes():
    probe = make_record(dict.fromkeys(NAMES, 20))
    f = analyse(_faulted(_in(probe, 1000, 1500, "b")))
    assert f.passed and f.status == "PASS" and f.losses.by_kind == {PLANNED: f.losses.lost} and f.losses.lost > 0
    assert f.overall["lost_untouched"] == 0


def test_loss_on_an_instance_the_fault_never_touched_fails_the_run_even_when_an_outage_explains_it():
    probe = make_record(dict.fromkeys(NAMES, 20))
    collateral = _in(probe, 300, 700, "a")  # a was cut off too, at 0.3 s, before the fault on b
    assert collateral
    f = analyse(_faulted(_in(probe, 1000, 1500, "b") + collateral,
                         [{"instance": "a", "t_down": T0 + 300 * MS, "t_up": T0 + 700 * MS, "reason": "cut off"}]))
    assert f.losses.by_kind[OUTAGE_KIND] == len(collateral) and f.losses.unexplained == 0
    assert not f.passed and f.status == "FAIL"
    assert not _rule(f).passed and f"{len(collateral)} in unplanned outages" in _rule(f).measured
    assert f.overall["lost_untouched"] == len(collateral)


def test_unexplained_loss_on_an_untouched_instance_fails_the_run():
    probe = make_record(dict.fromkeys(NAMES, 20))
    f = analyse(_faulted(_in(probe, 1000, 1500, "b") + [("c", probe.publications["id"].iloc[3])]))
    assert f.losses.by_kind[UNEXPLAINED] == 1 and not f.passed


def test_lateness_is_stated_not_judged():
    probe = make_record(dict.fromkeys(NAMES, 20))
    f = analyse(_faulted(_in(probe, 1000, 1500, "b")))
    late = next(c for c in f.verdict if not c.judged)
    assert "later than" in late.measured and f.passed
    assert {"bound_ms", "window_n", "window_p50_ms", "window_p99_ms", "window_max_ms", "late"} <= set(f.losses.faults)


def _spin(stop):
    while not stop.is_set():
        pass


def test_slow_consumer_on_a_busy_machine_cuts_off_only_the_slow_instance():
    """A busy loop per core beside the run (as on a shared CI box): the healthy instances keep up,
    only the stalled one is cut off, and every loss is the fault's own."""
    sc = load_scenario("faults/slow-consumer-pubsub")
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 2)]
    for p in spinners:
        p.start()
    try:
        rec = run_scenario(sc, progress=False, save_to=None)
    finally:
        stop.set()
        for p in spinners:
            p.join(5)
            if p.is_alive():
                p.kill()
    f = exact_fault_findings(rec)
    acc = f.losses
    slow = str(rec.faults["instance"].iloc[0])
    assert acc.lost > 0 and set(acc.losses["receiver"]) == {slow}, acc.losses
    assert acc.by_kind == {PLANNED: acc.lost} and acc.output_buffer_disconnections >= 1
