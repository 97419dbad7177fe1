"""``fanout lab``: JupyterLab on a working copy of the notebooks, started for real on a free port
with a token, and driven in a real browser (Playwright over the system Chromium): open
scenario.ipynb, Run All, and the verdict appears in the page.

Without Playwright or Chromium the browser test skips with one line; in CI (CI=true) it fails:
the test extra brings Playwright and .ci/run installs Debian's chromium."""
from __future__ import annotations

import hashlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, fanout_cmd
from fanout.errors import ConfigError
from fanout.report.notebooks import working_copy
from fanout.report.paths import NOTEBOOK_DIR
from fanout.report.pdf import find_chromium

PlaywrightTimeout = TimeoutError  # playwright's own, once it is imported (_browser)
COMMITTED = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
#: bounds on waits (never asserted as durations)
START_S, RUN_S, STOP_S = 60, 60, 20


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.ipynb"))}


# ---------------------------------------------------------------- the working copy, without a server


def test_lab_help_names_its_options():
    out = subprocess.run([*fanout_cmd(), "lab", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for option in ("--no-browser", "--port", "--dir", "work/notebooks"):
        assert option in out.stdout


def test_the_working_copy_copies_what_is_missing_and_keeps_what_is_there(tmp_path):
    before = digests(NOTEBOOK_DIR)
    dest = tmp_path / "work" / "notebooks"
    copied, kept = working_copy(dest)
    assert [p.name for p in copied] == COMMITTED and kept == []
    assert digests(dest) == before
    edited = dest / "scenario.ipynb"
    edited.write_text(edited.read_text().replace("Runs one scenario", "My own words"))
    (dest / "explore.ipynb").unlink()
    copied, kept = working_copy(dest)
    assert [p.name for p in copied] == ["explore.ipynb"] and "scenario.ipynb" in [p.name for p in kept]
    assert "My own words" in edited.read_text()  # someone's work is never overwritten
    assert digests(NOTEBOOK_DIR) == before  # the committed notebooks are never touched
    with pytest.raises(ConfigError, match="committed notebooks' own folder"):
        working_copy(NOTEBOOK_DIR)


def test_a_bad_port_is_one_line():
    out = subprocess.run([*fanout_cmd(), "lab", "--no-browser", "--port", "70000"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--port" in out.stderr, out.stderr


# ---------------------------------------------------------------- a real server


class Lab:
    def __init__(self, proc: subprocess.Popen, dest: Path) -> None:
        self.proc, self.dest, self.lines = proc, dest, []
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        raise AssertionError(f"fanout lab never printed {pattern!r} within {timeout} s; it printed:\n"
                             + "".join(self.lines))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``fanout lab --no-browser`` on a working folder that already holds an edited scenario.ipynb
    (short, named ``browser``, its runs saved in the test's folder); stopped at the end."""
    tmp = tmp_path_factory.mktemp("lab")
    dest = tmp / "work" / "notebooks"
    dest.mkdir(parents=True)
    nb = nbformat.read(str(NOTEBOOK_DIR / "scenario.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += (f'\nname = "browser"\nduration_s = 2.0\nrate_per_s = 20.0\nsave_to = "{tmp / "runs"}"')
    nbformat.write(nb, str(dest / "scenario.ipynb"))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "PYTHONUNBUFFERED": "1"}
    committed = digests(NOTEBOOK_DIR)
    proc = subprocess.Popen([*fanout_cmd(), "lab", "--no-browser", "--dir", str(dest)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    server = Lab(proc, dest)
    try:
        m = server.wait_for(r"(http://127\.0\.0\.1:(\d+)/lab\?token=(\w+))", START_S)
        server.url, server.port, server.token = m.group(1), int(m.group(2)), m.group(3)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it to the whole group
            try:
                proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert digests(NOTEBOOK_DIR) == committed  # exploring never dirtied the committed notebooks


def test_lab_serves_the_working_copy_with_a_token_and_keeps_an_edited_notebook(lab):
    said = "".join(lab.lines)
    for name in COMMITTED:
        assert (f"copied {name}" in said) == (name != "scenario.ipynb"), said
    assert "kept your copies of scenario.ipynb" in said
    with urllib.request.urlopen(f"http://127.0.0.1:{lab.port}/api/contents?token={lab.token}", timeout=10) as r:
        listed = r.read().decode()
    assert all(name in listed for name in COMMITTED)
    with pytest.raises(urllib.error.HTTPError) as err:  # the token is required
        urllib.request.urlopen(f"http://127.0.0.1:{lab.port}/api/contents", timeout=10)
    assert err.value.code == 403


def _browser():
    """(playwright's sync_playwright, Chromium's path), or a skip (a failure under CI=true)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    global PlaywrightTimeout
    if sync_playwright is not None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
    chromium = find_chromium()
    missing = [what for what, ok in (("Playwright (pip install 'fanout[test]')", sync_playwright),
                                     ("Chromium (apt-get install chromium)", chromium)) if not ok]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no {' and no '.join(missing)} in CI: the test extra and .ci/run install them")
        pytest.skip(f"no {' and no '.join(missing)}: the JupyterLab browser test needs it")
    return sync_playwright, chromium


def test_in_a_browser_run_all_on_scenario_ipynb_shows_the_verdict(lab):
    sync_playwright, chromium = _browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{lab.port}/lab/tree/scenario.ipynb?token={lab.token}",
                      timeout=START_S * 1000)
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=START_S * 1000)
            choose = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
            try:  # a fresh JupyterLab may ask which kernel (the preselected one is this environment's python3)
                choose.wait_for(timeout=5_000)
                choose.click()
            except PlaywrightTimeout:
                pass
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.locator("li[data-command='runmenu:run-all']").click()  # Run ▸ Run All Cells
            # attached, not visible: JupyterLab renders a long notebook's cells off screen lazily
            verdict = page.locator(".jp-RenderedMarkdown strong", has_text=re.compile(r"browser: .*PASS"))
            try:
                verdict.wait_for(state="attached", timeout=RUN_S * 1000)
            except Exception as exc:  # what the page shows says more than a timeout
                page.screenshot(path=str(lab.dest.parent / "no-verdict.png"), full_page=True)
                errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                shown = "\n".join(errors.all_inner_texts())[-2000:]
                prompts = page.locator(".jp-InputPrompt").all_inner_texts()
                raise AssertionError(f"no verdict in the page within {RUN_S} s; prompts {prompts}; errors shown: "
                                     f"{shown or 'none'}; screenshot {lab.dest.parent / 'no-verdict.png'}") from exc
            assert "Overall statistics" in page.content()
        finally:
            browser.close()
    assert any((Path(lab.dest).parent.parent / "runs").iterdir())  # the run was saved where the copy said


def test_ctrl_c_stops_lab(lab):
    os.killpg(lab.proc.pid, signal.SIGINT)
    assert lab.proc.wait(STOP_S) == 0
    lab.wait_for(r"JupyterLab stopped", STOP_S)
