"""fanout[otel] (fanout.exporters.otel): a bridge pair on a throwaway server, collected by the
OpenTelemetry SDK's InMemoryMetricReader: the messaging conventions' names, units and attributes, and
counts equal to the bridges' own ``metrics()`` and ``histograms()``."""
from __future__ import annotations

import pytest

from conftest import arun, pair_run
from fanout import BridgeConfig, RedisEventBridge
from fanout.histograms import BOUNDS_S

pytest.importorskip("opentelemetry.sdk.metrics", reason="fanout[otel] is not installed")
from opentelemetry.sdk.metrics import Histogram, MeterProvider, ObservableCounter  # noqa: E402
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader  # noqa: E402

from fanout.exporters.otel import CUSTOM_COUNTERS, instrument  # noqa: E402

CONVENTIONS = {"messaging.client.sent.messages": "{message}", "messaging.client.consumed.messages": "{message}",
               "messaging.client.operation.duration": "s", "messaging.process.duration": "s"}


def by_name(data) -> dict:
    """``{metric name: Metric}`` from one collection (one resource, the ``fanout`` scope)."""
    (rm,) = data.resource_metrics
    out = {}
    for sm in rm.scope_metrics:
        assert sm.scope.name == "fanout", sm.scope
        for m in sm.metrics:
            assert m.name not in out, f"{m.name} twice in one collection"
            out[m.name] = m
    return out


def points(metric, **attrs) -> list:
    return [p for p in metric.data.data_points if all(p.attributes.get(k) == v for k, v in attrs.items())]


