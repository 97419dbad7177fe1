"""The simulator: reproducible schedules, clear scenario errors, and real runs on throwaway Redis."""
from __future__ import annotations

import pytest

import fanout.lab
from fanout.errors import ConfigError
from fanout.lab.record import load_run
from fanout.lab.scenario import Scenario, from_dict, load_scenario
from fanout.lab.run import run_scenario
from fanout.lab.schedule import schedule


def test_same_seed_same_publishers_and_types_different_seed_differs():
    sc = Scenario(instances=5, duration_s=10, rate_per_s=10, event_types=("ticker", "trade", "candle"))
    a = [(e.publisher, e.type, e.symbol, e.due_s) for e in schedule(sc)]
    b = [(e.publisher, e.type, e.symbol, e.due_s) for e in schedule(sc)]
    c = [(e.publisher, e.type, e.symbol, e.due_s) for e in schedule(sc.replace(seed=sc.seed + 1))]
    assert a == b and a != c
    assert len(a) == 100 and a[1][3] == pytest.approx(0.1)
    assert {p for p, *_ in a} == set(range(5)) and {t for _, t, *_ in a} == {"ticker", "trade", "candle"}


def test_poisson_arrivals_are_reproducible_and_near_the_rate():
    sc = Scenario(duration_s=100, rate_per_s=20, arrivals="poisson")
    plan = schedule(sc)
    assert [e.due_s for e in plan] == [e.due_s for e in schedule(sc)]
    assert 1800 < len(plan) < 2200 and plan[-1].due_s < 100


@pytest.mark.parametrize("field, value, message", [
    ("instances", 0, "instances: must be a whole number >= 1"),
    ("rate_per_s", -1, "rate_per_s: must be > 0"),
    ("duration_s", 0, "duration_s: must be > 0"),
    ("event_types", ("ticker", "quote"), "event_types: unknown event type 'quote'"),
    ("transport", "kafka", "transport: unknown transport 'kafka'"),
    ("arrivals", "burst", "arrivals: 'burst'"),
    ("min_delivery_pct", 101, "min_delivery_pct"),
])
def test_invalid_values_raise_a_clear_error_naming_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        Scenario(**{field: value})


def test_unknown_fields_and_shipped_files():
    with pytest.raises(ConfigError, match="unknown scenario field\\(s\\): colour"):
        from_dict({"colour": "red"})
    std, stress = load_scenario("standard"), load_scenario("scenarios/stress.yaml")
    assert (std.instances, std.duration_s, std.rate_per_s) == (3, 20, 10)
    assert (stress.name, stress.instances, stress.duration_s) == ("stress", 5, 30)
    assert load_scenario("stress", instances=7).instances == 7
    assert load_scenario("scale-10").instances == 10 and load_scenario("load-1k").rate_per_s == 1000
    with pytest.raises(ConfigError, match="not found"):
        load_scenario("no-such-scenario")


@pytest.mark.parametrize("instances", [3, 5])
def test_real_run_delivers_everything_to_every_other_instance(instances, tmp_path):
    sc = Scenario(name=f"t{instances}", instances=instances, duration_s=2, rate_per_s=25,
                  event_types=("ticker", "trade", "orderbook", "candle"))
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path))
    pubs, dels = rec.publications, rec.deliveries
    assert len(pubs) == 50 and pubs["ok"].all()
    ids = [f"test-instance-{i}" for i in range(instances)]
    assert list(rec.instances["instance"]) == ids and rec.instances["connected"].all()
    for r in ids:
        mine = dels[dels["receiver"] == r]
        assert set(mine["id"]) == set(pubs.loc[pubs["source"] != r, "id"])
        assert len(mine) == mine["id"].nunique()
        assert (mine["source"] != r).all()
    assert len(dels) == 50 * (instances - 1)
    assert (rec.instances["self_filtered"] == rec.instances["published"]).all()
    # integer nanoseconds, causal order, never negative
    merged = dels.merge(pubs[["id", "t_intended", "t_sent"]], on="id")
    assert str(merged["t_received"].dtype) == "int64"
    assert (merged["t_received"] >= merged["t_sent"]).all() and (merged["t_sent"] >= merged["t_intended"]).all()
    assert (merged["t_received"] % 1000 != 0).any()  # not rounded to µs, let alone ms
    # saved and loaded back unchanged
    back = load_run(rec.path)
    assert fanout.lab.load_run is load_run  # the lab exports it
    assert back.run_id == rec.run_id and back.scenario["instances"] == instances
    assert back.publications.equals(rec.publications) and back.deliveries.equals(rec.deliveries)
    assert back.environment["redis_server"] and back.environment["cores"] >= 1


def test_warmup_events_are_published_but_not_recorded(tmp_path):
    sc = Scenario(instances=2, duration_s=1, warmup_s=0.5, rate_per_s=20)
    rec = run_scenario(sc, progress=False, save_to=None)
    assert len(rec.publications) == 20
    assert (rec.publications["t_intended"] >= rec.t0).all()
    assert set(rec.deliveries["id"]) <= set(rec.publications["id"])
    assert int(rec.instances["published"].sum()) == 30  # warm-up included in the bridges' own counters


def test_processes_mode_gives_the_same_analysis_as_single_mode():
    from fanout.analysis import analyse

    sc = Scenario(name="modes", instances=3, duration_s=1.5, rate_per_s=40, event_types=("ticker", "trade", "candle"))
    single = run_scenario(sc, progress=False, save_to=None)
    procs = run_scenario(sc.replace(process_mode="processes"), progress=False, save_to=None)
    assert len(set(procs.environment["worker_pids"])) == 3
    cols = ["instance", "published", "expected", "expected_formula", "received", "missing", "duplicates",
            "self_received", "arithmetic_ok"]
    fs, fp = analyse(single), analyse(procs)
    assert fs.per_instance[cols].equals(fp.per_instance[cols])
    assert fp.passed and fp.overall["received"] == fs.overall["received"] == 60 * 2
    key = ["source", "type", "seq", "symbol"]
    assert single.publications[key].equals(procs.publications[key])  # same publisher sequence


def test_processes_mode_refuses_a_fault_plan():
    with pytest.raises(ConfigError, match="process_mode single"):
        Scenario(process_mode="processes", faults=[{"kind": "redis_restart", "at_s": 1}])
