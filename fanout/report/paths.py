"""Where the report's inputs and outputs live (the checkout this package was imported from)."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: the checkout this module was imported from (holds notebooks/, scenarios/, data/, reports/)
REPO_ROOT = PACKAGE_DIR.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SCENARIO_NOTEBOOK = NOTEBOOK_DIR / "scenario.ipynb"
VALIDATION_NOTEBOOK = NOTEBOOK_DIR / "validation-report.ipynb"
FAILOVER_NOTEBOOK = NOTEBOOK_DIR / "failover.ipynb"
EXPLORE_NOTEBOOK = NOTEBOOK_DIR / "explore.ipynb"
#: `fanout lab` works on copies here (git-ignored), relative to the repository root, so exploring never
#: dirties the committed notebooks
WORK_NOTEBOOKS = Path("work") / "notebooks"
REPORT_STEM = "validation-report"
#: ``fanout report`` writes here by default (git-ignored); the committed example is reports/example/
DEFAULT_OUT = Path("reports") / "latest"
EXAMPLE_OUT = Path("reports") / "example"
#: the archive file a report folder holds: which runs it was made from, and its parameters
ARCHIVE_NAME = "report.json"


def display_path(p: str | Path) -> str:
    """``p`` relative to the cwd when it is inside it, else as given (POSIX separators)."""
    p = Path(p)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.as_posix()
