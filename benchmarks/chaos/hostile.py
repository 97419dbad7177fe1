"""Hostile and malformed messages mid-run, and the exact counters they must produce.

While a pub/sub scenario runs, the driver publishes N messages of its own on the run's channels
(:data:`WEIGHTS`): random bytes, empty, 1 MB, JSON that is no object, envelopes with a field of
the wrong type or a required field missing, batches of bad objects, seed-form and wrong-channel
envelopes from a source outside the run, and forgeries of the run's own instances — a source
equal to a receiver's own id, a new epoch, byte-exact replays of real messages (on their own
channel, and on another channel), and seq jumps ahead of a real source.

A capture connection subscribed to the same channels sees every message in the order every
receiver sees it (Redis writes one PUBLISH to every subscriber at once). ``wire_model.expected``
replays that stream through the v2 wire rules of docs/wire-format.md, written there independently
of ``fanout.sequencing`` and ``fanout.delivery``, and says per receiver what the bridge must count
(malformed, self-filtered, gaps, duplicates, source restarts, suspicious, id conflicts, rejected)
and which real events a forgery suppresses (the contract: none). The case compares that with the
bridges' counters and the run's deliveries, id by id.

Two variants: unsigned (``hostile``) and signed (``hostile-signed``: the run's bridges sign and
verify with a key the injector does not have; everything it sends but byte-exact replays of real
signed messages on the channel they were signed for must be rejected unparsed — a copy on another
channel has no valid signature there (the MAC covers the channel) — and no forged event may reach a
handler). Unsigned, an envelope whose type is not its channel's is rejected too. Re-running
``python -m benchmarks.chaos --only hostile`` re-measures the figures.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

import orjson
import pandas as pd
import redis

from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario
from fanout.lab.servers import RedisServer
from fanout.metrics import COUNTER_NAMES

from .common import Background, CaseResult, Sizes, client, data_dir, keys_left, wait_for_traffic
from .wire_model import Elem, derive_id, expected, real_elem

PREFIX = "ws:"
EVENT_TYPES = ("ticker", "trade")
CHANNELS = tuple(PREFIX + t for t in EVENT_TYPES)
FOREIGN = "intruder-7"
#: share of each kind among the messages that are not 1 MB (percent)
WEIGHTS = {"random bytes": 14, "empty": 5, "not an object": 8, "wrong type": 16, "missing field": 10,
           "bad batch": 5, "seed form, foreign source": 5, "wrong channel": 3, "own id (seed form)": 8,
           "new epoch": 6, "replay": 14, "cross-channel replay": 6, "seq jump": 6}
JUMPS = (1, 2, 10, 100)
#: v1 fields: in a v2 envelope (it has ``ns``) keys a reader does not know, ignored whatever their type
IGNORED = ("id", "ts_ns", "ti_ns")
#: the counters compared with the model, one by one
COMPARED = ("malformed", "self_filtered", "gaps", "duplicates", "source_restarts", "suspicious", "id_conflicts",
            "rejected", "rejected_signature", "rejected_channel", "unsent", "received")
if not set(COMPARED) <= set(COUNTER_NAMES):  # the wire contract's counters moved: follow them here
    raise ImportError(f"benchmarks.chaos.hostile compares counters this build lacks: {set(COMPARED) - set(COUNTER_NAMES)}")
BIG = 1024 * 1024


@dataclass
class Sent:
    kind: str
    channel: str
    raw: bytes
    elems: tuple  # Elem, or None for an element the bridge must count malformed
    detail: str = ""
    signed_ok: bool = False  # a byte-exact copy of a validly signed message (the signed variant)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.detail}".strip()


# -- what goes on the wire -------------------------------------------------------------------

class Forger:
    """Builds the hostile messages; forgeries read the capture's latest real envelopes."""

    def __init__(self, rng: random.Random, ids: list[str], capture: "Capture") -> None:
        self.rng, self.ids, self.cap = rng, ids, capture
        self.n = 0

    def _env(self, src, *, epoch="e0e0e0e0", seq=None, typ="ticker", **extra) -> dict:
        """A full v2 fanout envelope from ``src``; ``extra`` overrides (or, given _DROP, removes) fields."""
        self.n += 1
        d = {"source": src, "epoch": epoch, "type": typ, "seq": seq if seq is not None else self.n,
             "timestamp": int(time.time() * 1000), "ns": self.rng.randrange(1_000_000),
             "data": {"symbol": "BTCUSDT", "price": 1.0}}
        d.update(extra)
        return {k: v for k, v in d.items() if v is not _DROP}

    @staticmethod
    def _elem(d: dict, channel: str) -> Elem:
        typ = d.get("type")
        return Elem(d["source"], d["epoch"], d["seq"], derive_id(d["epoch"], channel[len(PREFIX):], d["seq"]),
                    ns=d["ns"], ts=d["timestamp"], type=typ if isinstance(typ, str) else None)

    def make(self, kind: str) -> Sent:
        r = self.rng
        ch = r.choice(CHANNELS)
        bad = (None,)
        if kind == "random bytes":
            raw = bytes(r.getrandbits(8) for _ in range(r.randint(1, 256)))
            return Sent(kind, ch, raw if not raw.lstrip().startswith((b"{", b"[")) else b"\xff" + raw, bad)
        if kind == "empty":
            return Sent(kind, ch, b"", bad)
        if kind == "1 MB":
            d = self._env(FOREIGN, data={"pad": "x" * BIG})
            return Sent(kind, ch, orjson.dumps(d), bad)
        if kind == "not an object":
            return Sent(kind, ch, r.choice([b"5", b'"ticker"', b"null", b"true", b"[]", b"[1,2,3]", b"{}",
                                            b'[{"a":1},7]', b"{not json", b"\x00\x00"]), bad)
        if kind == "wrong type":
            field_, value = r.choice([("type", 5), ("type", ""), ("source", True), ("source", None), ("source", [1]),
                                      ("seq", "7"), ("seq", 1.5), ("seq", 0), ("epoch", 5), ("id", 5),
                                      ("timestamp", "x"), ("timestamp", True), ("ns", "z"), ("ns", -1),
                                      ("ns", 1_000_000), ("lag", 1.5), ("ts_ns", "y"), ("ti_ns", 1.5)])
            d = self._env(FOREIGN, **{field_: value})
            if field_ in IGNORED:  # a v1 field in a v2 envelope: an unknown key, ignored (delivered)
                return Sent(kind, ch, orjson.dumps(d), (self._elem(d, ch),), field_)
            return Sent(kind, ch, orjson.dumps(d), bad, field_)
        if kind == "missing field":
            d = self._env(FOREIGN, **{r.choice(["type", "source", "data"]): _DROP})
            return Sent(kind, ch, orjson.dumps(d), bad)
        if kind == "bad batch":
            items = [self._env(FOREIGN, type=5), self._env(FOREIGN, source=None), self._env(FOREIGN, data=_DROP)]
            items = items[: r.randint(2, 3)]
            return Sent(kind, ch, orjson.dumps(items), tuple(None for _ in items))
        if kind == "seed form, foreign source":
            src = r.choice([FOREIGN, 4242])
            d = {"type": ch[len(PREFIX):], "data": {"p": 1}, "timestamp": 1760700000123, "source": src}
            return Sent(kind, ch, orjson.dumps(d), (Elem(str(src), None, None, None),))
        if kind == "wrong channel":
            d = self._env(FOREIGN, typ="candle", epoch=f"w{self.n:07d}")
            return Sent(kind, ch, orjson.dumps(d), (self._elem(d, ch),))
        if kind == "own id (seed form)":
            src = r.choice(self.ids)
            d = {"type": ch[len(PREFIX):], "data": {"p": 1}, "timestamp": 1760700000123, "source": src,
                 "id": f"forged-own:{self.n}"}  # a v1 id: read, ignored
            self.n += 1
            return Sent(kind, ch, orjson.dumps(d), (Elem(src, None, None, None, ts=d["timestamp"]),))
        # forgeries of a real source: need what the capture saw from it on that channel
        src = r.choice(self.ids)
        real = self.cap.last.get((ch, src))
        if real is None:
            return self.make("own id (seed form)")
        epoch, seq, raw = real
        if kind == "replay":
            e = real_elem(raw, ch, PREFIX)
            return Sent(kind, ch, raw, (dataclasses.replace(e, real=False),), signed_ok=True)
        if kind == "cross-channel replay":  # the real message on another channel: its type is not that channel's
            other = next(c for c in CHANNELS if c != ch)
            e = real_elem(raw, other, PREFIX)
            return Sent(kind, other, raw, (dataclasses.replace(e, real=False),), signed_ok=False)
        if kind == "new epoch":
            d = self._env(src, epoch=f"f{self.n:07d}", seq=1, typ=ch[len(PREFIX):])
            return Sent(kind, ch, orjson.dumps(d), (self._elem(d, ch),))
        jump = r.choice(JUMPS)  # "seq jump": the real epoch, seq ahead of the last real one seen
        d = self._env(src, epoch=epoch, seq=seq + jump, typ=ch[len(PREFIX):])
        return Sent(kind, ch, orjson.dumps(d), (self._elem(d, ch),), f"+{jump}")


