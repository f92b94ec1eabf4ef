"""Alerts: arming, rules, alert lifecycle, durable store and notifications — pure of MQTT/Influx.

The collector feeds `AlertEngine` what it accepts (events, heartbeats, statuses, integrity
failures, gaps) and a tick; each call returns `Changes` to publish, write and send.
"""

from broker.alerts.config import AlertsConfig, NotifyConfig, SiteAlerts
from broker.alerts.delivery import Notifier
from broker.alerts.engine import AlertEngine, Changes, Message
from broker.alerts.lifecycle import AlertClosed, AlertError, UnknownAlert
from broker.alerts.store import AlertStore, read_alerts
from protocol.alerting import Alert, ArmingAudit, ArmingState, OperatorCommand

__all__ = [
    "Alert",
    "AlertClosed",
    "AlertEngine",
    "AlertError",
    "AlertStore",
    "AlertsConfig",
    "ArmingAudit",
    "ArmingState",
    "Changes",
    "Message",
    "Notifier",
    "NotifyConfig",
    "OperatorCommand",
    "SiteAlerts",
    "UnknownAlert",
    "read_alerts",
]
