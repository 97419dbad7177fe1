"""The recommendation is generated from the findings: which transport follows from the measured
trade-off and the stated rule (pub/sub lossy and Streams within the lateness budget -> Streams, with
its measured lateness; Streams beyond the budget -> it says Streams adds unacceptable lateness and
states pub/sub's loss; no fault runs -> no recommendation on loss, and what to run); the generated
BridgeConfig code executes and builds the configs the simulator's bridges had; memory per stream
entry, repeated runs, sizing and the figure from the facts; and the committed example, recomputed
independently from its run folders. Synthetic records (no Redis) and the example's report.json."""
from __future__ import annotations

import copy
import itertools
import json
import statistics
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from _records import T0, make_record
from conftest import ROOT
from fanout.analysis import analyse
from fanout.config import BridgeConfig
from fanout.lab.record import FAULT_COLUMNS, OUTAGE_COLUMNS, RESOURCE_COLUMNS, frame, load_run
from fanout.report import figures, recommend, sections
from fanout.report.context import Report
from fanout.report.params import ReportParams
from fanout.report.runs import ScenarioRun

MS = 1_000_000
NAMES = ("a", "b", "c")
EXAMPLE = ROOT / "reports" / "example"
_IDS = itertools.count()


# ---------------------------------------------------------------- synthetic runs through the whole path


def _run(record, role: str) -> ScenarioRun:
    record.run_id = f"rec-{next(_IDS)}"
    return ScenarioRun(scenario=None, record=record, findings=analyse(record), role=role)


def _window(rec, lo_ms: int, hi_ms: int, receiver: str) -> list[tuple[str, str]]:
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    return [(receiver, e) for e in rec.publications["id"]
            if T0 + lo_ms * MS <= sent[e] <= T0 + hi_ms * MS and not e.startswith(receiver + ":")]


def partition(transport: str, *, lose: bool, late_ms: int = 0) -> ScenarioRun:
    """b cut off from 1.0 to 1.5 s: pub/sub loses what b should have got meanwhile; Streams
    delivers it ``late_ms`` later."""
    probe = make_record(dict.fromkeys(NAMES, 20))
    window = _window(probe, 1000, 1500, "b")
    rec = make_record(dict.fromkeys(NAMES, 20), drop=window if lose else [],
                      scenario_overrides={"name": f"partition-{transport}", "transport": transport,
                                          "faults": [{"kind": "partition", "at_s": 1, "duration_s": 0.5,
                                                      "instance": 1}]})
    rec.faults = frame([{"kind": "partition", "instance": "b", "t_start": T0 + 1000 * MS, "t_end": T0 + 1500 * MS,
                         "detail": "b cut off from Redis (reset); partition healed"}], FAULT_COLUMNS)
    rec.outages = frame([], OUTAGE_COLUMNS)
    if late_ms:
        d = rec.deliveries
        hit = (d["receiver"] == "b") & d["id"].isin({e for _, e in window})
        d.loc[hit, "t_received"] = d.loc[hit, "t_received"] + late_ms * MS
        rec.t_end = int(d["t_received"].max()) + MS
    return _run(rec, "fault")


def report(*runs) -> Report:
    return Report(params=ReportParams(scenarios=("standard",), failover=("partition",), capacity=False),
                  runs=list(runs))


