"""What every chaos case shares: its sizes, its result, and the small bounded helpers a case
uses to watch and poke the servers it started.

A case runs in a process of its own (see :mod:`benchmarks.chaos.runner`), with ``TMPDIR``
pointing at a fresh directory and ``FANOUT_CHAOS_CASE`` set, so whatever it leaves behind —
a process, a file — can be found afterwards by the parent. ``FANOUT_CHAOS_SECRET`` holds a
password the case may use; the parent greps everything the case wrote for it.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import redis

#: the environment variables a case process gets from the runner
MARKER_ENV = "FANOUT_CHAOS_CASE"
SECRET_ENV = "FANOUT_CHAOS_SECRET"
OUT_ENV = "FANOUT_CHAOS_OUT"


@dataclass
class Sizes:
    """The sizes of one suite run: ``--small`` (CI, about a minute or two in all) or full."""

    small: bool
    instances: int = 3
    rate: float = 500.0                 # outage cases: events/s over all instances
    duration_s: float = 20.0
    fault_at_s: float = 6.0             # after publishing began
    down_s: float = 4.0                 # killed, restarted or paused this long
    hostile: int = 10_000               # hostile messages
    hostile_big: int = 10               # of which 1 MB each
    slow_rate: float = 2000.0
    slow_duration_s: float = 30.0
    soak_instances: int = 5
    soak_rate: float = 500.0
    soak_duration_s: float = 600.0
    soak_window_s: float = 60.0         # "first vs last minute"

    @classmethod
    def make(cls, small: bool) -> "Sizes":
        if not small:
            return cls(small=False)
        return cls(small=True, rate=200.0, duration_s=8.0, fault_at_s=2.0, down_s=2.0, hostile=300,
                   hostile_big=2, slow_duration_s=20.0, soak_duration_s=30.0, soak_window_s=10.0)


@dataclass
class Check:
    name: str
    passed: bool
    measured: Any = None

    def line(self) -> str:
        return f"{'ok  ' if self.passed else 'FAIL'} {self.name}" + ("" if self.measured is None else f": {self.measured}")


@dataclass
class CaseResult:
    """What one case states. ``injected``, ``lost``, ``attributed`` are the table's sentences;
    ``keys_left`` is read from the case's servers before they stop (the runner adds processes
    and files); ``figures`` holds the numbers behind the sentences, for the JSON."""

    case: str
    injected: str = ""
    lost: str = ""
    attributed: str = ""
    keys_left: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def check(self, name: str, passed: bool, measured: Any = None) -> bool:
        self.checks.append(Check(name, bool(passed), measured))
        return bool(passed)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def secret() -> str:
    """The password a case uses (from the runner; a fixed one when a case is run by hand)."""
    return os.environ.get(SECRET_ENV) or "chaos-secret-by-hand"


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# -- watching servers ---------------------------------------------------------------------------

def client(url: str, timeout_s: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)


def calls(url: str, commands: tuple[str, ...]) -> int:
    """How many times the server ran any of ``commands`` (``INFO commandstats``); 0 when it does not answer."""
    try:
        with client(url, 1.0) as c:
            stats = c.info("commandstats")
    except (redis.RedisError, OSError):
        return 0
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in commands)


def wait_for_traffic(urls: list[str], commands: tuple[str, ...], timeout_s: float = 30.0,
                     at_least: int = 1) -> float:
    """Block until the servers at ``urls`` ran ``commands`` ``at_least`` times (a run publishing);
    return the monotonic time it was seen. Raises TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(calls(u, commands) for u in urls) >= at_least:
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"no {'/'.join(commands)} on {len(urls)} server(s) within {timeout_s:g}s")


def keys_left(urls: list[str], limit: int = 50) -> list[str]:
    """Every key on the servers (SCAN, bounded), as ``name (type)``; a server that does not answer says so."""
    out: list[str] = []
    for u in urls:
        try:
            with client(u) as c:
                for k in c.scan_iter(count=1000):
                    if len(out) >= limit:
                        out.append("...")
                        return out
                    out.append(f"{k.decode(errors='replace')} ({c.type(k).decode()})")
        except (redis.RedisError, OSError) as exc:
            out.append(f"(not readable: {str(exc).splitlines()[0]})")
    return sorted(out)


class Background:
    """A function on a daemon thread whose exception is kept, joined with a bound."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # noqa: BLE001 - kept and reported by join()
            self.error = exc

    def start(self) -> "Background":
        self.thread.start()
        return self

    def join(self, timeout_s: float) -> Any:
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise TimeoutError(f"{self.thread.name} did not finish within {timeout_s:g}s")
        if self.error is not None:
            raise self.error
        return self.result


def out_dir() -> Path:
    """Where a case writes what it means to write (run records, its log): the runner greps it."""
    d = Path(os.environ.get(OUT_ENV) or os.environ.get("TMPDIR", "/tmp"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def wire_samples(n: int, source: str = "test-instance-0", seed: int = 1) -> list[bytes]:
    """``n`` messages as a run's bridge writes them (ticker and trade in turn, the simulator's market
    payloads), for measuring what receiving them costs."""
    import orjson

    from fanout.events import EnvelopeWriter
    from fanout.lab.market import SyntheticMarket

    market, w = SyntheticMarket(random.Random(seed)), EnvelopeWriter(source, "abcd1234")
    out = []
    for k in range(n):
        typ = ("ticker", "trade")[k % 2]
        now = time.time_ns()
        out.append(w.write(w.head(typ, typ), k // 2 + 1, now, now,  # seqs per type, from 1 (the v2 wire)
                           orjson.dumps(market.make(typ, "BTCUSDT", now // 10**6))))
    return out


def data_dir() -> Path:
    """Where a case saves its run records."""
    d = out_dir() / "runs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def quiet_logs(path: Path | None = None) -> None:
    """The case's log (fanout's warnings included) to ``path`` rather than the terminal."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if path is not None:
        h = logging.FileHandler(path)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
    root.setLevel(logging.INFO)
