"""fanout.report.tables: pandas to_markdown tables, escaped and aligned; PASS/FAIL as words."""
from __future__ import annotations

import pandas as pd

from _records import make_record
from fanout.analysis import analyse
from fanout.report import tables


def test_md_escapes_pipes_and_newlines_and_right_aligns_numbers():
    md = tables.md(pd.DataFrame({"a": ["x|y", "z\nw"], "n": ["1,000", "2"], "k": [1, 2]}))
    head, rule, first, second = md.splitlines()
    assert [c.strip() for c in head.strip("|").split("|")] == ["a", "n", "k"]
    assert rule.replace(" ", "").startswith("|:-") and rule.rstrip().endswith(":|")  # a left, n and k right
    assert "x\\|y" in first and "z<br>w" in second


def test_pass_and_fail_are_words_with_colour_and_never_a_lone_emoji():
    assert tables.status_word(True) == '<span class="verdict-pass">✅ PASS</span>'
    assert tables.status_word(False) == '<span class="verdict-fail">❌ FAIL</span>'


def test_overall_table_explains_each_counter_beside_it():
    df = tables.overall_table(analyse(make_record({"a": 3, "b": 4})))
    meaning = dict(zip(df["Statistic"], df["What it counts"]))
    assert meaning["Missing"] and meaning["Sequence gaps (transit loss)"] and meaning["Unsent (announced by their publisher)"] and meaning["Duplicates"]
    assert "publisher was told" in meaning["Not published (publish failed)"]
