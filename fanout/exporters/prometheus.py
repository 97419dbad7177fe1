"""Prometheus metrics for one bridge or many (``pip install 'fanout[prometheus]'``)::

    from fanout.exporters.prometheus import serve
    serve(bridge, port=9464)              # http://<host>:9464/metrics, on a daemon thread

or, into a registry of your own: ``registry.register(BridgeCollector(bridges))``.

A custom collector: every scrape reads ``bridge.metrics()`` and ``bridge.histograms()`` (nothing is
counted twice, nothing runs on the event loop). Bridges that share a transport are added up
(counters, histograms, gauges): the scrape target is the process, so no instance id, symbol, run
id or message id is ever a label; the labels are ``transport`` and, on histograms, ``event_type``.

What each metric means: :data:`COUNTERS`, :data:`HISTOGRAMS` and the gauges below (the README's
table is the same text). ``fanout_publish_errors_total`` carries ``error_type`` besides ``transport``:
the kind of failure from ``bridge.publish_error_types()`` (``timeout``, or the exception's class name:
``ConnectionResetError``, ``NeverSent``, ``ReplyError`` ...; at most 16 kinds a bridge, then
``_OTHER``); no series until a publish failed. ``fanout_last_heartbeat_timestamp_seconds`` reads
``bridge.last_heartbeat_ns`` (``heartbeat_s`` on; :mod:`fanout.heartbeat`): the oldest over the
bridges that have heartbeats on.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

import fanout
from fanout.histograms import BOUNDS_S, Histogram

#: Prometheus name (without ``_total``) -> (the ``metrics()`` counter, what it counts)
COUNTERS: dict[str, tuple[str, str]] = {
    "fanout_messages_published": ("published", "Events this process's bridges published that Redis acknowledged."),
    "fanout_messages_received": ("received", "Events from other instances handed to the application (each once)."),
    "fanout_messages_self_filtered": ("self_filtered", "A bridge's own messages dropped on arrival (never handed over)."),
    "fanout_duplicates": ("duplicates", "Messages whose seq had already been handed over (dropped, not delivered twice)."),
    "fanout_gaps": ("gaps", "Events lost after Redis accepted them (transit loss): a source's seq jumped, or the "
                            "transport counted a loss."),
    "fanout_unsent": ("unsent", "Events missing here that their publisher announced it never got into Redis."),
    "fanout_malformed": ("malformed", "Messages on the channels that are no fanout or seed envelope (dropped)."),
    "fanout_rejected": ("rejected", "Messages refused before any handler (bad or missing signature, wrong channel, "
                                    "stale)."),
    "fanout_refused": ("refused", "publish_nowait calls refused because the in-flight window was full (nothing sent)."),
    "fanout_publish_errors": ("publish_errors", "Publishes that failed within the bound (the caller was told)."),
    "fanout_reconnects": ("reconnects", "Times a subscription was lost and restored."),
    "fanout_stale_subscriptions": ("stale_subscriptions", "Times a subscription answered PING but its own heartbeat "
                                                          "did not come back in time (resubscribed; heartbeat_s on)."),
}
#: Prometheus name -> (the ``histograms()`` name, what it measures)
HISTOGRAMS: dict[str, tuple[str, str]] = {
    "fanout_delivery_latency_seconds": (
        "delivery_latency", "From when an event was due (its lag) or else sent to when the bridge handed it to its "
                            "handlers; across hosts it includes their clock difference."),
    "fanout_publish_duration_seconds": (
        "publish_duration", "From queuing a publish to Redis's acknowledgement (successful publishes)."),
    "fanout_handler_duration_seconds": (
        "handler_duration", "Each sync handler call (async handlers are not timed)."),
}
#: the counter labelled with ``error_type`` as well (its series add up to ``metrics()['publish_errors']``)
BY_TYPE = "fanout_publish_errors"
GAUGES: dict[str, str] = {
    "fanout_connected": "Bridges connected (publishing and subscribing sides up): 1 or 0 for one bridge.",
    "fanout_subscriptions": "Channels subscribed, over every bridge.",
    "fanout_subscriber_output_buffer_bytes": (
        "What Redis holds unsent for a subscriber (CLIENT LIST omem at the bridge's last output-buffer check; "
        "the largest over the bridges; only bridges with output_buffer_check_s set)."),
    "fanout_subscriber_output_buffer_limit_bytes": (
        "The pub/sub output-buffer limit that reading is compared with (the smaller of the server's hard and "
        "soft limits, or output_buffer_limit_bytes); Redis cuts a subscriber off past it."),
}
HEARTBEAT_GAUGE = ("fanout_last_heartbeat_timestamp_seconds",
                   "When a bridge's own heartbeat last came back (Unix seconds; until the first, when it subscribed): "
                   "the oldest over the bridges with heartbeat_s on. Absent when none has it on.")
#: the gauges read from the output-buffer check: (gauge, metrics() field), the largest over the bridges
OUTPUT_BUFFER_GAUGES = (("fanout_subscriber_output_buffer_bytes", "output_buffer_bytes"),
                        ("fanout_subscriber_output_buffer_limit_bytes", "output_buffer_limit_bytes"))

Bridges = Any  # a bridge, an iterable of bridges, or a callable returning one


def _bridges(source: Bridges) -> list:
    got = source() if callable(source) and not hasattr(source, "metrics") else source
    if hasattr(got, "metrics"):
        return [got]
    return list(got)


#: the ``le`` bounds exported: 1, 2 and 5 x each power of ten from 50 µs to 10 s (17 and +Inf), a subset of
#: the bridge's own 51 (:data:`fanout.histograms.BOUNDS_S`), so each exported count is exact
EXPORTED_LE = frozenset(b for b in BOUNDS_S if f"{b:e}"[0] in "125")


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    return [("+Inf" if le == float("inf") else repr(le), n) for le, n in h.cumulative()
            if le in EXPORTED_LE or le == float("inf")]


class BridgeCollector(Collector):
    """The metrics of ``bridges``: one bridge, several, or a callable returning them (read at each
    scrape, so bridges that come and go, like a run's, are followed; a bridge that went away takes
    its counts with it, which Prometheus reads as a counter reset)."""

    def __init__(self, bridges: Bridges) -> None:
        self._source = bridges

    def collect(self) -> Iterable:
        bridges = _bridges(self._source)
        counters = {name: CounterMetricFamily(name, doc, labels=["transport", "error_type"] if name == BY_TYPE
                                              else ["transport"]) for name, (_, doc) in COUNTERS.items()}
        kinds: dict[tuple[str, str], int] = {}   # (transport, error_type) -> failed publishes
        gauges = {name: GaugeMetricFamily(name, doc, labels=["transport"]) for name, doc in GAUGES.items()}
        totals: dict[str, dict[str, int]] = {}
        hist: dict[tuple[str, str, str], list] = {}   # (name, transport, type) -> [counts, sum]
        beats: dict[str, int] = {}                     # transport -> the oldest last heartbeat (ns)
        for b in bridges:
            m = b.metrics()
            tr = str(m["transport"])
            t = totals.setdefault(tr, dict.fromkeys([*(src for src, _ in COUNTERS.values()), "connected",
                                                     "subscriptions"], 0))
            for src, _ in COUNTERS.values():
                t[src] += int(m.get(src, 0))
            for kind, n in b.publish_error_types().items():
                kinds[(tr, kind)] = kinds.get((tr, kind), 0) + n
            t["connected"] += 1 if m["connected"] else 0
            t["subscriptions"] += int(m["subscriptions"])
            beat = getattr(b, "last_heartbeat_ns", 0)
            if beat:
                beats[tr] = min(beats.get(tr, beat), beat)
            for gauge, src in OUTPUT_BUFFER_GAUGES:  # read by the check only: absent (not 0) when nobody read it
                if m.get(src) is not None:
                    t[gauge] = max(t.get(gauge, 0), int(m[src]))
            for name, (src, _) in HISTOGRAMS.items():
                for typ, h in b.histograms()[src].items():
                    acc = hist.get((name, tr, typ))
                    if acc is None:
                        hist[(name, tr, typ)] = [h.bounds, list(h.counts), h.sum]
                    else:
                        acc[1] = [x + y for x, y in zip(acc[1], h.counts)]
                        acc[2] += h.sum
        for tr, t in totals.items():
            for name, (src, _) in COUNTERS.items():
                if name != BY_TYPE:
                    counters[name].add_metric([tr], t[src])
            gauges["fanout_connected"].add_metric([tr], t["connected"])
            gauges["fanout_subscriptions"].add_metric([tr], t["subscriptions"])
            for gauge, _ in OUTPUT_BUFFER_GAUGES:
                if gauge in t:
                    gauges[gauge].add_metric([tr], t[gauge])
        for (tr, kind), n in sorted(kinds.items()):
            counters[BY_TYPE].add_metric([tr, kind], n)
        yield from counters.values()
        yield from gauges.values()
        if beats:
            fam = GaugeMetricFamily(*HEARTBEAT_GAUGE, labels=["transport"])
            for tr, ns in sorted(beats.items()):
                fam.add_metric([tr], ns / 1e9)
            yield fam
        for name, (_, doc) in HISTOGRAMS.items():
            fam = HistogramMetricFamily(name, doc, labels=["event_type", "transport"])
            for (n, tr, typ), (bounds, counts, total) in sorted(hist.items()):
                if n == name:
                    h = Histogram(bounds, tuple(counts), sum(counts), total)
                    fam.add_metric([typ, tr], _buckets(h), total)
            yield fam
        info = InfoMetricFamily("fanout_build", "The fanout library serving these metrics.")
        info.add_metric([], {"version": fanout.__version__})
        yield info


def registry_for(bridges: Bridges) -> CollectorRegistry:
    """A registry holding only :class:`BridgeCollector` (``bridges``)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(BridgeCollector(bridges))
    return reg


def serve(bridges: Bridges, port: int = 9464, addr: str = "0.0.0.0") -> Callable[[], None]:
    """Serve ``bridges``' metrics on ``http://addr:port/metrics`` from a daemon thread (prometheus_client's
    server; ``port=0`` picks a free one, then read it from ``stop.port``). Returns ``stop()``, which shuts the
    server down; ``stop.port`` is the port it listens on."""
    server, thread = start_http_server(port, addr=addr, registry=registry_for(bridges))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    stop.port = server.server_address[1]  # type: ignore[attr-defined]
    return stop


__all__ = ["BY_TYPE", "BridgeCollector", "COUNTERS", "GAUGES", "HISTOGRAMS", "registry_for", "serve"]
