"""Rules over the units themselves: offline, health, integrity failures, missing events and
pictures the collector could not keep (the vocabulary they speak is in rules.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from broker.alerts.arming import Tick
from broker.alerts.config import Thresholds
from broker.alerts.rules import AlertKey, Clear, Raise, Rule, Signal, Watch
from broker.i18n import N_
from kernel.units import MINUTE, S
from protocol.models import Heartbeat, Status

# unit offline --------------------------------------------------------------------------------


class UnitWatch(Watch):
    interval_s: int
    last_beat: int | None = None
    offline: bool = False
    will_at: int | None = None  # a last will not yet followed by a heartbeat or a birth


# The grace after a last will is `Thresholds.will_grace_s` (default 3 s):
#
# The will is how a silent loss is reported within 20 s: the broker publishes it 1.5
# keepalives (6 s by default: 9 s; Mosquitto 2.0.11 looks every 5 s) after the last packet it
# had from the unit, and a unit still unheard `will_grace_s` later is offline. The grace is
# for a connection that breaks and is made again at once (paho reconnects a second later and
# publishes its birth).
# A broker restart publishes every connected unit's will too; the collector loses the broker
# at the same time, and while it has no link it judges no unit (the engine's watching_since
# runs from its reconnection plus `resume_grace_s`: broker.alerts.engine.AlertEngine.link_back),
# so a restart pages nobody. The silence path (`offline_after_beats` heartbeat intervals)
# keeps running as the backstop for a unit whose connection lives on but says nothing.


def unit_offline(
    watch: UnitWatch,
    key: AlertKey,
    limits: Thresholds,
    item: Heartbeat | Status | Tick,
    now: int,
    watching_since: int,
) -> tuple[UnitWatch, list[Signal]]:
    """No heartbeat for N intervals, or an LWT `offline` not followed by a heartbeat or a birth
    within `limits.will_grace_s` (both counted from watching_since at least).

    The will itself raises nothing: a connection made again at once is back within the grace
    (and a broker restart's wills fall while the collector is blind: see above). A tick after
    the grace raises.
    """
    if isinstance(item, Heartbeat):
        after = UnitWatch(interval_s=item.interval_s, last_beat=now)
        back = Clear.said(key, N_("heartbeat received"), {}, now)
        return after, [back] if watch.offline else []
    if isinstance(item, Status):
        if item.state == "online":
            after = UnitWatch(interval_s=watch.interval_s, last_beat=now)
            back = Clear.said(key, N_("unit online again"), {}, now)
            return after, [back] if watch.offline else []
        if watch.offline or watch.will_at is not None:
            return watch, []  # the retained will seen again: the grace runs from the first
        return watch.model_copy(update={"will_at": now}), []
    if watch.offline:
        return watch, []
    title = N_("Unit offline: {where}")
    params = {"where": key.where}
    if watch.will_at is not None:
        params["gone_for"] = str(now - watch.will_at)
        if now - max(watch.will_at, watching_since) >= limits.will_grace_s * S:
            detail = N_(
                "the broker lost the unit's connection (last will) {gone_for} ago; "
                "no heartbeat or birth since"
            )
            raised = Raise.said(key, title, detail, params, now)
            return watch.model_copy(update={"offline": True}), [raised]
    if watch.last_beat is None:
        return watch, []
    silent_for = now - max(watch.last_beat, watching_since)
    limit = limits.offline_after_beats * watch.interval_s * S
    if silent_for < limit:
        return watch, []
    params |= {
        "silent_for": str(silent_for),
        "beats": str(limits.offline_after_beats),
        "interval": str(watch.interval_s),
    }
    detail = (
        N_(
            "no heartbeat for {silent_for} ({beats} x {interval} s); "
            "the broker lost the unit's connection (last will) {gone_for} ago"
        )
        if "gone_for" in params
        else N_("no heartbeat for {silent_for} ({beats} x {interval} s)")
    )
    raised = Raise.said(key, title, detail, params, now)
    return watch.model_copy(update={"offline": True}), [raised]


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
        N_("identity-mismatch"),
        N_("unknown-unit"),
        N_("bad-signature"),
        N_("replayed-or-forked"),
        N_("broken-chain"),
        N_("time-out-of-order"),
        # An independent witness refused an event of the unit (broker/collector/witnesses.py).
        N_("witness-fork"),
        N_("witness-rewind"),
    }
)
"""Reasons are msgids too: the English is the code, the Indonesian says what it means."""


def integrity(issue: IntegrityLike, now: int) -> list[Signal]:
    """A bad signature, broken chain, replay or fork: latched, one alert per unit and reason."""
    reason = str(issue.reason)
    if reason not in INTEGRITY_REASONS or not issue.site or not issue.device:
        return []
    key = AlertKey(Rule.INTEGRITY, issue.site, issue.device, reason)
    params = {"reason_msg": reason, "where": f"{issue.site}/{issue.device}"}
    title = N_("Integrity: {reason_msg} from {where}")
    if issue.seq is not None:
        params["seq"] = str(issue.seq)
        title = N_("Integrity: {reason_msg} from {where} (seq {seq})")
    detail = issue.detail[:200]  # the verifier's own words, technical: kept as they are
    return [
        Raise.said(
            key, title, None, params, now, latched=True, event_id=issue.event_id, detail=detail
        )
    ]


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
            return GapWatch(), [Clear.said(key, N_("every missing event arrived"), {}, now)]
        return after, []
    if watch.reported or not watch.missing:
        return watch, []
    timeout = limits.gap_timeout_min * MINUTE
    late = [(f, last, opened) for f, last, opened in watch.missing if now - opened >= timeout]
    if not late:
        return watch, []
    first, last, opened = late[0]
    count = sum(b - a + 1 for a, b, _ in watch.missing)
    title = N_("Integrity: {count} event(s) missing from {where}")
    detail = N_("seq {first}-{last} missing for {missing_for}")
    params = {
        "count": str(count),
        "where": f"{key.site}/{key.device}",
        "first": str(first),
        "last": str(last),
        "missing_for": str(now - opened),
    }
    raised = Raise.said(key, title, detail, params, now)
    return watch.model_copy(update={"reported": True}), [raised]


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
    checks: dict[str, tuple[bool | None, str, dict[str, str]]] = {
        "disk": _disk(hb, limits),
        "cpu": _cpu(hb, limits, "cpu" in active),
        "power": (hb.undervoltage, N_("undervoltage reported by the power supply"), {}),
        "clock": (
            False if hb.clock_synced else (True if hb.uptime_s >= limits.clock_grace_s else None),
            N_("clock not synchronised after {uptime} s of uptime"),
            {"uptime": str(hb.uptime_s)},
        ),
        "cert": (
            hb.cert_days_left <= limits.cert_warn_days if hb.cert_days_left is not None else None,
            N_("certificate expires in {days} day(s)"),
            {"days": str(hb.cert_days_left)},
        ),
    }
    titles = {
        "disk": N_("disk low"),
        "cpu": N_("CPU hot"),
        "power": N_("undervoltage"),
        "clock": N_("clock not synchronised"),
        "cert": N_("certificate expiring"),
    }
    for name in HEALTH_CONDITIONS:
        on, detail, params = checks[name]
        key = AlertKey(Rule.UNIT_HEALTH, site, device, name)
        params = params | {"condition_msg": titles[name], "where": f"{site}/{device}"}
        if on is True and name not in active:
            active.add(name)
            title = N_("Unit health: {condition_msg} at {where}")
            signals.append(Raise.said(key, title, detail, params, now))
        elif on is False and name in active:
            active.discard(name)
            signals.append(Clear.said(key, N_("{condition_msg}: back to normal"), params, now))
    return HealthWatch(active=sorted(active)), signals


def _disk(hb: Heartbeat, limits: Thresholds) -> tuple[bool | None, str, dict[str, str]]:
    if hb.disk_full:
        return True, N_("disk full"), {}
    if hb.disk_free_mb is None:
        return None, "", {}
    return (
        hb.disk_free_mb < limits.disk_low_mb,
        N_("{free} MB free (limit {limit} MB)"),
        {"free": str(hb.disk_free_mb), "limit": str(limits.disk_low_mb)},
    )


def _cpu(hb: Heartbeat, limits: Thresholds, hot: bool) -> tuple[bool | None, str, dict[str, str]]:
    if hb.cpu_temp_c is None:
        return None, "", {}
    detail = N_("CPU at {temp} °C (limit {limit} °C)")
    params = {"temp": f"{hb.cpu_temp_c:.1f}", "limit": f"{limits.cpu_hot_c:g}"}
    if hb.cpu_temp_c >= limits.cpu_hot_c:
        return True, detail, params
    if hot and hb.cpu_temp_c > limits.cpu_hot_c - limits.cpu_hysteresis_c:
        return None, detail, params
    return False, detail, params


def evidence_refused(site: str, device: str, detail: str, disk_full: bool, now: int) -> Raise:
    """The collector could not keep a picture a unit signed: its disk (or the store's bound)
    is full, or the unit is over its quota. Latched: someone must make room and resolve it."""
    what = "disk-full" if disk_full else "quota"
    key = AlertKey(Rule.EVIDENCE_REFUSED, site, device, what)
    title = (
        N_("Evidence not kept: the collector's disk is full ({where})")
        if disk_full
        else N_("Evidence not kept: {where} is over its picture quota")
    )
    params = {"where": f"{site}/{device}"}
    return Raise.said(key, title, None, params, now, latched=True, detail=detail[:200])


# enrolment and renewal refused (#19) ---------------------------------------------------------


def enrolment_refused(
    site: str, device: str | None, renewal: bool, reason: str, detail: str, now: int
) -> Raise:
    """The enrolment endpoint refused a one-time token (reused, expired, unknown, another
    site's) or a certificate renewal (revoked, superseded, expired past the grace): a stolen
    token or key is one cause. Latched, one alert per unit and reason: someone must look."""
    kind = "renewal" if renewal else "token"
    key = AlertKey(Rule.ENROLMENT_REFUSED, site, device or "unknown", f"{kind}-{reason}")
    title = (
        N_("Certificate renewal refused: {where}")
        if renewal
        else N_("Enrolment token refused: {where}")
    )
    params = {"where": f"{site}/{device or '?'}"}
    return Raise.said(key, title, None, params, now, latched=True, detail=detail[:200])


# wrong panel codes from Home Assistant (#20) -------------------------------------------------


def panel_code_refused(site: str, wrong: int, paused_s: float, now: int) -> Raise:
    """Wrong codes on a site's Home Assistant keypad paused it (broker/home_assistant/codes.py):
    someone guessing PINs through HA's certificate is one cause. Latched, one alert per site
    (each pause again counts on it): someone must look."""
    key = AlertKey(Rule.PANEL_CODE_REFUSED, site, "home-assistant")
    title = N_("Wrong panel codes from Home Assistant: {where}")
    detail = f"{wrong} wrong codes; the keypad is paused for {paused_s:.0f} s"
    return Raise.said(key, title, None, {"where": site}, now, latched=True, detail=detail)
