"""The rule state the alert engine keeps between calls, and the one table that says what each
kind of it is: its model, its empty state, the inputs that move it, and whether ticks do.

`on_event`, `tick` and loading from the store all read `WATCHED`; a new kind of watch is one
entry there and one adapter from the engine's inputs to its rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from broker.alerts import sensor_rules, unit_rules
from broker.alerts.arming import Tick
from broker.alerts.config import AlertsConfig, SiteAlerts
from broker.alerts.notifications import NoteWatch
from broker.alerts.rules import AlertKey, Rule, Signal
from broker.alerts.sensor_rules import CameraWatch, DoorWatch, PostWatch
from broker.alerts.unit_rules import GapChange, GapWatch, HealthWatch, UnitWatch
from protocol.models import Event, Heartbeat, Kind, Status

W = TypeVar("W", bound=BaseModel)
In = TypeVar("In")


class WatchKind(StrEnum):
    DOOR = "door"
    CAMERA = "camera"
    POST = "post"
    UNIT = "unit"
    GAP = "gap"
    HEALTH = "health"
    NOTE = "note"


_PER_SENSOR = frozenset({WatchKind.DOOR, WatchKind.CAMERA, WatchKind.POST})


@dataclass(frozen=True, slots=True)
class WatchKey:
    """Whose state a watch is: a unit, or one of its sensors; a note watch's is an alert key.

    Kept as text in SQLite — `door:<site>:<device>:<sensor>`, `unit:<site>:<device>`,
    `note:<alert key>` — and `text` and `parse` are the only code that knows that form.
    """

    kind: WatchKind
    site: str
    device: str
    sensor: str | None = None
    rule: Rule | None = None  # note watches only: the rule of their alert key

    @classmethod
    def note(cls, alert: AlertKey) -> WatchKey:
        """Where the notification policy keeps what it told people about one alert key."""
        return cls(WatchKind.NOTE, alert.site, alert.device, alert.sensor, alert.rule)

    def alert(self, rule: Rule, sensor: str | None = None) -> AlertKey:
        """The key of the alert this watch raises under `rule` (its own sensor unless given)."""
        return AlertKey(rule, self.site, self.device, sensor or self.sensor)

    @property
    def text(self) -> str:
        if self.kind is WatchKind.NOTE:
            assert self.rule is not None, "a note watch's key has its alert's rule"
            return f"note:{self.alert(self.rule).text}"
        tail = f":{self.sensor}" if self.kind in _PER_SENSOR else ""
        return f"{self.kind.value}:{self.site}:{self.device}{tail}"

    @classmethod
    def parse(cls, text: str) -> WatchKey:
        """The key kept as `text`; ValueError if it is none."""
        kind, _, rest = text.partition(":")
        what = WatchKind(kind)
        if what is WatchKind.NOTE:
            return cls.note(AlertKey.parse(rest))
        if what in _PER_SENSOR:
            site, device, sensor = rest.split(":")
            return cls(what, site, device, sensor)
        site, device = rest.split(":")
        return cls(what, site, device)


class Moment(Protocol):
    """What a watch's step needs besides its state and input (a transaction has it)."""

    @property
    def now(self) -> int: ...
    @property
    def watching_since(self) -> int: ...
    def site(self, site: str) -> SiteAlerts: ...


Step = Callable[[Moment, WatchKey, W, In], "tuple[W, list[Signal]] | None"]
"""A rule adapted to the engine: (moment, key, state, input) -> (state, signals); None when
the input is not for this watch (a patrol button that is no configured post)."""


def _always(before: BaseModel | None, after: BaseModel) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Watched(Generic[W, In]):
    """One kind of watch and how the engine's inputs reach its rule."""

    kind: WatchKind
    model: type[W]
    empty: Callable[[SiteAlerts], W]
    step: Step[W, In] | None = None  # None: moved by other code (notes: by alert changes)
    events: Kind | None = None  # the kind of event on_event hands it
    ticks: bool = False  # a tick moves every watch of this kind there is
    configured: Callable[[AlertsConfig], list[WatchKey]] | None = None  # ...or those named
    persist: Callable[[W | None, W], bool] = _always  # written to the store, or memory only


