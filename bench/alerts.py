"""The alert side of the benchmarks, ready for the moment the collector publishes alerts.

The alert engine (broker/alerts/) is being built in parallel. Once `CollectorConfig` has an
`alerts` table, bench sites are armed around the clock through it (no exit or entry delay), and
an operator's subscription on jaga/v1/+/alert/# times each alert's arrival; until then the
alert figures are recorded as null with a note saying why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from protocol import topics

ALERT_FILTER = topics.alert_filter()
WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
NOT_YET = (
    "alerts: the collector does not publish alerts yet (CollectorConfig has no `alerts` "
    "table, nothing arrived on jaga/v1/+/alert/#); recorded as null, measured as soon as it does"
)


def alerts_supported() -> bool:
    """Does this collector take an [alerts] config (and so publish alerts)?"""
    from broker.config import CollectorConfig

    return "alerts" in CollectorConfig.model_fields


def alerts_section(site: str, *, heartbeat_s: int) -> dict[str, Any] | None:
    """[alerts] arming `site` all day, every day, with no delays; None without an engine.

    No resume grace: the benches start a collector seconds before they measure, and judge a
    collector that has been running (the grace only spares units at a collector's restart)."""
    if not alerts_supported():
        return None
    return {
        "resume_grace_s": 0,
        "sites": {
            site: {
                "schedule": [{"days": WEEK, "start": "00:00", "end": "24:00"}],
                "exit_delay_s": 0,
                "entry_delay_s": 0,
                "thresholds": {"heartbeat_s": heartbeat_s},
            }
        },
    }


@dataclass(frozen=True, slots=True)
class AlertSeen:
    """What the benchmarks need of a retained alert (protocol.alerting.Alert)."""

    rule: str
    device: str
    sensor: str | None
    state: str
    event_id: str | None


def parse_alert(payload: bytes) -> AlertSeen | None:
    """The alert in a message on jaga/v1/<site>/alert/<id>; None for a clear (empty) message."""
    if not payload:
        return None
    try:
        data = json.loads(payload)
        return AlertSeen(
            str(data["rule"]),
            str(data["device"]),
            data.get("sensor"),
            str(data.get("state", "")),
            data.get("event_id"),
        )
    except (ValueError, KeyError, TypeError):
        return None