def test_messaging_conventions_names_units_attributes_and_counts_equal_the_bridges(redis_url):
    n = 120

    def collect(host, bot):
        reader = InMemoryMetricReader()
        wired = instrument([host, bot], meter_provider=MeterProvider(metric_readers=[reader]))
        return (wired, reader.get_metrics_data(), host.metrics(), bot.metrics(), host.histograms(),
                bot.histograms(), host.config, host.publish_error_types())

    wired, data, mh, mb, hh, hb, cfg, kinds = pair_run(redis_url, n, collect)
    assert wired.histograms_exported
    ms = by_name(data)
    for name, unit in CONVENTIONS.items():
        assert name in ms, (name, sorted(ms))
        assert ms[name].unit == unit, (name, ms[name].unit)
    for name, (src, unit, _) in CUSTOM_COUNTERS.items():
        (p,) = points(ms[name])
        assert ms[name].unit == unit and p.value == mh[src] + mb[src], (name, p, mh[src], mb[src])
        assert p.attributes == {"messaging.system": "redis", "fanout.transport": "pubsub"}, p.attributes
    assert ms["fanout.delivery.latency"].unit == "s"

    sent = ms["messaging.client.sent.messages"]
    assert sent.data.is_monotonic and sent.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    (ok,) = sent.data.data_points  # no publish failed: no point with error.type
    assert kinds == {} and ok.value == mh["published"] + mb["published"] == n
    assert ok.attributes == {"messaging.system": "redis", "fanout.transport": "pubsub",
                             "messaging.operation.name": "publish", "messaging.operation.type": "send"}
    (consumed,) = ms["messaging.client.consumed.messages"].data.data_points
    assert consumed.value == mh["received"] + mb["received"] == n
    assert consumed.attributes["messaging.system"] == "redis"
    assert consumed.attributes["messaging.operation.name"] == "receive"
    (conn,) = ms["fanout.connected"].data.data_points
    (subs,) = ms["fanout.subscriptions"].data.data_points
    assert conn.value == 2 and subs.value == 4

    # histograms: one point per event type, its destination the type's channel, counts exactly the bridges'
    per_type = {"trade": n - n // 4, "ticker": n // 4}
    for name, src, own, op in (("messaging.client.operation.duration", "publish_duration", hh, "publish"),
                               ("messaging.process.duration", "handler_duration", hb, "process"),
                               ("fanout.delivery.latency", "delivery_latency", hb, None)):
        metric = ms[name]
        assert metric.unit == "s" and metric.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
        for t, count in per_type.items():
            (p,) = points(metric, **{"messaging.destination.name": cfg.channel(t)})
            assert cfg.channel(t) != t  # the channel (with its prefix), not the bare type
            h = own[src][t]
            assert p.count == h.count == count, (name, t, p.count, h.count)
            assert tuple(p.bucket_counts) == h.counts and tuple(p.explicit_bounds) == BOUNDS_S
            assert p.sum == pytest.approx(h.sum, abs=1e-9)
            assert p.attributes["messaging.system"] == "redis" and p.attributes["fanout.transport"] == "pubsub"
            assert p.attributes.get("messaging.operation.name") == op
        assert sum(p.count for p in metric.data.data_points) == n
    # only aggregating attributes: no instance id, symbol, run id or message id
    allowed = {"messaging.system", "fanout.transport", "messaging.operation.name", "messaging.operation.type",
               "messaging.destination.name", "error.type"}
    for m in ms.values():
        for p in m.data.data_points:
            assert set(p.attributes) <= allowed, (m.name, p.attributes)


def test_a_delta_reader_gets_what_happened_since_its_last_collection(redis_url):
    def collect(host, bot):
        reader = InMemoryMetricReader(preferred_temporality={ObservableCounter: AggregationTemporality.DELTA,
                                                             Histogram: AggregationTemporality.DELTA})
        instrument(lambda: [host, bot], meter_provider=MeterProvider(metric_readers=[reader]))
        first = by_name(reader.get_metrics_data())
        second = by_name(reader.get_metrics_data())
        return first, second, host.histograms()

    first, second, hh = pair_run(redis_url, 40, collect)
    lat = first["messaging.client.operation.duration"]
    assert lat.data.aggregation_temporality == AggregationTemporality.DELTA
    assert sum(p.count for p in lat.data.data_points) == 40
    assert sum(p.count for p in second["messaging.client.operation.duration"].data.data_points) == 0
    p1, = first["messaging.client.sent.messages"].data.data_points
    p2, = second["messaging.client.sent.messages"].data.data_points
    assert (p1.value, p2.value) == (40, 0)
    assert lat.data.data_points[0].time_unix_nano <= \
        second["messaging.client.operation.duration"].data.data_points[0].start_time_unix_nano


def test_failed_sends_carry_error_type(redis_server):
    from fanout.errors import PublishError

    async def go():
        cfg = BridgeConfig(url=redis_server.url, event_types=("trade",), instance_id="host", publish_timeout_s=1.0,
                           reconnect_initial_s=0.1, enable_subscription=False)
        reader = InMemoryMetricReader()
        async with RedisEventBridge(cfg) as host:
            instrument(host, meter_provider=MeterProvider(metric_readers=[reader]))
            await host.publish("trade", {"k": 0})
            redis_server.stop()
            for k in range(3):
                with pytest.raises(PublishError):
                    await host.publish("trade", {"k": k})
            return by_name(reader.get_metrics_data()), host.metrics(), host.publish_error_types()

    ms, m, kinds = arun(go())
    sent = ms["messaging.client.sent.messages"].data.data_points
    ok = [p for p in sent if "error.type" not in p.attributes]
    failed = {p.attributes["error.type"]: p.value for p in sent if "error.type" in p.attributes}
    assert [p.value for p in ok] == [m["published"]] == [1]
    assert failed == kinds and sum(failed.values()) == m["publish_errors"] == 3, (failed, kinds, m)


def test_a_provider_that_is_not_the_sdks_exports_no_histograms_and_says_so(caplog):
    from opentelemetry.metrics import NoOpMeterProvider

    bridge = RedisEventBridge(BridgeConfig(url="redis://127.0.0.1:1/0", event_types=("trade",)))
    wired = instrument(bridge, meter_provider=NoOpMeterProvider())
    assert not wired.histograms_exported
    assert any("histograms are not" in r.getMessage() for r in caplog.records), caplog.records


def test_instrument_twice_on_one_provider_reports_both_once_and_stop_ends_it():
    from fanout.exporters.otel import Instrumented

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    a, b = (RedisEventBridge(BridgeConfig(url="redis://127.0.0.1:1/0", event_types=("trade",), instance_id=i))
            for i in ("a", "b"))
    a._counts["gaps"], b._counts["gaps"] = 3, 4  # (never started: their counters as a run would leave them)
    first, second = instrument(a, provider), instrument(b, provider)
    assert first is second and isinstance(first, Instrumented)
    ms = by_name(reader.get_metrics_data())  # (by_name: no metric twice in one collection)
    assert [p.value for p in ms["fanout.messages.gaps"].data.data_points] == [7]
    assert [p.count for p in ms["fanout.delivery.latency"].data.data_points] == [0]
    first.stop()
    assert reader.get_metrics_data() is None  # nothing reported after stop()
    instrument(b, provider)
    ms = by_name(reader.get_metrics_data())
    assert [p.value for p in ms["fanout.messages.gaps"].data.data_points] == [4]


def test_a_type_spread_over_partitions_is_its_own_destination():
    from fanout.histograms import record_s

    cfg = BridgeConfig(url="redis://127.0.0.1:1/0", event_types=("trade", "ticker"), transport="sharded",
                       shard_partitions=3, histograms=True)
    bridge = RedisEventBridge(cfg)  # (never started: its histograms as a run would leave them)
    record_s(bridge._hist.of("handler_duration", "trade"), 0.002)
    reader = InMemoryMetricReader()
    instrument(bridge, meter_provider=MeterProvider(metric_readers=[reader]))
    ms = by_name(reader.get_metrics_data())
    dests = {p.attributes["messaging.destination.name"]: p.count for p in ms["messaging.process.duration"].data.data_points}
    assert len(cfg.channels("trade")) == 3 and dests == {"trade": 1, "ticker": 0}, dests
    assert {p.attributes["fanout.transport"] for p in ms["messaging.process.duration"].data.data_points} == {"sharded"}
