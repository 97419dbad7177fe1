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


def test_in_a_notebook_progress_is_a_widget_and_lines_go_to_stdout_never_a_pink_stderr_box(tmp_path):
    """In a real kernel: the bar is tqdm's widget (ipywidgets installed: no 'ipywidgets missing'
    warning) and a long run's lines are stdout, so nothing lands in the notebook's stderr."""
    import nbformat

    from fanout.report.execute import execute_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from fanout.lab.progress import LINE_EVERY_S, LONG_RUN_S, Progress\n"
        "bar = Progress(True, 10.0, 'short')\nbar.update(5.0, 50, 100)\nbar.close()\n"
        "lines = Progress(None, LONG_RUN_S * 10, 'soak')\n"
        "for k in range(int(LINE_EVERY_S) + 1):\n    lines.update(float(k), k, k)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    src, out = tmp_path / "progress.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, str(src))
    execute_notebook(src, out, {})
    outputs = nbformat.read(str(out), as_version=4).cells[-1].outputs
    streams = {o.name: o.text for o in outputs if o.output_type == "stream"}
    assert "stderr" not in streams, streams.get("stderr")
    assert "soak: 30/600 s, published 30" in streams.get("stdout", "")
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), outputs
