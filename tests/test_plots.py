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


def test_scenario_comparison_states_no_loss_instead_of_drawing_100_percent_bars(run):
    _record, findings = run
    other = analyse(make_record({"a": 4, "b": 5, "c": 3, "d": 2, "e": 6}, latency_ns=[800_000, 2_000_000]))
    assert findings.overall["missing"] == 0 and other.overall["missing"] == 0
    fig = plots.scenario_comparison([findings, other])
    (ax_lat,) = fig.axes  # a panel of equal 100 % bars shows nothing: left out, said in the title
    assert "0 events lost in every one of the 2 runs" in fig._suptitle.get_text()
    assert "(ms" in ax_lat.get_ylabel() and ax_lat.get_yscale() == "log" and ax_lat.get_title()


def test_scenario_comparison_draws_lost_events_per_run_on_a_count_axis(run):
    _record, findings = run
    names = {"a": 4, "b": 5, "c": 3}
    lossy = analyse(make_record(names, drop=[("b", "a:ticker:1"), ("c", "a:trade:1"), ("c", "b:ticker:2")]))
    assert lossy.overall["missing"] == 3
    fig = plots.scenario_comparison([findings, lossy], labels=["real", "lossy"])
    ax_lat, ax_lost = fig.axes
    assert "(count)" in ax_lost.get_ylabel() and ax_lost.get_title() == "Events lost per run"
    heights = {t.get_text(): 0 for t in ax_lost.get_xticklabels()}
    bars = [b for c in ax_lost.containers for b in c if b.get_height() == b.get_height()]  # NaN: no bar
    assert sorted(b.get_height() for b in bars) == [0, 3]
    assert set(heights) == {"real", "lossy"}
    assert ax_lost.get_ylim()[0] == 0
    assert {"p50", "run PASS" if lossy.passed else "run FAIL"} <= set(legend_labels(fig))


def test_scenario_comparison_keeps_repeated_runs_of_one_scenario_apart(run):
    """Runs repeated under one name are one bar each, not drawn over each other."""
    recs = [make_record({"a": 20, "b": 20}, latency_ns=v, scenario_overrides={"name": "same"})
            for v in (500_000, 900_000, 1_500_000)]
    fig = plots.scenario_comparison([analyse(r) for r in recs])
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == 3 == len(set(labels))


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
                plots.latency_ecdf_by_scenario([record]), plots.scenarios_latency([record], [findings])):
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


# ---------------------------------------------------------------- the small multiples of every scenario run


def _repeated(name: str, k: int, of: int, latency_ns, instances: int = 3):
    rec = make_record({f"i{j}": 40 for j in range(instances)}, latency_ns=latency_ns,
                      scenario_overrides={"name": name})
    rec.run_id = f"{name}-r{k}"
    rec.environment = {"python": "test", "repeat": {"round": k, "of": of}}
    return rec


def _summary_only(rec):
    """The same run as an archive keeping only its summary (no rows, no parts)."""
    from fanout.lab.record import RunRecord
    from fanout.lab.summary import Summary

    return RunRecord(run_id=rec.run_id + "-summary", scenario=rec.scenario, environment=rec.environment,
                     publications=None, deliveries=None, instances=rec.instances, t0=rec.t0, t_end=rec.t_end,
                     summary=Summary.from_record(rec))


def test_scenarios_latency_one_panel_per_scenario_one_labelled_line_per_run():
    lat = [300_000, 700_000, 1_100_000, 2_500_000, 9_000_000]
    recs = ([_repeated("alpha", k, 3, [v * k for v in lat]) for k in (1, 2, 3)]
            + [_repeated("beta", k, 2, lat, instances=5) for k in (1, 2)]
            + [_repeated("gamma", 1, 1, lat)])
    found = [analyse(r) for r in recs]
    fig = plots.scenarios_latency(recs, found)
    assert len(fig.axes) == 3  # panels = scenarios (the grid's spare cell removed)
    per_panel = {}
    for ax in fig.axes:
        name = ax.get_title().split(" — ")[0]
        runs = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("#")]
        per_panel[name] = runs
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert [ln.get_label() for ln in runs] == legend  # every run's line is in the legend
        assert ax.get_xscale() == "log" and ax.get_yscale() == "logit"
    assert {k: len(v) for k, v in per_panel.items()} == {"alpha": 3, "beta": 2, "gamma": 1}
    titles = {ax.get_title().split(" — ")[0]: ax.get_title() for ax in fig.axes}
    assert "3 inst" in titles["alpha"] and "3 runs" in titles["alpha"] and "10/s" in titles["alpha"]
    assert "5 inst" in titles["beta"] and "2 runs" in titles["beta"] and "1 run" in titles["gamma"]
    # each run's label names its round and its p50 (the findings'; p99 withheld: too few samples)
    alpha = {ln.get_label().split(":")[0]: ln.get_label() for ln in per_panel["alpha"]}
    assert set(alpha) == {"#1", "#2", "#3"}
    for k, f in zip((1, 2, 3), found[:3]):
        assert f"p50 {f.latency['p50_ms']:.3g} ms" in alpha[f"#{k}"] and "p99 — (n=" in alpha[f"#{k}"]
        # the p50 mark sits on the run's line at 0.5
        line = next(ln for ln in per_panel["alpha"] if ln.get_label().startswith(f"#{k}:"))
        marks = [m for m in fig.axes[0].get_lines() if m.get_marker() == "o" and m.get_color() == line.get_color()]
        assert [(m.get_xdata()[0], m.get_ydata()[0]) for m in marks] == [(pytest.approx(f.latency["p50_ms"]), 0.5)]
    assert all(ax.get_xlim() == fig.axes[0].get_xlim() for ax in fig.axes)  # one shared x axis
    assert {"p50 of the run", "p99 of the run"} <= set(legend_labels(fig))