_DROP = object()


def plan(n: int, big: int, seed: int) -> list[str]:
    """The kinds of ``n`` messages, ``big`` of them 1 MB, in a shuffled order (seeded)."""
    rest = n - big
    total = sum(WEIGHTS.values())
    kinds = [k for k, w in WEIGHTS.items() for _ in range(rest * w // total)]
    kinds += ["random bytes"] * (rest - len(kinds)) + ["1 MB"] * big
    random.Random(seed).shuffle(kinds)
    return kinds


class Capture(threading.Thread):
    """Subscribed to the run's channels: every message in arrival order, with the kind the
    injector had given it (None: a message of the run), and the last real envelope per (channel, source)."""

    def __init__(self, url: str, ids: list[str]) -> None:
        super().__init__(name="chaos-capture", daemon=True)
        self.url, self.ids = url, set(ids)
        self.messages: list[tuple[str, bytes, Sent | None]] = []
        self.labels: dict[bytes, Sent] = {}
        self.last: dict[tuple[str, str], tuple[str, int, bytes]] = {}
        self.epochs: dict[str, str] = {}         # source -> its epoch, from its real envelopes
        self.first_ms: int | None = None         # the timestamp of the first real envelope
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            c = redis.Redis.from_url(self.url, socket_connect_timeout=3)
            ps = c.pubsub()
            ps.subscribe(*CHANNELS)
            while not self.stop.is_set():
                m = ps.get_message(timeout=0.1)
                if m is None:
                    continue
                if m["type"] == "subscribe":
                    if m["data"] == len(CHANNELS):
                        self.ready.set()
                    continue
                if m["type"] != "message":
                    continue
                ch, raw = m["channel"].decode(), m["data"]
                sent = self.labels.get(raw)  # a replay's original came before its label existed
                self.messages.append((ch, raw, sent))
                if sent is None:
                    try:
                        d = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(d, dict) and d.get("source") in self.ids:
                        self.last[(ch, d["source"])] = (d["epoch"], d["seq"], raw)
                        self.epochs[d["source"]] = d["epoch"]
                        if self.first_ms is None:
                            self.first_ms = d["timestamp"]
            ps.close()
            c.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the case
            self.error = exc
            self.ready.set()


def inject(url: str, ids: list[str], kinds: list[str], over_s: float, seed: int, cap: Capture) -> dict:
    """Publish the planned messages evenly over ``over_s`` seconds, once the capture has seen a
    real envelope from every instance on every channel."""
    deadline = time.monotonic() + 30
    while len(cap.last) < len(ids) * len(CHANNELS):
        if time.monotonic() > deadline or cap.error:
            raise TimeoutError(f"the capture saw {len(cap.last)} of {len(ids) * len(CHANNELS)} (channel, source) pairs")
        time.sleep(0.02)
    forger = Forger(random.Random(seed), ids, cap)
    t0 = time.monotonic()
    sent: dict[str, int] = {}
    with client(url, 5.0) as c:
        for k, kind in enumerate(kinds):
            due = t0 + over_s * k / len(kinds)
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            m = forger.make(kind)
            cap.labels[m.raw] = m  # before it is sent: the capture tells it from the run's own
            c.publish(m.channel, m.raw)
            sent[m.kind] = sent.get(m.kind, 0) + 1
    return {"by_kind": sent, "seconds": round(time.monotonic() - t0, 2)}


class CountWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


# -- the case ----------------------------------------------------------------------------------

def run(sz: Sizes, *, seed: int = 17, signed: bool = False) -> CaseResult:
    n, big = sz.hostile, sz.hostile_big
    over_s = 10.0 if n >= 5_000 else 3.0
    duration = over_s + (10.0 if not sz.small else 5.0)
    res = CaseResult(case="hostile messages · pubsub" + (" · signed" if signed else ""))
    warnings = CountWarnings()
    logging.getLogger("fanout").addHandler(warnings)
    with RedisServer() as srv:
        sc = Scenario(name="chaos-hostile", instances=sz.instances, duration_s=duration, rate_per_s=sz.rate,
                      transport="pubsub", redis_url=srv.url, key_prefix=PREFIX, event_types=EVENT_TYPES,
                      drain_timeout_s=3.0, process_mode="single", signing=signed)
        ids = [f"test-instance-{i}" for i in range(sz.instances)]
        cap = Capture(srv.url, ids)

        def drive():
            wait_for_traffic([srv.url], ("publish",))
            cap.start()
            if not cap.ready.wait(10) or cap.error:
                raise RuntimeError(f"capture not subscribed: {cap.error}")
            return inject(srv.url, ids, plan(n, big, seed), over_s, seed, cap)

        bg = Background(drive, "chaos-inject").start()
        rec = run_scenario(sc, progress=False, save_to=str(data_dir()))
        cap.stop.set()
        sent = bg.join(60)
        cap.join(10)
        res.keys_left = keys_left([srv.url])
    logging.getLogger("fanout").removeHandler(warnings)
    if cap.error:
        raise cap.error
    compare(res, rec, cap, sent, ids, signed)
    res.figures["warnings_logged"] = warnings.n
    res.injected = (f"{sum(sent['by_kind'].values()):,} hostile messages over {sent['seconds']:g} s of a {duration:g} s "
                    f"run ({sz.instances} instances, {sz.rate:g} events/s): " +
                    ", ".join(f"{v:,} {k}" for k, v in sorted(sent["by_kind"].items(), key=lambda kv: -kv[1])))
    res.notes.append(f"fanout logged {warnings.n:,} warnings for them (one per malformed message per receiver: "
                     "a hostile publisher can flood the log)")
    return res


def compare(res: CaseResult, rec, cap: Capture, sent: dict, ids: list[str], signed: bool = False) -> None:
    """The bridges' counters and the run's deliveries against :func:`expected`."""
    exp = expected(cap.messages, ids, cap.epochs, cap.first_ms or 0, signed=signed, prefix=PREFIX)
    inst = rec.instances.set_index("instance")
    pubs = rec.publications[rec.publications["ok"]]
    d = rec.deliveries
    rows, exact, all_real = [], True, True
    captured = {e.id for ch, raw, s in cap.messages if s is None for e in (real_elem(raw, ch, PREFIX),) if e is not None}
    for me in ids:
        e, m = exp[me], inst.loc[me]
        own = int((pubs["source"] == me).sum())
        want_real = set(pubs.loc[pubs["source"] != me, "id"])
        mine = d[d["receiver"] == me]
        got_real = set(mine["id"][mine["id"].isin(want_real)])
        # every id handed over, with repeats: what the model says for the captured stream, plus the
        # real events handed over before the capture began
        handed = Counter(None if pd.isna(x) else x for x in mine["id"])
        model = e.delivered + Counter(want_real - captured)
        differ = sum(((handed - model) + (model - handed)).values())
        want = {"malformed": e.malformed, "self_filtered": own + e.self_forged, "gaps": e.gaps,
                "duplicates": e.duplicates, "source_restarts": e.source_restarts, "suspicious": e.suspicious,
                "id_conflicts": e.id_conflicts, "rejected": e.rejected,
                "rejected_signature": e.rejected_signature, "rejected_channel": e.rejected_channel, "unsent": 0,
                "received": len(want_real) - len(e.suppressed) + sum(e.forged_delivered.values())}
        pairs = {k: (want[k], int(m[k])) for k in COMPARED}
        pairs["ids handed over that differ from the model"] = (0, differ)
        for k, (want, got) in pairs.items():
            exact &= want == got
        missing = want_real - got_real
        all_real &= not (missing - e.suppressed)
        rows.append({"receiver": me, **{k: {"expected": a, "counted": b} for k, (a, b) in pairs.items()},
                     "real_missing": len(missing), "suppressed_by_forgery": len(e.suppressed),
                     "missing_not_suppressed": len(missing - e.suppressed),
                     "suppressed_by": e.suppressed_by, "gap_notices": e.gap_notices,
                     "forged_delivered": e.forged_delivered})
    res.figures["per_receiver"] = rows
    res.figures["sent_by_kind"] = sent["by_kind"]
    res.figures["captured_messages"] = len(cap.messages)
    res.figures["signing"] = signed
    suppressed = sum(r["suppressed_by_forgery"] for r in rows)
    alarms = sum(r["gap_notices"] for r in rows)
    claimed = sum(r["gaps"]["counted"] for r in rows)
    accepted = {}
    for r in rows:
        for k, v in r["forged_delivered"].items():
            accepted[k] = accepted.get(k, 0) + v
    jumps = sent["by_kind"].get("seq jump", 0)
    res.figures.update({"suppressed_real_events": suppressed, "false_gap_notices": alarms, "false_missing_claimed": claimed,
                        "forged_handed_over": accepted})
    res.lost = (f"{suppressed:,} real deliveries suppressed by forged seqs (dropped as duplicates); "
                f"{sum(r['missing_not_suppressed'] for r in rows):,} other real deliveries missing")
    restarts = sum(r["source_restarts"]["counted"] for r in rows)
    flagged = sum(r["suspicious"]["counted"] for r in rows)
    rejected = sum(r["rejected"]["counted"] for r in rows)
    res.figures.update({"false_source_restarts": restarts, "suspicious": flagged, "rejected": rejected})
    res.attributed = (f"counters {'exact' if exact else 'NOT exact'} against the wire rules; {alarms:,} false gap "
                      f"alarms claiming {claimed:,} missing events (from {jumps:,} seq jumps), {restarts:,} false "
                      f"source restarts (new epochs), {flagged:,} counted suspicious, {rejected:,} rejected (unsigned, "
                      f"or a type not its channel's); "
                      f"forged events handed to handlers: "
                      + (", ".join(f"{v:,} {k}" for k, v in accepted.items()) or "none"))
    res.check("no crash: every bridge connected, no reconnect", bool(rec.instances["connected"].all())
              and int(rec.instances["reconnects"].sum()) == 0, int(rec.instances["reconnects"].sum()))
    res.check(f"counters exact ({', '.join(COMPARED)}, every id handed over)",
              exact,
              None if exact else [{k: v for k, v in r.items() if isinstance(v, dict) and "expected" in v
                                   and v["expected"] != v["counted"]} for r in rows])
    res.check("every valid event delivered (but those a forged seq suppressed)", all_real,
              sum(r["missing_not_suppressed"] for r in rows))
    res.check("a forged seq never suppresses a real event", suppressed == 0, f"{suppressed:,} suppressed")
    if signed:
        res.check("signed: no forged event reaches a handler", not accepted, accepted or "none")
    if suppressed:
        res.notes.append(
            "core defect (fanout/sequencing.py, fanout/delivery.py): a forged envelope with a real source's epoch and a "
            "seq ahead of the last one moves that (source, channel)'s last seq forward; the real events up to it are "
            "then dropped as duplicates, silently (a jump of 1 raises no gap at all). Suppressed, by the forgery: "
            + ", ".join(f"{k}: {v:,}" for k, v in sorted(_sum_by(rows).items())))
    again = accepted.get("replay", 0)
    res.check("no byte-exact replay of a real event reaches a handler again", again == 0, f"{again:,} handed over")
    if again:
        res.notes.append(f"core defect: {again:,} byte-exact replays of real events were handed to handlers a second time "
                         "(a forged new epoch for that source came first, so the replay looked like a restart)")


def _sum_by(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        for k, v in r["suppressed_by"].items():
            out[k] = out.get(k, 0) + v
    return out


def run_signed(sz: Sizes, *, seed: int = 17) -> CaseResult:
    return run(sz, seed=seed, signed=True)


CASES = {"hostile": run, "hostile-signed": run_signed}
