"""A minimal redis-py fan-out harness: the yardstick fanout is compared against.

What a developer would write in an afternoon with ``redis.asyncio``:

* N subscribers, each its own ``Redis`` client and ``PubSub`` object (its own connection),
  reading with ``listen()``, decoding with ``orjson``, dropping its own messages by the
  ``source`` field, and recording the receive time;
* **one** publisher client that sends each event when it is due and awaits the reply
  (``pipelined=False``), or sends everything due at that moment in one pipeline
  (``pipelined=True``, ``transaction=False``) and awaits the batch's replies.

No sequence checks, no reconnects, no gap notices: a subscriber whose connection breaks
stops (counted in ``disconnects``). The workload is the one fanout's simulator runs: the
same schedule (``fanout.lab.schedule.schedule``), the same payloads (``SyntheticMarket`` with
the simulator's seeds) and the same wire fields, so the messages have the same size.
The result is a ``RunRecord`` so ``fanout.analysis.analyse`` does the arithmetic for both.
"""
from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, TimeoutError as RedisTimeoutError

from fanout.lab.market import SyntheticMarket
from fanout.lab.record import (
    DELIVERY_COLUMNS,
    INSTANCE_COLUMNS,
    PUBLICATION_COLUMNS,
    RunRecord,
    environment,
    frame,
)
from fanout.lab.scenario import Scenario
from fanout.lab.schedule import schedule
from fanout.lab.topology import instance_ids

#: the simulator's default: the last stretch before an event is due is spent yielding, not sleeping
DEFAULT_SPIN_S = 0.0015
#: most events one pipeline carries (pipelined mode)
MAX_BATCH = 1000


async def sleep_until(due_ns: int, spin_s: float) -> None:
    """The simulator's scheduler: sleep, then (when ``spin_s`` > 0) yield until the moment comes."""
    wait = (due_ns - time.time_ns()) / 1e9
    if wait > spin_s:
        await asyncio.sleep(wait - spin_s)
    if spin_s > 0:
        while time.time_ns() < due_ns:
            await asyncio.sleep(0)


@dataclass
class _State:
    deliveries: list = field(default_factory=list)
    received: dict = field(default_factory=dict)
    self_filtered: dict = field(default_factory=dict)
    disconnects: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)


async def _confirm(url: str, channels: list[str], n: int, timeout_s: float = 10.0) -> None:
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            counts = {(k.decode() if isinstance(k, bytes) else k): int(v)
                      for k, v in await client.pubsub_numsub(*channels)}
            if all(counts.get(c, 0) >= n for c in channels):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"baseline: subscriptions not confirmed within {timeout_s:g}s: {counts}")
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def _subscriber(rid: str, ps, st: _State, ready: asyncio.Event) -> None:
    deliveries, now_ns, loads = st.deliveries, time.time_ns, orjson.loads
    n = 0
    filtered = 0
    ready.set()
    try:
        async for msg in ps.listen():
            obj = loads(msg["data"])
            src = obj["source"]
            if src == rid:
                filtered += 1
                st.self_filtered[rid] = filtered
                continue
            t = now_ns()
            deliveries.append((f"{obj['epoch']}:{obj['type']}:{obj['seq']}", src, rid, obj["type"], obj["seq"], t))
            n += 1
            st.received[rid] = n
    except asyncio.CancelledError:
        raise
    except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError) as exc:  # cut off: stop
        st.disconnects[rid] = st.disconnects.get(rid, 0) + 1
        st.errors[rid] = str(exc).split("\n")[0]
    except RedisError as exc:
        st.disconnects[rid] = st.disconnects.get(rid, 0) + 1
        st.errors[rid] = str(exc).split("\n")[0]


