"""Loss accounting windows: which missing event is attributed to which fault, for which receiver."""
from __future__ import annotations

from _records import T0, event_id, make_record
from fanout.analysis.accounting import (
    HELD, OUTAGE_KIND, PLANNED, POST_NS, PRE_NS, UNEXPLAINED, account_losses, fault_windows,
)
from fanout.lab.record import FAULT_COLUMNS, OUTAGE_COLUMNS, frame

NAMES = ("a", "b", "c")
MS = 1_000_000


def record_with(faults: list[dict], outages: list[dict] = (), drop=()):
    rec = make_record(dict.fromkeys(NAMES, 20), drop=drop)
    rec.faults = frame(faults, FAULT_COLUMNS)
    rec.outages = frame(list(outages), OUTAGE_COLUMNS)
    return rec


def fault(kind, start_ms, end_ms, instance=""):
    return {"kind": kind, "instance": instance, "t_start": T0 + start_ms * MS, "t_end": T0 + end_ms * MS,
            "detail": ""}


def outage(instance, down_ms, up_ms):
    return {"instance": instance, "t_down": T0 + down_ms * MS, "t_up": T0 + up_ms * MS if up_ms else 0,
            "reason": "test"}


def windows(rec):
    return {(w[0], w[2]): (w[3], w[4]) for w in fault_windows(rec, list(NAMES))}


def test_an_instance_fault_touches_that_receiver_only_and_a_server_fault_all():
    rec = record_with([fault("partition", 1000, 1500, "b"), fault("redis_restart", 3000, 3200)])
    w = windows(rec)
    assert set(w) == {("partition on b", "b"), ("redis_restart", "a"), ("redis_restart", "b"),
                      ("redis_restart", "c")}
    assert w[("partition on b", "b")] == (T0 + 1000 * MS - PRE_NS, T0 + 1500 * MS + POST_NS)


def test_the_window_lasts_until_the_receiver_is_back_not_just_the_fault():
    rec = record_with([fault("redis_restart", 1000, 1200)], [outage("a", 1010, 2500), outage("b", 1010, 1100)])
    w = windows(rec)
    assert w[("redis_restart", "a")][1] == T0 + 2500 * MS + POST_NS  # a resubscribed late
    assert w[("redis_restart", "b")][1] == T0 + 1200 * MS + POST_NS  # b was back before the fault ended
    assert w[("redis_restart", "c")][1] == T0 + 1200 * MS + POST_NS  # c saw no outage


def test_an_outage_never_restored_lasts_to_the_end_of_the_run():
    rec = record_with([fault("partition", 1000, 1500, "c")], [outage("c", 1005, 0)])
    assert windows(rec)[("partition on c", "c")][1] == rec.t_end + POST_NS


def test_an_outage_before_the_fault_or_after_the_next_one_does_not_stretch_it():
    rec = record_with([fault("slow_consumer", 1000, 1200, "a"), fault("partition", 2000, 2100, "a")],
                      [outage("a", 500, 800), outage("a", 2010, 3000)])
    w = windows(rec)
    assert w[("slow_consumer on a", "a")][1] == T0 + 1200 * MS + POST_NS  # neither outage is its own
    assert w[("partition on a", "a")][1] == T0 + 3000 * MS + POST_NS


def test_an_outage_dated_from_its_last_sign_of_life_just_before_the_fault_stretches_it():
    # a consumer stops reading at 1000 ms; its last data came at 900 ms: Redis cuts it off, it is back at 2500
    rec = record_with([fault("slow_consumer", 1000, 1200, "a")], [outage("a", 900, 2500)])
    assert windows(rec)[("slow_consumer on a", "a")][1] == T0 + 2500 * MS + POST_NS


def test_an_event_delivered_inside_an_outage_window_is_not_a_loss():
    rec = make_record(dict.fromkeys(NAMES, 20))
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    during = [e for e in rec.publications["id"] if T0 + 2000 * MS <= sent[e] <= T0 + 3000 * MS]
    gone = [e for e in during if not e.startswith("b:")][1:]  # b's outage: all but one lost
    rec = record_with([], [outage("b", 2000, 3000)], drop=[("b", e) for e in gone])
    acc = account_losses(rec)
    assert acc.lost == len(gone) == int(acc.losses["count"].sum()) and acc.unexplained == 0


def test_losses_in_a_window_are_attributed_and_outside_it_unexplained():
    # event k of source s is sent at about T0 + j * 100 ms (10 events/s, round robin over a, b, c)
    rec = make_record(dict.fromkeys(NAMES, 20))
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    inside = [e for e in rec.publications["id"] if T0 + 1000 * MS <= sent[e] <= T0 + 1500 * MS
              and not e.startswith("b:")]
    outside = event_id("a", 15)  # sent at ~4.5 s
    rec = record_with([fault("partition", 1000, 1500, "b")], drop=[("b", e) for e in inside] + [("c", outside)])
    acc = account_losses(rec)
    assert acc.lost == len(inside) + 1
    assert acc.by_cause == {"lost during partition": len(inside), UNEXPLAINED: 1}
    rows = {(r.receiver, r.cause): r.count for r in acc.losses.itertuples()}
    assert rows == {("b", "lost during partition"): len(inside), ("c", UNEXPLAINED): 1}
    assert acc.faults.iloc[0]["lost"] == len(inside)


