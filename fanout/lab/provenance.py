"""Which code made a run: the git commit of the checkout fanout was imported from, whether it had
uncommitted changes, fanout's version and the command line (credentials redacted).

``environment["provenance"]`` of every run record (:func:`fanout.lab.record.environment`) and
``provenance`` of the load benchmark's results. Worked out once per process; a fact that cannot
be read (no git, not a checkout, git too slow) is None, never an error.
"""
from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from fanout.redact import redact_text

#: the package directory whose checkout is asked (fanout/, the folder this module's package is in)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: seconds each git command may take before the fact is recorded as unknown
GIT_TIMEOUT_S = 3.0
#: set by a parent that starts the process doing the runs (``fanout report`` starting a notebook
#: kernel): the command line a person typed, recorded instead of the kernel's own
COMMAND_ENV = "FANOUT_COMMAND"


def _git(*args: str, cwd: Path = PACKAGE_DIR) -> str | None:
    """stdout of ``git -C cwd args`` (stripped), or None when git fails, is missing or is slow."""
    try:
        out = subprocess.run(["git", "--no-optional-locks", "-C", str(cwd), *args], capture_output=True,
                             text=True, timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """``{"commit": HEAD or None, "dirty": bool or None}`` of the checkout ``package_dir`` is
    tracked in. None for both when the package is not a tracked part of a git checkout (e.g.
    installed into a virtualenv that happens to live inside one)."""
    if not _git("ls-files", "--error-unmatch", "--", "__init__.py", cwd=package_dir):
        return {"commit": None, "dirty": None}
    commit = _git("rev-parse", "--verify", "HEAD", cwd=package_dir)
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=package_dir) if commit else None
    return {"commit": commit or None, "dirty": None if status is None else bool(status)}


def command_line(argv: list[str] | None = None) -> str:
    """The command line (``$FANOUT_COMMAND`` when a parent set it, else ``sys.argv``), every Redis
    URL in it with its password masked."""
    given = os.environ.get(COMMAND_ENV)
    if given:
        return redact_text(given)
    return shlex.join(redact_text(str(a)) for a in (sys.argv if argv is None else argv))


@functools.lru_cache(maxsize=1)
def _provenance() -> tuple[tuple[str, Any], ...]:
    from fanout import __version__

    return tuple({**git_state(), "fanout": __version__, "command": command_line()}.items())


def provenance() -> dict[str, Any]:
    """``{"commit", "dirty", "fanout", "command"}`` for this process (worked out on the first call)."""
    return dict(_provenance())


def short(commit: str | None) -> str:
    """The first 7 characters of a commit (``"unknown"`` for None)."""
    return commit[:7] if commit else "unknown"


__all__ = ["provenance", "git_state", "command_line", "short", "COMMAND_ENV", "PACKAGE_DIR"]