def test_scenarios_latency_draws_a_summary_only_run_from_its_histogram():
    rec = _repeated("alpha", 1, 1, [400_000, 800_000, 3_000_000])
    only = _summary_only(rec)
    f_rows, f_only = analyse(rec), analyse(only)
    assert f_only.overall["analysed_from"] == "summary" and not only.rows_loaded
    fig = plots.scenarios_latency([only], [f_only])
    (ax,) = fig.axes
    (line,) = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("#")]
    assert "(summary)" in line.get_label() and line.get_linestyle() == "--"
    assert "from the run's summary histogram" in legend_labels(fig)
    assert not only.rows_loaded  # drawn without reading a row
    # the histogram's steps are the run's three latencies (within its 3 significant digits)
    assert sorted(set(line.get_xdata())) == pytest.approx([0.4, 0.8, 3.0], rel=1e-3)
    assert f_only.latency["p50_ms"] == pytest.approx(f_rows.latency["p50_ms"], rel=1e-3)


# ---------------------------------------------------------------- the load benchmark's curve


def _bench() -> dict:
    """A knee-search result: two instance counts; harness ``c`` only in the second."""
    curve = []
    for n, harnesses in ((5, ("a", "b")), (10, ("a", "b", "c"))):
        for h_i, h in enumerate(harnesses):
            for step, rate in enumerate((250.0, 1000.0, 4000.0, 16000.0)):
                curve.append({"harness": h, "instances": n, "rate": rate, "deliveries_per_s": rate * (n - 1),
                              "p50_ms": 0.2 * (1 + h_i) * (1 + step), "p99_ms": None if step == 0 else 2.0 * (1 + step),
                              "delivery_pct": 100.0, "passed": step < 3 or h != "a"})
    return {"knee": {"curve": curve}}


def test_load_curve_has_every_plotted_line_in_its_legend_and_ticks_that_do_not_touch():
    from fanout.report import load

    fig = load.plot_curve(_bench())
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    handles = [h for leg in legends for h in leg.legend_handles]
    keyed = {(tuple(h.get_color()) if not isinstance(h.get_color(), str) else h.get_color(), h.get_linestyle())
             for h in handles if hasattr(h, "get_linestyle")}
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if len(ln.get_xdata()) > 1]
    assert len(lines) == 2 * 2 + 3 * 2  # one per harness and percentile per panel
    for ln in lines:  # each drawn line has a legend entry of its colour and style
        c = ln.get_color()
        assert ((tuple(c) if not isinstance(c, str) else c), ln.get_linestyle()) in keyed, ln.get_label()
    texts = {t.get_text() for leg in legends for t in leg.get_texts()}
    assert {"c p50", "c p99", "a p50", "a p99", "b p50", "b p99"} <= texts  # c: only in the second panel
    assert any("failed" in t for t in texts)  # a's last steps failed: open markers, explained
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text() and t.get_visible()
                 and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
        boxes.sort(key=lambda b: b.x0)
        assert len(boxes) >= 2
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), "x tick labels overlap"


def test_load_curve_caption_explains_what_the_curve_shows():
    from fanout.report import figures, load

    notes = load.curve_notes(_bench())
    assert notes == {"turned_back": [], "p99_missing": 5, "failed": 2}
    ((_fig, text),) = figures.load_curve(_bench())
    assert "open marker is a step the harness failed (2 in all)" in text and "does not carry a p99" not in text
    assert "samples do not carry a p99" in text


