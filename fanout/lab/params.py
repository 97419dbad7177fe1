"""One definition of a parameter set (a frozen dataclass whose fields carry their help text),
from which the CLI flags and the notebook's papermill parameters cell are derived.

    @dataclass(frozen=True)
    class Scenario:
        instances: int = param(3, "number of instances", flag="--instances", metavar="N")

:func:`add_arguments` adds one flag per field to an argparse parser (every default ``None``, so
"not given" can be told from a value); :func:`given` reads them back as overrides;
:func:`notebook_cell` is the text of the notebook's parameters cell (tests keep the committed
notebook equal to it: ``python -m fanout.report.notebooks --sync-parameters`` rewrites it).
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

#: how a dataclass annotation reads in a notebook parameters cell (papermill parses these)
_NOTEBOOK_TYPES = {
    "tuple[str, ...]": "list[str]", "tuple[dict, ...]": "list[dict]", "str | None": '"Optional[str]"',
    "float | None": '"Optional[float]"', "int | None": '"Optional[int]"',
}


def param(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
          flag: str | None = None, metavar: str | None = None, choices: tuple | None = None,
          cli: bool = True) -> Any:
    """A dataclass field with its documentation: ``help`` (CLI help and notebook comment),
    ``flag`` (default ``--name-with-dashes``), ``metavar``, ``choices``; ``cli=False`` keeps it
    out of the command line (it is still a notebook parameter and a YAML key)."""
    meta = {"help": help, "flag": flag, "metavar": metavar, "choices": choices, "cli": cli}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_arguments(group, cls: type) -> None:
    """One flag per field of ``cls`` (except ``cli=False`` ones), help text from the field."""
    for f in dataclasses.fields(cls):
        m = f.metadata
        if not m.get("cli", True):
            continue
        default = _default(f)
        kind = str(f.type)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f"{m.get('help', '')} (default {shown})" if shown not in (None, "", ()) else m.get("help", "")
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": text.replace("%", "%%")}
        if m.get("metavar"):
            kw["metavar"] = m["metavar"]
        if m.get("choices"):
            kw["choices"] = m["choices"]
        if kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
            kw.pop("metavar", None)
        elif kind.startswith("tuple[str"):
            kw["type"] = _csv
            kw.setdefault("metavar", "A,B")
        elif kind.startswith("int"):
            kw["type"] = int
        elif kind.startswith("float"):
            kw["type"] = float
        group.add_argument(flag_of(f), **kw)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def notebook_cell(cls: type, heading: str, extra: list[str] | None = None,
                  overrides: dict[str, str] | None = None) -> str:
    """The parameters cell: one ``name: type = default  # help`` line per field (``overrides``:
    field name -> the line the notebook has instead, where its default differs)."""
    lines = [heading]
    for f in dataclasses.fields(cls):
        if overrides and f.name in overrides:
            lines.append(overrides[f.name])
            continue
        default = _default(f)
        if isinstance(default, tuple):
            default = [dict(x) if isinstance(x, dict) else x for x in default]
        kind = _NOTEBOOK_TYPES.get(str(f.type), str(f.type))
        lines.append(f"{f.name}: {kind} = {default!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines + list(extra or []))
