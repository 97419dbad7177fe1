"""The runs a report is made of: which scenarios, how long, run (or loaded from an archive) and
analysed. Each becomes a :class:`ScenarioRun` with its role in the report:

* ``scenario`` — a scenario file (``standard``, ``standard@streams`` for another transport);
* ``fault`` — one cell of the failover matrix (``scenarios/faults/<fault>-<transport>.yaml``);
* ``capacity`` — one row of the seed's capacity-planning table (:mod:`fanout.report.capacity`);
* ``soak`` — ``scenarios/soak.yaml`` (a spec named in :data:`SOAK_SCENARIOS`): the seed's top
  capacity row held for long, judged over time (:mod:`fanout.analysis.soak`); quick mode runs
  :data:`SOAK_QUICK_S` of it, full mode the file's length but at least :data:`FULL_SOAK_MIN_S`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout import formatting as fmt
from fanout.analysis import Findings, analyse
from fanout.errors import ConfigError
from fanout.lab.record import RunRecord, load_run
from fanout.report.nbhelpers import Printer, resolve_redis_url, stderr_printer
from fanout.report.paths import ARCHIVE_NAME, display_path

#: quick mode: each scenario publishes for at most this long
QUICK_DURATION_S = 3.0
#: a shortened fault scenario keeps at least this long after its last fault ends
FAULT_TAIL_S = 1.5
#: quick mode: the soak publishes for this long (full mode: the file's length, at least FULL_SOAK_MIN_S)
SOAK_QUICK_S = 60.0
#: full mode: the soak publishes for at least this long (scenarios/soak.yaml says 3,600 s)
FULL_SOAK_MIN_S = 1800.0
#: scenario specs that are soaks (role ``soak``): by name, on any transport (``soak@streams``)
SOAK_SCENARIOS = ("soak",)
ROLES = ("scenario", "fault", "capacity", "soak")


@dataclass
class ScenarioRun:
    """One run as the report uses it: the Scenario, its record and findings, its role, and what
    was changed from the scenario file (``changes``: field -> (file value, value used))."""

    scenario: Any  # fanout.lab.scenario.Scenario, or None when loaded from an archive
    record: RunRecord
    findings: Findings
    role: str = "scenario"
    source: str = ""
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.findings.scenario.get("name", self.record.run_id))

    @property
    def transport(self) -> str:
        return str(self.findings.scenario.get("transport", "pubsub"))

    @property
    def fault(self) -> str:
        """The fault scenario's name without its transport (``partition`` for partition-streams)."""
        return self.name.removesuffix(f"-{self.transport}")

    @property
    def faulted(self) -> bool:
        return bool(self.findings.scenario.get("faults"))

    @property
    def path(self) -> str:
        return display_path(self.record.path) if self.record.path else "(not saved)"


def split_spec(spec: str) -> tuple[str, str | None]:
    """``standard@streams`` -> (``standard``, ``streams``); ``standard`` -> (``standard``, None)."""
    name, _, transport = str(spec).partition("@")
    return name.strip(), (transport.strip() or None)


