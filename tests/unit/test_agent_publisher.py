"""The unit's link: only a PUBACK of an outbox row's own message settles that row.

No broker here: paho is not connected; its confirmations are played to the publisher as
paho's network thread would deliver them.
"""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.app import Agent
from agent.config import load_config
from agent.pins import make_pin_factory
from devstack.stack import Stack
from protocol import topics


def test_a_live_frames_confirmation_is_never_kept_for_an_outbox_row(stack: Stack) -> None:
    config = load_config(stack.unit_dir("gudang-01") / "agent.toml")
    agent = Agent(config, make_pin_factory("mock"))
    try:
        link = agent.publisher
        link.stats.connected = True  # as if connected: the frame is handed to paho
        link.publish_live(topics.DeviceTopics(config.site, config.device).live, b"\xff\xd8")
        frame_mid = link._client._last_mid  # the mid paho gave the frame
        # paho confirms a QoS 0 send through on_publish too; mids wrap past 65535 and come
        # back as outbox rows' mids, so a kept confirmation would settle a row early.
        link._on_publish(None, None, frame_mid, ReasonCode(PacketTypes.PUBACK), None)  # type: ignore[arg-type]
        assert frame_mid not in link._early
    finally:
        agent.outbox.close()
