"""Every figure on the page is read from report.json's facts, so two sections cannot disagree, and
every sentence follows the findings (synthetic RunRecords, no Redis): loss wording from loss kinds,
denominators named and computed over the runs they speak of, what a fault run's PASS means,
lateness stated not judged, one instrument CPU and one deliveries/s, server settings per run,
readiness counted over the verdict's runs, the benchmark's server as it reports itself; and a walk
over page one checking that each of its numbers is in report.json."""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from _records import T0, make_record
from conftest import ROOT
from fanout.analysis import analyse
from fanout.lab.record import FAULT_COLUMNS, OUTAGE_COLUMNS, RESOURCE_COLUMNS, frame
from fanout.report import appendix, load, operations, sections, tables
from fanout.report.context import Report
from fanout.report.params import ReportParams
from fanout.report.runs import ScenarioRun

MS = 1_000_000
NAMES = ("a", "b", "c")
_IDS = itertools.count()
PARAMS = ReportParams(scenarios=("standard",), failover=("partition",), capacity=True)


def run_of(record, role="scenario", name=None) -> ScenarioRun:
    record.run_id = f"facts-{next(_IDS)}"
    if name:
        record.scenario["name"] = name
    return ScenarioRun(scenario=None, record=record, findings=analyse(record), role=role)


def _in(rec, lo_ms, hi_ms, receiver):
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    return [(receiver, e) for e in rec.publications["id"]
            if T0 + lo_ms * MS <= sent[e] <= T0 + hi_ms * MS and not e.startswith(receiver + ":")]


def partition(transport: str, *, lose: bool = True, collateral: bool = False, late_ms: int = 0,
              config: dict | None = None) -> ScenarioRun:
    """A partition of b from 1.0 to 1.5 s. pub/sub loses what b should have got meanwhile;
    ``collateral``: a was disconnected 0.3–0.7 s too (an unplanned outage, its loss not the
    fault's); ``late_ms``: what b got of the window arrives that much later (Streams' catch-up)."""
    probe = make_record(dict.fromkeys(NAMES, 20))
    drop = (_in(probe, 1000, 1500, "b") if lose else []) + (_in(probe, 300, 700, "a") if collateral else [])
    rec = make_record(dict.fromkeys(NAMES, 20), drop=drop,
                      scenario_overrides={"name": f"partition-{transport}", "transport": transport,
                                          "faults": [{"kind": "partition", "at_s": 1, "duration_s": 0.5,
                                                      "instance": 1}]})
    rec.faults = frame([{"kind": "partition", "instance": "b", "t_start": T0 + 1000 * MS, "t_end": T0 + 1500 * MS,
                         "detail": "b cut off from Redis (reset); partition healed"}], FAULT_COLUMNS)
    rec.outages = frame([{"instance": "a", "t_down": T0 + 300 * MS, "t_up": T0 + 700 * MS, "reason": "cut off"}]
                        if collateral else [], OUTAGE_COLUMNS)
    if late_ms:
        window = {e for _, e in _in(probe, 1000, 1500, "b")}
        d = rec.deliveries
        hit = (d["receiver"] == "b") & d["id"].isin(window)
        d.loc[hit, "t_received"] = d.loc[hit, "t_received"] + late_ms * MS
        rec.t_end = int(d["t_received"].max()) + MS
    if config:
        rec.environment["redis_config"] = {"redis": config}
    return run_of(rec, role="fault")


