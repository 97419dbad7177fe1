"""Objects a notebook holds read well: one short line as their repr, a summary card as HTML, a
docstring that says what they are; their tables are DataFrames of typed values holding the
numbers the report's text tables show. Synthetic records (tests/_records.py), no Redis."""
from __future__ import annotations

import inspect
import itertools
import pydoc
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from _records import make_record
from fanout.analysis import Findings, analyse
from fanout.lab.record import DELIVERY_COLUMNS, PUBLICATION_COLUMNS, RunRecord, frame, load_run, write_parquet
from fanout.report import nbhelpers, sections
from fanout.report import tables as T
from fanout.report.context import Report
from fanout.report.params import ReportParams
from fanout.report.runs import ScenarioRun

SEED_3 = {"test-instance-0": 69, "test-instance-1": 65, "test-instance-2": 61}
PARAMS = ReportParams(scenarios=("standard",), failover=(), capacity=True)
_IDS = itertools.count()
VOID = {"br", "hr", "img", "meta", "link", "input", "col", "wbr"}


class _Html(HTMLParser):
    """Text of an HTML fragment; raises on an end tag that closes nothing open, or on a tag left open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:] or 'nothing'}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def html_text(html: str) -> str:
    """The text of ``html`` (whitespace squeezed), after checking every tag it opens it closes."""
    p = _Html()
    p.feed(html)
    p.close()
    assert not p.stack, f"left open: {p.stack}"
    return re.sub(r"\s+", " ", " ".join(p.text))


def run_of(record: RunRecord, role: str = "scenario") -> ScenarioRun:
    record.run_id = f"repr-{next(_IDS)}"
    return ScenarioRun(scenario=None, record=record, findings=analyse(record), role=role)


def lossy_record() -> RunRecord:
    probe = make_record(SEED_3)
    gone = list(probe.publications.loc[probe.publications["source"] == "test-instance-0", "id"][:7])
    return make_record(SEED_3, drop=[("test-instance-1", i) for i in gone],
                       duplicate=[("test-instance-2", gone[0])])


def short_line(obj) -> str:
    text = repr(obj)
    assert "\n" not in text and len(text) < 200, text
    return text


# ---------------------------------------------------------------- reprs and cards


def test_reprs_are_one_short_line_that_name_the_run_and_its_outcome():
    rec = make_record(SEED_3)
    rec.path = Path("data/runs/standard-pubsub-20251017")
    f = analyse(rec)
    assert "synthetic" in short_line(rec) and "standard" in short_line(rec)
    line = short_line(f)
    assert "PASS" in line and "390 of 390" in line and "p50 1.000ms," in line, line
    bad = analyse(lossy_record())
    assert "FAIL" in short_line(bad) and "missing 7" in short_line(bad)
    rep = Report(params=PARAMS, runs=[run_of(make_record(SEED_3)), run_of(lossy_record())])
    line = short_line(rep)
    assert "FAIL" in line and "2 scenario" in line, line
    short_line(rep.tables)
    short_line(f.tables)


def test_a_record_card_says_what_ran_where_its_rows_are_and_where_it_is_saved():
    rec = make_record(SEED_3, scenario_overrides={"name": "<b>standard</b>"})
    rec.path = Path("data/runs/x")
    text = html_text(rec._repr_html_())
    for want in ("synthetic", "<b>standard</b>", "pubsub", "3", "10", "rows", "in memory", "data/runs/x"):
        assert want in text, (want, text)
    assert "interrupted" not in text.lower()
    rec.environment["interrupted"] = {"after_s": 4.5, "of_s": 20}
    assert "interrupted after 4.5 s of 20 s" in html_text(rec._repr_html_())


def test_a_findings_card_holds_the_status_and_counts():
    f = analyse(make_record(SEED_3))
    text = html_text(f._repr_html_())
    for want in ("PASS", "390 of 390", "missing", "duplicates", "p50", "p99", "synthetic"):
        assert want in text, (want, text)
    bad = analyse(lossy_record())
    text = html_text(bad._repr_html_())
    assert "FAIL" in text and "383 of 390" in text and re.search(r"missing 7\b|Missing 7\b", text), text
    assert re.search(r"[Dd]uplicates 1\b", text), text
    # p99 of 383 samples is not carried: the card says so rather than give a number
    assert "n=383" in text, text


def test_a_report_card_holds_its_status_runs_by_role_rounds_and_mode():
    rep = Report(params=PARAMS, runs=[run_of(make_record(SEED_3)), run_of(make_record(SEED_3), role="capacity")])
    text = html_text(rep._repr_html_())
    for want in ("PASS", "1 scenario", "1 capacity", "rounds 1", "quick"):
        assert want in text, (want, text)


def test_a_lazily_loaded_records_repr_and_card_never_read_its_rows(tmp_path):
    full = make_record(SEED_3)
    parts = tmp_path / "run" / "parts"
    parts.mkdir(parents=True)
    write_parquet(full.publications, parts / "publications-main-0.parquet")
    write_parquet(full.deliveries, parts / "deliveries-main-0.parquet")
    rec = RunRecord(run_id="lazy", scenario=full.scenario, environment={}, publications=None, deliveries=None,
                    instances=full.instances, t0=full.t0, t_end=full.t_end, path=tmp_path / "run", parts=parts)
    short_line(rec)
    card = html_text(rec._repr_html_())
    assert not rec.rows_loaded
    assert "not loaded" in card and str(parts) in card, card
    assert len(rec.deliveries) == len(full.deliveries)  # they are there when asked for
    assert "in memory" in html_text(rec._repr_html_())


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("obj, words", [
    (RunRecord, ("publications", "deliveries", "save", "load_run")),
    (Findings, ("per_instance", "verdict", "tables", "to_dict")),
    (Report, ("facts", "tables", "runs")),
])
def test_help_says_what_the_object_is_not_dataclass_boilerplate(obj, words):
    doc = inspect.getdoc(obj)
    assert doc and not doc.startswith(obj.__name__ + "("), doc[:80]
    for w in words:
        assert w in doc, (obj.__name__, w)
    assert len(pydoc.render_doc(obj)) < 100_000


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self",)]


def test_the_public_functions_say_their_parameters_and_what_they_return():
    from fanout.lab.run import run_scenario
    from fanout.lab.scenario import Scenario

    for fn in (load_run, analyse, run_scenario):
        doc = inspect.getdoc(fn)
        assert "Returns" in doc or "Return" in doc.split("\n")[0], fn.__name__
        for p in _params(fn):
            assert f"``{p}``" in doc or f"{p}:" in doc, (fn.__name__, p)
    doc = inspect.getdoc(Scenario)
    for w in ("from_dict", "load_scenario", "to_dict", "yaml"):
        assert w in doc, w


# ---------------------------------------------------------------- tables are data


def _ints(col: pd.Series) -> list[int]:
    return [int(str(v).replace(",", "")) for v in col]


def test_findings_tables_are_typed_frames_holding_the_report_tables_numbers():
    f = analyse(lossy_record())
    tabs = f.tables
    assert set(tabs) == {"per_instance", "latency", "per_instance_latency", "verdict", "losses", "faults"}
    per = tabs["per_instance"]
    assert str(per["received"].dtype) == "int64" and str(per["delivery_pct"].dtype) == "float64"
    shown = T.arithmetic_table(f)
    assert _ints(shown["Received"]) == list(per["received"])
    assert _ints(shown["Missing"]) == list(per["missing"]) == [0, 7, 0]
    lat = tabs["latency"]
    assert list(lat.index) == ["from intended send", "from actual send"]
    assert lat.loc["from intended send", "count"] == f.latency["count"] == 383
    assert pd.isna(lat.loc["from intended send", "p99_ms"])  # withheld: NA, not a number
    assert lat.loc["from intended send", "p50_ms"] == pytest.approx(f.latency["p50_ms"])
    shown = T.latency_table(f).set_index("Statistic")
    assert float(shown.loc["P50 (median)", "From intended send time"].removesuffix("ms")) == pytest.approx(
        lat.loc["from intended send", "p50_ms"], abs=5e-4)
    pil = tabs["per_instance_latency"]
    shown = T.instance_latency_table(f)
    assert list(shown["Instance"]) == list(pil["instance"])
    assert [float(v.removesuffix("ms")) for v in shown["Avg"]] == pytest.approx(list(pil["avg_ms"]), abs=5e-4)
    ver = tabs["verdict"]
    assert ver["passed"].dtype == bool and not ver["passed"].all()
    assert list(ver["criterion"]) == list(T.verdict_table(f)["Criterion"])
    assert int(tabs["losses"]["count"].sum()) == f.overall["missing"] == 7
    assert tabs["faults"].empty


def test_report_tables_are_typed_frames_from_the_facts():
    runs = [run_of(make_record(SEED_3)), run_of(make_record(SEED_3)), run_of(lossy_record())]
    runs[2].findings.scenario["name"] = "stress"
    rep = Report(params=PARAMS, runs=runs)
    tabs = rep.tables
    assert {"runs", "scenarios", "faults", "comparisons", "capacity"} <= set(tabs)
    sc = tabs["scenarios"]
    assert list(sc["scenario"]) == ["standard", "stress"] and list(sc["runs"]) == [2, 1]
    assert str(sc["delivered"].dtype) == "int64" and list(sc["delivered"]) == [780, 383]
    shown = T.scenarios_table([g for g in rep.facts["repeats"]["groups"] if g["role"] in ("scenario", "capacity")])
    assert [d.split(" of ")[0].replace(",", "") for d in shown["Delivered"]] == [str(v) for v in sc["delivered"]]
    assert list(tabs["runs"]["run_id"]) == [r.record.run_id for r in runs]
    assert list(tabs["runs"]["missing"]) == [0, 0, 7]
    assert tabs["faults"].empty and len(tabs["capacity"]) >= 3
    assert tabs["capacity"]["measured"].dtype == bool


def test_the_scenario_sections_carry_their_tables_as_frames_the_notebook_shows_styled():
    run = run_of(make_record(SEED_3))
    rep = Report(params=PARAMS, runs=[run])
    sec = sections.scenario_latency(run)
    assert isinstance(sec, str) and "| Statistic" in sec  # the Markdown every caller had
    frames = [p for p in sec.parts if isinstance(p, pd.DataFrame)]
    assert len(frames) == 2 and list(frames[0].columns) == list(T.latency_table(run.findings).columns)
    shown = nbhelpers.section_displays(sections.scenario_head(rep, run, 1))
    kinds = [type(d).__name__ for d in shown]
    assert kinds.count("Styler") == 2 and "Markdown" in kinds, kinds
    html = next(d for d in shown if type(d).__name__ == "Styler").to_html()
    assert "What it counts" in html


def test_the_run_text_and_its_markdown_table_state_the_numbers_of_findings_tables():
    from fanout.report.text import render_markdown_table, render_text

    f = analyse(lossy_record())
    per, text = f.tables["per_instance"], render_text(f)
    for r in per.itertuples(index=False):
        assert f"Instance {r.instance}:\n  Connected: Yes\n  Published: {r.published}\n  Received: {r.received}\n" in text
    rows = [line.strip("|").split("|") for line in render_markdown_table(f).splitlines()[2:]]
    assert [int(c[3]) for c in rows] == list(per["received"]) and [int(c[1]) for c in rows] == list(per["published"])
    lat, m = f.tables["latency"], "from intended send"
    assert f"  Samples: {lat.at[m, 'count']} (negative: {lat.at[m, 'negative']})" in text
    assert f"  P50 (Median): {lat.at[m, 'p50_ms']:.3f}ms" in text
