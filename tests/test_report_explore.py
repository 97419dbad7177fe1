"""notebooks/explore.ipynb and fanout.report.explore: a recorded run opened by folder, id or
"latest", and the questions the notebook answers — checked against the analysis of the same run.
The notebook runs for real under papermill (a real kernel) against a synthetic run saved on disk."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from _runs import partition_run, saved
from conftest import ROOT
from fanout.analysis import analyse
from fanout.errors import ConfigError
from fanout.report import explore
from fanout.report.execute import execute_notebook
from fanout.report.paths import EXPLORE_NOTEBOOK


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    rec = partition_run()
    return root, saved(rec, root), analyse(rec)


def test_losses_by_cause_counts_each_cause_per_receiver_biggest_first():
    missing = pd.DataFrame({"id": ["e1", "e2", "e3", "e4"], "receiver": ["a", "b", "b", "b"],
                            "cause": ["lost during partition", "lost during partition", None,
                                      "lost during partition"]})
    table = explore.losses_by_cause(missing)
    assert table.index.tolist() == ["lost during partition", "unexplained"]
    assert table.loc["lost during partition"].to_dict() == {"a": 1, "b": 2, "total": 3}
    assert table.loc["unexplained", "total"] == 1
    assert explore.losses_by_cause(missing.iloc[:0]).empty


def test_latest_is_the_newest_run_and_an_empty_archive_is_one_line(tmp_path):
    old, new = partition_run("20261207-110000-partition-pubsub-0001"), partition_run("20261207-120000-partition-pubsub-0002")
    new.t0 += 3_600 * 10**9  # started an hour later
    for rec in (old, new):
        saved(rec, tmp_path)
    assert explore.open_run("latest", root=tmp_path).run_id == new.run_id
    assert explore.open_run("20261207-11", root=tmp_path).run_id == old.run_id  # a unique prefix
    with pytest.raises(ConfigError) as err:
        explore.open_run("latest", root=tmp_path / "empty")
    assert "\n" not in str(err.value) and "no archived run" in str(err.value)


def test_the_explore_notebook_answers_from_the_run_what_the_analysis_found(recorded, tmp_path):
    root, folder, findings = recorded
    out, result = tmp_path / "explore.ipynb", tmp_path / "answers.json"
    execute_notebook(EXPLORE_NOTEBOOK, out, {"run": str(folder), "result_json": str(result)}, cwd=ROOT)
    answers = json.loads(result.read_text())
    assert answers["run_id"] == "20261207-120000-partition-pubsub-0001"
    assert answers["missing"] == findings.losses.lost == 5
    assert answers["by_cause"] == findings.losses.by_cause  # each loss with the loss account's cause
    assert answers["outages"] == 1
    text = out.read_text()
    assert text.count("image/png") >= 4  # losses, latency per receiver, timeline, latency over time
    assert "lost during partition" in text and "application/vnd.jupyter.widget-view+json" in text  # the zoom
