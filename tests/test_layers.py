"""The package's layers hold: the import-linter contracts pass (and catch a wrong-way import), and
``pip install fanout`` (no extras) is the bridge alone, without pandas, numpy or Jupyter."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def scratch_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(ROOT / "fanout", dst / "fanout", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst)
    return dst


def test_every_core_module_is_held_by_the_core_contract():
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if c["name"].startswith("The core bridge"))
    here = {f"fanout.{p.stem}" for p in (ROOT / "fanout").glob("*.py") if p.stem not in ("__init__", "__main__")}
    here |= {f"fanout.{p.name}" for p in (ROOT / "fanout").iterdir()
             if p.is_dir() and (p / "__init__.py").exists()
             and p.name not in ("lab", "analysis", "report", "cli", "exporters")}
    assert set(core["source_modules"]) == here


def test_the_layer_contracts_are_kept():
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout and "Layers: cli -> report -> analysis -> lab -> core KEPT" in res.stdout


@pytest.mark.parametrize("where, line, broken", [
    ("fanout/events.py", "import fanout.lab.simulator", "The core bridge imports no layer above it"),
    ("fanout/bridge.py", "import pandas", "The core bridge imports no layer above it"),
    ("fanout/metrics.py", "import fanout.exporters.prometheus", "The core bridge imports no layer above it"),
    ("fanout/exporters/prometheus.py", "import fanout.lab.run", "Exporters sit beside the core"),
    ("fanout/publishing.py", "import opentelemetry.metrics", "The core bridge imports no layer above it"),
    ("fanout/exporters/otel.py", "import fanout.lab.run", "Exporters sit beside the core"),
    ("fanout/lab/record.py", "import fanout.report.tables", "Layers: cli -> report -> analysis -> lab -> core"),
    ("fanout/analysis/findings.py", "import fanout.lab.simulator", "Analysis reads the lab's data types"),
    ("fanout/lab/scenario.py", "import fanout.lab.run", "No import cycles"),
])
def test_a_wrong_way_import_breaks_a_contract(tmp_path, where, line, broken):
    repo = scratch_copy(tmp_path)
    src = repo / where
    src.write_text(src.read_text() + f"\n{line}  # deliberately the wrong way\n")
    res = lint(repo)
    assert res.returncode != 0, res.stdout
    assert broken in res.stdout.split("Broken contracts", 1)[-1], res.stdout


def test_pip_install_without_extras_is_the_bridge_alone(tmp_path, redis_server):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    build = tmp_path / "src"  # a copy: building must not write into the checkout
    shutil.copytree(ROOT, build, ignore=shutil.ignore_patterns(".git", ".venv", "data", "reports", "__pycache__",
                                                                 "*.egg-info", "build", "notebooks", "benchmarks"))
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", str(build)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    probe = textwrap.dedent(f"""
        import asyncio, sys
        import fanout

        async def main():
            got = []
            async with fanout.RedisEventBridge(url={redis_server.url!r}, instance_id="bot") as bot, \\
                    fanout.RedisEventBridge(url={redis_server.url!r}, instance_id="host",
                                            enable_subscription=False) as host:
                bot.on("trade", got.append)
                for k in range(5):
                    await host.publish("trade", {{"k": k}})
                for _ in range(500):
                    if len(got) == 5:
                        break
                    await asyncio.sleep(0.01)
            assert [e.data["k"] for e in got] == [0, 1, 2, 3, 4], got

        asyncio.run(main())
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in
                       ("pandas", "numpy", "pyarrow", "papermill", "nbformat", "nbconvert", "seaborn", "matplotlib",
                        "yaml", "IPython", "jupyter_client"))
        print("heavy:", heavy)
        assert not heavy, heavy
    """)
    res = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "heavy: []" in res.stdout
    fanout_cli = venv / "bin" / "fanout"
    res = subprocess.run([str(fanout_cli), "run"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == "", res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fanout[lab]'" in lines[0], res.stderr
    res = subprocess.run([str(fanout_cli), "report", "--full"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "pip install 'fanout[report]'" in res.stderr, res.stderr
