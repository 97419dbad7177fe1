"""Faults nobody planned: a Redis that crashes mid-run is attributed from what the bridges saw."""
from __future__ import annotations

import threading
import time

import redis

from fanout.analysis import analyse
from fanout.lab.record import load_run
from fanout.lab.run import run_scenario
from fanout.lab.scenario import Scenario
from fanout.lab.servers import RedisServer


def test_an_unplanned_redis_crash_is_attributed_to_the_outage_the_bridges_saw(tmp_path):
    with RedisServer() as srv:
        sc = Scenario(name="unplanned-kill", instances=3, duration_s=6, rate_per_s=100, redis_url=srv.url,
                      key_prefix="crash:", drain_timeout_s=3)
        seen = threading.Event()

        def crash_mid_run():  # after the run has delivered events for a while: kill -9, then start again
            with redis.Redis.from_url(srv.url, socket_timeout=30) as r, r.pubsub() as ps:
                ps.subscribe("crash:ticker")
                n = 0
                for msg in ps.listen():
                    n += msg["type"] == "message"
                    if n >= 100:
                        break
            seen.set()
            srv.kill()
            time.sleep(1.0)
            srv.start()

        killer = threading.Thread(target=crash_mid_run, daemon=True)
        killer.start()
        rec = run_scenario(sc, progress=False, save_to=str(tmp_path))
        killer.join(10)
    assert seen.is_set() and not killer.is_alive()
    f = analyse(rec)
    acc = f.losses
    assert len(rec.faults) == 0 and rec.instances["reconnects"].sum() >= 3
    assert acc.lost > 0 and acc.unexplained == 0, acc.losses
    assert set(acc.by_cause) == {"lost during an unplanned outage"}
    named = set(acc.losses["fault"])
    assert all("disconnected from Redis" in n for n in named) and len(named) >= 1
    assert (f.per_instance["received"] + f.per_instance["lost_attributed"] == f.per_instance["expected"]).all()
    # analysed from its summary (the rows stay in their parts but those around the losses): the
    # same losses, causes and evidence as from every row
    assert f.overall["analysed_from"] == "summary" and not rec.rows_loaded
    whole = load_run(rec.path)
    whole.publications  # noqa: B018 - every row read: the frame path
    g = analyse(whole)
    assert g.overall["analysed_from"] == "rows"
    assert g.losses.losses.equals(acc.losses.reset_index(drop=True)), (g.losses.losses, acc.losses)
    assert (g.losses.lost, g.losses.by_kind, g.losses.not_published) == (acc.lost, acc.by_kind, acc.not_published)
    # the time series places every loss in the interval its event was due in, on either path
    from fanout.analysis.soak import soak_series

    for r, findings in ((rec, f), (whole, g)):
        series = soak_series(r)
        assert int(series["missing"].sum()) == findings.overall["missing"] > 0
        assert (series.loc[series["missing"] > 0, "reconnects"].sum() + series["reconnects"].shift(1).fillna(0)
                .loc[series["missing"] > 0].sum()) > 0  # loss where (or just after) the bridges reconnected
