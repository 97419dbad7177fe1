"""The sequence tracker's rules (fanout.sequencing) one by one, without a server: what each kind
of message may move, and that a forged number never suppresses a real event."""
from __future__ import annotations

from fanout.metrics import COUNTER_NAMES
from fanout.sequencing import DUPLICATE, MAX_GAP, WINDOW, SequenceTracker


class Feed:
    def __init__(self, trusted: bool = False) -> None:
        self.counts = dict.fromkeys(COUNTER_NAMES, 0)
        self.t = SequenceTracker(self.counts, trusted=trusted)
        self.ch = self.t.channel("ws:trade", "trade", "trade")

    def __call__(self, seq, ns=None, epoch="e1", source="p", void=None) -> int:
        obj = {} if void is None else {"void": void}
        return self.t.check(self.ch, source, epoch, seq, seq * 7 % 1_000_000 if ns is None else ns, obj)

    def get(self, *names):
        return tuple(self.counts[n] for n in names)


def test_in_order_gap_and_exact_duplicates():
    f = Feed()
    assert [f(s) for s in (1, 2, 3, 6)] == [0, 0, 0, 2]
    assert f.t.prev_last == 3
    assert f(6) == DUPLICATE and f(2) == DUPLICATE            # the same events again (same ns)
    assert f.get("gaps", "suspicious", "unsent") == (2, 0, 0)


def test_a_void_announcement_turns_the_hole_into_unsent_and_overlaps_are_ignored():
    f = Feed()
    for s in range(1, 6):
        f(s)
    # 3..7 announced void (their replies were lost); 3..5 reached Redis and were delivered: only 6, 7 unsent
    assert f(8, void=[[3, 7]]) == 0
    assert f.get("gaps", "unsent") == (0, 2)
    assert f(9, void=[[3, 7]]) == 0                           # announced again: nothing counted twice
    assert f(12, void=[[3, 7], [10, 10]]) == 1                # 11 lost in transit, 10 unsent
    assert f.get("gaps", "unsent", "suspicious") == (1, 3, 0)
    assert f(13) == 0
    assert f(15, void=[[14, 14], [14, 14], [1, 20]]) == 0     # overlapping claims count each seq at most once
    assert f.get("unsent", "gaps") == (4, 1)


def test_a_forged_jump_is_bounded_and_refuted_by_the_real_stream():
    f = Feed()
    for s in range(1, 11):
        f(s)
    assert f(10 + MAX_GAP + 2, ns=1) == 0                     # far ahead: suspicious, nothing moved
    assert f.get("gaps", "suspicious") == (0, 1)
    assert f(11) == 0 and f.t.last("p", "ws:trade") == ("e1", 11)
    assert f(20, ns=1) == 8                                   # a near jump: counted (a false alarm, bounded)
    assert f(30, ns=1) == 0                                   # a second one while it is unconfirmed: suspicious
    assert f(12) == 0                                         # the real stream goes on: the jump is refuted
    assert f.t.last("p", "ws:trade") == ("e1", 12)
    for s in range(13, 25):                                   # every real event is handed over, none dropped
        assert f(s) == 0
    assert f.get("gaps", "suspicious", "duplicates") == (8, 3, 0)


def test_a_forged_copy_of_the_next_seq_does_not_suppress_the_real_one():
    f = Feed()
    f(1)
    assert f(2, ns=999) == 0                                  # the forger guessed the next number
    assert f(2) == 0                                          # the real 2 (another ns): delivered, suspicious
    assert f(3) == 0 and f.get("suspicious", "gaps") == (1, 0)
    assert f(2, ns=999) == DUPLICATE                          # a replay of the first one: dropped
    assert f(2) == DUPLICATE                                  # a replay of the real one: dropped too
    assert f.get("suspicious", "duplicates") == (1, 0)       # (duplicates are counted by delivery)


def test_a_forged_jump_past_the_window_does_not_let_a_replay_through():
    f = Feed()
    for s in (1, 2, 3):
        f(s)
    assert f(3 + 100, ns=5) == 99                             # a forged jump of 100: 99 counted, unconfirmed
    assert f(3) == DUPLICATE and f(2) == DUPLICATE            # replays of what was delivered: still copies
    assert f(4) == 0 and f.get("suspicious") == (1,)         # the real stream refutes the jump


