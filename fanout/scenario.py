"""Scenario: one run's parameters, as a frozen dataclass of plain values.

The same fields are the notebooks' papermill parameters and the keys of ``scenarios/*.yaml``,
so ``fanout run --scenario F``, ``papermill -f F`` and ``Scenario.from_yaml(F)`` agree.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .events import EVENT_TYPES
from .market import DEFAULT_SYMBOLS

TRANSPORT_NAMES = ("pubsub", "streams", "sharded")
ARRIVALS = ("uniform", "poisson")

#: where the shipped scenario files live (repository root / scenarios)
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


@dataclass(frozen=True)
class Scenario:
    name: str = "standard"
    instances: int = 3                 # bridges, ids test-instance-0 .. N-1
    duration_s: float = 20.0           # length of the publishing schedule
    rate_per_s: float = 10.0           # events per second, total across instances
    arrivals: str = "uniform"          # uniform: every 1/rate s; poisson: exponential gaps
    event_types: tuple[str, ...] = ("ticker", "trade")
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    transport: str = "pubsub"
    seed: int = 20251017               # fixes publisher choice, event types and payloads
    warmup_s: float = 0.0              # publish for this long first; those events are not analysed
    drain_timeout_s: float = 5.0       # after the last publish, wait at most this long for stragglers
    redis_url: str | None = None       # None: a throwaway redis-server
    verbose: bool = False              # print every transmission and delivery
    min_delivery_pct: float = 95.0     # verdict: delivery rate must be above this (seed: 95%)
    max_avg_latency_ms: float = 100.0  # verdict: average latency must be below this (seed: 100 ms)
    key_prefix: str = "ws:"
    faults: tuple[dict, ...] = field(default_factory=tuple)  # timed faults, see fanout/faults.py
    redis_aof: bool = False            # throwaway server with AOF (appendfsync always), so a restart keeps streams
    pubsub_buffer_limit: str | None = None  # throwaway server's pub/sub output-buffer hard limit, e.g. "256kb"
    health_check_s: float = 5.0        # a silent subscriber connection is PINGed after this long
    stream_maxlen: int = 100_000       # streams transport: entries kept per stream (approximate)
    agents: int = 0                    # >0: run over this many `fanout agent` processes (any hosts), through Redis
    topology: str = "mesh"             # mesh: all publish and subscribe; host-bots: one publish-only host, subscribe-only bots
    process_mode: str = "single"       # single: all instances in one process; processes: one OS process each
    batch_max: int = 1                 # >1: publishers put up to this many events in one Redis message when ahead (pub/sub)
    batch_delay_ms: float = 0.0        # with batching: the most an event waits for company (0: this loop turn only)
    book_depth: int = 5                # order book levels per side in a snapshot (diffs: a quarter); sets message size
    cluster_masters: int = 0           # >0: the throwaway Redis is a local Redis Cluster of this many masters (sharded transport)
    cluster_replicas: int = 0          # replicas per cluster master (node_failover needs 1)
    sentinel: bool = False             # the throwaway Redis is a master + replica watched by 3 Sentinels (bridges ask them)
    shard_partitions: int = 1          # sharded transport: channels per event type, partitioned by symbol

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
        if self.redis_url is not None and not str(self.redis_url).startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("redis_url: must start with redis://, rediss:// or unix://")
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
        if self.agents and (self.faults or self.process_mode != "single"):
            raise ConfigError("agents: a run over agents takes no fault plan and no process_mode")
        if self.process_mode not in ("single", "processes"):
            raise ConfigError(f"process_mode: {self.process_mode!r} is not single or processes")
        if self.process_mode == "processes" and self.faults:
            raise ConfigError("faults: fault plans run with process_mode single (processes mode injects none yet)")
        from .faults import parse_faults

        faults = parse_faults(self.faults, self.instances, self.duration_s)
        if self.redis_url and any(f.kind == "redis_restart" for f in faults):
            raise ConfigError("faults: redis_restart needs the throwaway server fanout starts (leave redis_url empty)")
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
        if self.redis_url and any(f.kind in ("node_failover", "sentinel_failover") for f in faults):
            raise ConfigError("faults: node_failover and sentinel_failover need the throwaway setup fanout starts")
        if any(f.kind == "node_failover" for f in faults) and not (self.cluster_masters and self.cluster_replicas):
            raise ConfigError("faults: node_failover needs a local cluster with replicas (cluster_masters, cluster_replicas: 1)")
        if any(f.kind == "sentinel_failover" for f in faults) and not self.sentinel:
            raise ConfigError("faults: sentinel_failover needs sentinel: true")
        if any(f.kind == "redis_restart" for f in faults) and (self.sentinel or self.cluster_masters):
            raise ConfigError("faults: redis_restart restarts a single throwaway server, not a cluster or a Sentinel setup")

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


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A path as given, or a shipped scenario by name (``standard`` -> scenarios/standard.yaml)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    for cand in (SCENARIO_DIR / f"{name_or_path}.yaml", SCENARIO_DIR / str(name_or_path)):
        if cand.exists():
            return cand
    shipped = sorted(x.stem for x in SCENARIO_DIR.glob("*.yaml")) if SCENARIO_DIR.exists() else []
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
