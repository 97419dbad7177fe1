"""Short text and HTML summary cards for the objects a notebook holds (a run record, its findings,
a report): one line as ``__repr__``, a small table as ``_repr_html_``. Everything shown is
escaped; nothing here reads data, it only lays out what it is given."""
from __future__ import annotations

from collections.abc import Sequence
from html import escape

#: a repr is at most this long (one line)
MAX_REPR = 199

_STATUS_COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e"}


def one_line(text: str, limit: int = MAX_REPR) -> str:
    """``text`` on one line, at most ``limit`` characters (cut with … when longer)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def card(title: str, rows: Sequence[tuple[str, object]], status: str | None = None, kind: str = "") -> str:
    """A small HTML card: ``kind`` and ``title`` on top, ``status`` (PASS/FAIL/…) coloured beside
    them, then one table row per ``(label, value)``; a value of None is left out."""
    colour = _STATUS_COLOURS.get(str(status), "#57606a")
    head = f'<span style="color:#57606a">{escape(kind)}</span> ' if kind else ""
    badge = (f' <span style="color:{colour};font-weight:bold">{escape(str(status))}</span>' if status else "")
    body = "".join(f'<tr><th style="text-align:left;padding-right:1em">{escape(str(k))}</th>'
                   f'<td style="text-align:left">{escape(str(v))}</td></tr>'
                   for k, v in rows if v is not None)
    return (f'<div class="fanout-card" style="border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;'
            f'display:inline-block"><div>{head}<b>{escape(str(title))}</b>{badge}</div>'
            f'<table style="margin:4px 0 0 0">{body}</table></div>')


__all__ = ["one_line", "card", "MAX_REPR"]
