"""A run to dig into (fanout.analysis.explore, fanout.lab.archive, the RunRecord's events(),
latency(), losses(), outages(), timeline()): what events() says agrees with analyse() and with the
loss account, event by event; a run in Parquet parts gives the same frames without loading its
rows; runs() lists the archive newest first with each run's verdict; load_run finds a run by its
id or a prefix of it, or says in one line why not; and every name the docs show imports."""
from __future__ import annotations

import ast
import doctest
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import fanout.lab
from _records import T0, make_record
from conftest import ROOT
from fanout.analysis import analyse
from fanout.analysis.accounting import account_losses, attributions
from fanout.errors import ConfigError
from fanout.lab.record import FAULT_COLUMNS, OUTAGE_COLUMNS, frame, load_run
from fanout.lab.summary import Summary

MS = 1_000_000
NAMES = ("a", "b", "c")


def _sent_in(rec, lo_ms, hi_ms, receiver):
    sent = dict(zip(rec.publications["id"], rec.publications["t_sent"]))
    return [(receiver, e) for e in rec.publications["id"]
            if T0 + lo_ms * MS <= sent[e] <= T0 + hi_ms * MS and not e.startswith(receiver + ":")]


def fault_run():
    """A partition of b 1.0–1.5 s (b loses what was sent meanwhile), a's own outage 0.3–0.7 s
    (its loss an unplanned outage's), c losing one event nothing explains; duplicates, and a and
    c handed their own events."""
    probe = make_record(dict.fromkeys(NAMES, 20))
    drop = _sent_in(probe, 1000, 1500, "b") + _sent_in(probe, 300, 700, "a") + [("c", "a:trade:8")]
    rec = make_record(dict.fromkeys(NAMES, 20), drop=drop, duplicate=[("b", "a:ticker:1"), ("c", "b:trade:2")],
                      self_deliver=["a", "c"], latency_ns=[1 * MS, 2 * MS, 150 * MS],
                      scenario_overrides={"name": "partition-pubsub",
                                          "faults": [{"kind": "partition", "at_s": 1, "duration_s": 0.5,
                                                      "instance": 1}]})
    rec.faults = frame([{"kind": "partition", "instance": "b", "t_start": T0 + 1000 * MS, "t_end": T0 + 1500 * MS,
                         "detail": "b cut off from Redis"}], FAULT_COLUMNS)
    rec.outages = frame([{"instance": "a", "t_down": T0 + 300 * MS, "t_up": T0 + 700 * MS, "reason": "cut off"}],
                        OUTAGE_COLUMNS)
    return rec


# ---------------------------------------------------------------- events() is the analysis, row by row


def test_events_count_what_analyse_counts_per_receiver_on_a_fault_run():
    rec = fault_run()
    f = analyse(rec)
    ev = rec.events()
    assert list(ev.columns) == ["id", "source", "receiver", "type", "seq", "due", "sent", "received", "latency_ms",
                                "latency_sent_ms", "status", "cause"]
    for c in ("due", "sent", "received"):
        assert str(ev[c].dtype) == "datetime64[ns, UTC]", c
    n = ev.groupby(["receiver", "status"]).size()
    for row in f.per_instance.itertuples():
        r = row.instance
        assert n.get((r, "delivered"), 0) + n.get((r, "late"), 0) == row.received, r
        assert n.get((r, "missing"), 0) == row.missing, r
        assert n.get((r, "duplicate"), 0) == row.duplicates, r
        assert n.get((r, "self"), 0) == row.self_received, r
    assert (ev["status"] == "unknown").sum() == f.overall["unknown"] == 0
    assert f.overall["missing"] > 0 and f.overall["duplicates"] == 2 and f.overall["self_received"] == 2
    # late: above the scenario's bound (max_avg_latency_ms), every 150 ms delivery and no other
    bound = float(rec.scenario["max_avg_latency_ms"])
    got = ev[ev["status"].isin(["delivered", "late"])]
    assert ((got["latency_ms"] > bound) == (got["status"] == "late")).all() and (got["status"] == "late").any()
    assert got["latency_ms"].isin([1.0, 2.0, 150.0]).all()
    # latency() is the analysis's samples, in ms
    lat = rec.latency()
    assert len(lat) == f.latency["count"] and lat["latency_ms"].mean() == pytest.approx(f.latency["avg_ms"])


