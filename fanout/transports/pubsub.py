"""Redis pub/sub: PUBLISH to ``{prefix}{type}``, SUBSCRIBE on one dedicated connection.

Fire-and-forget: a subscriber that is not connected when a message is published never
sees it (the bridge's sequence check makes the loss visible). Both sides are one
:class:`~fanout.transports.resp.RespProtocol` each: the publisher pipelines PUBLISH commands
(replies matched FIFO to their tokens, one deadline for the connection); the subscriber hands
every message to the bridge from ``data_received`` and pings when idle. When a connection
drops nothing reconnects behind the bridge's back: the bridge decides, and counts it.
"""
from __future__ import annotations

import hiredis

from fanout.errors import RedisUnavailable
from fanout.transports.base import Transport
from fanout.transports.common import (  # noqa: F401 (explain: lab.control)
    ProtoSubscriber, PubConn, SinglePublisher, conn_options, explain, one_line)
from fanout.transports.connection import open_connection
from fanout.transports.resp import RespProtocol

_pack = hiredis.pack_command
_PUBLISH = b"PUBLISH"


async def subscribe_on(url_or_params, cfg, command: bytes, groups: list[list[bytes]], sink,
                       on_unsubscribed=None, on_lost=None, ask_id: bool = False) -> RespProtocol:
    """A subscriber-mode connection with every group of channels confirmed (one command per
    group); errors become one line (``RedisUnavailable``) and leave no connection behind.
    ``ask_id``: ``CLIENT ID`` goes out in the same write, before the first subscribe (a connection
    in subscriber mode may not ask it), and ``proto.client_id`` is its answer (None if refused)."""
    proto = await open_connection(url_or_params, on_message=sink.on_message, on_unsubscribed=on_unsubscribed,
                                  on_lost=on_lost, health_interval_s=cfg.health_check_interval_s,
                                  health_timeout_s=cfg.health_check_timeout_s, **conn_options(cfg))
    asked = None
    try:
        if ask_id:
            asked = proto.call(b"CLIENT", b"ID")
            asked.add_done_callback(_seen)
        for chans in groups:
            await proto.subscribe(command, chans)
        if asked is not None:
            try:
                proto.client_id = int(await asked)
            except hiredis.ReplyError:  # an ACL without client|id: the output-buffer check says so and stops
                pass
    except hiredis.ReplyError as exc:  # NOPERM, MOVED, CLUSTERDOWN: the bridge retries, re-resolving
        proto.abort()
        raise RedisUnavailable(f"{command.decode()} on {proto.name} refused: {one_line(exc)}") from None
    except BaseException:
        proto.abort()
        raise
    return proto


def _seen(fut) -> None:
    """Mark a control reply's exception as retrieved (a subscription that failed never reads it)."""
    if not fut.cancelled():
        fut.exception()


class PubSubTransport(SinglePublisher, Transport):
    name = "pubsub"

    def __init__(self, config) -> None:
        super().__init__(config)
        self._chan: dict[str, bytes] = {}

    async def connect_publisher(self) -> None:
        if self._pub.up:
            return
        pub = PubConn(self._result)
        await pub.open(self.url(), self.config)
        self._pub = pub

    def _result(self, token, reply, _extra) -> None:
        self.on_ack(token, None if type(reply) is int else reply)

    def publish_nowait(self, channel: str, payload: bytes, token, force: bool = False) -> bool:
        pub = self._up()
        ch = self._chan.get(channel)
        if ch is None:
            ch = self._chan[channel] = channel.encode()
        return pub.send(_pack((_PUBLISH, ch, payload)), token, None, force)

    async def open_subscriber(self, channels: list[str], sink) -> ProtoSubscriber:
        cfg = self.config
        beats = (cfg.heartbeat_channel(),) if cfg.heartbeat_s else ()
        checked = cfg.output_buffer_check_s is not None
        url = self.url()
        proto = await subscribe_on(url, cfg, b"SUBSCRIBE", [[c.encode() for c in (*channels, *beats)]], sink,
                                   ask_id=checked)
        return ProtoSubscriber(proto, beats, url if checked else None)
