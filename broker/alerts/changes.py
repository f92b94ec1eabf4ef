"""What one alert-engine call hands the collector: messages to publish, records to store,
points to write and notifications to send, kept in the engine's outbox until confirmed."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from broker.alerts.alert_points import InfluxPoint
from broker.alerts.lifecycle import Change
from broker.alerts.notifications import Notification
from protocol import topics
from protocol.alerting import ArmingAudit, ArmingState


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication for the collector to make."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


class Changes(BaseModel):
    """What one engine call asks the collector to publish, write and send."""

    model_config = ConfigDict(extra="forbid")

    # default_factory, not `= []`: pydantic deep-copies a mutable default for each instance,
    # and the engine makes one Changes per event (a third of its time went to those copies).
    outbox_id: int | None = None
    alerts: list[Change] = Field(default_factory=list)
    arming: list[ArmingState] = Field(default_factory=list)
    audits: list[ArmingAudit] = Field(default_factory=list)
    notifications: list[Notification] = Field(default_factory=list)
    points: list[InfluxPoint] = Field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.alerts or self.arming or self.audits or self.notifications or self.points)

    def extend(self, other: Changes) -> None:
        """Add a later call's changes to these (a batch)."""
        self.alerts.extend(other.alerts)
        self.arming.extend(other.arming)
        self.audits.extend(other.audits)
        self.notifications.extend(other.notifications)
        self.points.extend(other.points)

    def messages(self) -> list[Message]:
        """Retained messages, latest per topic: an open alert's JSON, b"" for a closed one."""
        out: dict[str, bytes] = {}
        for change in self.alerts:
            a = change.alert
            out[topics.alert(a.site, a.id)] = a.to_json() if a.state.is_open else b""
        for state in self.arming:
            out[topics.arming(state.site)] = state.to_json()
        return [Message(topic, payload) for topic, payload in out.items()]
