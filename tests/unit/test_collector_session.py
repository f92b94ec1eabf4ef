"""The collector's broker session driven through kernel.link.MemoryLink: no Mosquitto."""

from __future__ import annotations

from broker.collector.session import BrokerSession
from broker.collector.stats import CollectorStats
from broker.config import MqttConfig
from kernel.link import MemoryBroker, MemoryLink, Message, matches
from protocol import topics
from protocol.topics import DeviceTopics

PINTU = DeviceTopics("gudang-3", "pintu-1")


def session(broker: MemoryBroker, **config: object) -> tuple[BrokerSession, MemoryLink]:
    link = broker.link("jaga-collector-1")
    s = BrokerSession(MqttConfig.model_validate(config), CollectorStats(), link)
    s.start()
    return s, link


def test_a_message_is_acknowledged_only_when_the_service_says_it_is_stored() -> None:
    broker = MemoryBroker()
    s, link = session(broker)
    assert s.subscribed.is_set() and s.stats.connected
    broker.publish(PINTU.event, b"{}", qos=1)
    m = s.inbox.get_nowait()
    assert m.where is not None and m.where.channel is topics.Channel.EVENT
    assert link.acked == []
    s.ack(m)
    assert link.acked == [m.mid]


def test_a_batch_is_acknowledged_in_order_and_only_what_it_holds() -> None:
    broker = MemoryBroker()
    s, link = session(broker)
    for i in range(5):
        broker.publish(PINTU.event, b"%d" % i, qos=1)
    got = [s.inbox.get_nowait() for _ in range(5)]
    s.ack_all(got[:3])
    assert link.acked == [m.mid for m in got[:3]]
    s.ack_all([])
    s.ack_all(got[3:])
    assert link.acked == [m.mid for m in got]


def test_each_topic_goes_where_it_belongs() -> None:
    """A unit's topics are taken apart once: live frames go to the wall (never queued nor
    acknowledged), witnesses' and operators' topics to their queues, the rest to the inbox
    (a topic outside the contract too: ingest refuses it with its reason)."""
    broker = MemoryBroker()
    s, link = session(broker)
    frames: list[tuple[str, str, bytes]] = []
    s.on_live = lambda site, device, jpeg: frames.append((site, device, jpeg))
    broker.publish(PINTU.live, b"jpeg", qos=0)
    broker.publish(f"{topics.ROOT}/gudang-3/witness/saksi-1", b"cosign", qos=1)
    broker.publish(PINTU.heartbeat, b"{}", qos=1)
    assert frames == [("gudang-3", "pintu-1", b"jpeg")]
    assert s.witnessed.get_nowait().payload == b"cosign"
    m = s.inbox.get_nowait()
    assert m.where == topics.ParsedTopic("gudang-3", "pintu-1", topics.Channel.HEARTBEAT)
    assert s.inbox.empty() and link.acked == []
    s.on_message(Message(f"{topics.ROOT}/gudang-3/pintu-1/nonsense", b"{}", 1, mid=7))
    odd = s.inbox.get_nowait()
    assert odd.where is None and odd.unit is None


def test_an_unacknowledged_message_comes_again_when_the_kept_session_resumes() -> None:
    broker = MemoryBroker()
    s, link = session(broker)
    broker.publish(PINTU.snapshot("ev-1"), b"jpeg", qos=1)
    first = s.inbox.get_nowait()
    assert first.is_picture
    link.drop()
    assert not s.stats.connected
    link.reconnect()
    again = s.inbox.get_nowait()
    assert (again.topic, again.payload, again.mid) == (first.topic, first.payload, first.mid)
    s.ack(again)
    link.drop()
    link.reconnect()
    assert s.inbox.empty()


def test_a_resumed_session_drops_the_filters_another_config_left() -> None:
    broker = MemoryBroker()
    old, old_link = session(broker, shared=True)
    old.close()
    assert any(f.startswith("$share/") for f in old_link.subscriptions())
    new, link = session(broker, shared=False, sites=["gudang-3"])
    assert sorted(link.subscriptions()) == sorted(new.filters())
    broker.publish(DeviceTopics("gudang-9", "pintu-1").event, b"{}", qos=1)
    assert new.inbox.empty()


def test_operators_commands_are_acknowledged_at_once_and_retained_ones_dropped() -> None:
    broker = MemoryBroker()
    broker.publish(topics.site_cmd("gudang-3", "arm"), b"stale", qos=1, retain=True)
    s, link = session(broker)
    assert s.retained_commands_dropped == 1 and s.commands.empty()
    broker.publish(topics.site_cmd("gudang-3", "disarm"), b"signed", qos=1)
    assert s.commands.get_nowait() == (topics.site_cmd("gudang-3", "disarm"), b"signed")
    assert len(link.acked) == 2 and s.inbox.empty()


def test_publish_reaches_subscribers_and_is_refused_when_not_connected() -> None:
    broker = MemoryBroker()
    s, link = session(broker)
    watcher = broker.link("operator:siti")
    got: list[bytes] = []

    class Watch:
        def on_connected(self, resumed: bool) -> None:
            watcher.subscribe([topics.arming("gudang-3")])

        def on_refused(self, reason: str) -> None: ...
        def on_subscribed(self, failures: list[str]) -> None: ...
        def on_disconnected(self, reason: str) -> None: ...

        def on_message(self, msg: object) -> None:
            got.append(msg.payload)  # type: ignore[attr-defined]

    assert s.publish(topics.arming("gudang-3"), b"armed", retain=True)
    watcher.start(Watch())
    assert got == [b"armed"]  # retained: delivered on subscribe
    link.drop()
    assert not s.publish(topics.arming("gudang-3"), b"disarmed", retain=True)
    assert got == [b"armed"]


def test_filters_match_like_mqtt() -> None:
    assert matches("jaga/v1/+/+/snapshot/#", "jaga/v1/g/p/snapshot/ev-1")
    assert matches("$share/jaga-collectors/jaga/v1/+/+/event", "jaga/v1/g/p/event")
    assert matches("jaga/v1/#", "jaga/v1")
    assert not matches("jaga/v1/+/+/event", "jaga/v1/g/p/event/x")
    assert not matches("#", "$SYS/broker/uptime")