def capacity_run(*, processes: int = 1, cpu_pct: float = 6.0, sampled_cpu_pct: float = 99.6,
                 config: dict | None = None) -> ScenarioRun:
    """The seed's first capacity row, small: host publishes 40 events at 10/s to one bot; the
    simulator's own accounting says ``cpu_pct``, the sampled process CPU (scheduler wait included)
    ``sampled_cpu_pct``."""
    rec = make_record({"host": 40, "b1": 0},
                      scenario_overrides={"name": "capacity-1x500", "publishers": ["host"], "receivers": ["b1"],
                                          "topology": "host-bots"})
    workers = {f"worker-{i}": {"cpu_pct": cpu_pct, "cpu_pct_raw": sampled_cpu_pct} for i in range(processes)}
    mode = "processes" if processes > 1 else "single"
    rec.environment["instrument"] = {"process_mode": mode, "workers": workers if processes > 1 else
                                     {"main": workers["worker-0"]}, "cpu_pct": cpu_pct, "saturated": False}
    if processes > 1:
        rec.environment["process_mode"] = mode
        rec.environment["workers"] = {k: {"instances": []} for k in workers}
    span = rec.t_end - T0
    samples = []
    for k in range(5):
        t = T0 + k * span // 4
        samples.append({"t": t, "target": "redis", "kind": "redis", "pid": 1, "cpu_s": 0.05 * k * span / 1e9,
                        "memory_bytes": 2 * 1024 * 1024, "memory_peak_bytes": 3 * 1024 * 1024,
                        "net_in_bytes": 1000 * k, "net_out_bytes": 50_000 * k, "clients": 6})
        samples.append({"t": t, "target": "instrument", "kind": "process", "pid": 2,
                        "cpu_s": sampled_cpu_pct / 100 * k * span / 1e9, "memory_bytes": 100 * 1024 * 1024,
                        "memory_peak_bytes": 100 * 1024 * 1024, "net_in_bytes": 0, "net_out_bytes": 0, "clients": 0})
    rec.resources = frame(samples, RESOURCE_COLUMNS)
    if config:
        rec.environment["redis_config"] = {"redis": config}
    return run_of(rec, role="capacity")


def report(*runs) -> Report:
    return Report(params=PARAMS, runs=list(runs))


def page_one_of(rep: Report) -> str:
    return sections.page_one(rep).split('<div class="pagebreak"></div>')[0]


def archive(rep: Report) -> dict:
    """report.json as the report writes it (strict JSON)."""
    return json.loads(json.dumps(appendix.result(rep), allow_nan=False, default=str))


# ---------------------------------------------------------------- 1. wording from loss kinds


def test_attributed_to_its_fault_only_when_every_loss_was_a_planned_faults():
    clean = partition("pubsub")
    assert clean.findings.losses.by_kind == {"planned fault": clean.findings.losses.lost}
    rep = report(run_of(make_record(dict.fromkeys(NAMES, 20))), clean)
    for text in (page_one_of(rep), sections.failover(rep)):
        assert "where a planned fault acted" in text or "where the fault acted" in text
        assert "during an unplanned outage" not in text.replace("*during an unplanned outage*", "")

    mixed = partition("pubsub", collateral=True)
    kinds = mixed.findings.losses.by_kind
    assert kinds["unplanned outage"] > 0 and not mixed.findings.passed
    rep = report(run_of(make_record(dict.fromkeys(NAMES, 20))), mixed)
    page, failover = page_one_of(rep), sections.failover(rep)
    n_planned, n_unplanned = f"{kinds['planned fault']:,}", f"{kinds['unplanned outage']:,}"
    for text in (page, failover):
        assert "attributed to its fault" not in text and "every one where" not in text
        assert f"{n_planned} where a planned fault acted, {n_unplanned} during an unplanned outage" in text, text
    assert "FAIL" in page and "**Lost during unplanned outages**" in page
    assert f"lost {mixed.findings.losses.lost} of" in page and "all where the fault acted" not in page


# ---------------------------------------------------------------- 2. denominators


def test_each_denominator_is_the_one_of_the_runs_it_speaks_of_and_every_section_reads_the_same():
    calm = run_of(make_record({f"i{k}": 50 for k in range(5)}))  # 1,000 expected: not a fault run's
    pub, streams = partition("pubsub"), partition("streams", lose=False)
    rep = report(calm, pub, streams)
    g = archive(rep)["facts"]["groups"]
    assert g["faults/pubsub"]["expected"] == pub.findings.overall["expected"] != g["all"]["expected"]
    assert g["faults/pubsub"]["lost"] == pub.findings.losses.lost
    assert g["calm"]["expected"] == calm.findings.overall["expected"]
    said = (f"{g['faults/pubsub']['lost']:,} of the {g['faults/pubsub']['expected']:,} deliveries expected in "
            f"the pub/sub fault runs were lost")
    for text in (page_one_of(rep), sections.failover(rep), operations.limitations(rep)):
        assert said in text, text
        assert f"of {g['all']['expected']:,} expected deliveries were lost" not in text
    assert f"nothing of the {g['faults/streams']['expected']:,} deliveries expected in the Streams fault runs" \
        in page_one_of(rep)


# ---------------------------------------------------------------- 3. what a fault run's PASS means