def test_each_missing_events_cause_is_its_loss_accounts():
    rec = fault_run()
    missing = rec.events(status="missing")
    why = attributions(rec)
    assert sorted(zip(missing["receiver"], missing["id"], missing["cause"])) == \
        sorted(zip(why["receiver"], why["id"], why["cause"]))
    assert set(missing["cause"]) == {"lost during partition", "lost during an unplanned outage", "unexplained"}
    # counted, they are the loss account's rows
    acc = account_losses(rec)
    counted = missing.groupby(["receiver", "cause"]).size().to_dict()
    assert counted == {(r, c): n for r, c, n in zip(acc.losses["receiver"], acc.losses["cause"], acc.losses["count"])}
    losses = rec.losses()
    assert list(losses.columns) == ["receiver", "cause", "kind", "fault", "count", "evidence"]
    assert int(losses["count"].sum()) == acc.lost == len(missing)


def test_filters_select_the_rows_of_the_whole_frame():
    rec = fault_run()
    ev = rec.events()
    since, until = pd.Timestamp(T0 + 900 * MS, unit="ns", tz="UTC"), 1.6  # a datetime, seconds from t0
    part = rec.events(receiver="b", type=["ticker"], since=since, until=until)
    due = ev["due"]
    want = ev[(ev["receiver"] == "b") & (ev["type"] == "ticker") & (due >= since)
              & (due <= pd.Timestamp(T0 + 1600 * MS, unit="ns", tz="UTC"))]
    assert len(part) > 0 and part.reset_index(drop=True).equals(want.reset_index(drop=True))
    assert rec.events(status=["duplicate", "self"])["status"].value_counts().to_dict() == {"duplicate": 2, "self": 2}
    with pytest.raises(ConfigError, match=r"'lost' is not a status") as e:
        rec.events(status="lost")
    assert "\n" not in str(e.value)


def test_outages_called_are_the_outages_to_read_and_uncalled_the_recorded_frame():
    rec = fault_run()
    assert list(rec.outages.columns) == list(OUTAGE_COLUMNS) and len(rec.outages) == 1  # what the analysis reads
    o = rec.outages()
    assert list(o.columns) == ["instance", "down", "up", "duration_s", "reason"]
    assert o.loc[0, "down"] == pd.Timestamp(T0 + 300 * MS, unit="ns", tz="UTC") and o.loc[0, "duration_s"] == 0.4
    never = frame([{"instance": "c", "t_down": T0 + 500 * MS, "t_up": 0, "reason": "gone"}], OUTAGE_COLUMNS)
    rec.outages = never
    o = rec.outages()
    assert pd.isna(o.loc[0, "up"]) and o.loc[0, "duration_s"] == pytest.approx((rec.t_end - T0 - 500 * MS) / 1e9)


def test_the_timeline_counts_every_delivery_and_every_missing_event_once():
    rec = fault_run()
    ev = rec.events()
    tl = rec.timeline(interval_s=0.5)
    assert list(tl.columns) == ["start", "deliveries", "missing", "p50_ms", "p99_ms", "reconnects"]
    assert tl["start"].iloc[0] == pd.Timestamp(T0, unit="ns", tz="UTC")
    assert tl["deliveries"].sum() == ev["status"].isin(["delivered", "late"]).sum()
    assert tl["missing"].sum() == (ev["status"] == "missing").sum()
    assert tl["reconnects"].sum() == 1
    # the outage began at 0.3 s: the first interval; b's window 1.0–1.5 s: the third's missing
    assert tl["reconnects"].iloc[0] == 1 and tl["missing"].iloc[2] > 0
    # p50 only from 20 samples on, p99 from 1,000 (none here)
    assert ((tl["deliveries"] >= 20) == tl["p50_ms"].notna()).all() and tl["p99_ms"].isna().all()
    with pytest.raises(ConfigError, match="positive"):
        rec.timeline(interval_s=0)


