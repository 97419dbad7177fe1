"""fanout.report.plots: every figure has a title and labelled axes with units, from a real small run."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from _records import make_record  # noqa: E402
from fanout.report import plots  # noqa: E402
from fanout.analysis import analyse  # noqa: E402
from fanout.lab.scenario import Scenario  # noqa: E402
from fanout.lab.run import run_scenario  # noqa: E402

INSTANCES = 3


@pytest.fixture(scope="module")
def run():
    """One real tiny run (throwaway redis-server, nothing saved) and its findings."""
    sc = Scenario(name="plots", instances=INSTANCES, duration_s=1.0, rate_per_s=30.0,
                  event_types=("ticker", "trade"), drain_timeout_s=3.0)
    record = run_scenario(sc, progress=False, save_to=None)
    return record, analyse(record)


def instance_lines(ax) -> list:
    return [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("test-instance-")]


def legend_labels(fig: Figure) -> list[str]:
    out = []
    for leg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        if leg is not None:
            out += [t.get_text() for t in leg.get_texts()]
    return out


def test_latency_ecdf_one_line_per_instance_on_a_log_axis_with_percentiles(run):
    record, findings = run
    fig = plots.latency_ecdf(record, findings)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert "Latency distribution per instance" in ax.get_title() and "plots" in ax.get_title()
    assert "(ms" in ax.get_xlabel() and "log" in ax.get_xlabel()
    assert ax.get_ylabel()
    assert ax.get_xscale() == "log"
    lines = instance_lines(ax)
    assert sorted(ln.get_label() for ln in lines) == [f"test-instance-{i}" for i in range(INSTANCES)]
    marks = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith(("p50", "p95", "p99"))]
    # a line for each percentile the run's samples carry (a tiny run: not its p95 or p99)
    shown = [(label, key) for label, key in (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"))
             if key not in findings.latency["withheld"]]
    assert "p99_ms" in findings.latency["withheld"] and shown
    assert [str(ln.get_label()).split()[0] for ln in marks] == [label for label, _ in shown]
    for ln, key in zip(marks, [key for _, key in shown]):
        assert ln.get_xdata()[0] == pytest.approx(findings.latency[key])
        assert f"{findings.latency[key]:.3f} ms" in ln.get_label()
    assert set(legend_labels(fig)) >= {ln.get_label() for ln in lines + marks}


def test_expected_vs_received_grouped_bars_match_the_findings(run):
    _record, findings = run
    fig = plots.expected_vs_received(findings)
    (ax,) = fig.axes
    assert "Expected vs received" in ax.get_title()
    assert ax.get_xlabel() == "instance"
    assert "(count)" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(findings.per_instance["instance"])
    expected_bars, received_bars = ax.containers
    assert [b.get_height() for b in expected_bars] == list(findings.per_instance["expected"])
    assert [b.get_height() for b in received_bars] == list(findings.per_instance["received"])
    assert any("expected" in t for t in legend_labels(fig)) and "received" in legend_labels(fig)


def test_latency_over_time_scatter_in_ms_against_seconds(run):
    record, findings = run
    fig = plots.latency_over_time(record, findings)
    (ax,) = fig.axes
    assert "Latency over the run" in ax.get_title()
    assert ax.get_xlabel() == "time since t0 (s)"
    assert "(ms" in ax.get_ylabel()
    assert ax.get_yscale() == "log"
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == findings.latency["count"]
    xs = [x for c in ax.collections for x, _y in c.get_offsets()]
    assert min(xs) >= -0.05 and max(xs) <= record.scenario["duration_s"] + record.scenario["drain_timeout_s"]


def test_scenario_comparison_latency_and_delivery_panels(run):
    _record, findings = run
    other = analyse(make_record({"a": 4, "b": 5, "c": 3, "d": 2, "e": 6}, latency_ns=[800_000, 2_000_000]))
    fig = plots.scenario_comparison([findings, other])
    ax_lat, ax_del = fig.axes
    assert fig._suptitle is not None and "across scenarios" in fig._suptitle.get_text()
    assert ax_lat.get_title() and ax_del.get_title()
    assert "(ms" in ax_lat.get_ylabel() and ax_lat.get_yscale() == "log"
    assert "(%)" in ax_del.get_ylabel()
    assert len(ax_del.patches) == 2
    assert [p.get_height() for p in ax_del.patches] == pytest.approx([findings.overall["delivery_pct"], 100.0])


def test_latency_ecdf_by_scenario_one_line_each(run):
    record, _findings = run
    other = make_record({"a": 4, "b": 5}, latency_ns=[500_000, 3_000_000])
    fig = plots.latency_ecdf_by_scenario([record, other], labels=["real", "synthetic"])
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and "(ms" in ax.get_xlabel() and ax.get_title()
    assert [str(ln.get_label()).split(":")[0] for ln in ax.get_lines()] == ["real", "synthetic"]


def test_figures_survive_a_run_without_deliveries():
    names = {"a": 3, "b": 2}
    record = make_record(names, drop=[(r, f"{s}:{t}:{k}") for r in names for s in names for t in ("ticker", "trade")
                                      for k in range(1, 4)])
    findings = analyse(record)
    assert findings.latency["count"] == 0
    for fig in (plots.latency_ecdf(record, findings), plots.latency_over_time(record, findings),
                plots.expected_vs_received(findings), plots.scenario_comparison([findings]),
                plots.latency_ecdf_by_scenario([record])):
        assert isinstance(fig, Figure)
        assert all(ax.get_title() for ax in fig.axes)
        fig.savefig(__import__("io").BytesIO(), format="png")


def _fault_run():
    """A synthetic partition: test-instance-1 receives nothing from 2 s to 3 s."""
    from _records import T0
    from fanout.lab.record import FAULT_COLUMNS, frame
    from fanout.report.runs import ScenarioRun

    seed = {"test-instance-0": 30, "test-instance-1": 30, "test-instance-2": 30}
    start, end = T0 + 2_000_000_000, T0 + 3_000_000_000
    probe = make_record(seed).deliveries
    drop = [("test-instance-1", i) for i in probe.loc[(probe["receiver"] == "test-instance-1")
                                                      & (probe["t_received"] >= start)
                                                      & (probe["t_received"] < end), "id"]]
    rec = make_record(seed, drop=drop, scenario_overrides={"name": "partition-pubsub"})
    rec.faults = frame([{"kind": "partition", "instance": "test-instance-1", "t_start": start, "t_end": end,
                         "detail": "cut off"}], FAULT_COLUMNS)
    return ScenarioRun(scenario=None, record=rec, findings=analyse(rec), role="fault")


def test_fault_delivery_steps_draw_empty_bins_as_zero_with_a_legend_per_instance_and_the_fault_labelled():
    from fanout.report import plots_faults

    run = _fault_run()
    tl = plots_faults.delivery_timeline(run)
    cut = tl[(tl["receiver"] == "test-instance-1") & (tl["t_s"] >= 2.0) & (tl["t_s"] < 3.0)]
    assert len(cut) == 10 and (cut["per_s"] == 0).all()  # ten empty 100 ms bins, drawn as zero
    fig = plots_faults.plot_delivery_around_faults([run])
    (ax,) = fig.axes
    steps = [ln for ln in ax.get_lines() if ln.get_drawstyle() == "steps-post"]
    assert sorted(ln.get_label() for ln in steps) == [f"test-instance-{i}" for i in range(3)]
    assert legend_labels(fig) == [f"test-instance-{i}" for i in range(3)]
    assert any("partition" in t.get_text() for t in ax.texts)  # the shaded window is labelled
    assert ax.patches or ax.collections  # the shading
    assert "(s)" in ax.get_xlabel() and "/s" in ax.get_ylabel() and fig._suptitle.get_text()


def test_resource_figure_puts_redis_beside_the_instrument(run):
    from fanout.lab.resources import summarise
    from fanout.report import plots_resources
    from fanout.report.runs import ScenarioRun

    record, findings = run
    assert len(record.resources) > 0
    s = summarise(record.resources, record.t0, record.t_end)
    fig = plots_resources.plot_cpu([(ScenarioRun(scenario=None, record=record, findings=findings), s)])
    (ax,) = fig.axes
    assert "% of one core" in ax.get_xlabel() and ax.get_title()
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"Redis (all nodes)", "instrument CPU"}
    widths = [bar.get_width() for c in ax.containers for bar in c]
    assert len(widths) == 2 and all(w > 0 for w in widths)  # Redis and the instrument, measured, not zero
