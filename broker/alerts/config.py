"""The `[alerts]` part of collector.toml: schedules, delays, doors, posts, thresholds, routes.

Every field has a default a district warehouse can start with; mistakes are errors that name
the field and the fix (formatted by kernel.config.describe_errors like the rest).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from broker.i18n import DEFAULT as DEFAULT_LANGUAGE
from broker.i18n import Language
from kernel.config import Strict
from protocol.alerting import DEFAULT_ZONE, Severity, ZoneName
from protocol.ids import DeviceId, InvalidIdentifier, SensorName, SiteId, check_id

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


class Window(Strict):
    """Armed (or patrol required) from `start` on each of `days`, until `end`.

    An `end` at or before `start` runs into the next day (18:00-07:00); 00:00-24:00 is a whole
    day. Windows are merged, so "weeknights and all Sunday" is two windows.
    """

    days: Annotated[
        tuple[Weekday, ...], Field(min_length=1, description="days the window starts on")
    ]
    start: str = Field(description="HH:MM local time, 00:00-23:59")
    end: str = Field(description="HH:MM local time, 00:00-24:00; at or before start = next day")

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not CLOCK.fullmatch(value):
            raise ValueError(f"{value!r} is not a time of day: write HH:MM, e.g. 18:00 or 07:30")
        return value

    @field_validator("days")
    @classmethod
    def _unique_days(cls, value: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a day is listed twice")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == "24:00":
            raise ValueError("start 24:00 is the next day's 00:00: write 00:00 on the next day")
        if self.start == self.end:
            raise ValueError(
                f"start and end are both {self.start}: for a whole day write "
                'start = "00:00", end = "24:00"'
            )
        return self

    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes after the start day's midnight; end may pass 1440."""
        start = _minutes(self.start)
        end = _minutes(self.end)
        return start, end if end > start else end + 1440


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class DoorConfig(Strict):
    """A door that is not instant (an entry door) or has its own held-open limit."""

    device: DeviceId
    sensor: SensorName
    entry: bool = Field(
        default=False,
        description="opening it while armed starts the entry delay instead of alarming at once",
    )
    held_open_s: float | None = Field(
        default=None, gt=0, description="warn when open this long (default: the site's)"
    )


@functools.lru_cache(maxsize=65536)
def _unlisted_door(device: str, sensor: str) -> DoorConfig:
    """The settings of a door no site lists: made once per door, not for each of its events
    (a validated model per event was a tenth of the alert engine's time)."""
    return DoorConfig(device=device, sensor=sensor)


class PostConfig(Strict):
    """A guard post's check-in button and how often a patrol must press it."""

    device: DeviceId
    sensor: SensorName = Field(description="the patrol button's sensor name, e.g. patroli")
    every_min: float = Field(
        default=60, ge=0.5, le=24 * 60, description="a check-in at least this often"
    )
    grace_min: float = Field(default=5, ge=0, le=240, description="lateness tolerated")
    hours: list[Window] = Field(
        default_factory=list, description="when patrols are required; empty = around the clock"
    )


class ZoneConfig(Strict):
    """Doors and PIRs armed and disarmed together (`perimeter`, `ruang-surat-suara`)."""

    name: ZoneName = Field(description="lowercase letters, digits, '-', e.g. perimeter")
    members: Annotated[
        list[str],
        Field(
            min_length=1,
            description='its sensors: "device/sensor", or "device" for every sensor of a unit',
        ),
    ]
    two_person: bool = Field(
        default=False,
        description="disarmed only when two different operators ask within 60 s",
    )
    schedule: list[Window] | None = Field(
        default=None, description="when the zone arms itself; absent = the site's schedule"
    )

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[str]) -> list[str]:
        for member in value:
            try:
                for part in member.split("/", 1):
                    check_id(part, "member", allow_reserved=True)
            except InvalidIdentifier:
                raise ValueError(
                    f"member {member!r} is not a unit or a sensor: write "
                    '"gudang-01/pintu" (one sensor) or "gudang-01" (all its sensors)'
                ) from None
        return value

    def holds(self, device: str, sensor: str) -> int:
        """2: it names this sensor; 1: it names the whole unit; 0: neither."""
        if f"{device}/{sensor}" in self.members:
            return 2
        return 1 if device in self.members else 0


