"""README's quick start leaves the checkout clean: `fanout report --quick` in a fresh copy of this
repository writes only git-ignored files (reports/latest/, its run records)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import ROOT


def _copy_checkout(dest) -> None:
    """Every file git would commit from this working tree (tracked, or new and not ignored)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_fanout_report_quick_in_a_clean_clone_leaves_git_status_empty(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    _copy_checkout(clone)
    git = {"cwd": clone, "capture_output": True, "text": True, "check": True}
    subprocess.run(["git", "init", "-q"], **git)
    subprocess.run(["git", "add", "-A"], **git)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"], **git)
    env = {**os.environ, "PYTHONPATH": str(clone)}
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-m", "fanout", "report", "--quick", "--scenarios", "standard",
                          "--duration-scale", "0.05", "--no-capacity", "--failover", ""],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=170)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (clone / "reports" / "latest" / "validation-report.html").is_file()
    assert str(clone) in out.stdout  # the clone's own package made it
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], **git).stdout
    assert status == "", status
    assert (clone / "reports" / "example").is_dir()  # the committed example is untouched