async def run_baseline(sc: Scenario, url: str, *, pipelined: bool = False,
                       spin_s: float = DEFAULT_SPIN_S) -> RunRecord:
    """Run ``sc``'s schedule through the baseline harness against Redis at ``url``."""
    ids = instance_ids(sc)
    channels = {t: f"{sc.key_prefix}{t}" for t in sc.event_types}
    plan = schedule(sc)
    st = _State()
    subs: list = []
    readers: list[asyncio.Task] = []
    pub = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    pubs: list[tuple] = []
    try:
        for rid in ids:
            client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=None)
            ps = client.pubsub(ignore_subscribe_messages=True)
            await ps.subscribe(*channels.values())
            subs.append((client, ps))
            ready = asyncio.Event()
            readers.append(asyncio.create_task(_subscriber(rid, ps, st, ready)))
            await ready.wait()
        await _confirm(url, list(channels.values()), len(ids))
        await pub.ping()
        version = (await pub.info("server")).get("redis_version")

        markets = [SyntheticMarket(random.Random(sc.seed * 1_000 + i), symbols=sc.symbols, book_depth=sc.book_depth)
                   for i in range(len(ids))]
        epochs = [secrets.token_hex(4) for _ in ids]
        seqs: list[dict] = [{} for _ in ids]
        t_start = time.time_ns() + 20_000_000
        t0 = t_start + int(sc.warmup_s * 1e9)
        dues = [t_start + int(ev.due_s * 1e9) for ev in plan]

        def envelope(ev, due: int) -> tuple[str, str, int, bytes]:
            i = ev.publisher
            seq = seqs[i].get(ev.type, 0) + 1
            seqs[i][ev.type] = seq
            ts_ns = time.time_ns()
            eid = f"{epochs[i]}:{ev.type}:{seq}"
            body = orjson.dumps({  # fanout's v2 fields (docs/wire-format.md): the same message sizes
                "type": ev.type, "data": markets[i].make(ev.type, ev.symbol, due // 1_000_000),
                "timestamp": ts_ns // 1_000_000, "source": ids[i], "seq": seq, "epoch": epochs[i],
                "ns": ts_ns % 1_000_000, "lag": ts_ns - due,
            })
            return eid, ids[i], seq, body

        k = 0
        n = len(plan)
        while k < n:
            await sleep_until(dues[k], spin_s)
            if not pipelined:
                ev, due = plan[k], dues[k]
                eid, src, seq, body = envelope(ev, due)
                t_sent = time.time_ns()
                try:
                    await pub.publish(channels[ev.type], body)
                    pubs.append((eid, src, seq, ev.type, ev.symbol, due, t_sent, time.time_ns(), True, ""))
                except (RedisError, OSError) as exc:
                    pubs.append((eid, src, seq, ev.type, ev.symbol, due, t_sent, 0, False, str(exc)))
                k += 1
                continue
            now = time.time_ns()
            j = k + 1
            while j < n and j - k < MAX_BATCH and dues[j] <= now:
                j += 1
            pipe = pub.pipeline(transaction=False)
            batch = []
            for m in range(k, j):
                ev, due = plan[m], dues[m]
                eid, src, seq, body = envelope(ev, due)
                batch.append((eid, src, seq, ev.type, ev.symbol, due, time.time_ns()))
                pipe.publish(channels[ev.type], body)
            try:
                await pipe.execute()
                t_ack = time.time_ns()
                pubs.extend((*b, t_ack, True, "") for b in batch)
            except (RedisError, OSError) as exc:
                pubs.extend((*b, 0, False, str(exc)) for b in batch)
            k = j

        # drain: until every subscriber has everything the others published, or the bound
        ok_by: dict[str, int] = {}
        for p in pubs:
            if p[8]:
                ok_by[p[1]] = ok_by.get(p[1], 0) + 1
        total = sum(ok_by.values())
        expected = {rid: total - ok_by.get(rid, 0) for rid in ids}
        deadline = time.monotonic() + sc.drain_timeout_s
        while time.monotonic() < deadline:
            if all(st.received.get(rid, 0) >= expected[rid] or st.disconnects.get(rid) for rid in ids):
                break
            await asyncio.sleep(0.01)
        t_end = time.time_ns()
        connected = {rid: not st.disconnects.get(rid) and not r.done() for rid, r in zip(ids, readers)}
    finally:
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for client, ps in subs:
            try:
                await asyncio.wait_for(ps.aclose(), 2.0)
                await asyncio.wait_for(client.aclose(), 2.0)
            except Exception:  # noqa: BLE001 - closing is best effort, bounded
                pass
        try:
            await asyncio.wait_for(pub.aclose(), 2.0)
        except Exception:  # noqa: BLE001
            pass

    pub_df = frame([dict(zip(PUBLICATION_COLUMNS, p)) for p in pubs], PUBLICATION_COLUMNS)
    pub_df = pub_df.sort_values("t_intended", kind="stable").reset_index(drop=True)
    del_df = frame([dict(zip(DELIVERY_COLUMNS, d)) for d in st.deliveries], DELIVERY_COLUMNS)
    if sc.warmup_s > 0:
        warm = set(pub_df.loc[pub_df["t_intended"] < t0, "id"])
        pub_df = pub_df[~pub_df["id"].isin(warm)].reset_index(drop=True)
        del_df = del_df[~del_df["id"].isin(warm)].reset_index(drop=True)
    published_by = pub_df.loc[pub_df["ok"], "source"].value_counts().to_dict()
    inst_rows = []
    for rid in ids:
        row = dict.fromkeys(INSTANCE_COLUMNS, 0)
        row.update(instance=rid, connected=connected[rid], published=int(published_by.get(rid, 0)),
                   received=st.received.get(rid, 0), self_filtered=st.self_filtered.get(rid, 0),
                   errors=st.disconnects.get(rid, 0), subscriptions=len(channels) if connected[rid] else 0)
        inst_rows.append(row)
    scen = sc.to_dict()
    scen["redis_url"] = None
    env = environment(version)
    env["transport"] = "pubsub (baseline: redis-py PubSub.listen, " + ("pipelined" if pipelined else "awaited") + \
        " publishes)"
    return RunRecord(
        run_id=f"baseline-{'pipelined' if pipelined else 'awaited'}-{secrets.token_hex(2)}",
        scenario=scen, environment=env, publications=pub_df, deliveries=del_df,
        instances=frame(inst_rows, INSTANCE_COLUMNS), t0=t0, t_end=t_end,
        redis_stats={"baseline_disconnects": sum(st.disconnects.values()),
                     "baseline_errors": dict(st.errors)},
    )
