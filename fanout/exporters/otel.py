"""OpenTelemetry metrics for one bridge or many (``pip install 'fanout[otel]'``)::

    from opentelemetry.sdk.metrics import MeterProvider
    from fanout.exporters.otel import instrument
    instrument(bridge, meter_provider=MeterProvider(metric_readers=[reader]))   # or the global provider

Nothing is added to the bridge's hot paths: every collection reads ``bridge.metrics()``,
``bridge.publish_error_types()`` and ``bridge.histograms()``, the same counts the Prometheus exporter
serves. Bridges with the same attributes are added up (the process is the instance, as for Prometheus).

**Names.** The messaging semantic conventions where they have one, ``fanout.*`` where they have none:

* ``messaging.client.sent.messages`` (counter, ``{message}``): publishes Redis acknowledged, and the
  failed ones with ``error.type`` (``timeout``, or the exception's class name: ``ConnectionError``,
  ``NeverSent``, ``ReplyError`` ...; ``bridge.publish_error_types()``);
* ``messaging.client.consumed.messages`` (counter, ``{message}``): events handed to the application;
* ``messaging.client.operation.duration`` (histogram, ``s``): a publish, handed to the connection ->
  Redis's acknowledgement;
* ``messaging.process.duration`` (histogram, ``s``): each sync handler call;
* ``fanout.delivery.latency`` (histogram, ``s``): due (or sent) -> handed to the handlers;
* :data:`CUSTOM_COUNTERS` (``fanout.messages.gaps``, ``.unsent``, ``.duplicates``, ``.self_filtered``,
  ``.malformed``, ``.rejected``, ``.refused``: ``{message}``; ``fanout.reconnects``: ``{reconnect}``),
  each the ``metrics()`` counter of that name;
* gauges ``fanout.connected`` (``{bridge}``) and ``fanout.subscriptions`` (``{subscription}``).

**Attributes.** ``messaging.system`` = ``redis`` and ``fanout.transport`` (``pubsub``, ``sharded``,
``streams``) on every point; ``messaging.operation.name`` / ``messaging.operation.type`` on the
conventions' instruments (``publish``/``send``, ``receive``/``receive``, ``process``/``process``);
``error.type`` on failed sends. ``messaging.destination.name`` is on the **histograms only**, because
only they are kept per event type: it is the event type's **channel** (``ws:trade``) when the type has
one, and the **event type** itself when it is spread over several (``shard_partitions > 1``). The
counters are the bridge's totals, kept per bridge and not per channel, so they carry no destination.

**Histograms.** OpenTelemetry has no asynchronous (observable) histogram (specification issue 2713),
and recording each delivery into a synchronous one would put a call per message on the hot path. So
with the SDK's ``MeterProvider`` the bridge's own histograms are added to what each of its readers
collects, exactly (buckets :data:`fanout.histograms.BOUNDS_S`, 50 µs-10 s, their counts and sum; min
and max are not kept, and say so as the SDK does: ``inf`` and ``-inf``), in the reader's temporality
(cumulative, or delta since that reader's last collection). Views do not apply to them. This leans on
the SDK's internals (its measurement consumer's ``collect`` and each reader's collect callback, wrapped;
tested with opentelemetry-sdk 1.45): the SDK has no public way in for pre-aggregated data (Python has
no ``MetricProducer``). With another provider (the API's no-op one, another SDK, or the global proxy
before ``metrics.set_meter_provider`` was called: call :func:`instrument` after it) the counters and
gauges are exported and the histograms are not (logged once).
"""
from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from typing import Any, Callable, Iterable

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation

import fanout

log = logging.getLogger("fanout.exporters.otel")

Bridges = Any  # a bridge, an iterable of bridges, or a callable returning one

SYSTEM = "redis"
SCOPE = "fanout"