def test_an_unplanned_outage_the_bridges_saw_explains_what_it_lost():
    rec = make_record(dict.fromkeys(NAMES, 20))
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    during = [e for e in rec.publications["id"] if T0 + 2000 * MS <= sent[e] <= T0 + 3000 * MS]
    rec = record_with([], [outage(n, 2000, 3000) for n in NAMES],
                      drop=[(r, e) for e in during for r in NAMES if not e.startswith(r + ":")])
    acc = account_losses(rec)
    assert acc.unexplained == 0 and acc.lost == 2 * len(during)
    assert set(acc.losses["cause"]) == {"lost during an unplanned outage"}
    assert set(acc.losses["fault"]) == {f"{n} disconnected from Redis 2.00–3.00 s" for n in NAMES}


def test_a_missing_event_in_a_host_bots_run_is_found():
    """Regression: a shortcut skipped the search when the deliveries looked complete by a mesh count."""
    names = {"websocket-host": 30, "bot-1": 0, "bot-2": 0, "bot-3": 0}
    receivers = ["bot-1", "bot-2", "bot-3"]
    rec = make_record(names, drop=[("bot-2", event_id("websocket-host", 4))],
                      scenario_overrides={"receivers": receivers, "publishers": ["websocket-host"]})
    acc = account_losses(rec, receivers)
    assert acc.lost == 1 and acc.unexplained == 1


def test_events_a_receiver_held_back_at_the_end_are_unread_not_unexplained():
    """A receiver whose subscription stopped reading for its handler backlog and was still held when
    the run ended: what was sent after the hold began is named, what was sent before is not."""
    rec = make_record(dict.fromkeys(NAMES, 20))
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    late = [e for e in rec.publications["id"] if sent[e] >= T0 + 4000 * MS and not e.startswith("c:")]
    early = event_id("a", 2)  # sent at ~0.6 s, before the hold
    rec = record_with([], drop=[("c", e) for e in late] + [("c", early)])
    rec.instances.loc[rec.instances["instance"] == "c", "held_since_ns"] = T0 + 4000 * MS
    acc = account_losses(rec)
    assert late and acc.by_cause == {HELD: len(late), UNEXPLAINED: 1}
    assert set(acc.losses.loc[acc.losses["cause"] == HELD, "receiver"]) == {"c"}


def test_an_outage_window_opens_at_the_last_event_that_receiver_got():
    """The server cut the client off with events still in its output buffer: the client read on until
    the close (the outage's start), but nothing sent after the last event it got ever arrived."""
    rec = make_record(dict.fromkeys(NAMES, 20))
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    gone = [e for e in rec.publications["id"] if T0 + 2000 * MS <= sent[e] <= T0 + 3000 * MS
            and not e.startswith("b:")]
    rec = record_with([], [outage("b", 2500, 3000)], drop=[("b", e) for e in gone])
    acc = account_losses(rec)
    assert gone and acc.unexplained == 0 and acc.by_cause == {"lost during an unplanned outage": len(gone)}


# ---------------------------------------------------------------- evidence on the receiver's own path


def _sent(rec):
    return dict(zip(rec.publications["id"], rec.publications["t_sent"]))


def test_a_publishers_outage_never_explains_a_receivers_loss():
    """b misses events of a while a (the publisher) was disconnected and b was not: an acknowledged
    PUBLISH does not pass through the publisher's subscription, so nothing on b's path explains it."""
    rec = make_record(dict.fromkeys(NAMES, 20))
    sent = _sent(rec)
    gone = [e for e in rec.publications["id"] if e.startswith("a:") and T0 + 2000 * MS <= sent[e] <= T0 + 3000 * MS]
    rec = record_with([], [outage("a", 2000, 3000)], drop=[("b", e) for e in gone])
    acc = account_losses(rec)
    assert gone and acc.unexplained == len(gone) == acc.lost
    assert acc.by_kind == {UNEXPLAINED: len(gone)}


def test_an_outage_does_not_reach_back_past_the_receivers_last_sign_of_life():
    """b missed an event of a at ~0.9 s, then got a's later events on that stream before its own
    outage at 2.5 s: its reconnect saw no gap covering it, so the outage does not explain it."""
    early = event_id("a", 2)  # a's ticker seq 2, sent at ~0.6 s
    rec = record_with([], [outage("b", 2500, 3000)], drop=[("b", early)])
    acc = account_losses(rec)
    assert acc.lost == 1 and acc.unexplained == 1


