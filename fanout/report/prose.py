"""Every sentence of the report comes from a Jinja2 template in ``templates/``, filled from the
findings (:mod:`fanout.report.outcomes`, :mod:`fanout.report.context`). This module holds the
one template environment: strict (an unknown name is an error, not an empty string), with the
formatting filters of :mod:`fanout.formatting`.

    render("conclusion.md.j2", rep=report)        # a whole section
    macro("captions.md.j2", "latency_ecdf")(run)  # one macro of a template (figure captions)
"""
from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from fanout import formatting as fmt
from fanout.report.paths import TEMPLATES
from fanout.report.tables import load_state, md, status_word


def _bytes(value: float | None, unit: str = "MiB") -> str:
    """Bytes in ``unit`` (KiB, MiB, GiB), or ``auto``: the largest unit that keeps the number at 1 or more."""
    if value is None:
        return fmt.NA
    if unit == "auto":
        unit = next((u for u, s in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2)) if value >= s), "KiB")
    scale = {"KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}[unit]
    return f"{value / scale:,.1f} {unit}"


def _num(value: float | None, digits: int = 1) -> str:
    return fmt.NA if value is None else f"{value:,.{digits}f}"


def ms_short(value: float | None) -> str:
    """A latency in prose: ``2,812 ms`` from 100 ms up, ``12.3 ms`` from 1 ms, ``0.842 ms`` below."""
    if value is None:
        return fmt.NA
    v = float(value)
    return f"{v:,.0f} ms" if v >= 100 else f"{v:.1f} ms" if v >= 1 else f"{v:.3f} ms"


def _pctl(value, key: str, n: int | None = None) -> str:
    """A percentile that says when the samples do not carry it: ``stats | pctl("p99_ms")`` for a
    latency dict (its ``count`` is n), or ``value | pctl("p99_ms", n)``."""
    if isinstance(value, dict):
        value, n = value.get(key), value.get("count")
    return fmt.percentile(value, n, key)


def _anchor(name: str) -> str:
    """An anchor a link can point at, the same on a code host and in the HTML page."""
    return f'<a id="{name}"></a>'


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined, trim_blocks=False,
                      lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(ms=fmt.ms, pct=fmt.pct, count=fmt.count, rate=fmt.rate, seconds=fmt.seconds,
                       status=status_word, state=load_state, table=md, bytes=_bytes, num=_num,
                       ms_short=ms_short, capitalize_first=lambda t: str(t)[:1].upper() + str(t)[1:],
                       pctl=_pctl, loss_bound=fmt.loss_bound)
    env.globals.update(anchor=_anchor)
    env.tests["contains"] = lambda seq, item: item in (seq or ())
    return env


def render(name: str, **context) -> str:
    """A template rendered with ``context``; runs of blank lines squeezed to one."""
    text = environment().get_template(name).render(**context)
    lines, blank = [], False
    for line in text.splitlines():
        if not line.strip():
            if not blank:
                lines.append("")
            blank = True
            continue
        lines.append(line.rstrip())
        blank = False
    return "\n".join(lines).strip() + "\n"


def macro(template: str, name: str):
    """A macro of ``template`` as a callable returning its text (stripped)."""
    fn = getattr(environment().get_template(template).module, name)

    def call(*args, **kwargs) -> str:
        return str(fn(*args, **kwargs)).strip()

    return call


__all__ = ["environment", "render", "macro"]
