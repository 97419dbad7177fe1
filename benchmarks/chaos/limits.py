"""Server limits: ``maxclients`` below what a run needs (``fanout run`` as a user types it), and
``maxmemory`` with ``noeviction`` under Streams (the library run): one clear line each, the
failures counted, no hang."""
from __future__ import annotations

import subprocess
import sys
import time

from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario
from fanout.lab.servers import RedisServer

from .common import CaseResult, Sizes, client, data_dir, keys_left
from .summary import account

MAXCLIENTS = 3
#: maxmemory: this much above what the empty server uses
HEADROOM = 2**19


def maxclients(sz: Sizes) -> CaseResult:
    res = CaseResult(case="maxclients below the run's need · pubsub")
    with RedisServer(extra_args=["--maxclients", str(MAXCLIENTS)]) as srv:
        cmd = [sys.executable, "-m", "fanout", "run", "--redis-url", srv.url, "--instances", str(sz.instances),
               "--duration", "3", "--rate", "50", "--no-progress", "--out", str(data_dir())]
        t = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        wall = time.monotonic() - t
        with client(srv.url) as c:
            rejected = int(c.info("stats").get("rejected_connections", 0))
        res.keys_left = keys_left([srv.url])
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    res.injected = (f"maxclients {MAXCLIENTS}; `fanout run --redis-url ... --instances {sz.instances}` needs "
                    f"{2 * sz.instances} bridge connections and the lab's own")
    res.lost = "nothing ran (refused before the first publish)" if proc.returncode else "the run ran"
    res.attributed = f"exit {proc.returncode} after {wall:.1f} s: {err[-1] if err else '(no message)'}"
    res.figures.update({"exit_code": proc.returncode, "wall_s": round(wall, 2), "stderr_lines": len(err),
                        "stderr": err[-5:], "stdout_tail": proc.stdout.splitlines()[-3:],
                        "rejected_connections": rejected})
    res.check("refused with one line on stderr", len(err) == 1 and "Traceback" not in proc.stderr, len(err))
    res.check("the line names the limit", bool(err) and "max" in err[-1].lower() and "client" in err[-1].lower(),
              err[-1] if err else None)
    res.check("exit code 3 (Redis unavailable)", proc.returncode == 3, proc.returncode)
    res.check("no hang: refused within 15 s", wall < 15, f"{wall:.1f} s")
    res.check("Redis counted the refused connections", rejected >= 1, rejected)
    if "Traceback" in proc.stderr:
        res.notes.append(
            "core defect (fanout/transports/connection.py `open_connection`, fanout/transports/resp.py `call`): a server "
            "that refuses a connection at once (`-ERR max number of clients reached`, sent before any command) makes "
            "the first call raise a bare ConnectionError ('sent a reply nobody asked for'), not RedisUnavailable: "
            "`fanout run` ends in a traceback with exit 1 instead of one line and exit 3. Reproduce: "
            "`redis-server --port 6390 --maxclients 3` then `fanout run --redis-url redis://127.0.0.1:6390/0`")
    return res


def maxmemory(sz: Sizes) -> CaseResult:
    res = CaseResult(case="maxmemory noeviction · streams")
    with RedisServer() as srv:
        with client(srv.url) as c:
            used = int(c.info("memory")["used_memory"])
            limit = used + HEADROOM
            c.config_set("maxmemory", limit)
            c.config_set("maxmemory-policy", "noeviction")
        sc = Scenario(name="chaos-maxmemory", instances=sz.instances, duration_s=sz.duration_s, rate_per_s=sz.rate,
                      transport="streams", redis_url=srv.url, key_prefix="ws:", event_types=("ticker", "trade"),
                      drain_timeout_s=4.0, process_mode="single")
        t = time.monotonic()
        rec = run_scenario(sc, progress=False, save_to=str(data_dir()))
        wall = time.monotonic() - t
        with client(srv.url) as c:
            mem = c.info("memory")
        res.keys_left = keys_left([srv.url])
    res.injected = (f"maxmemory {limit / 2**20:.1f} MB (the empty server's {used / 2**20:.1f} MB "
                    f"+ {HEADROOM / 2**20:g} MB), "
                    f"noeviction; Streams, {sz.instances} instances, {sz.rate:g} events/s for {sz.duration_s:g} s")
    account(res, rec)
    acc = res.figures
    reasons = acc["not_published_reasons"]
    res.figures.update({"wall_s": round(wall, 2), "used_memory_end": int(mem["used_memory"]), "maxmemory": limit,
                        "instance_errors": rec.instances[["instance", "errors", "publish_errors", "last_error"]]
                        .to_dict(orient="records") if "last_error" in rec.instances else
                        rec.instances[["instance", "errors", "publish_errors"]].to_dict(orient="records")})
    res.check("publishes refused once memory is full, counted", acc["not_published"] > 0, acc["not_published"])
    res.check("one clear reason for them", len(reasons) == 1 and any(w in next(iter(reasons), "").lower()
                                                                     for w in ("oom", "maxmemory")), list(reasons)[:3])
    res.check("no hang: the run ended within its bound", wall < sz.duration_s + 60, f"{wall:.1f} s")
    oom = rec.outages[rec.outages["reason"].astype(str).str.contains("OOM")]
    if len(oom):
        back = int((oom["t_up"] > 0).sum())
        res.notes.append(
            f"core defect (fanout/transports/streams.py, `_position` and the reader's `_cycle`): {len(oom)} reader(s) "
            f"stopped with '{oom['reason'].iloc[0]}', {back} came back. Under noeviction Redis refuses the position "
            "save (HSET) but still serves XREAD; the reader treats the refused save as a lost connection, and every "
            "reconnect saves before it reads, so it stays down as long as memory is full (the losses are attributed "
            "to that outage, with the OOM line as its reason)")
    return res


CASES = {"maxclients": maxclients, "maxmemory-streams": maxmemory}
