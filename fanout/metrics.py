"""The bridge's counters: one definition, read by the bridge, the run record and the report.

Each counter is a whole number that only grows during a bridge's life. ``metrics()`` returns
them with ``connected``, ``subscriptions``, ``transport``, ``epoch``, ``last_error`` and
``held_since_ns`` (when the subscription stopped reading for its async handlers' backlog,
``time.time_ns()``; 0 while it reads), and the output-buffer check's reading (:mod:`fanout.outbuf`;
``BridgeConfig.output_buffer_check_s``): ``output_buffer_bytes`` (the subscriber's ``omem`` at the
last look, None while off or not read yet), ``output_buffer_max_bytes``, ``output_buffer_limit_bytes``
(what it is compared with), ``output_buffer_warnings`` (times it crossed the warning fraction),
``output_buffer_warned_ns`` (the last warning, ``time.time_ns()``; 0: none), ``output_buffer_samples``
(readings taken) and
``output_buffer_check`` ("on", "off", or why it turned itself off).
"""
from __future__ import annotations

#: name -> what it counts (the report's glossary uses the same words)
COUNTERS: dict[str, str] = {
    "published": "events this bridge published that Redis acknowledged",
    "received": "events from other instances handed to the application (each once)",
    "self_filtered": "messages this bridge published itself, dropped on arrival (never handed over)",
    "errors": "everything that went wrong: failed publishes, malformed messages, raising handlers, refused "
              "position saves",
    "gaps": "events lost after Redis accepted them (transit loss): a source's seq jumped, or the transport counted a loss",
    "unsent": "events missing here that their publisher announced it never got into Redis (its failed publishes)",
    "duplicates": "messages whose seq this bridge had already handed over (dropped, not delivered twice)",
    "reconnects": "times the subscription was lost and restored",
    "malformed": "messages on the channels that are no fanout or seed envelope (dropped, counted)",
    "handler_errors": "handler calls that raised (the listener keeps going)",
    "publish_errors": "publishes that failed within the bound (the caller was told)",
    "source_restarts": "a source came back with a new epoch (a restart, not a loss)",
    "transport_losses": "events the transport itself counted as lost (e.g. trimmed from a stream)",
    "position_save_errors": "Streams: times Redis refused to save the read position (an error reply, e.g. OOM "
                            "under maxmemory noeviction); reading went on, the save was retried later",
    "suspicious": "implausible messages (a seq far ahead, an epoch that came back, this bridge's id from too many "
                  "instances): counted, never moving gaps or suppressing an event",
    "rejected": "messages refused before any handler: the sum of the three reasons below",
    "rejected_signature": "signing on: messages without a valid signature for the channel they arrived on (unsigned, "
                          "a wrong key, altered, or a copy of a signed message published on another channel)",
    "rejected_channel": "envelopes whose type is not the type of the channel they arrived on (signed or not)",
    "rejected_stale": "signing on: validly signed messages older than signed_max_age_s, or of an epoch older than the "
                      "source's current one that this receiver no longer tracks (replays)",
    "slow_handlers": "sync handler calls that held the reader longer than slow_handler_s (all reading waits meanwhile)",
    "events_dropped": "events dropped from a full bridge.events() queue (its oldest, for the new one)",
    "refused": "publish_nowait calls refused because the in-flight window was full (nothing sent, no seq used)",
    "id_conflicts": "other instances (epochs) seen publishing with this bridge's own instance id",
    "stale_subscriptions": "heartbeat_s on: times the subscription answered PING but its own heartbeat did not come "
                           "back within the bound (it was resubscribed on a new connection: also a reconnect)",
}
COUNTER_NAMES: tuple[str, ...] = tuple(COUNTERS)