def test_page_one_says_what_a_fault_runs_pass_means_in_the_verdict():
    page = page_one_of(report(partition("pubsub"), partition("streams", lose=False)))
    line = ("A fault run passes only when every lost event was lost where a planned fault acted (on the instance "
            "it targets, within its window) and nothing was lost elsewhere; recovered events' lateness is stated, "
            "not judged.")
    # in the verdict itself, before the scope: on the first printed page whatever follows
    assert line in page and page.index("## Verdict") < page.index(line) < page.index("### Scope")
    assert line not in page_one_of(report(run_of(make_record(dict.fromkeys(NAMES, 20)))))


# ---------------------------------------------------------------- 4. lateness, stated not judged


def test_lateness_under_faults_is_stated_in_the_table_the_findings_and_page_one_and_never_fails_a_run():
    late = partition("streams", lose=False, late_ms=400)
    assert late.findings.passed  # stated, not judged
    noted = [c for c in late.findings.verdict if not c.judged]
    assert noted and not noted[0].passed
    rep = report(partition("pubsub"), late)
    e = next(x for x in archive(rep)["facts"]["runs"] if x["name"] == "partition-streams")
    n, bound, p99, mx = (e["lateness"][k] for k in ("late", "bound_ms", "window_p99_ms", "window_max_ms"))
    assert n > 0 and bound == 100.0 and mx > 400
    # the p99 when the window's samples carry one (percentile gating), else the max
    phrase = f"{n:,} later than {bound:,.0f} ms " + (f"(p99 {p99:,.0f} ms)" if p99 is not None else f"(max {mx:,.0f} ms)")
    page = page_one_of(rep)
    assert "lost nothing" in page and f"`partition-streams` {phrase}" in page and "**Late under faults**" in page
    # the failover section: per fault and transport, the latest-arriving event sent during the fault;
    # the appendix's run-by-run table: how many were late
    failover = sections.failover(rep)
    row = next(line for line in failover.splitlines() if re.match(r"\|\s*partition\s*\|\s*streams", line))
    assert re.search(rf"\|\s+{mx:,.0f}\s+\|", row), row
    runs = sections.failover_runs(rep)
    row = next(line for line in runs.splitlines() if re.match(r"\|\s*partition\s*\|\s*streams", line))
    assert re.search(rf"\|\s+{n:,}\s+\|", row), row
    verdict = tables.verdict_table(late.findings)
    assert "noted" in verdict.loc[verdict["Criterion"] == noted[0].name, "Result"].iloc[0]
    assert "FAIL" not in "".join(verdict["Result"])


# ---------------------------------------------------------------- 5. capacity: hosting, deliveries/s, instrument CPU


def test_capacity_hosting_deliveries_per_second_and_instrument_cpu_are_each_one_thing():
    one, two = capacity_run(), capacity_run(processes=2, cpu_pct=41.5)
    rep = report(one)
    text = sections.capacity(rep) + sections.resources(rep)
    assert "all instances in one Python process" in text and "6.0" in text
    assert "99.6" not in text  # the sampled CPU (scheduler wait included) is not a second instrument CPU
    f = archive(rep)["facts"]["runs"][0]
    o = one.findings.overall
    assert f["deliveries_per_s"] == pytest.approx(o["received"] / f["publishing_window_s"])
    assert f["publishing_window_s"] == pytest.approx(3.9, abs=0.01)  # 40 events due 0.1 s apart
    assert f"{f['deliveries_per_s']:,.2f} deliveries/s over its {f['publishing_window_s']:.2f} s publishing window" \
        in sections.capacity(rep)
    spread = sections.capacity(report(two))
    assert "spread over 2 worker processes" in spread and "all instances in one Python process" not in spread
    assert "2 processes" in spread


# ---------------------------------------------------------------- 6. server settings per run


def test_server_settings_are_per_run_and_a_streams_byte_rate_is_not_pub_sub_advice():
    base = {"client-output-buffer-limit": "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
            "maxmemory": "0", "appendonly": "no"}
    tight = dict(base, **{"client-output-buffer-limit": "normal 0 0 0 pubsub 65536 65536 0"})
    stream = capacity_run(config=base)
    stream.record.scenario["transport"] = "streams"  # a Streams run pushing far more bytes
    stream.record.resources.loc[stream.record.resources["kind"] == "redis", "net_out_bytes"] *= 100
    stream = run_of(stream.record, role="capacity", name="capacity-streams")
    rep = report(capacity_run(config=base), partition("pubsub", config=tight), stream)
    s = archive(rep)["facts"]["settings"]
    assert [lim["runs"] for lim in s["pubsub_limits"]] == [["capacity-1x500", "capacity-streams"], ["partition-pubsub"]]
    assert s["busiest_pubsub_subscriber"]["run"] == "capacity-1x500"
    text = operations.deployment(rep)
    assert "hard 32.0 MiB, soft 8.0 MiB for 60 s (2 runs: capacity-1x500, capacity-streams)" in text
    assert "hard 64.0 KiB, soft 64.0 KiB for 0 s (1 run: partition-pubsub)" in text
    assert "the busiest pub/sub subscriber here received" in text and "(`capacity-1x500`" in text