def test_pubsub_lossy_and_streams_on_time_recommends_streams_with_its_measured_lateness():
    ps, st = partition("pubsub", lose=True), partition("streams", lose=False, late_ms=400)
    rep = report(ps, st)
    R = rep.facts["recommendation"]
    assert R["decision"] == "streams" and R["transport"] == "streams"
    # pub/sub: the events b lost over 0.5 s of outage x 1 receiver, at the run's rate
    lost = ps.findings.losses.faults["lost"].sum()
    assert lost > 0
    per_s = lost / 0.5
    assert R["pubsub"]["main"]["median"] == pytest.approx(per_s)
    # Streams: its lateness as the run's fault row measured it (max: too few samples for a p99)
    row = st.findings.losses.faults.iloc[0]
    assert R["streams"]["lost"] == 0 and R["streams"]["worst"]["lateness_ms"] == pytest.approx(row["window_max_ms"])
    assert row["window_max_ms"] > 400
    head = R["headline"]
    assert head.startswith("Recommendation: Streams for this workload")
    assert f"pub/sub lost {per_s:.1f} events per second of outage per receiver at 10 events/s" in head
    assert f"up to {row['window_max_ms']:,.0f} ms late (max of `partition-streams`)" in head
    assert "within the 5.0 s lateness budget" in head
    # the section opens with it; report.json holds it (plain JSON)
    text = sections.recommendation(rep)
    assert text.split("\n## Recommendation\n")[1].lstrip().startswith(f"**{head}**")
    json.dumps(R, allow_nan=False)


def test_streams_beyond_the_lateness_budget_says_it_adds_unacceptable_lateness_and_states_pubsubs_loss():
    rep = report(partition("pubsub", lose=True), partition("streams", lose=False, late_ms=400))
    R = rep.facts["recommendation"]
    late_ms = R["streams"]["worst"]["lateness_ms"]
    inputs = {r.record.run_id: recommend.run_inputs(r.record, r.findings.scenario) for r in rep.runs}
    tight = recommend.derive(rep.facts, inputs, budget_ms=late_ms - 1)   # the same runs, a budget just under
    assert tight["decision"] == "streams-late" and tight["transport"] == "pubsub"
    head = tight["headline"]
    assert head.startswith("Recommendation: pub/sub, accepting its loss — Streams adds unacceptable lateness")
    assert f"up to {late_ms:,.0f} ms late" in head and "beyond the" in head
    assert f"pub/sub lost {R['pubsub']['main']['median']:.1f} events per second of outage per receiver" in head
    # and the configuration follows the decision
    assert tight["configuration"]["bot"]["transport"] == "pubsub"


def test_no_fault_runs_says_no_recommendation_on_loss_can_be_made_and_what_to_run():
    calm = _run(make_record(dict.fromkeys(NAMES, 20), scenario_overrides={"name": "standard"}), "scenario")
    rep = report(calm)
    R = rep.facts["recommendation"]
    assert R["decision"] == "no-faults" and R["transport"] is None
    head = R["headline"]
    assert head.startswith("Recommendation on loss: none can be made")
    assert f"fanout report --failover {recommend.FAILOVER_TO_RUN} --failover-transports pubsub,streams" in head
    text = sections.recommendation(rep)
    assert "### The trade-off, measured" not in text and "```python" not in text  # nothing measured to show
    assert "Sizing Redis" in text and "Not derivable: no capacity run" in text
    assert R["configuration"]["code"] is None


def test_one_transport_only_says_which_side_of_the_trade_off_is_missing():
    R = report(partition("pubsub", lose=True)).facts["recommendation"]
    assert R["decision"] == "pubsub-only"
    assert "no Streams fault run measured the alternative" in R["headline"]
    assert "--failover-transports streams" in R["headline"]


def test_pubsub_losing_nothing_is_recommended_and_both_losing_says_neither_fits():
    P = {"runs": [{"lost": 0}], "lost": 0}
    S = {"runs": [{"lost": 0}], "lost": 0, "worst": {"lateness_ms": 10.0}}
    assert recommend.choose(P, S, 5000) == "pubsub"
    assert recommend.choose({**P, "lost": 3}, {**S, "lost": 2}, 5000) == "neither"
    assert recommend.choose({**P, "lost": 3}, S, 5000) == "streams"
    assert recommend.choose({**P, "lost": 3}, S, 9) == "streams-late"


# ---------------------------------------------------------------- the configuration


