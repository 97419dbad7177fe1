"""From the report's parameters to its :class:`~fanout.report.context.Report`: every run
planned (and so every name checked) before the first one starts, then run — or, with
``from_runs``, loaded from an archive and analysed again, so the numbers are the ones the
original report had."""
from __future__ import annotations

from fanout.report import capacity, failover
from fanout.report.context import Report
from fanout.report.params import ReportParams, coerce, repeat_of
from fanout.report.runs import archived_parameters, interleave, load_runs, plan_scenarios, run_planned


def _supported(planned: list[tuple], redis_url: str | None) -> tuple[list[tuple], dict[str, str]]:
    """Scenarios whose transport this machine's throwaway server cannot run are left out, with why."""
    if redis_url:
        return planned, {}
    ok_transports, skipped = failover.supported_transports(sorted({sc.transport for sc, *_ in planned}))
    kept = [p for p in planned if p[0].transport in ok_transports]
    return kept, skipped


def make_report(p: ReportParams, *, progress: bool = True) -> Report:
    if p.from_runs:
        made = archived_parameters(p.from_runs)
        known = {k: v for k, v in (made or {}).items() if k in ReportParams.__dataclass_fields__ and k != "from_runs"}
        return Report(params=p, runs=load_runs(p.from_runs),
                      made_with=ReportParams(**coerce(ReportParams, known)) if made is not None else None)
    common = dict(quick=p.quick, duration_scale=p.duration_scale, redis_url=p.redis_url, key_prefix=p.key_prefix,
                  seed=p.seed)
    planned = plan_scenarios(p.scenarios, min_delivery_pct=p.min_delivery_pct,
                             max_avg_latency_ms=p.max_avg_latency_ms, **common)
    planned, skipped = _supported(planned, p.redis_url)
    cap = capacity.scenarios(**common) if p.capacity else []
    fault_transports, fault_skipped = failover.supported_transports(p.failover_transports)
    skipped |= fault_skipped
    faults = failover.plan_matrix(p.failover, fault_transports, duration_scale=p.duration_scale, seed=p.seed) \
        if p.failover else []
    save = p.save_to or None
    once = [x for x in planned if x[1] == "soak"]
    repeated = [x for x in planned if x[1] != "soak"] + cap + faults
    runs = run_planned(interleave(repeated, repeat_of(p)) + [(*x, None) for x in once], save_to=save,
                       progress=progress)
    return Report(params=p, runs=runs, skipped=skipped)


__all__ = ["make_report"]