class PersonConfig(Strict):
    """PINs of one person who disarms (by login name or operator certificate name)."""

    pin_hash: str | None = Field(
        default=None,
        description="argon2 hash of their disarm PIN (`jaga-collector pin-hash`); "
        "when set, their disarms need it",
    )
    duress_pin_hash: str | None = Field(
        default=None,
        description="argon2 hash of their duress PIN: it disarms as usual and silently "
        "raises a duress alert to the routes marked duress = true; when set, their disarms "
        "need a code (with no pin_hash, the duress PIN is their only one)",
    )

    @model_validator(mode="after")
    def _argon2(self) -> PersonConfig:
        for name in ("pin_hash", "duress_pin_hash"):
            value = getattr(self, name)
            if value is not None and not value.startswith("$argon2"):
                raise ValueError(
                    f"{name} must be an argon2 hash (make one with "
                    "`jaga-collector pin-hash --name <name>`), never the PIN itself"
                )
        if self.pin_hash is not None and self.pin_hash == self.duress_pin_hash:
            raise ValueError("pin_hash and duress_pin_hash are the same hash")
        return self


class Thresholds(Strict):
    """Limits of the supervision and health rules."""

    offline_after_beats: int = Field(default=3, ge=2, le=20, description="missed heartbeats")
    heartbeat_s: int = Field(
        default=60, ge=1, le=3600, description="assumed interval until a heartbeat says"
    )
    will_grace_s: int = Field(
        default=3,
        ge=0,
        le=600,
        description="after a unit's last will, seconds it has to come back before it is offline",
    )
    held_open_s: float = Field(default=120.0, gt=0, description="door open this long: warning")
    camera_fault_s: int = Field(default=60, ge=0, description="camera fault not recovered in")
    gap_timeout_min: int = Field(default=10, ge=1, description="missing seq not delivered in")
    disk_low_mb: int = Field(default=500, ge=0)
    cpu_hot_c: float = Field(default=80.0, gt=0, le=150)
    cpu_hysteresis_c: float = Field(
        default=5.0, ge=0, le=30, description="cools this much to clear"
    )
    clock_grace_s: int = Field(
        default=300, ge=0, description="uptime allowed before an unsynchronised clock is reported"
    )
    cert_warn_days: int = Field(default=30, ge=1, le=365)


class SiteAlerts(Strict):
    """Arming and alert settings of one site."""

    timezone: str = Field(default="Asia/Jakarta", description="IANA name, e.g. Asia/Jakarta")
    schedule: list[Window] = Field(
        default_factory=list, description="when the site arms itself; empty = only by hand"
    )
    exit_delay_s: int = Field(default=60, ge=0, le=3600, description="time to leave after arming")
    entry_delay_s: int = Field(
        default=30, ge=0, le=3600, description="time to disarm after an entry door opens"
    )
    rearm_after_min: int | None = Field(
        default=None,
        ge=1,
        le=24 * 60,
        description="a manual disarm inside a scheduled armed period re-arms after this long",
    )
    doors: list[DoorConfig] = Field(default_factory=list)
    posts: list[PostConfig] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    zones: list[ZoneConfig] = Field(
        default_factory=list,
        description='zones armed on their own; sensors no zone lists are in zone "default"',
    )
    bypass_max_min: int = Field(
        default=12 * 60, ge=1, le=7 * 24 * 60, description="longest bypass an operator may set"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {value!r} is not known: use an IANA name such as Asia/Jakarta (WIB), "
                "Asia/Makassar (WITA) or Asia/Jayapura (WIT)"
            ) from None
        return value

    @model_validator(mode="after")
    def _unique(self) -> SiteAlerts:
        for what, items in (("doors", self.doors), ("posts", self.posts)):
            seen: set[tuple[str, str]] = set()
            for item in items:
                key = (item.device, item.sensor)
                if key in seen:
                    raise ValueError(f"{what}: {item.device}/{item.sensor} is listed twice")
                seen.add(key)
        names = [z.name for z in self.zones]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"zones: {name} is listed twice")
        if DEFAULT_ZONE in names:
            raise ValueError(
                f'zones: "{DEFAULT_ZONE}" is the zone of every sensor no zone lists; '
                "give yours another name"
            )
        owner: dict[str, str] = {}
        for zone in self.zones:
            for member in zone.members:
                if member in owner and owner[member] != zone.name:
                    raise ValueError(
                        f"zones: {member} is in both {owner[member]} and {zone.name}; "
                        "a sensor belongs to one zone"
                    )
                owner[member] = zone.name
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def door(self, device: str, sensor: str) -> DoorConfig:
        for door in self.doors:
            if (door.device, door.sensor) == (device, sensor):
                return door
        return _unlisted_door(device, sensor)

    def held_open_s(self, device: str, sensor: str) -> float:
        own = self.door(device, sensor).held_open_s
        return own if own is not None else self.thresholds.held_open_s

    def post(self, device: str, sensor: str) -> PostConfig | None:
        for post in self.posts:
            if (post.device, post.sensor) == (device, sensor):
                return post
        return None

    def zone_names(self) -> list[str]:
        """Every zone of the site: "default" first, then the configured ones in order."""
        return [DEFAULT_ZONE] + [z.name for z in self.zones if z.name != DEFAULT_ZONE]

    def zone_config(self, name: str) -> ZoneConfig | None:
        return next((z for z in self.zones if z.name == name), None)

    def zone_of(self, device: str, sensor: str) -> str:
        """The zone a sensor belongs to: a zone naming the sensor wins over one naming its unit."""
        best, found = 0, DEFAULT_ZONE
        for zone in self.zones:
            held = zone.holds(device, sensor)
            if held > best:
                best, found = held, zone.name
        return found

    def zone_schedule(self, name: str) -> list[Window]:
        own = self.zone_config(name)
        return own.schedule if own is not None and own.schedule is not None else self.schedule