def _held_open(
    m: Moment, key: WatchKey, w: DoorWatch, item: Event | Tick
) -> tuple[DoorWatch, list[Signal]]:
    assert key.sensor is not None
    limit = m.site(key.site).held_open_s(key.device, key.sensor)
    return sensor_rules.door_held_open(w, key.alert(Rule.DOOR_HELD_OPEN), limit, item, m.now)


def _camera(
    m: Moment, key: WatchKey, w: CameraWatch, item: Event | Tick
) -> tuple[CameraWatch, list[Signal]]:
    limit = m.site(key.site).thresholds.camera_fault_s
    return sensor_rules.camera_fault(w, key.alert(Rule.CAMERA_FAULT), limit, item, m.now)


def _patrol(
    m: Moment, key: WatchKey, w: PostWatch, item: Event | Tick
) -> tuple[PostWatch, list[Signal]] | None:
    assert key.sensor is not None
    site = m.site(key.site)
    post = site.post(key.device, key.sensor)
    if post is None:
        return None
    k = key.alert(Rule.PATROL_MISSED)
    return sensor_rules.patrol_missed(w, k, post, site.zone, item, m.now, m.watching_since)


def _offline(
    m: Moment, key: WatchKey, w: UnitWatch, item: Heartbeat | Status | Tick
) -> tuple[UnitWatch, list[Signal]]:
    limits = m.site(key.site).thresholds
    k = key.alert(Rule.UNIT_OFFLINE)
    return unit_rules.unit_offline(w, k, limits, item, m.now, m.watching_since)


def _offline_changed(before: UnitWatch | None, after: UnitWatch) -> bool:
    """Heartbeat arrival times stay in memory: after a restart silence counts from then.
    A will is kept: its grace runs on across a restart (from the restart at least)."""
    return before is None or (before.offline, before.interval_s, before.will_at) != (
        after.offline,
        after.interval_s,
        after.will_at,
    )


def _gap(
    m: Moment, key: WatchKey, w: GapWatch, item: GapChange | Tick
) -> tuple[GapWatch, list[Signal]]:
    limits = m.site(key.site).thresholds
    return unit_rules.seq_gap(w, key.alert(Rule.INTEGRITY, "seq-gap"), limits, item, m.now)


def _health(
    m: Moment, key: WatchKey, w: HealthWatch, hb: Heartbeat
) -> tuple[HealthWatch, list[Signal]]:
    limits = m.site(key.site).thresholds
    return unit_rules.unit_health(w, key.site, key.device, limits, hb, m.now)


def _posts(config: AlertsConfig) -> list[WatchKey]:
    """Every patrol post the config names: a post never pressed is missed too."""
    return [
        WatchKey(WatchKind.POST, site, post.device, post.sensor)
        for site, alerts in config.sites.items()
        for post in alerts.posts
    ]


DOOR = Watched(
    WatchKind.DOOR, DoorWatch, lambda _: DoorWatch(), _held_open, events=Kind.DOOR, ticks=True
)
CAMERA = Watched(
    WatchKind.CAMERA, CameraWatch, lambda _: CameraWatch(), _camera, events=Kind.CAMERA, ticks=True
)
POST = Watched(
    WatchKind.POST, PostWatch, lambda _: PostWatch(), _patrol, events=Kind.PATROL, configured=_posts
)
UNIT = Watched(
    WatchKind.UNIT,
    UnitWatch,
    lambda site: UnitWatch(interval_s=site.thresholds.heartbeat_s),
    _offline,
    ticks=True,
    persist=_offline_changed,
)
GAP = Watched(WatchKind.GAP, GapWatch, lambda _: GapWatch(), _gap, ticks=True)
HEALTH = Watched(WatchKind.HEALTH, HealthWatch, lambda _: HealthWatch(), _health)
NOTE: Watched[NoteWatch, Any] = Watched(WatchKind.NOTE, NoteWatch, lambda _: NoteWatch())

WATCHED: dict[WatchKind, Watched[Any, Any]] = {
    w.kind: w for w in (DOOR, CAMERA, POST, UNIT, GAP, HEALTH, NOTE)
}
"""Every kind of watch, by kind: loading reads `model`, tick `ticks` and `configured`."""

FED_BY: dict[Kind, list[Watched[Any, Event | Tick]]] = {
    kind: [w for w in WATCHED.values() if w.events is kind] for kind in Kind
}
"""The watches each kind of event moves, for on_event (after the rules that keep no state)."""
