"""The notebooks' papermill parameters cells, derived from the dataclasses they stand for:
``notebooks/scenario.ipynb`` from :class:`fanout.lab.scenario.Scenario`,
``notebooks/validation-report.ipynb`` from :class:`fanout.report.params.ReportParams`
(``fanout.lab.params.notebook_cell``). The committed cells must equal these (a test checks);
after changing a field, rewrite them:

    python -m fanout.report.notebooks --sync-parameters      # rewrite the committed cells
    python -m fanout.report.notebooks --check                # exit 1 when a cell is out of date
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fanout.lab.params import notebook_cell
from fanout.errors import ConfigError
from fanout.report.paths import NOTEBOOK_DIR, SCENARIO_NOTEBOOK, VALIDATION_NOTEBOOK

SCENARIO_HEADING = ("# Scenario fields (fanout.lab.scenario.Scenario); papermill -f scenarios/<name>.yaml sets the "
                    "same keys.\n# Generated: python -m fanout.report.notebooks --sync-parameters")
SCENARIO_EXTRA = [
    "# Notebook options (not scenario fields)",
    'save_to: "Optional[str]" = "data/runs"  # folder for the run record, relative to the repository root '
    "(None: not saved)",
    'result_json: "Optional[str]" = None  # write the findings as JSON to this path (None: not written)',
    'from_run: "Optional[str]" = None  # open this recorded run instead of running: a run id, a prefix of one, '
    'a run folder or "latest" (the scenario fields above are then not used)',
    "progress: bool = True  # a live progress bar while the run goes (a widget in JupyterLab)",
]
#: the scenario notebook's own default for a Scenario field
SCENARIO_OVERRIDES = {
    "name": 'name: "Optional[str]" = None  # scenario name, used in the run id, titles and reports (None: made from '
            "the parameters, e.g. nb-3x10-pubsub-1a2b, so runs with different parameters stay distinct)",
}
REPORT_HEADING = ("# Validation report parameters (fanout.report.params.ReportParams): fanout report sets these, "
                  "papermill -p NAME VALUE too.\n# Generated: python -m fanout.report.notebooks --sync-parameters")


def scenario_cell() -> str:
    from fanout.lab.scenario import Scenario

    return notebook_cell(Scenario, SCENARIO_HEADING, SCENARIO_EXTRA, SCENARIO_OVERRIDES)


def report_cell() -> str:
    from fanout.report.params import ReportParams

    return notebook_cell(ReportParams, REPORT_HEADING)


CELLS = {SCENARIO_NOTEBOOK: scenario_cell, VALIDATION_NOTEBOOK: report_cell}


def parameters_cell(nb):
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"expected one cell tagged 'parameters', found {len(tagged)}")
    return tagged[0]


def out_of_date() -> list[Path]:
    """The notebooks whose committed parameters cell differs from the derived one."""
    import nbformat

    stale = []
    for path, make in CELLS.items():
        nb = nbformat.read(str(path), as_version=4)
        if parameters_cell(nb).source != make():
            stale.append(path)
    return stale


def sync_parameters() -> list[Path]:
    """Rewrite each stale parameters cell; return the notebooks changed."""
    import nbformat

    changed = []
    for path in out_of_date():
        nb = nbformat.read(str(path), as_version=4)
        parameters_cell(nb).source = CELLS[path]()
        nbformat.write(nb, str(path))
        changed.append(path)
    return changed


def working_copy(dest: str | Path, source: str | Path = NOTEBOOK_DIR) -> tuple[list[Path], list[Path]]:
    """Copy each committed notebook (``source/*.ipynb``) into ``dest`` when it is not there yet, so
    JupyterLab (``fanout lab``) opens copies and exploring never dirties the committed ones; a copy
    already there is kept as it is (it holds someone's work). Returns (copied, kept)."""
    import shutil

    dest, source = Path(dest), Path(source)
    if dest.resolve() == source.resolve():
        raise ConfigError(f"--dir: {dest} is the committed notebooks' own folder; give a working folder")
    dest.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for nb in sorted(source.glob("*.ipynb")):
        target = dest / nb.name
        if target.exists():
            kept.append(target)
        else:
            shutil.copyfile(nb, target)
            copied.append(target)
    return copied, kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fanout.report.notebooks", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--sync-parameters", action="store_true", help="rewrite the committed parameters cells")
    g.add_argument("--check", action="store_true", help="exit 1 when a parameters cell is out of date")
    args = ap.parse_args(argv)
    if args.check:
        stale = out_of_date()
        for p in stale:
            print(f"{p.name}: parameters cell out of date; run python -m fanout.report.notebooks --sync-parameters")
        return 1 if stale else 0
    for p in sync_parameters():
        print(f"rewrote the parameters cell of {p}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["scenario_cell", "report_cell", "out_of_date", "sync_parameters", "working_copy", "main"]
