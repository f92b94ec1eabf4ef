"""Rules over the units themselves: offline, health, integrity failures, missing events and
pictures the collector could not keep (the vocabulary they speak is in rules.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from broker.alerts.arming import Tick
from broker.alerts.config import Thresholds
from broker.alerts.rules import AlertKey, Clear, Raise, Rule, Signal, Watch, duration
from kernel.units import MINUTE, S
from protocol.models import Heartbeat, Status

# unit offline --------------------------------------------------------------------------------


class UnitWatch(Watch):
    interval_s: int
    last_beat: int | None = None
    offline: bool = False
    will_at: int | None = None  # a last will not yet followed by a heartbeat or a birth


WILL_GRACE_BEATS = 1
"""Heartbeat intervals a unit has to come back after its last will before it is offline.

Mosquitto publishes the will of every connected unit when it shuts down (a restart,
SIGTERM), and a network blip drops connections that paho makes again a second later: such
a unit publishes its birth within seconds. A unit still unheard one interval after its
will has missed a heartbeat as well, which confirms the will. One interval keeps the will
path inside the `offline_after_beats` (>= 2) intervals of the silence path, which keeps
running meanwhile: an outage is raised within those intervals either way.
"""


def unit_offline(
    watch: UnitWatch,
    key: AlertKey,
    limits: Thresholds,
    item: Heartbeat | Status | Tick,
    now: int,
    watching_since: int,
) -> tuple[UnitWatch, list[Signal]]:
    """No heartbeat for N intervals, or an LWT `offline` not followed by a heartbeat or a birth
    within WILL_GRACE_BEATS intervals (both counted from watching_since at least).

    The will itself raises nothing: a broker restart publishes the will of every unit, and
    they are back a second later. A tick after the grace raises.
    """
    if isinstance(item, Heartbeat):
        after = UnitWatch(interval_s=item.interval_s, last_beat=now)
        return after, [Clear(key, "heartbeat received", now)] if watch.offline else []
    if isinstance(item, Status):
        if item.state == "online":
            after = UnitWatch(interval_s=watch.interval_s, last_beat=now)
            return after, [Clear(key, "unit online again", now)] if watch.offline else []
        if watch.offline or watch.will_at is not None:
            return watch, []  # the retained will seen again: the grace runs from the first
        return watch.model_copy(update={"will_at": now}), []
    if watch.offline:
        return watch, []
    title = f"Unit offline: {key.where}"
    will = ""
    if watch.will_at is not None:
        gone_for = now - watch.will_at
        will = f"the broker lost the unit's connection (last will) {duration(gone_for)} ago"
        if now - max(watch.will_at, watching_since) >= WILL_GRACE_BEATS * watch.interval_s * S:
            detail = f"{will}; no heartbeat or birth since"
            return watch.model_copy(update={"offline": True}), [Raise(key, title, detail, now)]
    if watch.last_beat is None:
        return watch, []
    silent_for = now - max(watch.last_beat, watching_since)
    limit = limits.offline_after_beats * watch.interval_s * S
    if silent_for < limit:
        return watch, []
    detail = (
        f"no heartbeat for {duration(silent_for)} "
        f"({limits.offline_after_beats} x {watch.interval_s} s)" + (f"; {will}" if will else "")
    )
    return watch.model_copy(update={"offline": True}), [Raise(key, title, detail, now)]


# integrity -----------------------------------------------------------------------------------


class IntegrityLike(Protocol):
    """What the collector knows of a message that failed verification (broker.ingest.Rejected)."""

    @property
    def site(self) -> str | None: ...
    @property
    def device(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def event_id(self) -> str | None: ...


INTEGRITY_REASONS = frozenset(
    {
        "identity-mismatch",
        "unknown-unit",
        "bad-signature",
        "replayed-or-forked",
        "broken-chain",
        "time-out-of-order",
        # An independent witness refused an event of the unit (broker/collector/witnesses.py).
        "witness-fork",
        "witness-rewind",
    }
)


def integrity(issue: IntegrityLike, now: int) -> list[Signal]:
    """A bad signature, broken chain, replay or fork: latched, one alert per unit and reason."""
    reason = str(issue.reason)
    if reason not in INTEGRITY_REASONS or not issue.site or not issue.device:
        return []
    key = AlertKey(Rule.INTEGRITY, issue.site, issue.device, reason)
    seq = f" (seq {issue.seq})" if issue.seq is not None else ""
    title = f"Integrity: {reason} from {issue.site}/{issue.device}{seq}"
    return [Raise(key, title, issue.detail[:200], now, latched=True, event_id=issue.event_id)]


@dataclass(frozen=True, slots=True)
class GapChange:
    """A change of a unit's missing sequence numbers, as broker.chain reports it."""

    first: int
    last: int
    change: Literal["opened", "closed"]


class GapLike(Protocol):
    """A gap as broker.chain.Gap has it."""

    @property
    def device(self) -> str: ...
    @property
    def first(self) -> int: ...
    @property
    def last(self) -> int: ...
    @property
    def opened_ns(self) -> int: ...


class GapWatch(Watch):
    missing: list[tuple[int, int, int]] = []  # (first, last, opened_ns)
    reported: bool = False


