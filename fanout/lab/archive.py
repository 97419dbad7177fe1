"""The archive of saved runs: which runs there are (:func:`runs`) and which folder a run id names
(:func:`find_run`, what :func:`fanout.lab.load_run` calls when it is given an id, not a folder).

Runs live in ``data/runs/<run-id>/`` (``fanout run``, ``run_scenario``) and in
``reports/<name>/runs/<run-id>/`` (``fanout report``), searched under the current directory and
under the repository root (the checkout ``fanout`` was imported from), both when they differ.
Only ``run.json`` is read: listing a thousand runs reads no Parquet file.

    >>> import fanout.lab
    >>> fanout.lab.runs("/nonexistent").empty
    True
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fanout.errors import ConfigError

#: the folders, relative to a root, that hold run folders (``*`` is any report's name)
RUN_FOLDERS = ("data/runs", "reports/*/runs")
#: ``status`` of a run saved before its verdict was recorded in run.json
NOT_ANALYSED = "not analysed"
RUN_COLUMNS = ["run_id", "scenario", "transport", "status", "started", "duration_s", "instances", "commit",
               "dirty", "path"]


def repository_root() -> Path | None:
    """The checkout ``fanout`` was imported from (the folder holding its ``pyproject.toml``); None
    for an installed package."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() else None


def roots(root: str | os.PathLike | None = None) -> list[Path]:
    """Where runs are looked for: ``root`` alone when given, else the current directory and the
    repository root (once when they are the same)."""
    if root is not None:
        return [Path(root)]
    out = [Path.cwd()]
    repo = repository_root()
    if repo is not None and repo.resolve() != Path.cwd().resolve():
        out.append(repo)
    return out


def _searched(bases: list[Path]) -> str:
    return ", ".join(str(b / f) for b in bases for f in RUN_FOLDERS)


def run_folders(root: str | os.PathLike | None = None) -> list[Path]:
    """Every run folder (one holding ``run.json``) under the run folders of :func:`roots`."""
    seen: dict[Path, Path] = {}
    for base in roots(root):
        for pattern in RUN_FOLDERS:
            for parent in sorted(base.glob(pattern)):
                if not parent.is_dir():
                    continue
                for p in sorted(parent.iterdir()):
                    if (p / "run.json").is_file():
                        seen.setdefault(p.resolve(), p)
    return list(seen.values())


def find_run(run_id: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of the run ``run_id`` names (its whole id or a prefix only one run has); a
    one-line :class:`~fanout.errors.ConfigError` naming where it looked when no run or several match."""
    want = str(run_id)
    folders = run_folders(root)
    exact = [p for p in folders if p.name == want]
    hits = exact or [p for p in folders if p.name.startswith(want)]
    names = sorted({p.name for p in hits})
    if len(names) == 1:
        return hits[0]
    bases = roots(root)
    if not hits:
        raise ConfigError(f"no run folder or run id {want!r}: looked for a folder of that name and in "
                          f"{_searched(bases)}")
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise ConfigError(f"run id {want!r} is ambiguous: {len(names)} runs match ({shown}); give more of it")


def _started(t0: Any) -> int | None:
    """The run's t0 (ns since 1970, UTC), None when unknown."""
    try:
        t = int(t0)
    except (TypeError, ValueError):
        return None
    return t if t > 0 else None


def _row(p: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((p / "run.json").read_text())
    except (OSError, ValueError):
        return None
    scen, env = meta.get("scenario") or {}, meta.get("environment") or {}
    prov = env.get("provenance") or {}
    t0, t_end = int(meta.get("t0") or 0), int(meta.get("t_end") or 0)
    counts = meta.get("counts") or {}
    return {
        "run_id": str(meta.get("run_id") or p.name), "scenario": scen.get("name"),
        "transport": env.get("transport") or scen.get("transport"),
        "status": meta.get("status") or NOT_ANALYSED, "started": _started(t0),
        "duration_s": (t_end - t0) / 1e9 if t_end > t0 > 0 else None,
        "instances": counts.get("instances", scen.get("instances")),
        "commit": prov.get("commit"), "dirty": prov.get("dirty"), "path": p,
    }


def runs(root: str | os.PathLike | None = None):
    """One row per archived run (columns :data:`RUN_COLUMNS`), newest first: ``started`` a UTC
    datetime (the run's t0), ``duration_s`` from t0 to its last recorded time, ``status`` its
    verdict (``PASS``/``FAIL``; ``"not analysed"`` for a run saved before the verdict was recorded),
    ``commit``/``dirty`` the code it ran, ``path`` its folder. ``root``: one folder to search
    (``data/runs`` and ``reports/*/runs`` under it) instead of the current directory and the
    repository root. Reads ``run.json`` only."""
    import pandas as pd

    rows = [r for p in run_folders(root) if (r := _row(p)) is not None]
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    df["started"] = pd.to_datetime(df["started"].astype("Int64"), unit="ns", utc=True)
    df["duration_s"] = df["duration_s"].astype("float64")
    df = df.sort_values(["started", "run_id"], ascending=False, kind="stable", na_position="last")
    return df.reset_index(drop=True)