@pytest.mark.parametrize("transport", ["pubsub", "streams"])
def test_generated_bridgeconfig_snippets_execute_and_build_the_configs_the_runs_bridges_had(transport):
    from fanout.lab.scenario import load_scenario
    from fanout.lab.simulator import Simulation

    path = ROOT / "scenarios" / "faults" / f"partition-{transport}.yaml"
    sc = load_scenario(path).replace(key_prefix="ws:")  # as a run on a throwaway server resolves it (fanout.lab.run)
    inputs = {"r1": {"scenario": {**{k: v for k, v in sc.to_dict().items()}, "faulted": True}, "faults": []}}
    entries = [{"run_id": "r1", "name": sc.name, "transport": transport, "faulted": True,
                "fault_kinds": ["partition"]}]
    cfg = recommend.configuration(entries, inputs, transport)
    ns: dict = {}
    exec(compile(cfg["code"], "<recommendation>", "exec"), ns)  # noqa: S102 - the generated snippet, as a reader would run it
    host, bot = ns["host"], ns["bot"]
    assert isinstance(host, BridgeConfig) and isinstance(bot, BridgeConfig)
    assert (host.enable_publishing, host.enable_subscription) == (True, False)
    assert (bot.enable_publishing, bot.enable_subscription) == (False, True)
    assert host.instance_id == "websocket-host" and bot.instance_id != host.instance_id
    # the settings the simulator gave this scenario's bridges (fanout.lab.simulator)
    sim = Simulation(sc, "redis://127.0.0.1:1/0")
    ran = sim._config(1)
    for f in ("transport", "key_prefix", "event_types", "health_check_interval_s", "health_check_timeout_s",
              "reconnect_max_s", "publish_timeout_s", "stream_maxlen"):
        assert getattr(bot, f) == getattr(ran, f), f
        assert getattr(host, f) == getattr(ran, f), f


# ---------------------------------------------------------------- memory per stream entry


def test_memory_per_event_is_the_slope_of_redis_memory_over_the_events_published():
    rec = make_record(dict.fromkeys(NAMES, 20), scenario_overrides={"name": "standard-streams",
                                                                    "transport": "streams"})
    sent = np.sort(rec.publications["t_sent"].to_numpy())
    samples = []
    for k, t in enumerate(np.linspace(T0, sent[-1] + MS, 12).astype(np.int64)):
        n = int(np.searchsorted(sent, t, side="right"))
        samples.append({"t": int(t), "target": "redis", "kind": "redis", "pid": 1, "cpu_s": 0.01 * k,
                        "memory_bytes": 1_000_000 + 300 * n, "memory_peak_bytes": 1_000_000 + 300 * n,
                        "net_in_bytes": 0, "net_out_bytes": 0, "clients": 3, "omem_max_bytes": 0})
    rec.resources = frame(samples, RESOURCE_COLUMNS)
    m = recommend.memory_per_event(rec)
    assert m["bytes_per_event"] == pytest.approx(300.0) and m["events"] == 60
    # past MAXLEN the stream is trimmed: those samples are left out
    assert recommend.memory_per_event(rec, maxlen=30)["events"] <= 30


# ---------------------------------------------------------------- the committed example


@pytest.fixture(scope="module")
def example():
    """The example's report.json and, per run, what derive reads from its folder."""
    doc = json.loads((EXAMPLE / "report.json").read_text())
    inputs = {}
    for r in doc["runs"]:
        folder = EXAMPLE / r["record"]
        inputs[r["run_id"]] = recommend.run_inputs(load_run(folder), r["findings"]["scenario"],
                                                   r["findings"]["overall"].get("analysed_from"))
    return doc, inputs


