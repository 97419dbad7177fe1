"""One report's facts in one place: its runs by role, each run's outcome and load state, what was
and was not measured (the scope box), and the machine and server it ran on. The sections
(:mod:`fanout.report.sections`) read only this."""
from __future__ import annotations

import platform
from collections.abc import Sequence
from functools import cached_property
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fanout.cards import card, one_line
from fanout.lab.resources import summarise
from fanout.report import outcomes as _outcomes
from fanout.report import saturation
from fanout.report.params import ReportParams, as_dict
from fanout.report.readiness import SENTINEL_WHY
from fanout.report.runs import ScenarioRun



@dataclass(repr=False)
class Report:
    """One validation report's runs and every fact it states: what the report notebook and
    ``fanout report`` render, section by section (:mod:`fanout.report.sections`).

    Main attributes:

    * ``runs``: every :class:`~fanout.report.runs.ScenarioRun` (record, findings, role); by role:
      ``scenarios``, ``faults``, ``capacity``, ``soaks``; ``passed`` (every run passed);
    * ``facts``: every figure the report states, as report.json keeps it (computed once);
    * ``tables``: the report-level tables as DataFrames of typed values (``runs``, ``scenarios``,
      ``faults``, ``comparisons``, ``capacity``: :mod:`fanout.report.frames`); a run's own are
      ``run.findings.tables``;
    * ``params`` (what was asked), ``rounds`` (runs per configuration), ``quick``, ``skipped``
      (transports not measured and why), ``outcomes`` and ``loads`` per run id.

    Methods: ``not_measured()``, ``servers()``, ``machine()``, ``durations()``, ``parameters()``.
    """

    params: ReportParams
    runs: list[ScenarioRun]
    skipped: dict[str, str] = field(default_factory=dict)   # transport -> why it was not measured
    generated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    outcomes: dict[str, Any] = field(default_factory=dict)
    loads: dict[str, saturation.Load] = field(default_factory=dict)
    #: re-rendered from an archive: the parameters the runs were made with (mode, lengths)
    made_with: ReportParams | None = None

    def __post_init__(self) -> None:
        self.outcomes = _outcomes.outcomes(self.runs)
        self.loads = {k: o.load for k, o in self.outcomes.items()}

    # ---------------------------------------------------------------- display
    @property
    def tables(self):
        """The report-level tables as DataFrames of typed values, built from :attr:`facts`."""
        from fanout.report.frames import report_tables

        return report_tables(self)

    def _mode(self) -> str:
        p = self.run_params
        mode = (f"durations x{p.duration_scale:g}" if p.duration_scale is not None
                else "quick" if p.quick else "full")
        return mode + (", from an archive" if self.from_archive else "")

    def _by_role(self) -> str:
        counts = {role: len(self.role(role)) for role in ("scenario", "fault", "capacity", "soak")}
        return ", ".join(f"{n} {role}" for role, n in counts.items() if n) or "no runs"

    def __repr__(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return one_line(f"<Report {status}: {len(self.runs)} runs ({self._by_role()}); rounds {self.rounds}; "
                        f"{self._mode()} mode>")

    def _repr_html_(self) -> str:
        """The notebook's card: status, runs by role, rounds, mode, what was not run."""
        failed = [r.name for r in self.runs if not r.findings.passed]
        return card("validation report", [
            ("runs", f"{len(self.runs)} ({self._by_role()})"), ("rounds", self.rounds),
            ("mode", self._mode()), ("transports", ", ".join(self.transports()) or None),
            ("failed", ", ".join(dict.fromkeys(failed)) if failed else None),
            ("not measured", ", ".join(f"transport {t}" for t in self.skipped) or None),
        ], status="PASS" if self.passed else "FAIL", kind="Report")

    # ---------------------------------------------------------------- runs by role
    def role(self, role: str) -> list[ScenarioRun]:
        return [r for r in self.runs if r.role == role]

    @property
    def scenarios(self) -> list[ScenarioRun]:
        return self.role("scenario")

    @property
    def faults(self) -> list[ScenarioRun]:
        return self.role("fault")

    @property
    def capacity(self) -> list[ScenarioRun]:
        return self.role("capacity")

    @property
    def soaks(self) -> list[ScenarioRun]:
        return self.role("soak")

    def first_of(self, role: str) -> list[ScenarioRun]:
        """The first run of each configuration (scenario name) of ``role``: what the appendix shows
        in detail and the per-run figures draw when runs were repeated."""
        seen: dict[str, ScenarioRun] = {}
        for r in self.role(role):
            seen.setdefault(r.name, r)
        return list(seen.values())

    def outcome(self, run: ScenarioRun):
        return self.outcomes[run.record.run_id]

    def outcome_list(self, runs: Sequence[ScenarioRun] | None = None) -> list:
        return [self.outcome(r) for r in (self.runs if runs is None else runs)]

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(r.findings.passed for r in self.runs)

    @property
    def totals(self) -> dict:
        return _outcomes.totals(self.outcome_list())

    def resources(self, run: ScenarioRun):
        return summarise(run.record.resources, run.record.t0, run.record.t_end)

    @cached_property
    def facts(self) -> dict:
        """Every figure the report states (:mod:`fanout.report.facts`), computed once; report.json keeps it."""
        from fanout.report.facts import compute

        return compute(self)

    @property
    def max_lossless(self) -> dict:
        return saturation.max_lossless([r for r in self.runs if r.role in ("scenario", "capacity")])

    # ---------------------------------------------------------------- scope
    @property
    def from_archive(self) -> bool:
        return bool(self.params.from_runs)

    @property
    def run_params(self) -> ReportParams:
        """The parameters the runs were made with (the archive's, when re-rendered)."""
        return self.made_with or self.params

    @property
    def rounds(self) -> int:
        """How many times each scenario, capacity row and fault was run (``--repeat``), as the runs
        recorded it (``environment["repeat"]``; 1 when none says)."""
        return max((int(((r.record.environment or {}).get("repeat") or {}).get("of", 1)) for r in self.runs),
                   default=1)

    @property
    def quick(self) -> bool:
        return bool(self.run_params.quick) and self.run_params.duration_scale is None

    def durations(self) -> list[dict]:
        """Run lengths per role: the shortest and longest publishing time."""
        out = []
        for role in ("scenario", "fault", "capacity", "soak"):
            ds = [float(r.findings.overall["duration_s"]) for r in self.role(role)]
            if ds:
                out.append({"role": role, "lo": min(ds), "hi": max(ds), "runs": len(ds)})
        return out

    def transports(self) -> list[str]:
        return list(dict.fromkeys(r.transport for r in self.runs))

    def servers(self) -> list[dict]:
        """The server product and version each run talked to (as its sampler read INFO server)."""
        seen: dict[tuple, dict] = {}
        for r in self.runs:
            env = r.record.environment or {}
            info = next(iter((env.get("redis_info") or {}).values()), {}) or {}
            srv = env.get("server") if isinstance(env.get("server"), dict) else {}
            product = srv.get("product") or ("Valkey" if info.get("server_name") == "valkey" or info.get("valkey_version")
                                             else "Redis")
            version = (srv.get("version") or info.get("valkey_version") or env.get("redis_server")
                       or info.get("redis_version") or "unknown")
            mode = info.get("redis_mode") or ("cluster" if r.transport == "sharded" else "standalone")
            where = str(env.get("redis_url") or "")
            key = (product, version, mode)
            d = seen.setdefault(key, {"product": product, "version": version, "mode": mode, "runs": 0,
                                      "throwaway": where.startswith("throwaway") or r.transport == "sharded"
                                      and not r.findings.scenario.get("redis_url"),
                                      "executable": info.get("executable", ""), "where": where})
            d["runs"] += 1
        return list(seen.values())

    def hosting(self) -> list[dict]:
        """How instances were hosted: in one process, one process each, or over agents."""
        counts: dict[str, int] = {}
        from fanout.report.facts import hosting

        names: dict[str, list[str]] = {}
        for r in self.runs:  # what the run did (auto resolved), from the record
            h = hosting(r)
            counts[h["kind"]] = counts.get(h["kind"], 0) + 1
            names.setdefault(h["kind"], []).append(r.name)
        return [{"kind": k, "runs": n, "names": names[k]} for k, n in counts.items()]

    def machine(self) -> dict:
        env = self.runs[0].record.environment if self.runs else {}
        return {"host": env.get("host") or platform.node(), "cores": env.get("cores"),
                "cpu": env.get("cpu_model") or platform.processor() or "unknown CPU",
                "platform": env.get("platform") or platform.platform(), "python": env.get("python"),
                "loopback": all(_loopback(str(r.record.environment.get("redis_url", ""))) for r in self.runs)}

    def protection(self) -> list[dict]:
        """What protected the runs (``environment["protection"]``): signing and the ACL user, grouped."""
        seen: dict[tuple, dict] = {}
        for r in self.runs:
            pr = (r.record.environment or {}).get("protection") or {}
            key = (bool(pr.get("signing")), pr.get("acl_user"))
            d = seen.setdefault(key, {"signing": key[0], "acl_user": key[1], "key_id": pr.get("key_id"), "runs": 0})
            d["runs"] += 1
        return list(seen.values())

    def not_measured(self) -> list[dict]:
        """Every part of a full validation this report did not measure, and why."""
        p, out = self.run_params, []
        for t, why in self.skipped.items():
            out.append({"what": f"transport {t}", "why": why})
        out.append({"what": "Sentinel failover", "why": SENTINEL_WHY})
        if not self.faults:
            out.append({"what": "failover matrix", "why": "not requested (failover = [])" if not p.failover
                        else "no fault run was possible on this server"})
        if not self.capacity:
            out.append({"what": "capacity-planning rows",
                        "why": "not requested (capacity = false)" if not p.capacity else "not in the archive"})
        if not self.soaks:
            out.append({"what": "soak", "why": "no soak in this report (scenarios does not name `soak`): memory drift, "
                        "reconnects and latency over a long run not measured"})
        kinds = {h["kind"] for h in self.hosting()}
        if "processes" not in kinds and "agents" not in kinds:
            out.append({"what": "instances in separate processes or on separate hosts",
                        "why": "every instance ran inside one Python process (one event loop, one core)"})
        if self.machine()["loopback"]:
            out.append({"what": "network latency between hosts",
                        "why": "every run used a Redis on this machine (loopback)"})
        out.append({"what": "TLS and authentication",
                    "why": "not exercised: the throwaway servers listen on loopback without TLS or a password"})
        prot = self.protection()
        if not any(p["signing"] for p in prot):
            out.append({"what": "signed envelopes", "why": "no run signed its envelopes (scenario signing: false)"})
        if not any(p["acl_user"] for p in prot):
            out.append({"what": "least-privilege ACL users", "why": "the bridges connected as the default user "
                        "(fanout acl prints the per-role users; docs/reliability.md measures them)"})
        return out

    def parameters(self) -> dict:
        """The parameters the runs were made with (kept through any number of re-renderings), and
        ``from_runs`` when this rendering read them from an archive."""
        d = as_dict(self.run_params)
        d["from_runs"] = self.params.from_runs
        if d.get("redis_url"):
            from fanout.redact import redact_url

            d["redis_url"] = redact_url(str(d["redis_url"]))
        d.pop("result_json", None)
        return d


def _loopback(url: str) -> bool:
    return url.startswith("throwaway") or any(h in url for h in ("127.0.0.1", "localhost", "[::1]", "unix://"))


__all__ = ["Report", "one_run", "SENTINEL_WHY"]


def one_run(run: ScenarioRun) -> Report:
    """The report of one run (``notebooks/scenario.ipynb``), with the parameters of its role: a
    fault run is asked for as the failover matrix's one cell, so it is counted, judged and
    rendered as a fault run (never "no fault run was possible" above its own loss)."""
    if run.role == "fault":
        params = ReportParams(scenarios=(), failover=(run.fault,), failover_transports=(run.transport,), capacity=False)
    else:
        params = ReportParams(scenarios=(run.name,), failover=(), capacity=False)
    return Report(params=params, runs=[run])

