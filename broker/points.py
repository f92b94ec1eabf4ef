"""InfluxDB points for what the collector stores: measurements, tags and fields in one place.

Measurements (tags in brackets):
  event [site, device, sensor, kind]     at the unit's timestamp: state, active, seq, id,
                                          boot_id, mono_ns, clock_synced, prev, hash, raw
  heartbeat [site, device]               at receipt: the unit's health figures
  status [site, device]                  at receipt: online (1/0), state, boot_id, version
  integrity [site, device, reason]       at receipt: what failed verification, and why
  deadletter [reason]                    at receipt: topic and detail of what was refused
  gap [site, device, change]             at receipt: first, last of a seq gap opened/closed
`raw` keeps the event exactly as signed, so `audit verify` can re-check it from InfluxDB alone.
"""

from __future__ import annotations

import time

from influxdb_client import Point, WritePrecision

from broker.ingest import Rejected
from protocol.models import Event, Heartbeat, Status
from protocol.snapshot import Assembled

ACTIVE_STATES = frozenset(
    {"open", "held-open", "motion", "tampered", "checkin", "fault", "covered"}
)


_TAG_ESCAPES = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_TAG_SPECIAL = frozenset(",= \n\t\r")


def _tag(key: str, value: str) -> str:
    """`,key=value` as influxdb-client writes a tag (same escaping; an empty value: no tag).

    `key` is one of ours (plain); the value is escaped like `Point.tag`: , = space and the
    three control characters get a backslash, and a value ending in a backslash gets a space
    so the backslash cannot escape the separator that follows.
    """
    if not _TAG_SPECIAL.isdisjoint(value):
        value = value.translate(_TAG_ESCAPES)
    elif not value:
        return ""
    if value.endswith("\\"):
        value += " "
    return f",{key}={value}"