def test_the_committed_example_recomputed_independently_from_its_run_folders(example):
    doc, inputs = example
    F = doc["facts"]
    R = recommend.derive(F, inputs)
    by_id = {r["run_id"]: r for r in doc["runs"]}
    # pub/sub: lost / (fault window x receivers it touched), from faults.parquet, per run
    per_s = {}
    for e in F["runs"]:
        if e["transport"] != "pubsub" or not e["faulted"] or e["fault_kinds"] == ["latency"]:
            continue
        f = pd.read_parquet(EXAMPLE / by_id[e["run_id"]]["record"] / "faults.parquet")
        window_s = float((f["t_end"] - f["t_start"]).iloc[0]) / 1e9
        per_s[e["run_id"]] = (e["lost"] / (window_s * e["faults"][0]["receivers"]), e["target_rate_per_s"])
    assert per_s and all(v > 0 for v, _ in per_s.values())
    rates = [r for _, r in per_s.values()]
    main_rate = max(set(rates), key=rates.count)
    median = statistics.median(v for v, r in per_s.values() if r == main_rate)
    assert R["pubsub"]["main"]["rate_per_s"] == main_rate
    assert R["pubsub"]["main"]["median"] == pytest.approx(median)
    # Streams lost nothing under faults; its worst lateness is a fault row's p99 (else max)
    streams = [e for e in F["runs"] if e["transport"] == "streams" and e["faulted"] and e["fault_kinds"] != ["latency"]]
    assert sum(e["lost"] for e in streams) == 0
    worst = max((r["window_p99_ms"] if r["window_p99_ms"] is not None else r["window_max_ms"])
                for e in streams for r in e["faults"])
    assert R["streams"]["worst"]["lateness_ms"] == pytest.approx(worst)
    assert R["decision"] == ("streams" if worst <= recommend.LATENESS_BUDGET_MS else "streams-late")
    assert f"{median:.1f} events per second of outage per receiver at {main_rate:,.0f} events/s" in R["headline"]
    # sizing over the capacity rows measured, their range stated
    caps = [e for e in F["runs"] if e["role"] == "capacity" and not e["load"]["over_capacity"]]  # one point a run
    assert R["sizing"]["runs"] == len(caps) and len(caps) < len([e for e in F["runs"] if e["role"] == "capacity"])
    assert R["sizing"]["lo"] == pytest.approx(min(c["deliveries_per_s"] for c in caps))
    assert R["sizing"]["hi"] == pytest.approx(max(c["deliveries_per_s"] for c in caps))
    # memory per entry from the Streams runs without a restart; every unmeasured item is a next step
    assert R["streams"]["memory"]["measured"] and 50 < R["streams"]["memory"]["median"] < 10_000
    whats = [n["what"] for n in R["next_steps"]]
    assert all(n["what"] in whats for n in F["scope"]["not_measured"])
    assert "a managed or production Redis" in whats
    # the section and the figure render from these facts alone (report.json)
    rep = SimpleNamespace(facts={**F, "recommendation": R})
    text = sections.recommendation(rep)
    assert "```python" in text and "```conf" in text and "maxmemory-policy noeviction" in text
    (fig, caption), = figures.deployment(rep)
    words = " ".join(t.get_text() for t in fig.axes[0].texts) + fig.get_suptitle()
    assert "Streams" in words and "bot 10" in words and "capacity-10x5000" in caption


def first_runs(facts: dict) -> dict:
    """The facts with only the first run of each name (the example repeats every configuration):
    what a report of one round would hold."""
    seen: set[str] = set()
    facts["runs"] = [e for e in facts["runs"] if not (e["name"] in seen or seen.add(e["name"]))]
    return facts