def seq_gap(
    watch: GapWatch, key: AlertKey, limits: Thresholds, item: GapChange | Tick, now: int
) -> tuple[GapWatch, list[Signal]]:
    """Missing sequence numbers not delivered within the timeout; clears when all arrive."""
    if isinstance(item, GapChange):
        if item.change == "opened":
            missing = [*watch.missing, (item.first, item.last, now)]
        else:
            missing = _fill(watch.missing, item.first, item.last)
        after = GapWatch(missing=sorted(missing), reported=watch.reported)
        if watch.reported and not missing:
            return GapWatch(), [Clear(key, "every missing event arrived", now)]
        return after, []
    if watch.reported or not watch.missing:
        return watch, []
    timeout = limits.gap_timeout_min * MINUTE
    late = [(f, last, opened) for f, last, opened in watch.missing if now - opened >= timeout]
    if not late:
        return watch, []
    first, last, opened = late[0]
    count = sum(b - a + 1 for a, b, _ in watch.missing)
    title = f"Integrity: {count} event(s) missing from {key.site}/{key.device}"
    detail = f"seq {first}-{last} missing for {duration(now - opened)}"
    return watch.model_copy(update={"reported": True}), [Raise(key, title, detail, now)]


def _fill(missing: list[tuple[int, int, int]], first: int, last: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for a, b, opened in missing:
        if b < first or a > last:
            out.append((a, b, opened))
            continue
        if a < first:
            out.append((a, first - 1, opened))
        if b > last:
            out.append((last + 1, b, opened))
    return out


# unit health ---------------------------------------------------------------------------------


class HealthWatch(Watch):
    active: list[str] = []


HEALTH_CONDITIONS = ("disk", "cpu", "power", "clock", "cert")


def unit_health(
    watch: HealthWatch, site: str, device: str, limits: Thresholds, hb: Heartbeat, now: int
) -> tuple[HealthWatch, list[Signal]]:
    """Disk low, CPU hot, undervoltage, clock unsynchronised, certificate expiring: one alert each.

    A figure the heartbeat leaves out keeps the condition as it was; the CPU clears only
    when it has cooled by the hysteresis.
    """
    active = set(watch.active)
    signals: list[Signal] = []
    checks: dict[str, tuple[bool | None, str]] = {
        "disk": _disk(hb, limits),
        "cpu": _cpu(hb, limits, "cpu" in active),
        "power": (hb.undervoltage, "undervoltage reported by the power supply"),
        "clock": (
            False if hb.clock_synced else (True if hb.uptime_s >= limits.clock_grace_s else None),
            f"clock not synchronised after {hb.uptime_s} s of uptime",
        ),
        "cert": (
            hb.cert_days_left <= limits.cert_warn_days if hb.cert_days_left is not None else None,
            f"certificate expires in {hb.cert_days_left} day(s)",
        ),
    }
    titles = {
        "disk": "disk low",
        "cpu": "CPU hot",
        "power": "undervoltage",
        "clock": "clock not synchronised",
        "cert": "certificate expiring",
    }
    for name in HEALTH_CONDITIONS:
        on, detail = checks[name]
        key = AlertKey(Rule.UNIT_HEALTH, site, device, name)
        if on is True and name not in active:
            active.add(name)
            title = f"Unit health: {titles[name]} at {site}/{device}"
            signals.append(Raise(key, title, detail, now))
        elif on is False and name in active:
            active.discard(name)
            signals.append(Clear(key, f"{titles[name]}: back to normal", now))
    return HealthWatch(active=sorted(active)), signals


def _disk(hb: Heartbeat, limits: Thresholds) -> tuple[bool | None, str]:
    if hb.disk_full:
        return True, "disk full"
    if hb.disk_free_mb is None:
        return None, ""
    return hb.disk_free_mb < limits.disk_low_mb, (
        f"{hb.disk_free_mb} MB free (limit {limits.disk_low_mb} MB)"
    )


def _cpu(hb: Heartbeat, limits: Thresholds, hot: bool) -> tuple[bool | None, str]:
    if hb.cpu_temp_c is None:
        return None, ""
    detail = f"CPU at {hb.cpu_temp_c:.1f} °C (limit {limits.cpu_hot_c:g} °C)"
    if hb.cpu_temp_c >= limits.cpu_hot_c:
        return True, detail
    if hot and hb.cpu_temp_c > limits.cpu_hot_c - limits.cpu_hysteresis_c:
        return None, detail
    return False, detail


def evidence_refused(site: str, device: str, detail: str, disk_full: bool, now: int) -> Raise:
    """The collector could not keep a picture a unit signed: its disk (or the store's bound)
    is full, or the unit is over its quota. Latched: someone must make room and resolve it."""
    what = "disk-full" if disk_full else "quota"
    key = AlertKey(Rule.EVIDENCE_REFUSED, site, device, what)
    title = (
        f"Evidence not kept: the collector's disk is full ({site}/{device})"
        if disk_full
        else f"Evidence not kept: {site}/{device} is over its picture quota"
    )
    return Raise(key, title, detail[:200], now, latched=True)
