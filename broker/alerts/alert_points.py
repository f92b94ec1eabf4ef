"""InfluxDB points of the alert engine, as plain data the collector turns into Points.

  alert [site, device, sensor, rule, severity, state]   one point per change, at its time:
      id, change (raised|repeated|acknowledged|cleared|resolved), status (= state), open (1/0),
      latched, count, title, detail, by, raised_ns, acked_ns, closed_ns (0 = not yet)
  arming [site, zone, state, how]                        one point per arming change:
      by, from, reason, armed (1 while armed or pending, else 0), with_by (two-person)
  bypass [site, zone, device, sensor]                    one point as a bypass starts or ends:
      by, reason, how, active (1/0), until_ns
  arming_request [site, zone, kind]                      two-person requests (and their end):
      by, reason, until_ns

Grafana: a table of open alerts is `SELECT last("status"), last("id"), last("count"),
last("title"), last("open") FROM "alert" WHERE $timeFilter GROUP BY "site", "device",
"sensor", "rule"` filtered on open = 1 (one key has at most one open alert); annotations are
`SELECT "title", "id" FROM "alert" WHERE "change" = 'raised' AND $timeFilter`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from broker.alerts.lifecycle import Change, ChangeKind
from protocol.alerting import ArmingAudit, AuditKind

FieldValue = bool | int | float | str


class InfluxPoint(BaseModel):
    """measurement, tags, fields and time in ns: everything a line of line protocol holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int

    def to_point(self) -> Any:
        """An influxdb_client Point (typed Any: the client ships no type hints)."""
        from influxdb_client import Point, WritePrecision

        p = Point(self.measurement)
        for name, tag in self.tags.items():
            p = p.tag(name, tag)
        for name, value in self.fields.items():
            p = p.field(name, value)
        return p.time(self.time_ns, WritePrecision.NS)


def alert_point(change: Change) -> InfluxPoint:
    a = change.alert
    at = {
        ChangeKind.RAISED: a.raised_at,
        ChangeKind.REPEATED: a.last_seen,
        ChangeKind.ACKNOWLEDGED: a.acked_at,
        ChangeKind.CLEARED: a.closed_at,
        ChangeKind.RESOLVED: a.closed_at,
    }[change.kind]
    by = {ChangeKind.ACKNOWLEDGED: a.acked_by, ChangeKind.RESOLVED: a.closed_by}.get(change.kind)
    return InfluxPoint(
        measurement="alert",
        tags={
            "site": a.site,
            "device": a.device,
            "sensor": a.sensor or "-",
            "rule": a.rule,
            "severity": a.severity.value,
            "state": a.state.value,
        },
        fields={
            "id": a.id,
            "change": change.kind.value,
            "status": a.state.value,
            "open": int(a.state.is_open),
            "latched": a.latched,
            "count": a.count,
            "title": a.title,
            "detail": a.detail,
            "by": by or "",
            "raised_ns": a.raised_at,
            "acked_ns": a.acked_at or 0,
            "closed_ns": a.closed_at or 0,
        },
        time_ns=at if at is not None else a.last_seen,
    )


def arming_point(audit: ArmingAudit) -> InfluxPoint:
    """The audit record as a point: an arming change, a bypass, or a two-person request."""
    if audit.kind in (AuditKind.BYPASS, AuditKind.BYPASS_END):
        return InfluxPoint(
            measurement="bypass",
            tags={
                "site": audit.site,
                "zone": audit.zone,
                "device": audit.device or "-",
                "sensor": audit.sensor or "-",
            },
            fields={
                "by": audit.by,
                "reason": audit.reason,
                "how": audit.how.value,
                "active": int(audit.kind is AuditKind.BYPASS),
                "until_ns": audit.until or 0,
            },
            time_ns=audit.at,
        )
    if audit.kind is not AuditKind.ARMING:
        return InfluxPoint(
            measurement="arming_request",
            tags={"site": audit.site, "zone": audit.zone, "kind": audit.kind.value},
            fields={"by": audit.by, "reason": audit.reason, "until_ns": audit.until or 0},
            time_ns=audit.at,
        )
    return InfluxPoint(
        measurement="arming",
        tags={
            "site": audit.site,
            "zone": audit.zone,
            "state": audit.to_state.value,
            "how": audit.how.value,
        },
        fields={
            "by": audit.by,
            "from": audit.from_state.value if audit.from_state is not None else "",
            "reason": audit.reason,
            "armed": int(audit.to_state.guarding),
            "with_by": audit.with_by or "",
        },
        time_ns=audit.at,
    )