# ---------------------------------------------------------------- 7. readiness counts the verdict's runs


def test_readiness_counts_the_same_runs_as_the_verdict_and_ticks_in_print():
    rep = report(run_of(make_record(dict.fromkeys(NAMES, 20))), capacity_run(), partition("pubsub"))
    g = archive(rep)["facts"]["groups"]["calm"]
    assert g["runs"] == 2  # the scenario and the capacity row: every run without injected faults
    said = f"{g['exactly_once']} of the {g['runs']} runs without injected faults"
    assert said in page_one_of(rep) and said in operations.operations(rep)
    ready = operations.operations(rep).split("## Deployment")[0]
    assert "- ☑ **met** — " in ready and "- ☐ **not measured** — " in ready and "[x]" not in ready \
        and "[ ]" not in ready
    # three marks that differ on paper (a printer prints no colour and no disabled checkbox): each item's mark
    # says what its word says
    items = [ln for ln in ready.splitlines() if ln.startswith("- ")]
    assert items and all(re.match(r"- (☑ \*\*met\*\*|☒ \*\*not met\*\*|☐ \*\*not measured\*\*) — ", ln) for ln in items)


def test_a_readiness_item_not_met_prints_another_mark_than_one_not_measured():
    rep = report(run_of(make_record(dict.fromkeys(NAMES, 20), self_deliver=["a"])))
    ready = operations.operations(rep).split("## Deployment")[0]
    assert "- ☒ **not met** — No instance receives its own events: 1 self-received" in ready
    assert "- ☐ **not measured** — Sentinel failover" in ready


# ---------------------------------------------------------------- 8. the benchmark's server, its commit, the model


def test_the_benchmark_appendix_names_the_server_as_it_reported_itself_and_does_not_set_the_model_beside_it():
    bench = {"mode": "full", "started": "2026-12-02T23:25:01+00:00",
             "machine": {"cores": 2, "cpu_model": "AMD EPYC", "redis_server": "9.1.2",
                         "server": "Valkey 9.1.2 (implements Redis 7.2.4)", "python": "3.11.7", "git_commit": "abc1234"},
             "latency": {"runs": []}, "knee": {"results": []}}
    text = load.load_markdown(bench)
    assert "Valkey 9.1.2 (implements Redis 7.2.4)" in text and "Redis 9.1.2" not in text
    assert "possibly on other code" not in text and "at the commit stated above" in text
    assert "not with this report's runs nor with the scaling model" in text
    bench["machine"].pop("server")
    assert "a server reporting version 9.1.2 (product not recorded)" in load.load_markdown(bench)
    cap = sections.capacity_model(report(capacity_run()))
    assert "not on these runs or the load benchmark in the appendix" in cap


# ---------------------------------------------------------------- 9. every number on page one is in report.json


#: strings on page one read verbatim from report.json (versions, paths, the platform, the date)
_VERBATIM_KEYS = {"platform", "python", "version", "executable", "host", "cpu", "name", "names"}
#: numbers page one may show that report.json cannot hold, and why: none today
EXEMPT: dict[str, str] = {}
#: figures page one shows that report.json holds in another form, and why they are left out
EXEMPT_PATTERNS = {r"\*\*Generated\*\* \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC":
                   "when the page was rendered: provenance.generated_utc holds it to the second, in ISO form"}
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.,])\d+(?:\.\d+)?(?![\w.])")
# a sign is read as written; report.json's number may carry it (B − A) or not (a loss): compared unsigned


def _walk(doc, numbers: list[float], strings: set[str], key: str = "") -> None:
    if isinstance(doc, dict):
        for k, v in doc.items():
            _walk(v, numbers, strings, str(k))
    elif isinstance(doc, list):
        for v in doc:
            _walk(v, numbers, strings, key)
    elif isinstance(doc, bool) or doc is None:
        return
    elif isinstance(doc, (int, float)):
        numbers.append(float(doc))
    elif isinstance(doc, str) and key in _VERBATIM_KEYS and len(doc) >= 2:
        strings.add(doc)


