"""The wire's own costs, without a server (``python -m benchmarks.wire``, or the ``wire`` section):

* **bytes per event** for the simulator's payload mix (all four types, ``SyntheticMarket``): the
  seed's message ``{type,data,timestamp,source}``; fanout's v1 envelope (``id``, ``ts_ns``) and
  v2 (``ns``; the id derived) as an application publishes them; both as the simulator publishes
  them (v1 with ``ti_ns``, v2 with ``lag``); v2 signed (simulator form);
* **signing**: µs per message to sign and to verify (HMAC-SHA256 over the exact bytes);
* **receive**: µs of CPU per delivery through ``Delivery.on_message`` (own-echo check, one
  ``orjson.loads``, the seq check, a no-op handler), signing off and on.

CPU time (``time.process_time``), best of 15 repeats, so other load on the machine
matters less; the figures are per message on this machine, not a capacity.
"""
from __future__ import annotations

import random
import sys
import time
from typing import Any

import orjson

from fanout import BridgeConfig, RedisEventBridge
from fanout.events import EVENT_TYPES, EnvelopeWriter
from fanout.lab.market import SyntheticMarket
from fanout.signing import Signer

SOURCE, EPOCH = "test-instance-0", "0123abcd"


def _bound(signer, channel: str):
    """The channel's signer (signature v2 binds the channel); a fanout from before it: the signer itself."""
    return signer.bind(channel) if hasattr(signer, "bind") else signer
KEY = {"k1": bytes(range(32))}


def _payloads(n: int, book_depth: int = 5) -> list[tuple[str, dict]]:
    m = SyntheticMarket(random.Random(1), book_depth=book_depth)
    return [(EVENT_TYPES[k % 4], m.make(EVENT_TYPES[k % 4], "BTC/USDT", 1_760_000_000_000)) for k in range(n)]


