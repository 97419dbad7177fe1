"""The calls the notebooks' cells make: find the repository, show Markdown and figures, write the
result for the caller. Nothing here runs a scenario (see :mod:`fanout.report.runs`)."""
from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from fanout.errors import ConfigError, FanoutError
from fanout.report.paths import REPO_ROOT

#: figures are embedded as PNG at this resolution
FIGURE_DPI = 110

Printer = Callable[[str], None]


def find_repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the first of ``start`` (default: the cwd) and its parents holding
    ``pyproject.toml`` and ``fanout/``; else the checkout this package was imported from."""
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "fanout").is_dir():
            return p
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT
    raise FanoutError(f"no fanout repository (pyproject.toml + fanout/) at or above {here}")


def enter_repo_root(start: str | os.PathLike | None = None) -> Path:
    """chdir to the repository root (so ``data/runs/`` and ``scenarios/`` resolve there, whether
    the notebook was started from the root or from ``notebooks/``) and return it.

    Also keeps the bridges' own log lines out of the notebook's output: under injected faults
    they warn on every failed publish and reconnect, which the report counts and explains."""
    root = find_repo_root(start)
    os.chdir(root)
    fanout_log = logging.getLogger("fanout")
    if not fanout_log.handlers:
        fanout_log.addHandler(logging.NullHandler())
    return root


def resolve_redis_url(value: str | None) -> str | None:
    """``None``/empty stays None (a throwaway server); ``env:NAME`` reads the variable NAME."""
    if not value:
        return None
    value = str(value)
    if value.startswith("env:"):
        name = value[4:]
        got = os.environ.get(name)
        if not got:
            raise ConfigError(f"redis_url: environment variable {name} is not set")
        return got
    return value


def stderr_printer(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def show_markdown(text: str) -> None:
    """Display markdown (renders in Jupyter, the HTML export and the markdown export alike)."""
    from IPython.display import Markdown, display

    display(Markdown(str(text)))  # a Section (str with parts) shown as its plain Markdown


def styled(df):
    """A display table as a pandas Styler: no index, text left-aligned, cells as given (the
    PASS/FAIL words keep their colour); its data is ``df``."""
    return (df.style.hide(axis="index")
            .set_properties(**{"text-align": "left"})
            .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}]))


def section_displays(section) -> list:
    """What :func:`show_section` displays: its prose as Markdown, each table as a Styler (a
    section without ``parts``, plain Markdown, as one Markdown)."""
    import pandas as pd
    from IPython.display import Markdown

    parts = getattr(section, "parts", None) or (str(section),)
    return [styled(p) if isinstance(p, pd.DataFrame) else Markdown(p) for p in parts]


def show_section(section) -> None:
    """Display a report section (:class:`fanout.report.sections.Section`) in a notebook: its
    prose as Markdown, its tables as DataFrames (pandas Styler) rather than Markdown text."""
    from IPython.display import display

    for d in section_displays(section):
        display(d)


def figure_png(fig, dpi: int = FIGURE_DPI) -> bytes:
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def figure_title(fig) -> str:
    sup = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    return (sup or (titles[0] if titles else "figure")).replace("\n", " — ")


def show_figure(fig, caption: str | None = None, alt: str | None = None) -> None:
    """Display a Figure as an embedded PNG (alt text: its title), independent of the matplotlib
    backend, so nothing is shown twice and the exports carry the image; then its caption."""
    from IPython.display import Image, display

    if fig is None:
        return
    display(Image(data=figure_png(fig), format="png", alt=alt or figure_title(fig)))
    if caption:
        show_markdown(caption)


def write_result(path: str | os.PathLike | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` as strict JSON to ``path`` (nothing when ``path`` is None). Returns
    nothing, so the notebook cell that calls it shows nothing."""
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n")


__all__ = ["find_repo_root", "enter_repo_root", "resolve_redis_url", "stderr_printer", "show_markdown",
           "styled", "section_displays", "show_section",
           "figure_png", "figure_title", "show_figure", "write_result", "Printer", "FIGURE_DPI"]