def test_a_gap_seen_on_reconnect_covers_what_the_server_held_before_the_last_sign_of_life():
    """b's last event from a's ticker stream arrived at ~1.9 s, then Redis held a's later ones and cut
    b off; b read on (other streams) until 2.5 s, its last sign of life. The first ticker of a after
    b's reconnect shows the gap: those events are the outage's; a's trades b got are no loss."""
    rec = make_record(dict.fromkeys(NAMES, 20))
    sent = _sent(rec)
    gone = [e for e in rec.publications["id"] if e.startswith("a:ticker") and T0 + 2000 * MS <= sent[e] <= T0 + 3000 * MS]
    rec = record_with([], [outage("b", 2500, 3000)], drop=[("b", e) for e in gone])
    acc = account_losses(rec)
    assert gone and acc.unexplained == 0 and acc.by_kind == {OUTAGE_KIND: len(gone)}
    assert set(acc.losses["evidence"]) == {"in the gap seen on reconnect (outage 0 of b)"}


def test_an_outage_long_after_a_fault_does_not_stretch_its_window():
    """a slow spell 1.0-1.2 s on a; a's unrelated outage at 4.0-4.5 s is not the fault's."""
    rec = record_with([fault("slow_consumer", 1000, 1200, "a")], [outage("a", 4000, 4500)])
    assert windows(rec)[("slow_consumer on a", "a")][1] == T0 + 1200 * MS + POST_NS


def test_every_loss_has_a_kind_and_its_evidence():
    rec = make_record(dict.fromkeys(NAMES, 20))
    sent = _sent(rec)
    in_fault = [e for e in rec.publications["id"] if T0 + 1000 * MS <= sent[e] <= T0 + 1500 * MS and not e.startswith("b:")]
    in_outage = [e for e in rec.publications["id"] if T0 + 3000 * MS <= sent[e] <= T0 + 3500 * MS and not e.startswith("c:")]
    rec = record_with([fault("partition", 1000, 1500, "b")], [outage("c", 3000, 3500)],
                      drop=[("b", e) for e in in_fault] + [("c", e) for e in in_outage] + [("a", event_id("b", 15))])
    acc = account_losses(rec)
    assert acc.by_kind == {PLANNED: len(in_fault), OUTAGE_KIND: len(in_outage), UNEXPLAINED: 1}
    kinds = {(r.receiver, r.kind): r.evidence for r in acc.losses.itertuples()}
    assert kinds == {("b", PLANNED): "sent in the fault's window on b",
                     ("c", OUTAGE_KIND): "sent while c was disconnected (outage 0 of c)",
                     ("a", UNEXPLAINED): ""}
    assert acc.to_dict()["by_kind"] == acc.by_kind


def test_an_outage_while_the_receiver_is_still_catching_up_after_a_slow_spell_is_the_faults():
    """a stalls 1.0-1.2 s; on a busy machine its backlog keeps it late until 3.6 s and Redis cuts it
    off at 3.0 s, long after "as long again": still the fault's, because a's own deliveries show it
    had not caught up. The same outage after a was on time again is not the fault's."""
    def late_until(rec, until_ms):
        d = rec.deliveries
        due = dict(zip(rec.publications["id"], rec.publications["t_intended"]))
        lagging = (d["receiver"] == "a") & (d["t_received"] > T0 + 1200 * MS) & (d["t_received"] < T0 + until_ms * MS)
        d.loc[lagging, "t_received"] = d.loc[lagging, "id"].map(due) + 2_000 * MS  # two seconds behind
        rec.deliveries = d.sort_values("t_received", kind="stable").reset_index(drop=True)
        return rec

    rec = late_until(record_with([fault("slow_consumer", 1000, 1200, "a")], [outage("a", 3000, 3500)]), 3600)
    assert windows(rec)[("slow_consumer on a", "a")][1] == T0 + 3500 * MS + POST_NS
    caught_up = late_until(record_with([fault("slow_consumer", 1000, 1200, "a")], [outage("a", 3000, 3500)]), 1500)
    assert windows(caught_up)[("slow_consumer on a", "a")][1] == T0 + 1200 * MS + POST_NS


def test_the_backlog_a_slow_spell_leaves_is_the_faults_delay_until_the_receiver_is_on_time_again():
    from fanout.analysis.accounting import recovery_windows

    rec = record_with([fault("slow_consumer", 1000, 1200, "a")])
    d, due = rec.deliveries, dict(zip(rec.publications["id"], rec.publications["t_intended"]))
    lagging = (d["receiver"] == "a") & (d["t_received"] > T0 + 1200 * MS) & (d["t_received"] < T0 + 3000 * MS)
    d.loc[lagging, "t_received"] = d.loc[lagging, "id"].map(due) + 900 * MS
    [(who, start, end)] = recovery_windows(rec, list(NAMES))
    first_on_time = int(d.loc[(d["receiver"] == "a") & ~lagging & (d["t_received"] > T0 + 1250 * MS), "t_received"].min())
    assert who == "a" and start == T0 + 1000 * MS - PRE_NS and end == first_on_time
    # a receiver that never caught up keeps the fault's own window: its lateness afterwards is judged
    d.loc[(d["receiver"] == "a") & (d["t_received"] > T0 + 1200 * MS), "t_received"] += 900 * MS
    rec.t_end = int(d["t_received"].max()) + MS
    [(_, _, end)] = recovery_windows(rec, list(NAMES))
    assert end == T0 + 1200 * MS + POST_NS
