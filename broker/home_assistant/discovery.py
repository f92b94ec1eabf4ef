"""Home Assistant MQTT discovery payloads: pure builders, one HA device per unit and per site.

Each entity's config is retained under `<prefix>/<component>/<node>/<object>/config`; an
empty retained message there removes the entity (how a removed unit leaves HA). Every unit
entity reads one retained JSON state (topics.unit_state) by its own key, so one publish
carries the whole unit. Availability is a list, all of which must say online: the
collector's own status (its will says offline) and, for what the unit itself reports, the
unit's retained status (its will says offline too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.home_assistant import topics
from broker.i18n import N_

MANUFACTURER = "Jaga"
SENSOR_CLASSES = {"door": "door", "motion": "motion", "tamper": "tamper"}
"""Input kinds that become binary sensors, with their HA device class (patrol buttons do not)."""

PANEL_COMMAND_TEMPLATE = (
    '{"action": "{{ action }}", "code": {{ code | to_json }}, "zone": ZONE, '
    '"ts": {{ as_timestamp(now()) }}}'
)
"""What HA publishes on the panel's command topic: the action, the code as typed (checked by
the collector, REMOTE_CODE), the zone, and when (a command that waited is refused)."""

Translate = Callable[[str], str]
STATE_QOS = 0
"""HA subscribes to units' states at QoS 0: every state is retained and published again on
each reconnection, so nothing is lost, and HA writes no PUBACK per state. Fewer writes matter:
HA 2024.3's paho-mqtt 1.6.1 lets an SSLEOFError from a write during a broker restart kill its
network thread, and HA then never reconnects (seen in tests/integration/test_home_assistant.py
with QoS 1, where HA acknowledged every heartbeat's state)."""


@dataclass(frozen=True, slots=True)
class Unit:
    """What discovery needs of a registered unit: its site, id, wiring and camera."""

    site: str
    device: str
    sensors: tuple[tuple[str, str], ...]
    """(sensor name, kind) in wiring order."""
    camera: bool = False


@dataclass(frozen=True, slots=True)
class Panel:
    """One alarm panel: a site's (zone None) or, once zones exist, one zone's."""

    site: str
    site_name: str
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class Discovery:
    topic: str
    config: dict[str, Any]

    def payload(self) -> bytes:
        return json.dumps(self.config, sort_keys=True, separators=(",", ":")).encode()


def node(site: str, device: str | None = None) -> str:
    """The HA device's identifier and discovery node id: jaga_<site>[_<device>]."""
    return f"jaga_{site}" if device is None else f"jaga_{site}_{device}"


def unit_entities(prefix: str, unit: Unit, collector: str, _: Translate) -> list[Discovery]:
    """Every entity of a unit: its inputs, connectivity, problem, health figures, picture."""
    n = node(unit.site, unit.device)
    state = topics.unit_state(unit.site, unit.device)
    device = {
        "identifiers": [n],
        "name": unit.device,
        "manufacturer": MANUFACTURER,
        "model": _(N_("Jaga unit")),
        "via_device": node(unit.site),
    }
    collector_only = [{"topic": collector}]
    with_unit = [
        {"topic": collector},
        {"topic": _unit_status(unit), "value_template": "{{ value_json.state }}"},
    ]

    def entity(
        component: str, key: str, name: str, availability: list[dict[str, str]], **extra: Any
    ) -> Discovery:
        config: dict[str, Any] = {
            "name": name,
            "unique_id": f"{n}_{key}",
            "object_id": f"{n}_{key}",
            "device": device,
            "availability": availability,
            "availability_mode": "all",
            "qos": STATE_QOS,
            "origin": {"name": MANUFACTURER},
            **extra,
        }
        return Discovery(topics.discovery(prefix, component, n, key), config)

    out: list[Discovery] = []
    for sensor, kind in unit.sensors:
        if kind not in SENSOR_CLASSES:
            continue
        out.append(
            entity(
                "binary_sensor",
                sensor,
                sensor,
                with_unit,
                device_class=SENSOR_CLASSES[kind],
                state_topic=state,
                value_template=f"{{{{ value_json.sensors[{json.dumps(sensor)}] }}}}",
            )
        )
    out.append(
        entity(
            "binary_sensor",
            "connectivity",
            _(N_("Connected")),
            collector_only,
            device_class="connectivity",
            entity_category="diagnostic",
            state_topic=state,
            value_template="{{ value_json.online }}",
        )
    )
    out.append(
        entity(
            "binary_sensor",
            "problem",
            _(N_("Problem")),
            with_unit,
            device_class="problem",
            state_topic=state,
            value_template="{{ value_json.problem }}",
            json_attributes_topic=state,
            json_attributes_template="{{ {'problems': value_json.problems} | to_json }}",
        )
    )
    figures = [
        ("outbox_depth", _(N_("Events waiting to send")), {"unit_of_measurement": "events"}),
        ("disk_free_mb", _(N_("Disk free")), {"device_class": "data_size",
                                               "unit_of_measurement": "MB"}),
        ("cpu_temp_c", _(N_("CPU temperature")), {"device_class": "temperature",
                                                   "unit_of_measurement": "°C"}),
        ("cert_days_left", _(N_("Certificate days left")), {"device_class": "duration",
                                                            "unit_of_measurement": "d"}),
    ]  # fmt: skip
    for key, name, extra in figures:
        out.append(
            entity(
                "sensor",
                key,
                name,
                with_unit,
                state_topic=state,
                value_template=f"{{{{ value_json.{key} }}}}",
                state_class="measurement",
                entity_category="diagnostic",
                **extra,
            )
        )
    if unit.camera:
        out.append(
            entity(
                "image",
                "evidence",
                _(N_("Latest evidence picture")),
                collector_only,
                image_topic=topics.unit_image(unit.site, unit.device),
                content_type="image/jpeg",
            )
        )
    return out


def panel_entity(prefix: str, panel: Panel, collector: str, _: Translate) -> Discovery:
    """The site's (or zone's) alarm panel: a code typed in HA, checked by the collector."""
    n = node(panel.site)
    key = "panel" if panel.zone is None else f"panel_{panel.zone}"
    zone = json.dumps(panel.zone)
    config: dict[str, Any] = {
        "name": _(N_("Alarm")) if panel.zone is None else panel.zone,
        "unique_id": f"{n}_{key}",
        "object_id": f"{n}_{key}",
        "device": {
            "identifiers": [n],
            "name": panel.site_name,
            "manufacturer": MANUFACTURER,
            "model": _(N_("Jaga site")),
        },
        "availability": [{"topic": collector}],
        "state_topic": topics.panel_state(panel.site, panel.zone),
        "command_topic": topics.panel_command(panel.site),
        "command_template": PANEL_COMMAND_TEMPLATE.replace("ZONE", zone),
        "code": "REMOTE_CODE",
        "code_arm_required": True,
        "code_disarm_required": True,
        "supported_features": ["arm_away"],
        "qos": 1,
        "retain": False,
        "origin": {"name": MANUFACTURER},
    }
    return Discovery(topics.discovery(prefix, "alarm_control_panel", n, key), config)


def _unit_status(unit: Unit) -> str:
    from protocol.topics import DeviceTopics

    return DeviceTopics(unit.site, unit.device).status