def forms(n: int = 2000) -> dict[str, list[bytes]]:
    """The same n events in every form."""
    w, signer = EnvelopeWriter(SOURCE, EPOCH), Signer(KEY)
    out: dict[str, list[bytes]] = {"seed": [], "v1 (no ti_ns)": [], "v2 (no lag)": [], "v1": [], "v2": [],
                                   "v2 signed": []}
    seqs: dict[str, int] = {}
    for t, data in _payloads(n):
        seq = seqs[t] = seqs.get(t, 0) + 1
        now = time.time_ns()
        due = now - 150_000  # the simulator sends ~0.15 ms after the due time
        body = orjson.dumps(data)
        out["seed"].append(orjson.dumps({"type": t, "data": data, "timestamp": now // 1_000_000, "source": SOURCE}))
        v1 = {"source": SOURCE, "epoch": EPOCH, "type": t, "id": f"{EPOCH}:{t}:{seq}", "seq": seq,
              "timestamp": now // 1_000_000, "ts_ns": now}
        out["v1 (no ti_ns)"].append(orjson.dumps({**v1, "data": data}))
        out["v1"].append(orjson.dumps({**v1, "ti_ns": due, "data": data}))
        v2 = w.write(w.head(t), seq, now, due, body)
        out["v2"].append(v2)
        out["v2 (no lag)"].append(w.write(w.head(t), seq, now, None, body))
        out["v2 signed"].append(_bound(signer, f"ws:{t}").sign(v2))
    return out


def bytes_per_event(n: int = 2000) -> dict[str, Any]:
    f = forms(n)
    seed = sum(map(len, f["seed"])) / n
    rows = []
    for name, msgs in f.items():
        mean = sum(map(len, msgs)) / n
        per_type = {t: round(sum(len(m) for k, m in enumerate(msgs) if k % 4 == i) / (n / 4), 1)
                    for i, t in enumerate(EVENT_TYPES)}
        rows.append({"form": name, "mean_bytes": round(mean, 1), "over_seed_bytes": round(mean - seed, 1),
                     "over_seed_pct": round(100 * (mean - seed) / seed, 1), "per_type": per_type})
    return {"events": n, "source_id": SOURCE, "rows": rows}


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def signing_cost(n: int = 20_000, repeats: int = 15) -> dict[str, float]:
    msgs = forms(min(n, 2000))["v2"]
    msgs = (msgs * (n // len(msgs) + 1))[:n]
    s = _bound(Signer(KEY), "ws:ticker")
    signed = [s.sign(m) for m in msgs]
    sign_s = _best(lambda: [s.sign(m) for m in msgs], repeats)
    verify_s = _best(lambda: [s.verify(m) for m in signed], repeats)
    return {"messages": n, "mean_bytes": round(sum(map(len, msgs)) / n, 1),
            "sign_us": round(1e6 * sign_s / n, 3), "verify_us": round(1e6 * verify_s / n, 3)}


def receive_cost(n: int = 20_000, repeats: int = 15) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, keys in (("signing_off_us", None), ("signing_on_us", KEY)):
        w, signer = EnvelopeWriter("test-instance-1", EPOCH), Signer(KEY)
        msgs, seqs = [], {}
        for t, data in _payloads(n):
            seqs[t] = seqs.get(t, 0) + 1
            now = time.time_ns()
            p = w.write(w.head(t), seqs[t], now, now - 150_000, orjson.dumps(data))
            msgs.append((f"ws:{t}".encode(), _bound(signer, f"ws:{t}").sign(p) if keys else p))

        def once() -> None:
            b = RedisEventBridge(BridgeConfig(url="redis://127.0.0.1:1/0", instance_id="test-instance-0",
                                              signing_keys=keys))
            b.on("*", lambda env: None)
            on = b._rx.on_message
            for ch, p in msgs:
                on(ch, p)
            assert b.metrics()["received"] == n and b.metrics()["gaps"] == 0

        out[name] = round(1e6 * _best(once, repeats) / n, 3)
    out["messages"] = n
    return out


def histogram_cost(n: int = 20_000, repeats: int = 15) -> dict[str, float]:
    """The bridge's own histograms on the receive path (delivery latency and sync handler duration,
    ``fanout.histograms``): the receive path with them and without (``BridgeConfig(histograms=False)``),
    alternating within each repeat so both see the same machine load; best of ``repeats`` each. None
    when this fanout keeps no histograms."""
    w = EnvelopeWriter("test-instance-1", EPOCH)
    msgs, seqs = [], {}
    for t, data in _payloads(n):
        seqs[t] = seqs.get(t, 0) + 1
        now = time.time_ns()
        msgs.append((f"ws:{t}".encode(), w.write(w.head(t), seqs[t], now, now - 150_000, orjson.dumps(data))))

    def once(keep: bool) -> float:
        b = RedisEventBridge(BridgeConfig(url="redis://127.0.0.1:1/0", instance_id="test-instance-0", histograms=keep))
        b.on("*", lambda env: None)
        on = b._rx.on_message
        t = time.process_time()
        for ch, p in msgs:
            on(ch, p)
        took = time.process_time() - t
        assert b.metrics()["received"] == n
        return took

    if not hasattr(RedisEventBridge, "histograms"):
        return {"messages": n, "with_us": None, "without_us": None, "cost_us": None, "cost_pct": None}
    best = {True: float("inf"), False: float("inf")}
    for k in range(repeats):
        for keep in ((True, False) if k % 2 else (False, True)):
            best[keep] = min(best[keep], once(keep))
    on, off = 1e6 * best[True] / n, 1e6 * best[False] / n
    return {"messages": n, "with_us": round(on, 3), "without_us": round(off, 3), "cost_us": round(on - off, 3),
            "cost_pct": round(100 * (on - off) / off, 1)}


def run_wire(quick: bool = False) -> dict[str, Any]:
    n = 5_000 if quick else 20_000
    return {"bytes": bytes_per_event(), "signing": signing_cost(n), "receive": receive_cost(n),
            "histograms": histogram_cost(n),
            "what": "CPU time (process_time), best of 15 repeats, per message; no server involved"}


def render_wire(w: dict[str, Any]) -> list[str]:
    lines = ["", "### Wire: bytes per event (simulator payload mix) and per-message CPU", "",
             "| form | mean bytes | over the seed's | ticker | trade | orderbook | candle |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in w["bytes"]["rows"]:
        pt = r["per_type"]
        over = "—" if r["form"] == "seed" else f"+{r['over_seed_bytes']:g} (+{r['over_seed_pct']:g} %)"
        lines.append(f"| {r['form']} | {r['mean_bytes']:g} | {over} | {pt['ticker']:g} | {pt['trade']:g} | "
                     f"{pt['orderbook']:g} | {pt['candle']:g} |")
    s, rx = w["signing"], w["receive"]
    lines += ["", f"Signing: sign {s['sign_us']:g} µs, verify {s['verify_us']:g} µs per message "
                  f"({s['mean_bytes']:g} bytes mean). Receive (`Delivery.on_message`, no-op handler): "
                  f"{rx['signing_off_us']:g} µs per delivery, {rx['signing_on_us']:g} µs with signing."]
    h = w.get("histograms")
    if h and h.get("cost_us") is not None:
        lines += ["", f"The bridge's histograms (delivery latency, sync handler duration) on the receive path: "
                      f"{h['with_us']:g} µs per delivery with them, {h['without_us']:g} µs without "
                      f"(+{h['cost_us']:g} µs, {h['cost_pct']:+g} %; alternating, best of 15 each)."]
    return lines


def main() -> int:
    print("\n".join(render_wire(run_wire("--quick" in sys.argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