# ---------------------------------------------------------------- a run in parts: never loaded


def _as_parts(rec, folder: Path, rows_per_part: int = 40) -> Path:
    """Save ``rec`` the way a run recorded as it went is saved: rows in parts, a summary."""
    rec.summary = Summary.from_record(rec)
    out = rec.save(folder)
    parts = out / "parts"
    parts.mkdir()
    for name in ("publications", "deliveries"):
        whole = pd.read_parquet(out / f"{name}.parquet")
        for k in range(0, len(whole), rows_per_part):
            whole.iloc[k:k + rows_per_part].to_parquet(parts / f"{name}-main-{k // rows_per_part:05d}.parquet")
        (out / f"{name}.parquet").unlink()
    return out


def test_a_run_in_parts_gives_the_same_frames_without_loading_its_rows(tmp_path):
    probe = make_record(dict.fromkeys(NAMES, 30))
    rec = make_record(dict.fromkeys(NAMES, 30), drop=_sent_in(probe, 2000, 2600, "c") + [("b", "a:ticker:3")],
                      duplicate=[("a", "b:ticker:4")], self_deliver=["b"], latency_ns=[MS, 3 * MS, 120 * MS])
    rec.run_id = "explore-parts"
    rec.outages = frame([{"instance": "c", "t_down": T0 + 2000 * MS, "t_up": T0 + 2600 * MS, "reason": "cut off"}],
                        OUTAGE_COLUMNS)
    back = load_run(_as_parts(rec, tmp_path))
    assert not back.rows_loaded and back.parts is not None and back.summary is not None
    for ask in (lambda r: r.events(), lambda r: r.events(receiver=["c"], type="trade", since=1.5, until=3.0),
                lambda r: r.events(status="missing"), lambda r: r.latency(source="a"),
                lambda r: r.timeline(0.5), lambda r: r.losses(), lambda r: r.outages()):
        want, got = ask(rec), ask(back)
        assert len(want) and got.equals(want), (want, got)
    assert not back.rows_loaded  # answered from the parts (DuckDB) and the summary, no row read whole
    assert set(back.events(status="missing")["cause"]) == {"lost during an unplanned outage", "unexplained"}


def test_events_of_a_summary_only_archive_say_so_in_one_line(tmp_path):
    import shutil

    rec = make_record(dict.fromkeys(NAMES, 10))
    rec.run_id = "explore-summary-only"
    out = _as_parts(rec, tmp_path)
    shutil.rmtree(out / "parts")
    only = load_run(out)
    with pytest.raises(ConfigError, match="keeps only its summary") as e:
        only.events()
    assert "\n" not in str(e.value)
    assert only.losses().empty  # the loss account reads the summary


# ---------------------------------------------------------------- the archive: runs(), load_run(id)


def _saved(root: Path, run_id: str, t0: int, status: str | None = None) -> Path:
    rec = make_record(dict.fromkeys(NAMES, 4))
    rec.run_id, rec.t0, rec.t_end = run_id, t0, t0 + 2_500_000_000
    rec.environment = {"transport": "pubsub", "provenance": {"commit": "abc123", "dirty": False}}
    rec.save(root)
    if status:
        rec.set_status(status)
    return rec.path


