"""What Home Assistant shows, from what the collector accepts: pure mappings, no I/O.

A unit's state is one JSON document (discovery.py points each entity at its key); it is
built from the unit's verified events, heartbeats and status, the newest event per input
winning by seq. A panel's state is Jaga's arming in HA's words, `triggered` while an
intrusion alarm of the site is open and not yet acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from protocol.alerting import Alert, ArmingMode
from protocol.models import Event, Heartbeat, Kind, Status

ON, OFF = "ON", "OFF"
ACTIVE = {"open": ON, "held-open": ON, "closed": OFF, "motion": ON, "still": OFF,
          "tampered": ON, "normal": OFF}  # fmt: skip
CAMERA_PROBLEM = {"fault": True, "covered": True, "recovered": False, "uncovered": False}
PANEL_WORDS = {
    ArmingMode.DISARMED: "disarmed",
    ArmingMode.ARMING: "arming",
    ArmingMode.ARMED: "armed_away",
    ArmingMode.PENDING: "pending",
}
DISK = ("disk-full", "disk-ok")
TRIGGERING_RULES = frozenset({"forced-door", "intrusion"})


@dataclass
class UnitState:
    """What HA shows of one unit; `seqs` keeps the newest event applied per input."""

    inputs: dict[str, str | None] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    online: bool | None = None
    camera_problem: bool = False
    disk_full: bool = False
    heartbeat: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The retained JSON on topics.unit_state (None: HA shows unknown)."""
        problems = self.problems()
        return {
            "sensors": dict(self.inputs),
            "online": None if self.online is None else (ON if self.online else OFF),
            "problem": ON if problems else OFF,
            "problems": problems,
            "outbox_depth": self.heartbeat.get("outbox_depth"),
            "disk_free_mb": self.heartbeat.get("disk_free_mb"),
            "cpu_temp_c": self.heartbeat.get("cpu_temp_c"),
            "cert_days_left": self.heartbeat.get("cert_days_left"),
        }

    def problems(self) -> list[str]:
        """Why the unit needs a technician, as short codes (the problem sensor's attribute)."""
        hb = self.heartbeat
        found = [
            ("camera", self.camera_problem),
            ("disk-full", self.disk_full or bool(hb.get("disk_full"))),
            ("undervoltage", bool(hb.get("undervoltage"))),
            ("evidence-full", bool(hb.get("evidence_full"))),
            ("clock-not-synced", hb.get("clock_synced") is False),
        ]
        return [name for name, on in found if on]

    def to_json(self) -> dict[str, Any]:
        """Kept in the bridge's file, so a restarted collector shows what it knew."""
        return {
            "inputs": self.inputs,
            "seqs": self.seqs,
            "online": self.online,
            "camera_problem": self.camera_problem,
            "disk_full": self.disk_full,
            "heartbeat": self.heartbeat,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> UnitState:
        return cls(
            inputs=dict(raw.get("inputs", {})),
            seqs={k: int(v) for k, v in raw.get("seqs", {}).items()},
            online=raw.get("online"),
            camera_problem=bool(raw.get("camera_problem")),
            disk_full=bool(raw.get("disk_full")),
            heartbeat=dict(raw.get("heartbeat", {})),
        )


def wired(unit: UnitState, sensors: Iterable[tuple[str, str]]) -> UnitState:
    """Every wired input present in the document (unknown until the unit says)."""
    for name, kind in sensors:
        if kind in ("door", "motion", "tamper"):
            unit.inputs.setdefault(name, None)
    return unit


def apply(unit: UnitState, msg: Event | Heartbeat | Status) -> bool:
    """Take one accepted message into the unit's state; whether the document changed."""
    before = unit.document()
    if isinstance(msg, Status):
        unit.online = msg.state == "online"
    elif isinstance(msg, Heartbeat):
        unit.online = True
        unit.heartbeat = {
            "outbox_depth": msg.outbox_depth,
            "disk_free_mb": msg.disk_free_mb,
            "cpu_temp_c": msg.cpu_temp_c,
            "cert_days_left": msg.cert_days_left,
            "disk_full": msg.disk_full,
            "undervoltage": msg.undervoltage,
            "evidence_full": msg.evidence_full,
            "clock_synced": msg.clock_synced,
        }
    elif msg.kind in (Kind.DOOR, Kind.MOTION, Kind.TAMPER):
        if _newer(unit, msg.sensor, msg.seq):
            unit.inputs[msg.sensor] = ACTIVE.get(msg.state)
    elif msg.kind is Kind.CAMERA and msg.state in CAMERA_PROBLEM:
        if _newer(unit, "#camera", msg.seq):
            unit.camera_problem = CAMERA_PROBLEM[msg.state]
    elif msg.kind is Kind.SYSTEM and msg.state in DISK and _newer(unit, "#disk", msg.seq):
        unit.disk_full = msg.state == "disk-full"
    return unit.document() != before


def _newer(unit: UnitState, key: str, seq: int) -> bool:
    """Whether seq is the newest seen for key (then kept): a late event never undoes a newer."""
    if seq <= unit.seqs.get(key, -1):
        return False
    unit.seqs[key] = seq
    return True


def panel_word(mode: ArmingMode | None, alerts: Iterable[Alert]) -> str | None:
    """The HA alarm panel's state; None while Jaga has no arming state for the site yet."""
    if mode is None:
        return None
    if mode.guarding and any(
        a.rule in TRIGGERING_RULES and a.state.is_open and a.acked_at is None for a in alerts
    ):
        return "triggered"
    return PANEL_WORDS.get(mode)