def report_scenario(spec: str, *, quick: bool = True, duration_scale: float | None = None,
                    redis_url: str | None = None, key_prefix: str | None = None, seed: int | None = None,
                    min_delivery_pct: float | None = None, max_avg_latency_ms: float | None = None,
                    quick_duration_s: float = QUICK_DURATION_S, full_min_s: float = 0.0):
    """Load a shipped scenario (or a YAML path; ``NAME@TRANSPORT`` for another transport) with the
    report's overrides. Returns ``(scenario, source, changes)``.

    Duration: ``duration_scale`` (if given) multiplies the file's; otherwise ``quick`` caps it at
    ``quick_duration_s``; otherwise the file's, at least ``full_min_s``. A shortened scenario with
    faults still runs until :data:`FAULT_TAIL_S` after its last fault ends (never past the file's
    duration)."""
    from fanout.lab.scenario import load_scenario, resolve_scenario_path

    name, transport = split_spec(spec)
    path = resolve_scenario_path(name)
    file_sc = load_scenario(path)
    if duration_scale is not None:
        duration = round(file_sc.duration_s * float(duration_scale), 6)
    elif quick:
        duration = min(file_sc.duration_s, quick_duration_s)
    else:
        duration = max(file_sc.duration_s, full_min_s)
    fault_end = max((float(f.get("at_s", 0)) + float(f.get("duration_s", 0)) for f in file_sc.faults), default=0.0)
    if fault_end and duration < file_sc.duration_s:
        duration = min(file_sc.duration_s, max(duration, fault_end + FAULT_TAIL_S))
    overrides = {"duration_s": duration, "redis_url": resolve_redis_url(redis_url), "seed": seed,
                 "key_prefix": key_prefix, "min_delivery_pct": min_delivery_pct,
                 "max_avg_latency_ms": max_avg_latency_ms}
    if transport and transport != file_sc.transport:
        overrides |= {"transport": transport, "name": f"{file_sc.name}-{transport}"}
    sc = load_scenario(path, **overrides)
    changes = {k: (getattr(file_sc, k), getattr(sc, k))
               for k in ("duration_s", "seed", "transport", "key_prefix", "min_delivery_pct", "max_avg_latency_ms")
               if getattr(file_sc, k) != getattr(sc, k)}
    return sc, display_path(path), changes


def role_for(scenario: dict) -> str:
    """The role a run of this scenario (its dict) plays in a report when nobody says: ``fault``
    when it injects faults, ``soak`` for a soak, ``capacity`` for a capacity row, else ``scenario``."""
    if scenario.get("faults"):
        return "fault"
    name = str(scenario.get("name", ""))
    if name.split("-")[0] in SOAK_SCENARIOS:
        return "soak"
    return "capacity" if name.startswith("capacity-") else "scenario"


def run_one(sc, *, role: str | None = None, save_to: str | None = "data/runs", source: str = "",
            changes: dict | None = None, printer: Printer | None = None, label: str = "",
            repeat: dict | None = None, progress: bool = False) -> ScenarioRun:
    """Run one Scenario (throwaway redis-server unless ``sc.redis_url``) and analyse it; a start
    and an end line go through ``printer``. ``repeat`` (``{"round": i, "of": k}``) is kept in the
    record's environment, so an archive knows which round each run was. ``role`` None: the
    scenario's own (:func:`role_for`: a scenario with faults is a fault run), kept in the record
    as ``report_role`` so a report rendered from the archive places it the same way.
    ``progress``: the lab's live progress bar (a widget in JupyterLab)."""
    from fanout.lab.run import run_scenario

    role = role or role_for(sc.to_dict())

    say = printer or (lambda _line: None)
    say(f"{label}{sc.name}: {sc.instances} instances, {sc.duration_s:g} s at {sc.rate_per_s:g} events/s "
        f"({sc.transport}) ...")
    # a soak records as it goes (rows written as parts into its run folder, a chunk at most in memory), so
    # the processes' RSS it is judged on is the bridges' and not a growing pile of rows
    record = run_scenario(sc, progress=progress, save_to=save_to if role == "soak" else None,
                          printer=print if sc.verbose else None)
    record.environment["report_role"] = role  # so a re-render from the archive knows the run's place
    if repeat:
        record.environment["repeat"] = dict(repeat)
    if save_to:
        record.save(save_to)
    findings = analyse(record)
    record.set_status(findings.status)  # in run.json when saved: fanout.lab.runs() lists it
    say(f"{label}{sc.name}: {findings.status} (delivery {findings.overall['delivery_pct']:.2f}%, "
        f"avg latency {fmt.ms(findings.latency['avg_ms'])}) -> {record.path or 'not saved'}")
    return ScenarioRun(scenario=sc, record=record, findings=findings, role=role, source=source,
                       changes=dict(changes or {}))


