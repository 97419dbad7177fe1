"""Instructions per message on the hot paths, counted by valgrind (``python -m benchmarks.instructions``).

CPU-time figures on a shared 2-core VM move by ±30 % with the neighbours' load; instruction
counts do not. Each figure is ``(count with 2 passes - count with 0 passes) / (2 x 5,000)`` of a
child process under ``valgrind --tool=callgrind`` (startup and payload building cancel out):

* ``receive``: ``Delivery.on_message`` with a no-op handler (own-echo check, one orjson.loads,
  envelope, self-filter, seq check);
* ``receive+record``: the same with the lab's recorder (``lab.recorder.Deliveries``) as handler;
* ``publish``: ``publish_nowait`` through a stub transport that acknowledges at once;
* ``sign``, ``verify`` (when the fanout under test has :mod:`fanout.signing`).

Run it from another checkout (``PYTHONPATH=<that checkout> python -m benchmarks.instructions``)
to compare versions; needs valgrind (``apt-get install valgrind``).
"""
from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import time

N = 5_000


def _messages():
    import orjson

    from fanout.events import EVENT_TYPES, EnvelopeWriter
    from fanout.lab.market import SyntheticMarket

    m = SyntheticMarket(random.Random(1))
    w = EnvelopeWriter("test-instance-1", "0123abcd")
    msgs, seqs = [], {}
    for k in range(N):
        t = EVENT_TYPES[k % 4]
        seqs[t] = seqs.get(t, 0) + 1
        now = 1_760_000_000_000_000_000 + k * 1_000_123
        data = orjson.dumps(m.make(t, "BTC/USDT", 1_760_000_000_000))
        msgs.append((b"ws:" + t.encode(), w.write(w.head(t, t), seqs[t], now, now - 1000, data)))
    return msgs


def _bridge(**kw):
    from fanout import BridgeConfig, RedisEventBridge

    return RedisEventBridge(BridgeConfig(url="redis://127.0.0.1:1/0", instance_id="test-instance-0", **kw))


def _child(what: str, passes: int) -> None:
    msgs = _messages()
    if what.startswith("receive"):
        from fanout.lab.recorder import Deliveries

        def run() -> None:
            b = _bridge()
            b.on("*", Deliveries("test-instance-0", time.time_ns, N + 10) if what == "receive+record"
                 else (lambda env: None))
            on = b._rx.on_message
            for ch, p in msgs:
                on(ch, p)
    elif what == "publish":
        from fanout.lab.market import SyntheticMarket
        from fanout.events import EVENT_TYPES

        m = SyntheticMarket(random.Random(1))
        data = [(EVENT_TYPES[k % 4], m.make(EVENT_TYPES[k % 4], "BTC/USDT", 1_760_000_000_000)) for k in range(N)]
        b = _bridge()
        b._started = b._connected_pub = True
        b.on_published(lambda token, err: None)
        b._transport.publish_nowait = lambda channel, payload, token, force=False: b._on_ack(token, None) or True

        def run() -> None:
            pn = b.publish_nowait
            for k, (typ, d) in enumerate(data):
                pn(typ, d, token=k, intended_ns=1_760_000_000_000_000_000)
    else:
        from fanout.signing import Signer

        s = Signer({"k1": bytes(range(32))})
        s = s.bind("ws:ticker") if hasattr(s, "bind") else s  # signature v2: bound to the channel
        payloads = [p for _, p in msgs] if what == "sign" else [s.sign(p) for _, p in msgs]
        f = s.sign if what == "sign" else s.verify

        def run() -> None:
            for p in payloads:
                f(p)
    run()  # warm every path once, in every variant
    for _ in range(passes):
        run()


def count(what: str, passes: int) -> int:
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
                        "benchmarks.instructions", "--child", what, str(passes)],
                       capture_output=True, text=True, timeout=900)
    m = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"valgrind {what}: {(p.stderr.strip().splitlines() or ['failed'])[-1]}")
    return int(m.group(1))


def per_message(what: str) -> int:
    return round((count(what, 2) - count(what, 0)) / (2 * N))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1], int(argv[2]))
        return 0
    if not shutil.which("valgrind"):
        print("valgrind is needed (apt-get install valgrind)", file=sys.stderr)
        return 2
    try:
        import fanout.signing  # noqa: F401
        kinds = ["receive", "receive+record", "publish", "sign", "verify"]
    except ImportError:
        kinds = ["receive", "receive+record", "publish"]
    print("| path | instructions per message |\n|---|---:|")
    for k in kinds:
        print(f"| {k} | {per_message(k):,} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
