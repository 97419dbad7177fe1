"""Progress on long runs: a plain line every LINE_EVERY_S when stderr is not a terminal."""
from __future__ import annotations

import io

from fanout.lab.progress import LINE_EVERY_S, LONG_RUN_S, Progress, live_text


def test_a_long_run_off_a_terminal_prints_a_line_per_interval_with_what_it_is_judged_on():
    out = io.StringIO()
    bar = Progress(None, LONG_RUN_S * 10, "soak", stream=out)
    for k in range(0, int(3 * LINE_EVERY_S) + 1):
        bar.update(float(k), 100 * k, 1_000 * k, {"p99_ms": 1.25, "missing": 3, "rss_mb": 210.4})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"soak: {LINE_EVERY_S:,.0f}/{LONG_RUN_S * 10:,.0f} s, published 3,000, delivered 30,000")
    assert "p99 1.250 ms (last 10 s), missing 3, RSS 210 MB" in lines[0]


def test_a_short_run_or_one_asked_to_be_quiet_prints_nothing():
    for enabled, total in ((None, LONG_RUN_S / 2), (False, LONG_RUN_S * 10)):
        out = io.StringIO()
        bar = Progress(enabled, total, "x", stream=out)
        for k in range(200):
            bar.update(float(k), k, k, {})
        assert out.getvalue() == ""


def test_the_live_text_says_only_what_is_known():
    assert live_text({"published": 5, "delivered": 9}, None) == "published 5, delivered 9"
    assert live_text({"published": 5, "delivered": 9, "missing": 0, "p99_ms": None}, 12.0) == \
        "published 5, delivered 9 (12/s), missing 0"