def interleave(planned: Sequence[tuple], k: int) -> list[tuple]:
    """``(scenario, role, source, changes)`` tuples, each ``k`` times, round by round (every run of
    round 1, then round 2, ...: A B A B, not A A B B), so a slow spell of a shared machine falls on
    every configuration alike rather than on one. Each gets its ``{"round": i, "of": k}``
    (None when ``k`` is 1)."""
    return [(*x, {"round": i, "of": k} if k > 1 else None) for i in range(1, k + 1) for x in planned]


def run_planned(planned: Sequence[tuple], *, save_to: str | None, progress: bool = True) -> list[ScenarioRun]:
    """Run ``(scenario, role, source, changes[, repeat])`` tuples one after the other; progress on
    stderr, each line saying the run's role and, when repeated, its round."""
    say = stderr_printer if progress else None
    out = []
    for i, (sc, role, source, changes, *rest) in enumerate(planned, 1):
        repeat = rest[0] if rest else None
        label = f"[{i}/{len(planned)} {'' if role == 'scenario' else role + ' '}" \
                f"{'round ' + str(repeat['round']) + '/' + str(repeat['of']) + ' ' if repeat else ''}".rstrip() + "] "
        out.append(run_one(sc, role=role, save_to=save_to, source=source, changes=changes, printer=say,
                           label=label, repeat=repeat))
    return out


def is_soak(spec: str) -> bool:
    """Is this scenario spec a soak (``soak``, ``soak@streams``, ``scenarios/soak.yaml``)?"""
    return Path(split_spec(spec)[0]).stem in SOAK_SCENARIOS


def plan_scenarios(specs: Sequence[str], **overrides) -> list[tuple]:
    """Every scenario spec loaded (and so checked) before the first run starts; a soak gets its
    own role and lengths (:data:`SOAK_QUICK_S`, :data:`FULL_SOAK_MIN_S`)."""
    out = []
    for spec in specs:
        if is_soak(spec):
            sc, source, changes = report_scenario(spec, **overrides, quick_duration_s=SOAK_QUICK_S,
                                                  full_min_s=FULL_SOAK_MIN_S)
            out.append((sc, "soak", source, changes))
            continue
        sc, source, changes = report_scenario(spec, **overrides)
        out.append((sc, "scenario", source, changes))
    return out


# -------------------------------------------------------------------- archived runs


def _role_of(record: RunRecord) -> str:
    role = (record.environment or {}).get("report_role")
    if role in ROLES:
        return role
    return role_for(record.scenario)


def _run_folders(path: Path) -> list[tuple[Path, str | None]]:
    """(run folder, role) for a run folder, a report folder (its archive lists its runs, by a path
    relative to the report folder; archives written before that named them by an absolute or
    working-directory path, tried after the report folder's own ``runs/``), or a folder of run
    folders."""
    import json

    if (path / "run.json").is_file():
        return [(path, None)]
    archive = path / ARCHIVE_NAME
    if archive.is_file():
        doc = json.loads(archive.read_text())
        out = []
        for r in doc.get("runs", []):
            p = Path(r["record"])
            for cand in ([] if p.is_absolute() else [path / p]) + [path / "runs" / p.name, p]:
                if (cand / "run.json").is_file():
                    out.append((cand, r.get("role")))
                    break
            else:
                raise ConfigError(f"{archive}: run {r.get('run_id')} not found (looked for {p})")
        return out
    found = sorted(p for p in path.iterdir() if (p / "run.json").is_file()) if path.is_dir() else []
    if not found:
        raise ConfigError(f"from_runs: {path} holds no run (no run.json, no {ARCHIVE_NAME}, no run folders)")
    return [(p, None) for p in found]