class Route(Strict):
    """Where notifications of some sites and severities go (apprise URLs)."""

    sites: list[SiteId] = Field(default_factory=list, description="empty = every site")
    severities: list[Severity] = Field(
        default_factory=lambda: [Severity.CRITICAL, Severity.WARNING]
    )
    urls: Annotated[list[str], Field(min_length=1, description="apprise URLs")]
    language: Language = Field(
        default=DEFAULT_LANGUAGE,
        description='what its messages are written in: "id" (Bahasa Indonesia) or "en" (English)',
    )
    duress: bool = Field(
        default=False,
        description="also gets duress alerts (a disarm with a duress PIN); routes without it "
        "never do",
    )

    @field_validator("urls")
    @classmethod
    def _apprise_knows(cls, value: list[str]) -> list[str]:
        import apprise

        for i, url in enumerate(value):
            if not apprise.Apprise().add(url):
                scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
                raise ValueError(
                    f"urls[{i}] (scheme {scheme!r}) is not a URL apprise can send to: see "
                    "https://github.com/caronc/apprise/wiki for the form, e.g. "
                    "tgram://bottoken/chatid or json://host:port/path"
                )
        return value


class NotifyConfig(Strict):
    """Notification routes, cooldown and delivery retries."""

    routes: list[Route] = Field(default_factory=list)
    cooldown_s: int = Field(
        default=300, ge=0, description="one alert key notifies at most once per cooldown"
    )
    notify_clears: bool = Field(default=True, description="say when a notified alert closes")
    queue_max: int = Field(
        default=1000, ge=1, description="in-memory queue per URL (rest waits on disk)"
    )
    attempts: int = Field(default=8, ge=1, le=100, description="tries per delivery")
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)


class AlertsConfig(Strict):
    """Everything the alert engine needs to know."""

    sites: dict[SiteId, SiteAlerts] = Field(default_factory=dict)
    default_site: SiteAlerts = Field(
        default_factory=SiteAlerts, description="for sites not listed under sites"
    )
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    resume_grace_s: int = Field(
        default=30,
        ge=0,
        description="after a restart, silence is judged only from the restart plus this, "
        "and while units keep coming back, from the last one's return plus this",
    )
    resume_max_s: int = Field(
        default=600,
        ge=0,
        description="the longest a reconnection storm holds judgement back after a restart",
    )
    keep_days: int = Field(default=30, ge=1, description="closed alerts and audit kept locally")
    people: dict[str, PersonConfig] = Field(
        default_factory=dict,
        description="disarm and duress PINs by login name (web) or operator certificate name",
    )
    registry_dir: Path | None = Field(
        default=None,
        description="the provisioning registry: the site CA and which operator may command "
        "which site (filled in from collector.toml's registry_dir; no need to set it here)",
    )

    def site(self, site: str) -> SiteAlerts:
        return self.sites.get(site, self.default_site)