def _text(value: str) -> str:
    """A string field's value as influxdb-client writes it: backslash and quote escaped."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if '"' in value:
        value = value.replace('"', '\\"')
    return value


def event_line(event: Event, digest: str, raw: bytes) -> str:
    """The line protocol of `event_point(event, digest, raw)`, built straight from the event.

    Byte for byte what influxdb-client makes of that Point (tags and fields in sorted order,
    the same escaping; tests/unit/test_broker_points.py checks it over hostile values), at a
    tenth of the cost: one event per message makes this the collector's hottest write path.
    """
    snaps = event.snapshot_sha256
    return (
        f"event{_tag('device', event.device)}{_tag('kind', event.kind.value)}"
        f"{_tag('sensor', event.sensor)}{_tag('site', event.site)} "
        f"active={1 if event.state in ACTIVE_STATES else 0}i,"
        f'boot_id="{_text(event.boot_id)}",'
        f"clock_synced={'true' if event.clock_synced else 'false'},"
        f'hash="{_text(digest)}",id="{_text(event.id)}",mono_ns={event.mono_ns}i,'
        f'prev="{_text(event.prev)}",raw="{_text(raw.decode())}",seq={event.seq}i,'
        + (f'snapshots="{_text(",".join(snaps))}",' if snaps else "")
        + f'state="{_text(event.state)}" {event.ts}'
    )


def event_point(event: Event, digest: str, raw: bytes) -> Point:
    """The event as an influxdb-client Point: the reference `event_line` is checked against."""
    p = (
        Point("event")
        .tag("site", event.site)
        .tag("device", event.device)
        .tag("sensor", event.sensor)
        .tag("kind", event.kind.value)
        .field("state", event.state)
        .field("active", 1 if event.state in ACTIVE_STATES else 0)
        .field("seq", event.seq)
        .field("id", event.id)
        .field("boot_id", event.boot_id)
        .field("mono_ns", event.mono_ns)
        .field("clock_synced", event.clock_synced)
        .field("prev", event.prev)
        .field("hash", digest)
        .field("raw", raw.decode())
        .time(event.ts, WritePrecision.NS)
    )
    if event.snapshot_sha256:
        p = p.field("snapshots", ",".join(event.snapshot_sha256))
    return p


def heartbeat_point(hb: Heartbeat, received_ns: int) -> Point:
    p = (
        Point("heartbeat")
        .tag("site", hb.site)
        .tag("device", hb.device)
        .field("unit_ts", hb.ts)
        .field("uptime_s", hb.uptime_s)
        .field("interval_s", hb.interval_s)
        .field("outbox_depth", hb.outbox_depth)
        .field("clock_synced", hb.clock_synced)
        .field("last_seq", hb.last_seq)
        .field("chain_head", hb.chain_head)
        .field("disk_full", hb.disk_full)
        .field("boot_id", hb.boot_id)
        .time(received_ns, WritePrecision.NS)
    )
    optional = {
        "cpu_temp_c": hb.cpu_temp_c,
        "disk_free_mb": hb.disk_free_mb,
        "cert_days_left": hb.cert_days_left,
        "undervoltage": hb.undervoltage,
        "connected_since_s": hb.connected_since_s,
    }
    for name, value in optional.items():
        if value is not None:
            p = p.field(name, value)
    return p


def status_point(status: Status, received_ns: int) -> Point:
    p = (
        Point("status")
        .tag("site", status.site)
        .tag("device", status.device)
        .field("state", status.state)
        .field("online", 1 if status.state == "online" else 0)
        .field("boot_id", status.boot_id)
        .time(received_ns, WritePrecision.NS)
    )
    if status.version:
        p = p.field("version", status.version)
    if status.cert_not_after is not None:
        p = p.field("cert_not_after", status.cert_not_after)
    return p


def integrity_point(rejected: Rejected, received_ns: int) -> Point:
    return (
        Point("integrity")
        .tag("site", rejected.site or "unknown")
        .tag("device", rejected.device or "unknown")
        .tag("reason", rejected.reason.value)
        .field("detail", rejected.detail[:500])
        .field("seq", rejected.seq or 0)
        .field("event_id", rejected.event_id or "")
        .field("topic", rejected.topic[:200])
        .time(received_ns, WritePrecision.NS)
    )


def deadletter_point(rejected: Rejected, received_ns: int) -> Point:
    return (
        Point("deadletter")
        .tag("reason", rejected.reason.value)
        .field("topic", rejected.topic[:200])
        .field("detail", rejected.detail[:500])
        .field("bytes", len(rejected.payload))
        .time(received_ns, WritePrecision.NS)
    )


def rejection_points(rejected: Rejected, received_ns: int) -> list[Point]:
    """What a rejected message leaves in InfluxDB: its dead letter, and an integrity point when
    it is an integrity violation."""
    out = [deadletter_point(rejected, received_ns)]
    if rejected.is_integrity:
        out.append(integrity_point(rejected, received_ns))
    return out


def witness_report_point(
    site: str,
    device: str,
    reason: str,
    detail: str,
    seq: int,
    witness: str,
    body: str,
    sig: str,
    received_ns: int,
) -> Point:
    """A witness's signed fork or rewind report, kept as an integrity point with its proof."""
    return (
        Point("integrity")
        .tag("site", site)
        .tag("device", device)
        .tag("reason", reason)
        .field("detail", detail)
        .field("seq", seq)
        .field("witness", witness)
        .field("body", body)
        .field("sig", sig)
        .time(received_ns, WritePrecision.NS)
    )


def gap_point(site: str, device: str, first: int, last: int, change: str, now_ns: int) -> Point:
    return (
        Point("gap")
        .tag("site", site)
        .tag("device", device)
        .tag("change", change)
        .field("first", first)
        .field("last", last)
        .time(now_ns, WritePrecision.NS)
    )


def collector_point(client_id: str, figures: dict[str, int]) -> Point:
    """The collector's own figures, so a dashboard shows its spool and its throughput."""
    p = Point("collector").tag("collector", client_id)
    for name, value in figures.items():
        p = p.field(name, value)
    return p.time(time.time_ns(), WritePrecision.NS)


def picture_point(
    site: str, device: str, picture: Assembled, vouched: bool | None, now_ns: int
) -> Point:
    """One evidence picture arrived whole; `vouched` None means its event is not in yet."""
    return (
        Point("picture")
        .tag("site", site)
        .tag("device", device)
        .tag("role", picture.role)
        .field("event_id", picture.event)
        .field("sha256", picture.sha256)
        .field("bytes", len(picture.data))
        .field("vouched", -1 if vouched is None else int(vouched))
        .time(now_ns, WritePrecision.NS)
    )