def copy_runs(paths: Sequence[str], dest: str | Path) -> list[Path]:
    """Copy every run folder ``paths`` name (as :func:`load_runs` finds them) into ``dest``
    (a report folder's ``runs/``), so a report rendered from them holds its own runs; a folder
    already there is left as it is. Returns the folders in ``dest``."""
    import shutil

    dest = Path(dest)
    out = []
    for given in paths:
        for folder, _role in _run_folders(Path(given)):
            target = dest / folder.name
            if target.resolve() != folder.resolve():
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copytree(folder, target, dirs_exist_ok=True)
            out.append(target)
    return out


def load_runs(paths: Sequence[str]) -> list[ScenarioRun]:
    """Archived runs, analysed again: the same numbers as the report that made them."""
    out = []
    for given in paths:
        for folder, role in _run_folders(Path(given)):
            record = load_run(folder)
            out.append(ScenarioRun(scenario=None, record=record, findings=analyse(record),
                                   role=role or _role_of(record), source=display_path(folder)))
    if not out:
        raise ConfigError("from_runs: no runs found")
    return out




def archived_parameters(paths: Sequence[str]) -> dict[str, Any] | None:
    """The parameters the first report folder among ``paths`` was made with (its archive), or None."""
    import json

    for given in paths:
        archive = Path(given) / ARCHIVE_NAME
        if archive.is_file():
            return dict(json.loads(archive.read_text()).get("parameters") or {})
    return None


def scenario_from_namespace(namespace: dict[str, Any]):
    """The scenario notebook's Scenario from its ``globals()``: every field checked against its
    type first (one line naming a wrong parameter), ``redis_url`` through ``env:NAME``."""
    from fanout.lab.scenario import Scenario, from_dict
    from fanout.report.params import coerce

    unnamed = "name" in namespace and namespace["name"] in (None, "", "None")
    values = coerce(Scenario, {k: v for k, v in namespace.items() if not (k == "name" and unnamed)})
    if "redis_url" in values:
        values["redis_url"] = resolve_redis_url(values["redis_url"])
    sc = from_dict(values)
    return from_dict({**values, "name": parameters_name(sc)}) if unnamed else sc


#: fields that do not change what a run measures (left out of :func:`parameters_name`'s digest)
_UNMEASURED = ("name", "redis_url", "key_prefix", "verbose")


def parameters_name(sc) -> str:
    """A scenario name made from its parameters: ``nb-{instances}x{rate}-{transport}[-{fault
    kinds}]-{digest}``, the digest over every field that changes what is measured, so runs made
    with the same parameters share a name (repeats of one configuration) and runs made with
    different ones never merge in a report."""
    import hashlib
    import json

    d = {k: v for k, v in sc.to_dict().items() if k not in _UNMEASURED}
    digest = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:4]
    kinds = "+".join(dict.fromkeys(str(f.get("kind")) for f in sc.faults))
    return f"nb-{sc.instances}x{sc.rate_per_s:g}-{sc.transport}" + (f"-{kinds}" if kinds else "") + f"-{digest}"


def open_one(run: str, root: str | None = None) -> ScenarioRun:
    """A recorded run (``"latest"``, a run id or prefix, a folder: :func:`fanout.report.explore.open_run`),
    analysed again, in the role it was recorded in (a run with faults is a fault run)."""
    from fanout.report.explore import open_run

    record = open_run(run, root)
    return ScenarioRun(scenario=None, record=record, findings=analyse(record), role=_role_of(record),
                       source=display_path(record.path) if record.path else "")


__all__ = ["ScenarioRun", "role_for", "split_spec", "report_scenario", "run_one", "run_planned", "interleave", "plan_scenarios", "load_runs",
           "copy_runs",
           "scenario_from_namespace", "parameters_name", "open_one", "archived_parameters", "is_soak", "QUICK_DURATION_S", "FAULT_TAIL_S", "ROLES",
           "SOAK_QUICK_S", "FULL_SOAK_MIN_S", "SOAK_SCENARIOS"]