def test_a_forged_jump_confirmed_by_another_forgery_lets_no_replay_of_a_real_event_through():
    f = Feed()
    for s in (1, 2, 3):
        f(s)
    assert f(103, ns=5) == 99 and f(104, ns=6) == 0             # a jump, "confirmed" by a second forgery
    assert [f(s) for s in (4, 5, 6)] == [0, 0, 0]               # the real stream, behind: delivered
    assert [f(s) for s in (6, 5, 4, 3)] == [DUPLICATE] * 4      # its replays: copies, dropped
    assert f.get("suspicious") == (3,)


def test_an_event_with_ns_zero_in_a_hole_is_no_duplicate_of_an_empty_slot():
    f = Feed()
    f(1)
    assert f(5) == 3                                          # a gap: 2, 3, 4 never seen
    assert f(3, ns=0) == 0 and f.get("suspicious") == (1,)   # late, not a copy of anything: delivered


def test_a_far_jump_the_source_goes_on_from_is_followed_without_counting_a_gap():
    f = Feed()
    f(1)
    assert f(5000) == 0 and f(5001) == 0                      # it goes on from there: followed
    assert f(5002) == 0 and f.get("gaps", "suspicious") == (0, 1)


def test_after_a_reconnect_the_first_jump_may_be_any_distance():
    f = Feed()
    f(1)
    f.t.resync()
    assert f(1 + 10 * MAX_GAP + 1) == 10 * MAX_GAP
    assert f.get("gaps", "suspicious") == (10 * MAX_GAP, 0)
    assert f(3 + 10 * MAX_GAP + 50) == 0 and f.get("suspicious") == (1,)   # only the first one


def test_epochs_restart_come_back_and_are_each_tracked():
    f = Feed()
    for s in range(1, 4):
        f(s)
    assert f(1, epoch="e2") == 0 and f.get("source_restarts") == (1,)
    assert f(4) == 0 and f.get("suspicious") == (1,)          # e1 came back after e2 replaced it
    assert f(5) == 0 and f(2, epoch="e2") == 0                # each epoch's own numbering: no false gap
    assert f.get("gaps", "suspicious", "source_restarts") == (0, 2, 1)
    assert f(5_000_000, epoch="e3") == 0                      # a new epoch that does not start low
    assert f.get("source_restarts", "suspicious") == (1, 3)


def test_sources_compare_by_type_and_value():
    f = Feed()
    assert f(1, source=123) == 0 and f(1, source="123") == 0  # two first messages: two sources
    assert f(2, source=123) == 0 and f(2, source="123") == 0
    assert f.get("gaps", "duplicates", "source_restarts") == (0, 0, 0)


def test_a_signed_fleet_trusts_its_numbers():
    f = Feed(trusted=True)
    f(1)
    assert f(1 + 5 * MAX_GAP + 1) == 5 * MAX_GAP              # any distance: a signed seq is real
    assert f(3, ns=1) == DUPLICATE                            # behind: a replay, dropped
    assert f.get("suspicious") == (0,)


def test_old_replays_beyond_the_window_are_delivered_not_dropped():
    f = Feed()
    for s in range(1, 2 * WINDOW + 2):
        f(s)
    assert f(1) == 0 and f.get("suspicious", "duplicates") == (1, 0)


def test_a_flood_of_forged_epochs_does_not_push_the_real_one_out():
    f = Feed()
    for s in range(1, 51):
        f(s)
    for k in range(6):                                        # forged new epochs, each at seq 1
        f(1, epoch=f"forged{k}")
    assert f(50) == DUPLICATE                                 # the real epoch is still tracked: a replay is a copy
    assert f(51) == 0 and f.get("gaps") == (0,)               # and its stream goes on without a false gap


# -- issue 23: SequenceTracker against a small reference model, over random interleavings -----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from benchmarks.chaos.wire_model import Elem, Receiver, apply_rules  # noqa: E402  (the rules, written apart)
from fanout.sequencing import STALE  # noqa: E402