def page_numbers(page: str, doc: dict) -> list[str]:
    """The numbers page one shows, as written (thousands separators and all), after removing what
    is not a figure: markup, code spans (run ids, paths), link targets, percentile labels (p99),
    and strings report.json holds verbatim (run names, versions, the platform, the date)."""
    numbers: list[float] = []
    strings: set[str] = set()
    _walk(doc, numbers, strings)
    text = page
    for pattern in EXEMPT_PATTERNS:
        text = re.sub(pattern, " ", text)
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "] ", text)
    text = re.sub(r"(?i)\bp\d+(\.\d+)?\b", " ", text)
    for s in sorted(strings, key=len, reverse=True):
        text = text.replace(s, " ")
    return _NUMBER.findall(text)


def missing_from(page: str, doc: dict, exempt: dict[str, str] = EXEMPT) -> list[str]:
    numbers: list[float] = []
    _walk(doc, numbers, set())
    out = []
    for token in page_numbers(page, doc):
        if token in exempt:
            continue
        plain = token.replace(",", "")
        decimals = len(plain.split(".")[1]) if "." in plain else 0
        value, tol = float(plain), 0.5 * 10 ** -decimals + 1e-9
        if not any(abs(abs(x) - value) <= tol for x in numbers):
            out.append(token)
    return out


def test_every_number_on_a_synthetic_page_one_is_in_its_report_json():
    rep = report(run_of(make_record({f"i{k}": 400 for k in range(4)}), name="load-4"), capacity_run(),
                 partition("pubsub", collateral=True), partition("streams", lose=False, late_ms=400))
    page, doc = page_one_of(rep), archive(rep)
    assert len(page_numbers(page, doc)) > 40
    assert missing_from(page, doc) == []
    assert missing_from(page + "\nan invented figure: 123,457 deliveries", doc) == ["123,457"]


EXAMPLE = ROOT / "reports" / "example"


def test_every_number_on_the_committed_examples_page_one_is_in_its_report_json():
    md, js = EXAMPLE / "validation-report.md", EXAMPLE / "report.json"
    doc = json.loads(js.read_text())
    if "facts" not in doc:
        pytest.skip("reports/example was rendered before report.json held its facts (re-rendered by the lead)")
    page = md.read_text().split('<div class="pagebreak"></div>')[0]
    assert missing_from(page, doc) == []


def test_facts_are_plain_json_and_the_archive_keeps_them():
    rep = report(run_of(make_record(dict.fromkeys(NAMES, 20))), partition("pubsub"))
    doc = archive(rep)
    assert set(doc["facts"]) >= {"runs", "groups", "max_lossless", "capacity", "resources", "ordering", "comparisons",
                                 "settings", "monitoring", "readiness", "scope", "definitions"}
    assert pd.Series([e["name"] for e in doc["facts"]["runs"]]).is_unique
    assert Path(ROOT / "fanout" / "report" / "facts.py").is_file()


#: beyond page one: numbers that are not figures of these runs
PAGE_EXEMPT = {**EXEMPT, "7.2": "a Redis version (monitoring: the INFO field exists from Redis 7.2), not a figure"}


def test_every_section_before_the_appendix_reads_its_numbers_from_report_json():
    """Beyond page one: resources, ordering, bootstrap, capacity, deployment and monitoring numbers
    are in report.json too (the appendix quotes versions and parameters, and is left out)."""
    scen = run_of(make_record({f"i{k}": 400 for k in range(4)}), name="standard")
    other = run_of(make_record({f"i{k}": 300 for k in range(5)}), name="stress")
    rep = report(scen, other, capacity_run(), partition("pubsub", collateral=True),
                 partition("streams", lose=False, late_ms=400))
    parts = [sections.page_one(rep)]
    for i, run in enumerate(rep.scenarios, 1):
        parts += [sections.scenario_head(rep, run, i), sections.scenario_latency(run), sections.scenario_verdict(run)]
    parts += [sections.comparisons(rep), sections.performance(rep), sections.resources(rep), sections.capacity(rep), sections.capacity_model(rep),
              sections.soak(rep), sections.failover(rep), sections.failover_runs(rep), sections.scenarios(rep),
              operations.operations(rep), operations.deployment(rep), operations.limitations(rep)]
    doc = archive(rep)
    for part in parts:
        assert missing_from(part, doc, PAGE_EXEMPT) == [], part[:60]