#: OpenTelemetry name -> (the ``metrics()`` counter, unit, description) for counters without a convention
CUSTOM_COUNTERS: dict[str, tuple[str, str, str]] = {
    "fanout.messages.gaps": ("gaps", "{message}", "Events lost after Redis accepted them (transit loss)."),
    "fanout.messages.unsent": ("unsent", "{message}", "Events missing here that their publisher announced it never "
                                                      "got into Redis."),
    "fanout.messages.duplicates": ("duplicates", "{message}", "Messages whose seq had already been handed over "
                                                              "(dropped, not delivered twice)."),
    "fanout.messages.self_filtered": ("self_filtered", "{message}", "A bridge's own messages dropped on arrival."),
    "fanout.messages.malformed": ("malformed", "{message}", "Messages that are no fanout or seed envelope (dropped)."),
    "fanout.messages.rejected": ("rejected", "{message}", "Messages refused before any handler (signature, channel, "
                                                          "stale)."),
    "fanout.messages.refused": ("refused", "{message}", "publish_nowait calls refused: the in-flight window was full "
                                                        "(nothing sent)."),
    "fanout.reconnects": ("reconnects", "{reconnect}", "Times a subscription was lost and restored."),
}
#: OpenTelemetry name -> (the ``histograms()`` name, operation name, operation type, description)
HISTOGRAMS: dict[str, tuple[str, str | None, str | None, str]] = {
    "messaging.client.operation.duration": (
        "publish_duration", "publish", "send",
        "Duration of messaging operation initiated by a producer or consumer client: a publish, from handing it to "
        "the connection to Redis's acknowledgement (successful publishes)."),
    "messaging.process.duration": (
        "handler_duration", "process", "process", "Duration of processing operation: each sync handler call."),
    "fanout.delivery.latency": (
        "delivery_latency", None, None,
        "From when an event was due (its lag) or else sent to when the bridge handed it to its handlers; across "
        "hosts it includes their clock difference."),
}
SENT = "messaging.client.sent.messages"
CONSUMED = "messaging.client.consumed.messages"


def _bridges(source: Bridges) -> list:
    got = source() if callable(source) and not hasattr(source, "metrics") else source
    if hasattr(got, "metrics"):
        return [got]
    return list(got)


def _destination(bridge, event_type: str) -> str:
    """The event type's channel, or the type itself when it is spread over several channels."""
    chans = bridge.config.channels(event_type)
    return chans[0] if len(chans) == 1 else event_type


