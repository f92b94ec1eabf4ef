"""The collector's broker session: the only paho user on the collector side.

A persistent MQTT 5 session (clean_start=False, a session expiry) with manual
acknowledgement: a message is acknowledged only when the service says it is stored. Inbound
messages are taken apart once (`Inbound.arrived`) and queued for the service's thread;
operators' site commands go to their own queue. Retained site commands are dropped: a
command is carried out when it is sent, never again when a collector (re)subscribes.
Witnesses' cosignatures and fork reports go to a queue of their own too (`witnessed`),
acknowledged once stored, so they never wait behind events nor events behind them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from broker.collector import inbound
from broker.collector.inbound import Inbound
from broker.collector.stats import CollectorStats
from broker.config import MqttConfig
from broker.home_assistant import topics as ha_topics
from kernel.link import Link, Message
from kernel.mqtt import PahoLink, Session, Will, make_client
from kernel.mqtt_stream import StreamClient
from protocol import topics

log = logging.getLogger("jaga.collector")

CHANNELS = (
    topics.Channel.EVENT,
    topics.Channel.HEARTBEAT,
    topics.Channel.STATUS,
    topics.Channel.SNAPSHOT,
)


def paho_link(config: MqttConfig, will: Will | None = None) -> PahoLink:
    """The real link: a kept MQTT 5 session with manual acknowledgement."""
    client = make_client(
        config.tls,
        config.client_id,
        field="mqtt.tls",
        will=will,
        manual_ack=True,
        reconnect_delay_s=(1, 15),
        client_class=StreamClient,
    )
    session = Session(
        config.host,
        config.port,
        config.keepalive_s,
        config.session_expiry_s,
        config.receive_maximum,
    )
    return PahoLink(client, session)


class BrokerSession:
    """Connect, subscribe (this collector's sites), take messages in, acknowledge, publish."""

    def __init__(
        self,
        config: MqttConfig,
        stats: CollectorStats,
        link: Link | None = None,
        *,
        will: Will | None = None,
    ) -> None:
        """will: published by the broker if the collector vanishes (Home Assistant's
        availability); only for the paho link made here."""
        self.config = config
        self.stats = stats
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.witnessed: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.subscribed = threading.Event()
        self.retained_commands_dropped = 0
        self.link: Link = link if link is not None else paho_link(config, will)
        self.on_live: Callable[[str, str, bytes], None] | None = None
        """Live frames (site, device, JPEG), handed over on the link's thread; never stored."""
        self.connections = 0
        """Connections made so far: a reconnection between two looks is seen all the same."""
        self.extra_filters: list[str] = []
        """More filters (Home Assistant's birth and panel commands), taken by `on_other`."""
        self.on_other: Callable[[Message], bool] | None = None
        """Takes what extra_filters bring, on the link's thread (True: taken, acknowledged
        at once); never events."""

    def start(self) -> None:
        self.link.start(self)

    def ack(self, m: Inbound) -> None:
        """Tell the broker a message is ours now (stored, spooled, backlogged or kept)."""
        if m.needs_ack:
            self.link.ack(m.mid, m.qos)

    def ack_all(self, batch: Sequence[Inbound]) -> None:
        """`ack` each of a batch's messages, in order, as one write to the broker."""
        mids = [m.mid for m in batch if m.needs_ack and m.qos == 1]
        if len(mids) == sum(1 for m in batch if m.needs_ack):
            if mids:
                self.link.ack_many(mids)
            return
        for m in batch:  # QoS 2 among them (never subscribed so): one by one
            self.ack(m)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a publish; False when the link refused it at once (e.g. not connected)."""
        return self.link.publish(topic, payload, qos=qos, retain=retain)

    def close(self) -> None:
        self.link.close()

    def filters(self, *, every: bool = False) -> list[str]:
        """What this collector subscribes to: its sites' messages and operators' commands.
        every=True: all the filters any collector config could have left in a session."""
        m = self.config
        if every:
            return [
                *topics.collector_filters(CHANNELS, shared=True),
                *topics.collector_filters(CHANNELS, shared=False),
                *topics.site_command_filters(),
                *topics.witness_filters(),
                *topics.live_filters(),
                *ha_topics.LEFT_FILTERS,  # Home Assistant's, were it turned off since
                *self.extra_filters,
            ]
        sites = tuple(m.sites)
        return [
            *topics.collector_filters(CHANNELS, shared=m.shared, sites=sites),
            *topics.site_command_filters(sites),
            *topics.witness_filters(sites),
            *topics.live_filters(sites),
            *self.extra_filters,
        ]

    # the link's thread (kernel.link.LinkHandler) ---------------------------------------------

    def on_connected(self, resumed: bool) -> None:
        self.connections += 1
        self.stats.connected = True
        log.info("connected to broker (session %s)", "resumed" if resumed else "new")
        wanted = self.filters()
        if resumed:  # a session kept from another config (other sites, shared or not)
            stale = sorted(set(self.filters(every=True)) - set(wanted))
            if stale:
                self.link.unsubscribe(stale)
        self.link.subscribe(wanted)

    def on_refused(self, reason: str) -> None:
        self.stats.last_error = f"broker refused the collector: {reason}"
        log.error("%s", self.stats.last_error)

    def on_subscribed(self, failures: list[str]) -> None:
        if failures:
            log.error("subscription refused by the broker: %s", ", ".join(failures))
            return
        log.info("subscribed to %s", ", ".join(self.filters()))
        self.subscribed.set()

    def on_disconnected(self, reason: str) -> None:
        if self.stats.connected:
            log.warning("disconnected from broker: %s; reconnecting", reason)
        self.stats.connected = False

    def on_message(self, msg: Message) -> None:
        where = inbound.parse(msg.topic)  # a unit's topic, taken apart once (None: another)
        if where is not None and where.channel is topics.Channel.LIVE:
            # QoS 0 frames: relayed to viewers if any, never acknowledged
            if self.on_live is not None and not msg.retain:
                self.on_live(where.site, where.device, msg.payload)
            return
        if where is None and self.on_other is not None and self.on_other(msg):  # never a unit's
            if msg.qos > 0:
                self.link.ack(msg.mid, msg.qos)
            return
        if where is not None:  # witness and command topics are never a unit's
            self.inbox.put(
                Inbound.arrived(msg.topic, msg.payload, msg.mid, msg.qos, time.time_ns(), where)
            )
            return
        if topics.parse_witness_topic(msg.topic) is not None:
            self.witnessed.put(msg)  # acknowledged by the service once stored
            return
        if topics.parse_site_command(msg.topic) is not None:
            # Operators' arm/disarm/ack: handled on the main loop, acknowledged at once.
            if msg.retain:
                self.retained_commands_dropped += 1
                log.warning(
                    "retained command on %s dropped: commands are carried out when sent, "
                    "never replayed from the broker's retained store",
                    msg.topic[:120],
                )
            else:
                self.commands.put((msg.topic, msg.payload))
            if msg.qos > 0:
                self.link.ack(msg.mid, msg.qos)
            return
        self.inbox.put(Inbound.arrived(msg.topic, msg.payload, msg.mid, msg.qos, time.time_ns()))
