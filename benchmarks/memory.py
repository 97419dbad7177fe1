"""Memory per instance: RSS of a fresh process holding K idle, subscribed instances; and memory
against a run's length (``python -m benchmarks.memory run-length``, :func:`run_length`).

``(rss(K_high) - rss(K_low)) / (K_high - K_low)`` cancels the interpreter and imports; each
measurement is a fresh subprocess (``python -m benchmarks.memory child ...``), so nothing
from an earlier run is counted. An instance is:

* fanout: one started ``RedisEventBridge`` (publishing connection + subscriber connection +
  reader task), subscribed to every event type;
* baseline: one ``redis.asyncio.Redis`` client with one ``PubSub`` subscribed to every event
  type and its ``listen()`` task (the baseline shares one publisher, so no publishing side).

The child also reports redis-server's ``used_memory`` with its instances connected, so the
server-side cost per instance comes out the same way.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EVENT_TYPES = ("ticker", "trade", "orderbook", "candle")
CHILD_TIMEOUT_S = 60.0


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _child(kind: str, k: int, url: str) -> dict[str, Any]:
    from redis.asyncio import Redis

    channels = [f"ws:{t}" for t in EVENT_TYPES]
    holders: list = []
    tasks: list = []
    if kind == "fanout":
        from fanout.bridge import BridgeConfig, RedisEventBridge

        bridges = [RedisEventBridge(BridgeConfig(url=url, instance_id=f"mem-{i}", event_types=EVENT_TYPES))
                   for i in range(k)]
        for b in bridges:
            b.on("*", lambda env: None)
        await asyncio.gather(*(b.start() for b in bridges))
        holders = bridges
    elif kind == "baseline":
        import orjson  # noqa: F401 - the baseline's decoder, loaded as it would be

        async def listen(ps):
            async for _ in ps.listen():
                pass

        for _ in range(k):
            client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=None)
            ps = client.pubsub(ignore_subscribe_messages=True)
            await ps.subscribe(*channels)
            holders.append((client, ps))
            tasks.append(asyncio.create_task(listen(ps)))
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    admin = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    deadline = time.monotonic() + 20
    while True:  # every subscription confirmed on the server
        counts = {(a.decode() if isinstance(a, bytes) else a): int(b) for a, b in await admin.pubsub_numsub(*channels)}
        if all(counts.get(c, 0) >= k for c in channels):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"subscriptions not confirmed: {counts}")
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    gc.collect()
    await asyncio.sleep(0.1)
    rss = rss_bytes()
    info = await admin.info("memory")
    clients = (await admin.info("clients")).get("connected_clients")
    await admin.aclose()
    out = {"kind": kind, "k": k, "rss_bytes": rss, "redis_used_memory": int(info["used_memory"]),
           "redis_connected_clients": clients}
    for t in tasks:
        t.cancel()
    return out


def measure_child(kind: str, k: int, url: str) -> dict[str, Any]:
    """Run one child (bounded) and return what it printed."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.run([sys.executable, "-m", "benchmarks.memory", "child", kind, str(k), url],
                       capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, cwd=root, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"memory child {kind} k={k} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def memory_per_instance(kinds: tuple[str, ...] = ("fanout", "baseline"), k_low: int = 1, k_high: int = 51,
                        repeats: int = 2) -> dict[str, Any]:
    """RSS and redis used_memory per added instance, per kind (median over ``repeats``)."""
    from fanout.lab.servers.redis import RedisServer

    out: dict[str, Any] = {"k_low": k_low, "k_high": k_high, "repeats": repeats, "method":
                           f"fresh subprocess per measurement; (RSS(K={k_high}) - RSS(K={k_low})) / {k_high - k_low}; "
                           "idle instances subscribed to 4 channels; median over repeats"}
    for kind in kinds:
        per, rpr, lows, highs = [], [], [], []
        for _ in range(repeats):
            with RedisServer() as srv:  # a fresh server per pair: used_memory deltas are this pair's
                lo = measure_child(kind, k_low, srv.url)
                hi = measure_child(kind, k_high, srv.url)
            lows.append(lo)
            highs.append(hi)
            per.append((hi["rss_bytes"] - lo["rss_bytes"]) / (k_high - k_low))
            rpr.append((hi["redis_used_memory"] - lo["redis_used_memory"]) / (k_high - k_low))
        per.sort()
        rpr.sort()
        out[kind] = {
            "rss_per_instance_kib": round(per[len(per) // 2] / 1024, 1),
            "rss_per_instance_kib_all": [round(x / 1024, 1) for x in per],
            "redis_used_memory_per_instance_kib": round(rpr[len(rpr) // 2] / 1024, 1),
            "rss_k_low_mib": round(min(x["rss_bytes"] for x in lows) / 2**20, 1),
            "rss_k_high_mib": round(min(x["rss_bytes"] for x in highs) / 2**20, 1),
        }
    return out


def run_length(durations=(5.0, 20.0), *, instances: int = 5, rate: float = 4000.0, code: str | None = None,
               out_root: str | None = None) -> dict[str, Any]:
    """Peak RSS of a whole ``fanout run`` against its length (issue 22): for each duration, one
    ``/usr/bin/time -v python -m fanout run --instances N --rate R --duration D`` in a fresh
    process (``code``: the checkout to import fanout from, e.g. an older commit's, for "before"),
    its record saved under ``out_root``. Reports per run: deliveries, peak RSS of the command, the
    instrument's own RSS while it ran (its resource samples: recording, before the record is built
    and analysed), bytes on disk per delivery; and the slopes per extra delivery between the
    shortest and the longest run."""
    import re
    import shutil
    import tempfile

    import pandas as pd

    root = Path(code or Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    own = out_root is None
    out_root = out_root or tempfile.mkdtemp(prefix="fanout-runlen-")
    rows = []
    try:
        for d in durations:
            out = Path(out_root) / f"d{d:g}"
            cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "fanout", "run", "--instances", str(instances),
                   "--rate", f"{rate:g}", "--duration", f"{d:g}", "--out", str(out), "--no-progress", "--json"]
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, timeout=600 + 3 * d)
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
            if p.returncode not in (0, 1) or not m:
                raise RuntimeError(f"fanout run --duration {d:g} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
            (run,) = [x for x in out.iterdir() if x.is_dir()]
            meta = json.loads((run / "run.json").read_text())
            deliveries = int(meta["counts"]["deliveries"])
            disk = sum(f.stat().st_size for f in run.rglob("*") if f.is_file())
            res = pd.read_parquet(run / "resources.parquet") if (run / "resources.parquet").exists() else None
            rec_rss = None
            if res is not None and len(res):
                mine = res[res["target"].isin(["instrument", "coordinator"]) | res["target"].str.startswith("worker")]
                rec_rss = int(mine.groupby("t")["memory_bytes"].sum().max()) if len(mine) else None
            rows.append({"duration_s": d, "deliveries": deliveries, "peak_rss_mb": int(m.group(1)) / 1024,
                         "recording_rss_mb": rec_rss / 2**20 if rec_rss else None,
                         "disk_bytes": disk, "disk_bytes_per_delivery": disk / deliveries if deliveries else None,
                         "parts": (run / "parts").is_dir(), "summary": (run / "summary.bin").exists(),
                         "recorder": (meta.get("environment") or {}).get("recorder")})
    finally:
        if own:
            shutil.rmtree(out_root, ignore_errors=True)
    lo, hi = rows[0], rows[-1]
    extra = hi["deliveries"] - lo["deliveries"]
    slope = {}
    if extra > 0:
        slope["peak_rss_bytes_per_extra_delivery"] = (hi["peak_rss_mb"] - lo["peak_rss_mb"]) * 2**20 / extra
        if lo["recording_rss_mb"] and hi["recording_rss_mb"]:
            slope["recording_rss_bytes_per_extra_delivery"] = (
                (hi["recording_rss_mb"] - lo["recording_rss_mb"]) * 2**20 / extra)
    steps = [{"from_s": a["duration_s"], "to_s": b["duration_s"],
              "peak_rss_bytes_per_extra_delivery": (b["peak_rss_mb"] - a["peak_rss_mb"]) * 2**20
              / max(1, b["deliveries"] - a["deliveries"])} for a, b in zip(rows, rows[1:])]
    return {"code": str(root), "instances": instances, "rate": rate, "runs": rows, "steps": steps, **slope}


def analyse_speed(run_dir: str | os.PathLike, repeat: int = 3) -> dict[str, Any]:
    """``analyse(load_run(run_dir))`` on an archived run: deliveries per CPU second (the best of
    ``repeat``; CPU time of this process, imports done before)."""
    from fanout.analysis import analyse
    from fanout.lab.record import load_run

    best = None
    for _ in range(repeat):
        t = time.process_time()
        f = analyse(load_run(run_dir))
        cpu = time.process_time() - t
        best = cpu if best is None else min(best, cpu)
    n = int(f.overall["delivered_rows"])
    return {"run": str(run_dir), "deliveries": n, "cpu_s": best, "deliveries_per_cpu_s": n / best if best else None,
            "analysed_from": f.overall.get("analysed_from", "rows")}


def soak_row(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A soak's record, as the target table asks of it: its length and deliveries, whether it
    completed exactly once, each process's peak RSS (its resource samples), and how long the
    report took to render from it (``fanout report --from-runs``, timed here)."""
    import shutil
    import tempfile

    import pandas as pd

    run = Path(run_dir)
    meta = json.loads((run / "run.json").read_text())
    res = pd.read_parquet(run / "resources.parquet")
    procs = res[res["kind"] == "process"].groupby("target")["memory_bytes"].max()
    out = tempfile.mkdtemp(prefix="fanout-soak-report-")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "fanout", "report", "--from-runs", str(run), "--out", out],
                       capture_output=True, text=True, timeout=1800, cwd=Path(__file__).resolve().parent.parent)
    render_s = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    return {"run": str(run), "duration_s": float(meta["scenario"]["duration_s"]),
            "completed": not (meta.get("environment") or {}).get("interrupted"),
            "deliveries": int(meta["counts"]["deliveries"]), "report_exit": p.returncode,
            "peak_rss_mb": {k: round(v / 1e6, 1) for k, v in procs.items()}, "render_s": round(render_s, 1)}


def _baseline_checkout(ref: str) -> str:
    """A temporary git worktree of ``ref`` (the old path), to import fanout from."""
    import tempfile

    root = Path(__file__).resolve().parent.parent
    where = tempfile.mkdtemp(prefix="fanout-baseline-")
    subprocess.run(["git", "worktree", "add", "--detach", where, ref], cwd=root, check=True, capture_output=True)
    return where


def run_length_table(new: dict[str, Any], old: dict[str, Any] | None, speed: dict[str, Any] | None,
                     old_speed: dict[str, Any] | None, soak: dict[str, Any] | None = None) -> str:
    """The issue's target table, measured values beside the old path's (same run of the benchmark)."""
    def b(x):
        return "n/a" if x is None else f"{x:,.0f} B"

    n_new = new.get("peak_rss_bytes_per_extra_delivery")
    n_old = old.get("peak_rss_bytes_per_extra_delivery") if old else None
    lengths = " / ".join(f"{r['duration_s']:g} s" for r in new["runs"])
    disk = max((r["disk_bytes_per_delivery"] or 0) for r in new["runs"])
    disk_old = max((r["disk_bytes_per_delivery"] or 0) for r in old["runs"]) if old else None
    lines = ["| what | target | measured | old path | ratio new/old |", "|---|---|---:|---:|---:|",
             f"| peak RSS growth of `fanout run` per extra delivery ({lengths}) | ≤ 16 B | {b(n_new)} | {b(n_old)} | "
             f"{'n/a' if not n_old else f'{n_new / n_old:.3f}'} |",
             f"| disk per delivery in the record | ≤ 16 B | {disk:.1f} B | "
             f"{'n/a' if disk_old is None else f'{disk_old:.1f} B'} | "
             f"{'n/a' if not disk_old else f'{disk / disk_old:.2f}'} |"]
    if speed:
        s_new = speed["deliveries_per_cpu_s"]
        s_old = old_speed.get("deliveries_per_cpu_s") if old_speed else None
        lines.append(f"| `analyse()` on an archived run ({speed['deliveries']:,} deliveries, from the "
                     f"{speed['analysed_from']}) | ≥ 2 M deliveries per CPU second | "
                     f"{s_new / 1e6:.2f} M/s | "
                     f"{'n/a' if not s_old else f'{s_old / 1e6:.2f} M/s'} | "
                     f"{'n/a' if not s_old else f'{s_new / s_old:.1f}'} |")
    if soak:
        top = max(soak["peak_rss_mb"].values()) if soak["peak_rss_mb"] else None
        lines.append(f"| soak at 10 × 5,000 events/s: completes, every process ≤ 1 GB peak RSS, report within "
                     f"3 min (target: 60 min; measured: {soak['duration_s'] / 60:g} min, "
                     f"{soak['deliveries']:,} deliveries) | completes; ≤ 1,000 MB; ≤ 180 s | "
                     f"{'completed' if soak['completed'] else 'interrupted'}; largest process {top:,.0f} MB; report rendered in {soak['render_s']:g} s "
                     f"(exit {soak['report_exit']}) | n/a | n/a |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "run-length":
        import argparse

        ap = argparse.ArgumentParser(prog="python -m benchmarks.memory run-length")
        ap.add_argument("--durations", default="5,20,80",
                        help="seconds, comma-separated: one length and its 4x and 16x (default 5,20,80)")
        ap.add_argument("--instances", type=int, default=5)
        ap.add_argument("--rate", type=float, default=4000.0)
        ap.add_argument("--code", help="import fanout from this checkout (e.g. an older commit's, for 'before')")
        ap.add_argument("--baseline", metavar="REF",
                        help="also measure the old path: this git commit, in a temporary worktree, same lengths")
        ap.add_argument("--out", help="keep the run records here")
        ap.add_argument("--soak", metavar="RUN", help="a soak's run folder (fanout run --scenario soak): its row")
        a = ap.parse_args(sys.argv[2:])
        import shutil
        import tempfile

        durations = tuple(float(x) for x in a.durations.split(","))
        out = a.out or tempfile.mkdtemp(prefix="fanout-runlen-")
        new = run_length(durations, instances=a.instances, rate=a.rate, code=a.code, out_root=str(Path(out) / "new"))
        longest = next((Path(out) / "new" / f"d{durations[-1]:g}").iterdir())
        speed = analyse_speed(longest)
        old = old_speed = None
        if a.baseline:
            where = _baseline_checkout(a.baseline)
            try:
                old = run_length(durations, instances=a.instances, rate=a.rate, code=where,
                                 out_root=str(Path(out) / "old"))
                p = subprocess.run([sys.executable, "-c", "import json,sys; from benchmarks.memory import "
                                    "analyse_speed; print(json.dumps(analyse_speed(sys.argv[1])))",
                                    str(next((Path(out) / "old" / f"d{durations[-1]:g}").iterdir()))],
                                   capture_output=True, text=True, cwd=where, env={**os.environ, "PYTHONPATH": where},
                                   timeout=1200)
                old_speed = json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", where], cwd=Path(__file__).resolve().parent.parent,
                               capture_output=True)
        soak = soak_row(a.soak) if a.soak else None
        print(json.dumps({"new": new, "old": old, "analyse": speed, "analyse_old": old_speed, "soak": soak}, indent=2))
        print()
        print(run_length_table(new, old, speed, old_speed, soak))
        if not a.out:
            shutil.rmtree(out, ignore_errors=True)
        raise SystemExit(0)
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        res = asyncio.run(asyncio.wait_for(_child(sys.argv[2], int(sys.argv[3]), sys.argv[4]), CHILD_TIMEOUT_S - 5))
        print(json.dumps(res), flush=True)
        os._exit(0)  # skip closing K connections politely: the numbers are taken
    raise SystemExit("usage: python -m benchmarks.memory child fanout|baseline K URL | "
                     "python -m benchmarks.memory run-length [--durations 5,20,80] [--baseline REF] [--code DIR]")
