"""The columnar recorder gives exactly the run record's row contract (docs/architecture.md
"RunRecord"), and a real run's instrument block says who was the limit."""
from __future__ import annotations

from fanout import Envelope
from fanout.lab.record import DELIVERY_COLUMNS, PUBLICATION_COLUMNS, build_record
from fanout.lab.recorder import Recorder
from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario


def test_columns_equal_the_row_contract():
    clock = iter(range(1_000, 10_000_000, 7))
    rec = Recorder(lambda: next(clock))
    pubs = rec.plan(3)
    for k, (src, typ, sym) in enumerate([("i0", "ticker", "BTC/USDT"), ("i1", "trade", "ETH/USDT"),
                                         ("i0", "ticker", "SOL/USDT")]):
        pubs.plan(k, pubs.code(pubs.sources, src), pubs.code(pubs.types, typ), pubs.code(pubs.symbols, sym), 0)
        pubs.t_intended[k] = 100 + k
        pubs.t_sent[k] = 200 + k
    pubs.ids[0], pubs.ids[1], pubs.ids[2] = "e0:ticker:1", "e1:trade:1", "not-sent:i0:2"
    pubs.ack(0, None)
    pubs.ack(1, RuntimeError("publish on redis://x failed: gone"))
    pubs.fail(2, "instance crashed")
    pubs.ack(0, RuntimeError("a second outcome is ignored"))
    h = rec.handler("i1", capacity=1)  # grows past its capacity
    envs = [Envelope("ticker", {}, 0, "i0", 1, "e0", "e0:ticker:1", 0), Envelope("ticker", {}, 0, 4242, None),
            Envelope("trade", {}, 0, "i2", 7, "e2", "e2:trade:7", 0)] * 10
    for e in envs[:3]:
        h(e)
    assert rec.got == {"i1": 3}
    assert rec.handler("i1") is h  # a restarted instance: the same table, now counting distinct ids
    for e in envs[3:]:
        h(e)
    p, d = rec.publication_columns(), rec.delivery_columns()
    assert list(p) == list(PUBLICATION_COLUMNS) and list(d) == list(DELIVERY_COLUMNS)
    rows = list(zip(*p.values()))
    assert rows[0][:3] + rows[0][3:7] + rows[0][8:] == ("e0:ticker:1", "i0", 1, "ticker", "BTC/USDT", 100, 200,
                                                        True, "")
    assert rows[0][7] > 0  # t_acked
    assert rows[1] == ("e1:trade:1", "i1", 1, "trade", "ETH/USDT", 101, 201, 0, False,
                       "publish on redis://x failed: gone")
    assert rows[2] == ("not-sent:i0:2", "i0", -1, "ticker", "SOL/USDT", 102, 202, 0, False, "instance crashed")
    drows = list(zip(*d.values()))
    assert len(drows) == 30 and rec.got == {"i1": 3}
    assert [r[:5] for r in drows[:3]] == [("e0:ticker:1", "i0", "i1", "ticker", 1), (None, "4242", "i1", "ticker", -1),
                                          ("e2:trade:7", "i2", "i1", "trade", 7)]
    assert all(b[5] > a[5] for a, b in zip(drows, drows[1:]))  # receive times, in order
    assert rec.published_by == {"i0": 1, "i1": 0}
    sc = Scenario(instances=3, duration_s=1, rate_per_s=3)
    r = build_record(sc, "redis://h:1/0", "run", "7.0", 0, 1, p, d, [], [], [], {})
    assert dict(r.publications.dtypes.astype(str)) == PUBLICATION_COLUMNS
    assert dict(r.deliveries.dtypes.astype(str)) == DELIVERY_COLUMNS


def test_a_run_records_its_instrument_block():
    sc = Scenario(name="instr", instances=3, duration_s=1, rate_per_s=50, event_types=("ticker", "trade"))
    rec = run_scenario(sc, progress=False, save_to=None)
    inst = rec.environment["instrument"]
    assert set(inst) >= {"process_mode", "process_mode_reason", "event_loop", "cores", "workers", "cpu_pct",
                         "cpu_pct_total", "redis_cpu_s", "redis_cpu_pct", "wall_s", "saturated", "limit", "why"}
    assert inst["process_mode"] == "single" and inst["process_mode_reason"].startswith("auto:")
    assert 0 <= inst["cpu_pct"] and inst["redis_cpu_pct"] is not None and isinstance(inst["saturated"], bool)
    assert len(rec.deliveries) == 50 * 2
