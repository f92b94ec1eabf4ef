"""Builders shared by the alert tests: Jakarta times, events, heartbeats, statuses, configs."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

from broker.alerts.config import Window
from protocol.models import Event, Heartbeat, Kind, Status

WIB = ZoneInfo("Asia/Jakarta")
S = 10**9
SITE = "bangka-barat"
GENESIS = "0" * 64
_seq = itertools.count(1)

# Armed 18:00-07:00 on weekday nights and all Sunday: the example of the issue.
NIGHTS_AND_SUNDAY = [
    Window(days=["mon", "tue", "wed", "thu", "fri"], start="18:00", end="07:00"),
    Window(days=["sun"], start="00:00", end="24:00"),
]


def jkt(day: str, clock: str = "00:00:00") -> int:
    """ns of a wall-clock moment in Jakarta; day is a date in the week of 2024-05-06 (Mon)."""
    d = dt.date.fromisoformat(day)
    parts = [int(p) for p in clock.split(":")]
    h, m, s = [*parts, 0, 0][:3]
    return int(dt.datetime(d.year, d.month, d.day, h, m, s, tzinfo=WIB).timestamp()) * S


MON, TUE, WED, FRI, SAT, SUN = (
    "2024-05-06",
    "2024-05-07",
    "2024-05-08",
    "2024-05-10",
    "2024-05-11",
    "2024-05-12",
)
NEXT_MON = "2024-05-13"


def event(
    kind: Kind,
    state: str,
    ts: int,
    *,
    device: str = "gudang-01",
    sensor: str = "pintu-utama",
    site: str = SITE,
    synced: bool = True,
    seq: int | None = None,
) -> Event:
    n = next(_seq) if seq is None else seq
    return Event(
        id=f"e{n}",
        site=site,
        device=device,
        sensor=sensor,
        kind=kind,
        state=state,
        seq=n,
        boot_id="boot-1",
        ts=ts,
        mono_ns=n * S,
        clock_synced=synced,
        prev=GENESIS,
        sig="A" * 86,
    )


def door(state: str, ts: int, sensor: str = "pintu-utama", **kw: object) -> Event:
    return event(Kind.DOOR, state, ts, sensor=sensor, **kw)  # type: ignore[arg-type]


def heartbeat(
    ts: int,
    *,
    device: str = "gudang-01",
    site: str = SITE,
    interval_s: int = 10,
    **fields: object,
) -> Heartbeat:
    values: dict[str, object] = {
        "site": site,
        "device": device,
        "ts": ts,
        "boot_id": "boot-1",
        "uptime_s": 3600,
        "interval_s": interval_s,
        "outbox_depth": 0,
        "clock_synced": True,
        "last_seq": 1,
        "chain_head": GENESIS,
    }
    values.update(fields)
    return Heartbeat.model_validate(values)


def status(state: str, *, device: str = "gudang-01", site: str = SITE) -> Status:
    return Status.model_validate(
        {"site": site, "device": device, "state": state, "boot_id": "boot-1"}
    )