def test_repeated_runs_are_aggregated_per_name_one_number_per_run(example):
    doc, inputs = example
    F = first_runs(copy.deepcopy(doc["facts"]))
    inputs = dict(inputs)
    extra = []
    for e in F["runs"]:
        if e["transport"] == "pubsub" and e["faulted"]:
            twin = copy.deepcopy(e)
            twin["run_id"] = e["run_id"] + "-r2"
            for row in twin["faults"]:
                row["lost"] = 2 * row["lost"]
            twin["lost"] = 2 * e["lost"]
            inputs[twin["run_id"]] = inputs[e["run_id"]]
            extra.append(twin)
    F["runs"] += extra
    R = recommend.derive(F, inputs)
    g = next(x for x in R["pubsub"]["by_name"] if x["name"] == "partition-pubsub")
    one = next(r for r in R["pubsub"]["runs"] if r["name"] == "partition-pubsub")
    assert g["runs"] == 2
    assert g["lost_per_outage_s_per_receiver"]["min"] == pytest.approx(one["lost_per_outage_s_per_receiver"])
    assert g["lost_per_outage_s_per_receiver"]["max"] == pytest.approx(2 * one["lost_per_outage_s_per_receiver"])
    assert g["lost_per_outage_s_per_receiver"]["median"] == pytest.approx(1.5 * one["lost_per_outage_s_per_receiver"])
    assert f"median of {R['pubsub']['main']['runs']} fault runs" in R["headline"]
    table = recommend.tradeoff_table(R)
    row = table[table["Fault"] == "partition"].iloc[0]
    assert row["Runs"] == "2 / 1" and "–" in row["Lost per s of outage per receiver"]
    assert row["Streams lost"] == "0"


def test_every_number_of_the_section_and_its_caption_is_in_report_json():
    from test_report_facts import PAGE_EXEMPT, missing_from

    rep = report(partition("pubsub", lose=True), partition("streams", lose=False, late_ms=400))
    doc = json.loads(json.dumps({"facts": rep.facts}, allow_nan=False))
    text = sections.recommendation(rep)
    (_, caption), = figures.deployment(rep)
    assert missing_from(text, doc, PAGE_EXEMPT) == []
    assert missing_from(caption, doc, PAGE_EXEMPT) == []
    assert missing_from(text + "\nan invented figure: 123,457 events", doc, PAGE_EXEMPT) == ["123,457"]


def test_streams_losing_only_in_restarts_without_aof_is_recommended_with_appendonly_yes(example):
    doc, inputs = example
    F = first_runs(copy.deepcopy(doc["facts"]))
    e = next(x for x in F["runs"] if x["name"] == "redis-restart-streams")
    assert e["settings"]["appendonly"] == "no"
    e["lost"] = e["faults"][0]["lost"] = 40   # the restart without AOF lost the stream's events
    R = recommend.derive(F, inputs)
    assert R["decision"] == "streams" and R["streams"]["aof_required"]
    assert R["headline"].startswith("Recommendation: Streams with AOF (appendonly yes) for this workload")
    assert "lost none with AOF (40 in restarts without it)" in R["headline"]
    conf = R["redis"]["conf"]
    assert "appendonly yes" in conf and "40 lost without AOF (redis-restart-streams)" in conf
    # AOF in the example itself: both restarts lost nothing, so it is not what kept Streams whole
    assert recommend.derive(doc["facts"], inputs)["redis"]["aof"]["value"] == "no"
    # a Streams restart with AOF that lost as well: neither fits
    a = next(x for x in F["runs"] if x["name"] == "redis-restart-aof-streams")
    a["lost"] = a["faults"][0]["lost"] = 5
    assert recommend.derive(F, inputs)["decision"] == "neither"


def test_pubsub_chosen_gets_its_output_buffer_limit_and_the_runs_that_were_cut_off(example):
    doc, inputs = example
    R = recommend.derive(doc["facts"], inputs, budget_ms=1.0)   # no Streams lateness is acceptable
    assert R["transport"] == "pubsub"
    lim = doc["facts"]["settings"]["pubsub_limits"][0]
    conf = R["redis"]["conf"]
    assert f"client-output-buffer-limit pubsub {lim['hard_bytes']} {lim['soft_bytes']} {lim['soft_s']}" in conf
    cut = [e for e in doc["facts"]["runs"] if any("output-buffer" in c for c, n in e["causes"] if n)]
    assert cut and all(f"# {e['name']} ran with pubsub" in conf and f"{e['lost']:,} lost" in conf for e in cut)
    assert "stream_maxlen" not in R["configuration"]["code"]