OPS = st.lists(st.tuples(
    st.sampled_from(["publish", "publish", "publish", "lose", "dup", "replay", "restart", "reconnect",
                     "forge_seq", "forge_far", "forge_epoch", "old_epoch"]),
    st.integers(0, 3),            # which source / channel pair
    st.integers(0, 10 ** 6 - 1),  # a forger's ns, or which earlier event
    st.integers(1, 3000),         # a forger's seq offset
), min_size=1, max_size=120)


def _outcome(res: int) -> str:
    return "duplicate" if res == DUPLICATE else "stale" if res == STALE else "gap" if res > 0 else "deliver"


def _model_outcome(what: str) -> str:
    return what if what in ("duplicate", "stale", "gap") else "deliver"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, trusted=st.booleans())
def test_the_tracker_follows_the_reference_model_over_random_interleavings(ops, trusted):
    """Publishes, losses, exact duplicates, replays of older events, restarts (new epochs), the
    receiver's reconnects and forgeries (seqs near and far, made-up epochs, old epochs coming back),
    on two channels from two sources: the tracker (fanout.sequencing) and the reference model
    (benchmarks/chaos/wire_model.py, written from docs/wire-format.md) agree on every message's
    outcome and on every counter. ``trusted``: a signed fleet (forgeries then stand for what a key
    holder could send)."""
    counts = dict.fromkeys(COUNTER_NAMES, 0)
    t = SequenceTracker(counts, trusted=trusted)
    chans = {n: t.channel(n, n[3:], n[3:]) for n in ("ws:trade", "ws:ticker")}
    rx = Receiver("me", "mine", started_ms=0, trusted=trusted)
    pubs = {}          # (channel, source) -> {"epoch", "seq", "sent": [(epoch, seq, ns, ts)], "epochs": [...]}
    clock = [1000]
    restarts = gaps = dups = got_dups = 0

    def deliver(channel, source, epoch, seq, ns, ts):
        nonlocal restarts, gaps, dups, got_dups
        got = _outcome(t.check(chans[channel], source, epoch, seq, ns, {"timestamp": ts}))
        got_dups += got == "duplicate"   # (the bridge counts duplicates from the answer)
        what, missing = apply_rules(rx, channel, Elem(source, epoch, seq, None, ns=ns, ts=ts))
        want = _model_outcome(what)
        restarts += what == "restart"
        gaps += missing
        dups += what == "duplicate"
        assert got == want, (channel, source, epoch, seq, ns, what)

    for op, which, n, off in ops:
        channel, source = (("ws:trade", "a"), ("ws:trade", "b"), ("ws:ticker", "a"), ("ws:ticker", "b"))[which]
        p = pubs.setdefault((channel, source), {"epoch": f"e{which}-0", "seq": 0, "sent": [], "epochs": []})
        clock[0] += 1
        if op in ("publish", "lose"):
            p["seq"] += 1
            ev = (p["epoch"], p["seq"], (p["seq"] * 7919 + which) % 10 ** 6, clock[0])
            p["sent"].append(ev)
            if op == "publish":
                deliver(channel, source, *ev)
        elif op in ("dup", "replay") and p["sent"]:
            ev = p["sent"][-1] if op == "dup" else p["sent"][n % len(p["sent"])]
            deliver(channel, source, *ev)
        elif op == "restart":
            p["epochs"].append(p["epoch"])
            p["epoch"], p["seq"] = f"e{which}-{len(p['epochs'])}", 0
        elif op == "reconnect":
            t.resync()
            rx.resync()
        elif op == "forge_seq":
            deliver(channel, source, p["epoch"], max(1, p["seq"] + off % 60 - 20), n, clock[0])
        elif op == "forge_far":
            deliver(channel, source, p["epoch"], p["seq"] + off + MAX_GAP, n, clock[0])
        elif op == "forge_epoch":
            deliver(channel, source, f"forged{n % 7}", 1 + off % 1200, n, clock[0])
        elif op == "old_epoch" and p["epochs"]:
            deliver(channel, source, p["epochs"][n % len(p["epochs"])], 1 + off % 5, n, clock[0] - 500)
    assert (counts["gaps"], got_dups, counts["source_restarts"], counts["suspicious"]) == (
        gaps, dups, restarts, rx.suspicious)