# ---------------------------------------------------------------- the per-instance stagger, measured


def _staggered_run():
    """One publisher, three receivers handed every event in the same order, 50 µs apart."""
    from fanout.report.runs import ScenarioRun

    rec = make_record({"p": 60, "a": 0, "b": 0, "c": 0}, latency_ns=[1_000_000, 1_050_000, 1_100_000],
                      scenario_overrides={"name": "stagger"})
    return ScenarioRun(scenario=None, record=rec, findings=analyse(rec))


def test_dispatch_order_measures_microseconds_per_place_from_the_rows():
    from fanout.report.ordering import dispatch_order

    d = dispatch_order(_staggered_run().record)
    assert [i["instance"] for i in d["instances"]] == ["a", "b", "c"]
    assert [i["place"] for i in d["instances"]] == [0.0, 1.0, 2.0]
    assert [i["p50_ms"] for i in d["instances"]] == pytest.approx([1.0, 1.05, 1.1])
    assert d["us_per_place"] == pytest.approx(50.0) and d["gap_us"] == pytest.approx(50.0)
    assert d["spread_us"] == pytest.approx(100.0) and d["r"] == pytest.approx(1.0) and d["follows_order"]
    assert (d["first"], d["last"], d["receivers"]) == ("a", "c", 3)


def test_latency_ecdf_caption_states_the_measured_stagger():
    from fanout.report import figures

    (_e, _), (_fig, text), _ = figures.scenario(_staggered_run())
    assert "50.0 µs later per place" in text and "first a, last c" in text and "r = 1.00" in text
    assert "100 µs from the first to the last" in text and "one event loop" in text


def test_fault_panel_clips_a_catch_up_spike_and_writes_its_value():
    from _records import T0
    from fanout.lab.record import FAULT_COLUMNS, frame
    from fanout.report import plots_faults
    from fanout.report.runs import ScenarioRun

    rec = make_record({"test-instance-0": 60, "test-instance-1": 60, "test-instance-2": 60},
                      scenario_overrides={"name": "slow-consumer-streams"})
    d = rec.deliveries
    held = (d["receiver"] == "test-instance-1") & (d["t_received"] >= T0 + 4_000_000_000) \
        & (d["t_received"] < T0 + 8_000_000_000)
    d.loc[held, "t_received"] = T0 + 8_050_000_000  # everything held during the fault arrives in one bin
    rec.faults = frame([{"kind": "slow_consumer", "instance": "test-instance-1", "t_start": T0 + 4_000_000_000,
                         "t_end": T0 + 8_000_000_000, "detail": "slowed"}], FAULT_COLUMNS)
    run = ScenarioRun(scenario=None, record=rec, findings=analyse(rec), role="fault")
    peak = plots_faults.delivery_timeline(run)["per_s"].max()
    assert peak >= int(held.sum()) * 10  # all in one 100 ms bin (with what arrived there anyway)
    (ax,) = plots_faults.plot_delivery_around_faults([run]).axes
    assert ax.get_ylim()[1] < peak  # the rest of the panel is not flattened by the spike
    assert any(t.get_text() == f"↑ {peak:,.0f}/s" for t in ax.texts)  # the spike's value is still stated


def test_soak_leaves_out_an_all_zero_reconnects_panel_and_says_so():
    from fanout.report import figures, plots_soak

    def row(i, span=10.0):
        return {"t_s": i * 10.0, "span_s": span, "deliveries_per_s": 100.0, "p50_ms": 0.5, "p99_ms": 3.0,
                "rss_mib": {"coordinator": 100.0 + (40.0 if i == 5 else 0.0)}, "redis_mib": 1.2,
                "omem_max_bytes": 0, "reconnects": 0}

    k = {"name": "soak", "interval_s": 10, "processes": ["coordinator"], "offered_deliveries_per_s": 100.0,
         "series": [row(i) for i in range(5)] + [row(5, span=2.0)]}
    fig = plots_soak.plot_soak(k)
    assert len(fig.axes) == 4 and "0 reconnects in every interval" in fig._suptitle.get_text()
    assert plots_soak.partial_last(k) == 2.0 and plots_soak.end_step(k) == {"process": "coordinator", "mib": 40.0}
    text = figures.caption("soak", k, plots_soak.partial_last(k), plots_soak.end_step(k))
    assert "No panel for reconnects: there were 0 in every interval." in text
    assert "covers only 2.0 s" in text and "grows 40.0 MiB in the last interval" in text
    k["series"][2]["reconnects"] = 1
    assert len(plots_soak.plot_soak(k).axes) == 5
