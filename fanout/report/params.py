"""The validation report's parameters: one frozen dataclass, from which ``fanout report``'s flags
and the report notebook's papermill parameters cell are derived (``fanout.lab.params``), and the
one check every notebook parameter goes through (:func:`coerce`), so a wrong value is one line
naming the parameter, whether it came from the CLI, ``papermill -p`` (which passes ``'[]'`` as a
string) or a YAML file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fanout.errors import ConfigError
from fanout.lab.params import param

#: the default report: the seed's scenarios, then Streams and sharded pub/sub on a Redis Cluster
#: and the soak (scenarios/soak.yaml: the seed's top capacity row held for long; its own section)
DEFAULT_SCENARIOS = ("standard", "stress", "scale-10", "load-1k", "standard@streams", "cluster/sharded-10", "soak")
#: the failover matrix: each fault scenario (scenarios/faults/<fault>-<transport>.yaml) on each transport
DEFAULT_FAULTS = ("redis-restart", "redis-restart-aof", "instance-crash", "slow-consumer", "latency", "partition")
DEFAULT_FAULT_TRANSPORTS = ("pubsub", "streams")
#: full mode runs every scenario, capacity row and fault this many times (quick mode: once)
FULL_REPEAT = 5


@dataclass(frozen=True)
class ReportParams:
    """What one validation report runs. Each field's help is its CLI flag's help and its notebook comment."""

    scenarios: tuple[str, ...] = param(DEFAULT_SCENARIOS, "scenarios to run: names from scenarios/ (NAME@TRANSPORT "
                                       "runs it on another transport) or YAML paths", metavar="A,B")
    failover: tuple[str, ...] = param(DEFAULT_FAULTS, "faults for the failover matrix, run on each of "
                                      "failover_transports ([] or an empty value: none)", metavar="F,F")
    failover_transports: tuple[str, ...] = param(DEFAULT_FAULT_TRANSPORTS, "transports the failover matrix compares",
                                                 metavar="T,T")
    capacity: bool = param(True, "run the seed's capacity-planning rows (1, 3, 5, 10 bot instances at 500 to "
                           "5,000 events/s)")
    quick: bool = param(True, "short runs (scenarios capped at 3 s, capacity rows 2 s, the soak 60 s); False: the "
                        "files' durations (the soak at least 30 min)", cli=False)
    repeat: int | None = param(None, "run each scenario, capacity row and fault this many times, interleaved "
                               "(round 1 of every run, then round 2, ...: ABAB, not AAA BBB) so comparisons rest on "
                               "one number per run; the soak runs once (None: 1 in quick mode, "
                               f"{FULL_REPEAT} in full mode)", metavar="K")
    duration_scale: float | None = param(None, "multiply every scenario's duration by this; overrides quick "
                                         "(None: not used)", metavar="X")
    redis_url: str | None = param(None, "Redis to use (None: a throwaway redis-server per run; env:NAME reads "
                                  "the variable NAME)", metavar="URL")
    key_prefix: str | None = param(None, "channel and key prefix passed to every run (None: each scenario's own)",
                                   metavar="P")
    seed: int | None = param(None, "random seed for every run (None: each scenario's own)")
    min_delivery_pct: float | None = param(None, "verdict: delivery rate must be above this, percent (None: each "
                                           "scenario's own)", flag="--min-delivery", metavar="PCT")
    max_avg_latency_ms: float | None = param(None, "verdict: average latency must be below this, ms (None: each "
                                             "scenario's own)", flag="--max-avg-latency", metavar="MS")
    save_to: str | None = param("data/runs", "folder for the run records, relative to the repository root "
                                "(fanout report: runs/ in its output folder)", metavar="DIR", cli=False)
    from_runs: tuple[str, ...] = param((), "render from these archived run folders or report folders instead of "
                                       "running anything", cli=False)
    result_json: str | None = param(None, "write the verdict and findings as JSON to this path (None: not written)",
                                    cli=False)


def _is_number_text(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _list(name: str, kind: str, v: Any) -> tuple:
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            import yaml

            try:
                v = yaml.safe_load(text)
            except yaml.YAMLError:
                raise ConfigError(f"{name}: {v!r} is not a list (write it as [a, b] or a,b)") from None
        else:
            v = [x.strip() for x in text.split(",") if x.strip()]
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{name}: must be a list, got {v!r}")
    item = dict if "dict" in kind else str
    bad = [x for x in v if not isinstance(x, item)]
    if bad:
        raise ConfigError(f"{name}: every item must be a {'mapping' if item is dict else 'name'}, got {bad[0]!r}")
    return tuple(v)


def _scalar(name: str, kind: str, v: Any) -> Any:
    base = kind.split("|")[0].strip()
    if base == "bool":
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        if not isinstance(v, bool):
            raise ConfigError(f"{name}: must be true or false, got {v!r}")
        return v
    if base == "int":
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name}: must be a whole number, got {v!r}")
        return v
    if base == "float":
        if isinstance(v, str) and _is_number_text(v):  # YAML 1.1 reads 1e-9 as a string
            return float(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{name}: must be a number, got {v!r}")
        return v
    if base == "str" and not isinstance(v, str):
        raise ConfigError(f"{name}: must be a text value, got {v!r}")
    return v


def coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``cls`` found in ``values`` (a notebook's ``globals()``, CLI overrides, YAML),
    each checked against its declared type: lists may come as ``'[a, b]'`` or ``'a,b'`` text,
    ``'None'``/``'null'`` is None where None is allowed. A wrong value raises ConfigError naming
    the parameter, in one line."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        v, kind = values[f.name], str(f.type)
        optional = "None" in kind
        if isinstance(v, str) and optional and v.strip().lower() in ("none", "null", "~"):
            v = None
        if v is None:
            if not optional:
                raise ConfigError(f"{f.name}: needs a value ({f.metadata.get('help', '')})")
        elif kind.startswith("tuple["):
            v = _list(f.name, kind, v)
        else:
            v = _scalar(f.name, kind, v)
        out[f.name] = v
    return out


def report_params(namespace: dict[str, Any]) -> ReportParams:
    """The report notebook's parameters from its ``globals()``, checked (see :func:`coerce`)."""
    p = ReportParams(**coerce(ReportParams, namespace))
    if p.duration_scale is not None and p.duration_scale <= 0:
        raise ConfigError(f"duration_scale: must be a number > 0, got {p.duration_scale!r}")
    if p.repeat is not None and p.repeat < 1:
        raise ConfigError(f"repeat: must be a whole number >= 1, got {p.repeat!r}")
    if p.min_delivery_pct is not None and not 0 <= p.min_delivery_pct <= 100:
        raise ConfigError(f"min_delivery_pct: must be between 0 and 100, got {p.min_delivery_pct!r}")
    if not (p.scenarios or p.failover or p.capacity or p.from_runs):
        raise ConfigError("scenarios: nothing to run (no scenarios, no failover, no capacity rows, no from_runs)")
    from fanout.transports import TRANSPORT_NAMES

    for t in p.failover_transports:
        if t not in TRANSPORT_NAMES:
            raise ConfigError(f"failover_transports: unknown transport {t!r} (known: {', '.join(TRANSPORT_NAMES)})")
    return p


def repeat_of(p: ReportParams) -> int:
    """How many times each scenario, capacity row and fault runs: ``repeat``, else 1 in quick mode
    (or with ``duration_scale``) and :data:`FULL_REPEAT` in full mode."""
    if p.repeat is not None:
        return int(p.repeat)
    return 1 if (p.quick or p.duration_scale is not None) else FULL_REPEAT


def as_dict(p: ReportParams) -> dict[str, Any]:
    """Plain values (lists for tuples) for the report's appendix and archive."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(p).items()}


__all__ = ["ReportParams", "coerce", "report_params", "as_dict", "repeat_of", "FULL_REPEAT", "DEFAULT_SCENARIOS", "DEFAULT_FAULTS",
           "DEFAULT_FAULT_TRANSPORTS"]
