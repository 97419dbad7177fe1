"""Scenario: one run's parameters, as a frozen dataclass of plain values.

The same fields are the notebooks' papermill parameters and the keys of ``scenarios/*.yaml``,
so ``fanout run --scenario F``, ``papermill -f F`` and ``Scenario.from_yaml(F)`` agree.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fanout.errors import ConfigError
from fanout.lab.params import param
from fanout.transports import TRANSPORT_NAMES, TRANSPORTS
from fanout.events import EVENT_TYPES
from fanout.lab.market import DEFAULT_SYMBOLS

ARRIVALS = ("uniform", "poisson")

#: where the shipped scenario files live (repository root / scenarios)
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"


@dataclass(frozen=True)
class Scenario:
    """One run's parameters (frozen): how many instances, how long, how fast, which transport,
    which faults, the pass marks. Each field's help text is its CLI flag's help and its notebook
    comment; an invalid value raises :class:`~fanout.errors.ConfigError` naming the field.

    Make one with keywords (``Scenario(instances=5, duration_s=10)``), from a yaml file or a
    shipped name (``load_scenario("stress", duration_s=2)``, :meth:`from_yaml`) or from a dict
    (:func:`from_dict`). Methods: :meth:`to_dict` (what a record keeps), :meth:`replace` (a copy
    with fields changed), :attr:`expected_events`. Run it with :func:`fanout.lab.run.run_scenario`.
    """

    name: str = param("standard", "scenario name, used in the run id and the titles")
    instances: int = param(3, "number of instances (bridges test-instance-0 .. N-1)", metavar="N")
    duration_s: float = param(20.0, "seconds of publishing", flag="--duration", metavar="S")
    rate_per_s: float = param(10.0, "events per second, total across all instances", flag="--rate", metavar="R")
    arrivals: str = param("uniform", "uniform (one event every 1/rate s) or poisson (exponential gaps)",
                          choices=ARRIVALS)
    event_types: tuple[str, ...] = param(("ticker", "trade"),
                                         "event types to publish: " + ", ".join(EVENT_TYPES), metavar="T,T")
    symbols: tuple[str, ...] = param(DEFAULT_SYMBOLS, "market symbols in the payloads", metavar="S,S")
    transport: str = param("pubsub", "how events travel: " + ", ".join(
        f"{n} ({spec.summary})" for n, spec in TRANSPORTS.items()), choices=TRANSPORT_NAMES)
    seed: int = param(20251017, "random seed: same seed, same publishers, event types and payloads")
    warmup_s: float = param(0.0, "seconds published first and left out of the analysis", flag="--warmup",
                            metavar="S")
    drain_timeout_s: float = param(5.0, "seconds to wait for late deliveries after the last publish",
                                   flag="--drain-timeout", metavar="S")
    redis_url: str | None = param(None, "Redis to use (None: a throwaway redis-server)", metavar="URL")
    verbose: bool = param(False, "print every transmission and delivery")
    min_delivery_pct: float = param(95.0, "verdict: delivery rate must be above this (percent)",
                                    flag="--min-delivery", metavar="PCT")
    max_avg_latency_ms: float = param(100.0, "verdict: average latency must be below this (ms)",
                                      flag="--max-avg-latency", metavar="MS")
    key_prefix: str | None = param(None, "prefix of the run's Redis channels and keys (None: ws: on a throwaway "
                                   "server; on a given Redis a prefix of the run's own, so nothing else hears it)",
                                   metavar="P")
    faults: tuple[dict, ...] = param(factory=tuple, help="timed fault injections (list of mappings), as in "
                                     "scenarios/faults/*.yaml", cli=False)
    redis_aof: bool = param(False, "throwaway server with AOF persistence, so a restart keeps streams")
    pubsub_buffer_limit: str | None = param(None, "throwaway server's pub/sub output-buffer hard limit, e.g. 256kb",
                                            metavar="SIZE")
    health_check_s: float = param(5.0, "a silent subscriber connection is PINGed after this many seconds",
                                  metavar="S")
    stream_maxlen: int = param(100_000, "streams transport: entries kept per stream (approximate)", metavar="N")
    agents: int = param(0, "> 0: run over this many `fanout agent` processes through Redis (needs redis_url)",
                        metavar="K")
    topology: str = param("mesh", "mesh: all publish and subscribe; host-bots: one publish-only host, "
                          "subscribe-only bots", choices=("mesh", "host-bots"))
    process_mode: str = param("auto", "auto: one process unless the load is more than one event loop keeps up "
                              "with, then one worker process per core; single: all instances in one process; "
                              "processes: one OS process each", choices=("auto", "single", "processes"))
    batch_max: int = param(1, "> 1: up to this many events per pub/sub message when a publisher is ahead",
                           metavar="N")
    batch_delay_ms: float = param(0.0, "with batching: the most an event waits for company (0: this loop turn "
                                  "only)", metavar="MS")
    book_depth: int = param(5, "order book levels per side in a snapshot (sets the message size)", metavar="N")
    cluster_masters: int = param(0, "> 0: a local Redis Cluster with this many masters (sharded transport)",
                                 metavar="N")
    cluster_replicas: int = param(0, "replicas per cluster master (node_failover needs 1)", metavar="N")
    sentinel: bool = param(False, "a local master + replica + three Sentinels (sentinel_failover)")
    shard_partitions: int = param(1, "sharded transport: channels per event type, spread over the masters",
                                  metavar="P")
    signing: bool = param(False, "sign every envelope (HMAC, a key made for the run; the record says only "
                          "'signing on, key id X'); receivers reject what is unsigned")

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("event_types", "symbols"):
            v = getattr(self, name)
            if isinstance(v, str):
                v = tuple(s.strip() for s in v.split(",") if s.strip())
            fix(name, tuple(v))
        fix("faults", tuple(dict(f) for f in (self.faults or ())))
        if not isinstance(self.instances, int) or isinstance(self.instances, bool) or self.instances < 1:
            raise ConfigError(f"instances: must be a whole number >= 1, got {self.instances!r}")
        for name in ("duration_s", "rate_per_s", "warmup_s", "drain_timeout_s",
                     "min_delivery_pct", "max_avg_latency_ms"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{name}: must be a number, got {v!r}")
        if self.duration_s <= 0:
            raise ConfigError(f"duration_s: must be > 0, got {self.duration_s!r}")
        if self.rate_per_s <= 0:
            raise ConfigError(f"rate_per_s: must be > 0, got {self.rate_per_s!r}")
        if self.warmup_s < 0:
            raise ConfigError(f"warmup_s: must be >= 0, got {self.warmup_s!r}")
        if self.drain_timeout_s < 0:
            raise ConfigError(f"drain_timeout_s: must be >= 0, got {self.drain_timeout_s!r}")
        if not 0 <= self.min_delivery_pct <= 100:
            raise ConfigError(f"min_delivery_pct: must be between 0 and 100, got {self.min_delivery_pct!r}")
        if self.arrivals not in ARRIVALS:
            raise ConfigError(f"arrivals: {self.arrivals!r} is not one of {', '.join(ARRIVALS)}")
        if not self.event_types:
            raise ConfigError("event_types: at least one is needed")
        for t in self.event_types:
            if t not in EVENT_TYPES:
                raise ConfigError(f"event_types: unknown event type {t!r} (known: {', '.join(EVENT_TYPES)})")
        if not self.symbols:
            raise ConfigError("symbols: at least one is needed")
        if self.transport not in TRANSPORT_NAMES:
            raise ConfigError(f"transport: unknown transport {self.transport!r} (known: {', '.join(TRANSPORT_NAMES)})")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed: must be an integer, got {self.seed!r}")
        if self.key_prefix is not None and (not isinstance(self.key_prefix, str) or not self.key_prefix
                                            or any(c.isspace() for c in self.key_prefix)):
            raise ConfigError(f"key_prefix: must be a non-empty string without spaces, got {self.key_prefix!r}")
        if self.redis_url is not None and not str(self.redis_url).startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("redis_url: must start with redis://, rediss:// or unix://")
        if not isinstance(self.signing, bool):
            raise ConfigError(f"signing: must be true or false, got {self.signing!r}")
        if isinstance(self.health_check_s, bool) or not isinstance(self.health_check_s, (int, float)) \
                or self.health_check_s <= 0:
            raise ConfigError(f"health_check_s: must be a number > 0, got {self.health_check_s!r}")
        if not isinstance(self.book_depth, int) or not 1 <= self.book_depth <= 5000:
            raise ConfigError(f"book_depth: must be a whole number from 1 to 5000, got {self.book_depth!r}")
        if not isinstance(self.stream_maxlen, int) or self.stream_maxlen < 1:
            raise ConfigError(f"stream_maxlen: must be a whole number >= 1, got {self.stream_maxlen!r}")
        if self.topology not in ("mesh", "host-bots"):
            raise ConfigError(f"topology: {self.topology!r} is not mesh or host-bots")
        if self.topology == "host-bots" and self.instances < 2:
            raise ConfigError("instances: host-bots needs at least 2 (one host, one bot)")
        if not isinstance(self.agents, int) or isinstance(self.agents, bool) or self.agents < 0:
            raise ConfigError(f"agents: must be a whole number >= 0, got {self.agents!r}")
        if self.agents and (self.faults or self.process_mode not in ("single", "auto")):
            raise ConfigError("agents: a run over agents takes no fault plan and no process_mode")
        if self.process_mode not in ("auto", "single", "processes"):
            raise ConfigError(f"process_mode: {self.process_mode!r} is not auto, single or processes")
        if self.process_mode == "processes" and self.faults:
            raise ConfigError("faults: fault plans run with process_mode single (processes mode injects none yet)")
        from fanout.lab.faults import FAULT_KINDS, parse_faults

        faults = parse_faults(self.faults, self.instances, self.duration_s)
        for name in ("cluster_masters", "cluster_replicas", "shard_partitions"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{name}: must be a whole number >= 0, got {v!r}")
        if self.cluster_masters and self.cluster_masters < 3:
            raise ConfigError(f"cluster_masters: a Redis Cluster needs at least 3, got {self.cluster_masters}")
        if self.cluster_masters and self.transport != "sharded":
            raise ConfigError("cluster_masters: the local cluster is for the sharded transport (transport: sharded)")
        if self.transport == "sharded" and not (self.cluster_masters or self.redis_url):
            fix("cluster_masters", 3)  # no cluster given: fanout starts a local one of 3 masters
        if not 1 <= self.shard_partitions <= 1024 or (self.shard_partitions > 1 and self.transport != "sharded"):
            raise ConfigError(f"shard_partitions: 1..1024, and > 1 only with transport sharded, got {self.shard_partitions!r}")
        if not isinstance(self.sentinel, bool):
            raise ConfigError(f"sentinel: must be true or false, got {self.sentinel!r}")
        if self.sentinel and (self.transport == "sharded" or self.redis_url or self.cluster_masters):
            raise ConfigError("sentinel: a throwaway Sentinel setup for pubsub or streams (no redis_url, no cluster)")
        for kind in dict.fromkeys(f.kind for f in faults):
            FAULT_KINDS[kind].check(self, "faults")

    @property
    def expected_events(self) -> int:
        """Events the schedule holds (uniform arrivals; Poisson draws around it)."""
        return max(1, round(self.duration_s * self.rate_per_s))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["event_types"] = list(self.event_types)
        d["symbols"] = list(self.symbols)
        d["faults"] = [dict(f) for f in self.faults]
        return d

    def replace(self, **changes: Any) -> "Scenario":
        return from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "Scenario":
        return load_scenario(path, **overrides)


def from_dict(values: dict[str, Any]) -> Scenario:
    """Build a Scenario from plain values; unknown keys are an error naming them."""
    known = {f.name for f in dataclasses.fields(Scenario)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown scenario field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return Scenario(**values)
    except TypeError as exc:
        raise ConfigError(f"scenario: {exc}") from None


def shipped_scenarios() -> list[str]:
    """Names of the scenario files shipped in ``scenarios/`` (top level)."""
    return sorted(x.stem for x in SCENARIO_DIR.glob("*.yaml")) if SCENARIO_DIR.exists() else []


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A path as given, or a shipped scenario by name (``standard`` -> scenarios/standard.yaml)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    for cand in (SCENARIO_DIR / f"{name_or_path}.yaml", SCENARIO_DIR / str(name_or_path)):
        if cand.exists():
            return cand
    shipped = shipped_scenarios()
    raise ConfigError(f"scenario file {name_or_path!s} not found (shipped: {', '.join(shipped) or 'none'})")


def load_scenario(path: str | Path, **overrides: Any) -> Scenario:
    p = resolve_scenario_path(path)
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{p}: expected a mapping of scenario fields")
    values.setdefault("name", p.stem)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(values)