class Instrumented:
    """What :func:`instrument` wired on one provider: the bridges it reports (``add`` more: a second
    :func:`instrument` on the same provider does), and ``stop()``, which makes every callback and the
    histogram hook report nothing more (OpenTelemetry's API has no way to remove an observable instrument)."""

    def __init__(self, source: Bridges, meter_provider: Any) -> None:
        self._sources = [source]
        self.meter_provider = meter_provider
        self.stopped = False
        self.histograms_exported = False
        self._start_ns = time.time_ns()
        self._last: dict[int, tuple[int, dict]] = {}   # id(reader) -> (time, cumulative points) for delta readers
        self._lock = threading.Lock()

    def add(self, source: Bridges) -> None:
        """Report ``source``'s bridges too (one bridge, several, or a callable returning them)."""
        self._sources.append(source)

    def stop(self) -> None:
        """Report nothing more (until :func:`instrument` is called on this provider again)."""
        self.stopped = True

    def bridges(self) -> list:
        return [] if self.stopped else [b for src in self._sources for b in _bridges(src)]

    # -- observable instruments --------------------------------------------------------
    def _totals(self, key: Callable[[dict, Any], Iterable[tuple[tuple, int]]]) -> list[Observation]:
        acc: dict[tuple, int] = {}
        for b in self.bridges():
            m = b.metrics()
            for attrs, n in key(m, b):
                acc[attrs] = acc.get(attrs, 0) + int(n)
        return [Observation(n, dict(attrs)) for attrs, n in acc.items()]

    def _counter(self, src: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def cb(options: CallbackOptions) -> Iterable[Observation]:
            return self._totals(lambda m, b: [(_base(m), m.get(src, 0))])
        return cb

    def _sent(self, options: CallbackOptions) -> Iterable[Observation]:
        def rows(m: dict, b) -> list:
            attrs = (*_base(m), ("messaging.operation.name", "publish"), ("messaging.operation.type", "send"))
            return [(attrs, m.get("published", 0)),
                    *(((*attrs, ("error.type", kind)), n) for kind, n in b.publish_error_types().items())]
        return self._totals(rows)

    def _consumed(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._totals(lambda m, b: [((*_base(m), ("messaging.operation.name", "receive"),
                                            ("messaging.operation.type", "receive")), m.get("received", 0))])

    def _connected(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._totals(lambda m, b: [(_base(m), 1 if m.get("connected") else 0)])

    def _subscriptions(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._totals(lambda m, b: [(_base(m), m.get("subscriptions", 0))])

    # -- histograms, added to what an SDK reader collects ------------------------------
    def _histogram_points(self) -> dict[tuple[str, tuple], list]:
        """``(name, attributes) -> [counts, sum]``, cumulative, over every bridge."""
        acc: dict[tuple[str, tuple], list] = {}
        for b in self.bridges():
            tr = str(b.config.transport)
            snap = b.histograms()
            for name, (src, op, op_type, _) in HISTOGRAMS.items():
                for typ, h in snap[src].items():
                    attrs = [("messaging.system", SYSTEM), ("fanout.transport", tr),
                             ("messaging.destination.name", _destination(b, typ))]
                    if op is not None:
                        attrs += [("messaging.operation.name", op), ("messaging.operation.type", op_type)]
                    key = (name, tuple(attrs))
                    got = acc.get(key)
                    if got is None:
                        acc[key] = [list(h.counts), h.sum]
                    else:
                        got[0] = [x + y for x, y in zip(got[0], h.counts)]
                        got[1] += h.sum
        return acc

    def _add_histograms(self, reader: Any, data: Any) -> Any:
        from opentelemetry.sdk.metrics import Histogram as SdkHistogram
        from opentelemetry.sdk.metrics.export import (AggregationTemporality, Histogram, HistogramDataPoint,
                                                      Metric, MetricsData, ResourceMetrics, ScopeMetrics)
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from fanout.histograms import BOUNDS_S

        if self.stopped:
            return data
        now = time.time_ns()
        points = self._histogram_points()
        table = getattr(reader, "_instrument_class_temporality", {})  # the SDK's own key is its private _Histogram
        temporality = next((t for cls, t in table.items() if isinstance(cls, type) and issubclass(cls, SdkHistogram)),
                           AggregationTemporality.CUMULATIVE)
        start = self._start_ns
        if temporality == AggregationTemporality.DELTA:
            with self._lock:
                start, before = self._last.get(id(reader), (self._start_ns, {}))
                self._last[id(reader)] = (now, points)
            points = {k: [[c - p for c, p in zip(v[0], before.get(k, [[0] * len(v[0]), 0.0])[0])],
                          v[1] - before.get(k, [None, 0.0])[1]] for k, v in points.items()}
        metrics = []
        for name, (_, _, _, doc) in HISTOGRAMS.items():
            pts = [HistogramDataPoint(attributes=dict(attrs), start_time_unix_nano=start, time_unix_nano=now,
                                      count=sum(counts), sum=total, bucket_counts=tuple(counts),
                                      explicit_bounds=BOUNDS_S, min=math.inf, max=-math.inf)
                   for (n, attrs), (counts, total) in sorted(points.items()) if n == name]
            if pts:
                metrics.append(Metric(name=name, description=doc, unit="s",
                                      data=Histogram(data_points=pts, aggregation_temporality=temporality)))
        if not metrics:
            return data
        resource = self.meter_provider._sdk_config.resource  # noqa: SLF001 (the SDK's own resource)
        if data is None:
            data = MetricsData(resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[],
                                                                 schema_url=resource.schema_url)])
        rms = list(data.resource_metrics)
        rm = rms[0]
        scopes = list(rm.scope_metrics)
        for i, sm in enumerate(scopes):
            if sm.scope.name == SCOPE:
                scopes[i] = ScopeMetrics(scope=sm.scope, metrics=[*sm.metrics, *metrics], schema_url=sm.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(scope=InstrumentationScope(SCOPE, fanout.__version__), metrics=metrics,
                                       schema_url=""))
        rms[0] = ResourceMetrics(resource=rm.resource, scope_metrics=scopes, schema_url=rm.schema_url)
        return MetricsData(resource_metrics=rms)

    def _hook(self) -> bool:
        """Add the histograms to every collection of the SDK provider's readers (now and added later)."""
        consumer = getattr(self.meter_provider, "_measurement_consumer", None)
        if consumer is None or not hasattr(consumer, "collect") or not hasattr(consumer, "_reader_storages"):
            return False
        inner = consumer.collect

        def collect(metric_reader: Any, timeout_millis: float = 10_000) -> Any:
            data = inner(metric_reader, timeout_millis=timeout_millis)
            try:
                return self._add_histograms(metric_reader, data)
            except Exception:  # a collection never fails for our sake: said, and the rest exported
                log.exception("fanout.exporters.otel: the bridges' histograms were not added to this collection")
                return data

        consumer.collect = collect  # readers added later get it (MeterProvider.add_metric_reader)
        for reader in list(consumer._reader_storages):  # noqa: SLF001 (the readers registered now)
            if getattr(reader, "_collect", None) == inner:
                reader._set_collect_callback(collect)  # noqa: SLF001
        return True


#: provider -> what instrument() wired on it (its instruments exist once: a second call adds bridges)
_WIRED: "weakref.WeakKeyDictionary[Any, Instrumented]" = weakref.WeakKeyDictionary()


def _base(m: dict) -> tuple:
    return (("messaging.system", SYSTEM), ("fanout.transport", str(m.get("transport", ""))))


def instrument(bridges: Bridges, meter_provider: Any = None) -> Instrumented:
    """Export ``bridges`` (one bridge, several, or a callable returning them, read at each collection)
    through ``meter_provider`` (default: the global one, ``opentelemetry.metrics.get_meter_provider()``).
    Returns an :class:`Instrumented` (``stop()``; ``histograms_exported``: False with a provider that is
    not the SDK's). Called again with the same provider, it adds ``bridges`` to what is reported there
    (the same :class:`Instrumented`): bridges with the same attributes are added up."""
    provider = meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
    wired = _WIRED.get(provider)
    if wired is not None:  # the instruments exist once per provider: add to them (or start them again)
        if wired.stopped:
            wired._sources, wired.stopped = [], False
        wired.add(bridges)
        return wired
    wired = _WIRED[provider] = Instrumented(bridges, provider)
    meter = provider.get_meter(SCOPE, fanout.__version__)
    meter.create_observable_counter(SENT, [wired._sent], unit="{message}",
                                    description="Number of messages producer attempted to send to the broker.")
    meter.create_observable_counter(CONSUMED, [wired._consumed], unit="{message}",
                                    description="Number of messages that were delivered to the application.")
    for name, (src, unit, doc) in CUSTOM_COUNTERS.items():
        meter.create_observable_counter(name, [wired._counter(src)], unit=unit, description=doc)
    meter.create_observable_gauge("fanout.connected", [wired._connected], unit="{bridge}",
                                  description="Bridges connected (publishing and subscribing sides up).")
    meter.create_observable_gauge("fanout.subscriptions", [wired._subscriptions], unit="{subscription}",
                                  description="Channels subscribed, over every bridge.")
    wired.histograms_exported = wired._hook()
    if not wired.histograms_exported:
        log.warning("fanout.exporters.otel: %s is not the OpenTelemetry SDK's MeterProvider: the bridges' counters "
                    "and gauges are exported, their histograms are not (OpenTelemetry has no observable histogram)",
                    type(provider).__name__)
    return wired


__all__ = ["CUSTOM_COUNTERS", "HISTOGRAMS", "Instrumented", "instrument"]