def test_runs_lists_saved_runs_newest_first_with_their_verdict(tmp_path):
    _saved(tmp_path / "data" / "runs", "zzexp-old", T0, "PASS")
    _saved(tmp_path / "reports" / "nightly" / "runs", "zzexp-new", T0 + 3600 * 10**9, "FAIL")
    _saved(tmp_path / "data" / "runs", "zzexp-mid", T0 + 60 * 10**9)
    listed = fanout.lab.runs(tmp_path)
    assert list(listed.columns) == ["run_id", "scenario", "transport", "status", "started", "duration_s",
                                    "instances", "commit", "dirty", "path"]
    assert list(listed["run_id"]) == ["zzexp-new", "zzexp-mid", "zzexp-old"]
    assert list(listed["status"]) == ["FAIL", "not analysed", "PASS"]
    assert str(listed["started"].dtype) == "datetime64[ns, UTC]"
    assert listed.loc[2, "started"] == pd.Timestamp(T0, unit="ns", tz="UTC")
    assert list(listed["duration_s"]) == [2.5] * 3 and list(listed["instances"]) == [3] * 3
    assert set(listed["commit"]) == {"abc123"} and set(listed["transport"]) == {"pubsub"}
    assert fanout.lab.runs(tmp_path / "nothing-here").empty


def test_a_verdict_recorded_after_saving_is_kept_in_run_json_only(tmp_path):
    folder = _saved(tmp_path, "zzexp-status", T0)
    before = {f.name: f.stat().st_mtime_ns for f in folder.glob("*.parquet")}
    load_run(folder).set_status("PASS")
    assert json.loads((folder / "run.json").read_text())["status"] == "PASS"
    assert load_run(folder).status == "PASS"
    assert {f.name: f.stat().st_mtime_ns for f in folder.glob("*.parquet")} == before


def test_load_run_by_id_by_prefix_and_in_one_line_when_none_or_several_match(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _saved(tmp_path / "data" / "runs", "zzexp-20990101-aaaa", T0)
    _saved(tmp_path / "reports" / "x" / "runs", "zzexp-20990101-bbbb", T0)
    assert fanout.lab.load_run("zzexp-20990101-aaaa").path.resolve() == a.resolve()
    assert fanout.lab.load_run("zzexp-20990101-a").run_id == "zzexp-20990101-aaaa"
    assert fanout.lab.load_run("zzexp-20990101-b").path.parent.parent.name == "x"
    assert fanout.lab.load_run(str(a)).run_id == "zzexp-20990101-aaaa"  # a folder still is a folder
    with pytest.raises(ConfigError, match=r"ambiguous: 2 runs match \(zzexp-20990101-aaaa, zzexp-20990101-bbbb\)") as e:
        fanout.lab.load_run("zzexp-2099")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="no run folder or run id 'zzexp-none'") as e:
        fanout.lab.load_run("zzexp-none")
    assert "\n" not in str(e.value) and str(tmp_path / "data" / "runs") in str(e.value)
    assert "reports/*/runs" in str(e.value)


# ---------------------------------------------------------------- layers and documented names


