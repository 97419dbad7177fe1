"""Each figure of the report once, with its caption: ``(figure, caption)`` pairs the notebook
shows with :func:`fanout.report.nbhelpers.show_figure`. Captions come from
``templates/captions.md.j2``, one macro per figure."""
from __future__ import annotations

from fanout.analysis.latency import min_samples
from fanout.report import facts as _facts
from fanout.report import load as _load
from fanout.report import plots, plots_faults, plots_resources, plots_soak
from fanout.report.context import Report
from fanout.report.prose import macro


def caption(name: str, *args) -> str:
    return macro("captions.md.j2", name)(*args)


def _entry(run, rep: Report | None) -> dict:
    """The run's facts (report.json ``facts.runs``): read from the report when there is one, else
    computed for this run alone (the same functions, so the same numbers)."""
    if rep is not None:
        e = _facts.run_entry(rep.facts, run)
        if e is not None:
            return e
    return {"dispatch": _facts.dispatch(run)}


def scenario(run, rep: Report | None = None) -> list[tuple]:
    """Per scenario: expected vs received, the latency distribution, latency over the run. The
    distribution's caption states the per-instance stagger (``dispatch`` of the run's facts: from
    ``rep``'s report.json when given, else measured from the run)."""
    dispatch = _entry(run, rep).get("dispatch")
    return [(plots.expected_vs_received(run.findings), caption("expected_vs_received", run)),
            (plots.latency_ecdf(run.record, run.findings), caption("latency_ecdf", run, dispatch)),
            (plots.latency_over_time(run.record, run.findings),
             caption("latency_over_time", run, min_samples(99.0),
                     max(plots.MIN_WINDOW_SAMPLES, min_samples(50.0))))]


def across(rep: Report) -> list[tuple]:
    runs = rep.scenarios
    if len(runs) < 2:
        return []
    entries = [_entry(r, rep) for r in runs]
    return [(plots.scenario_comparison([r.findings for r in runs]),
             caption("scenario_comparison", runs, entries, min_samples(99.0))),
            (plots.latency_ecdf_by_scenario([r.record for r in runs]), caption("latency_by_scenario", runs))]


def scenarios_latency(rep: Report) -> list[tuple]:
    """Every scenario run's latency distribution, one panel per scenario (its repeated runs as
    lines of one panel): :func:`fanout.report.plots.scenarios_latency`. Empty without scenario runs."""
    runs = rep.scenarios
    if not runs:
        return []
    fig = plots.scenarios_latency([r.record for r in runs], [r.findings for r in runs], ncols=3)
    names = list(dict.fromkeys(r.name for r in runs))
    per = {n: sum(1 for r in runs if r.name == n) for n in names}
    entries = [_entry(r, rep) for r in runs]
    withheld = [e["name"] for e in entries if e.get("latency_samples") is not None and e.get("latency_p99_ms") is None]
    summary = [r.name for r in runs if plots.latency_source(r.record, r.findings) == "histogram"]
    return [(fig, caption("scenarios_latency", {"scenarios": len(names), "runs": len(runs),
                                                "runs_per": sorted(set(per.values())),
                                                "withheld_p99": list(dict.fromkeys(withheld)),
                                                "summary": list(dict.fromkeys(summary)),
                                                "p99_needs": min_samples(99.0)}))]


def faults(rep: Report) -> list[tuple]:
    """Delivery around each fault: the first run of each fault and transport (repeated runs are
    in the failover table, one number per run)."""
    runs = rep.first_of("fault")
    fig = plots_faults.plot_delivery_around_faults(runs)
    entries = [_entry(r, rep) for r in runs]
    return [(fig, caption("fault_delivery", runs, entries, plots_faults.SPIKE_FACTOR))] if fig is not None else []


def resources(rep: Report) -> list[tuple]:
    """CPU per configuration: the first run of each (repeated runs would repeat its bar)."""
    runs = [r for role in ("scenario", "capacity", "fault", "soak") for r in rep.first_of(role)]
    fig = plots_resources.plot_cpu([(r, rep.resources(r)) for r in runs if len(r.record.resources)])
    return [(fig, caption("resources", runs))] if fig is not None else []


def soak(rep: Report) -> list[tuple]:
    """Per soak run: its series over time, drawn from report.json's facts."""
    out = []
    for k in rep.facts["soak"]["runs"]:
        fig = plots_soak.plot_soak(k)
        if fig is not None:
            out.append((fig, caption("soak", k, plots_soak.partial_last(k), plots_soak.end_step(k))))
    return out


def load_curve(bench: dict | None) -> list[tuple]:
    fig = _load.plot_curve(bench) if bench else None
    return [(fig, caption("load_curve", bench, _load.curve_notes(bench)))] if fig is not None else []


def deployment(rep: Report) -> list[tuple]:
    """The recommendation's deployment diagram, drawn from ``rep.facts["recommendation"]``."""
    from fanout.report import plots_deploy

    R = rep.facts["recommendation"]
    return [(plots_deploy.plot_deployment(R), macro("_recommendation.md.j2", "deployment_caption")(R))]


__all__ = ["deployment", "scenario", "across", "scenarios_latency", "faults", "resources", "soak", "load_curve", "caption"]