def test_the_lab_record_loads_no_analysis_module():
    """The record's exploring methods reach the analysis by name at call time (record.explore)."""
    code = ("import sys, fanout.lab.record, fanout.lab.archive; "
            "print(sorted(m for m in sys.modules if m.startswith('fanout.analysis')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


DOCS = ("README.md", "data/README.md", "notebooks/README.md")
_FROM = re.compile(r"\bfrom (fanout(?:\.\w+)*) import ([\w, ()]+)")
_CALL = re.compile(r"(?<![\w.])(fanout(?:\.\w+)+)\(")


def _code_of_docstring(doc: str) -> str:
    """The example lines of a docstring: ``>>>``/``...`` lines and indented blocks."""
    lines = []
    for line in doc.splitlines():
        s = line.strip()
        if s.startswith((">>> ", "... ")):
            lines.append(s[4:])
        elif line.startswith("    ") and s:
            lines.append(s)
    return "\n".join(lines)


def documented_names() -> dict[str, set[str]]:
    """``fanout...`` names the docs show, by where: ``module:name`` for ``from m import n``,
    ``dotted`` for a call ``fanout.x.y(``."""
    texts = {d: (ROOT / d).read_text() for d in DOCS}
    for f in sorted((ROOT / "fanout").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(f.read_text()))
        if doc:
            texts[str(f.relative_to(ROOT))] = _code_of_docstring(doc)
    out: dict[str, set[str]] = {}
    for where, text in texts.items():
        for mod, names in _FROM.findall(text):
            for n in names.replace("(", " ").replace(")", " ").split(","):
                if n.strip():
                    out.setdefault(f"{mod}:{n.strip()}", set()).add(where)
        for dotted in _CALL.findall(text):
            out.setdefault(dotted, set()).add(where)
    return out


def _resolves(name: str) -> bool:
    if ":" in name:
        mod, attr = name.split(":")
        return hasattr(importlib.import_module(mod), attr)
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for p in parts[k:]:
            if not hasattr(obj, p):
                return False
            obj = getattr(obj, p)
        return True
    return False


def test_every_name_the_docs_show_imports():
    names = documented_names()
    assert "fanout.lab:run_scenario" in names and "fanout.lab.load_run" in names and "fanout.lab.runs" in names
    broken = {n: sorted(w) for n, w in names.items() if not _resolves(n)}
    assert not broken, broken


def test_the_archives_doctest():
    import fanout.lab.archive

    assert doctest.testmod(fanout.lab.archive).failed == 0


# ---------------------------------------------------------------- real runs (a throwaway server each)


def test_a_real_run_recorded_as_parts_answers_from_its_parts_what_its_rows_say(tmp_path):
    from fanout.lab.options import RunOptions
    from fanout.lab.run import run_scenario
    from fanout.lab.scenario import Scenario

    sc = Scenario(name="explore-parts", instances=3, duration_s=2.0, rate_per_s=300, warmup_s=0.3,
                  event_types=("ticker", "trade"))
    rec = run_scenario(sc, progress=False, save_to=str(tmp_path), options=RunOptions(chunk_rows=600, chunk_s=0.5))
    lazy = fanout.lab.load_run(rec.path)
    assert not lazy.rows_loaded and len(list(lazy.parts.glob("deliveries-*.parquet"))) >= 2
    whole = fanout.lab.load_run(rec.path)
    whole.deliveries  # noqa: B018 - every row read: the frames
    f = analyse(whole)
    for ask in (lambda r: r.events(), lambda r: r.events(receiver="test-instance-2", type="trade", since=0.5, until=1.5),
                lambda r: r.latency(), lambda r: r.timeline(0.5)):
        want, got = ask(whole), ask(lazy)
        assert len(want) and got.equals(want), (want, got)
    assert not lazy.rows_loaded
    ev = lazy.events()
    assert ev["due"].min() >= pd.Timestamp(rec.t0, unit="ns", tz="UTC")  # the warmup left out, as the analysis does
    n = ev.groupby(["receiver", "status"]).size()
    for row in f.per_instance.itertuples():
        assert n.get((row.instance, "delivered"), 0) + n.get((row.instance, "late"), 0) == row.received
        assert n.get((row.instance, "missing"), 0) == row.missing


def test_fanout_run_records_its_verdict_for_runs_to_list(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fanout", "run", "--instances=2", "--duration=1", "--rate=20",
                          "--no-progress", f"--out={tmp_path / 'data' / 'runs'}"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    listed = fanout.lab.runs(tmp_path)
    assert len(listed) == 1 and listed.loc[0, "status"] == "PASS" and listed.loc[0, "instances"] == 2
    assert fanout.lab.load_run(listed.loc[0, "path"]).status == "PASS"


def test_a_report_run_records_its_verdict_too(tmp_path):
    from fanout.lab.scenario import Scenario
    from fanout.report.runs import run_one

    run = run_one(Scenario(name="explore-report", instances=2, duration_s=1.0, rate_per_s=20),
                  save_to=str(tmp_path / "reports" / "latest" / "runs"))
    listed = fanout.lab.runs(tmp_path)
    assert list(listed["run_id"]) == [run.record.run_id] and listed.loc[0, "status"] == run.findings.status == "PASS"
