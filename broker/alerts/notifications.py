"""Which alert changes tell people, and what they say (pure; run by the engine).

A key notifies at most once per cooldown — a new alert, or a repeat of an open one once the
cooldown has passed ("again, 37 times"); a burst of triggers from one door is one message.
A silent alert (duress) has no cooldown: every disarm under duress is sent.
An alert that closes sends "cleared"/"resolved" only if people were told about that very
alert. Acknowledgements send nothing. The policy's state (`NoteWatch`) is persisted with the
alerts; delivery.py gets the notifications to people.

Words: a notification carries its alert and the site's zone, and is written in each route's
`language` (`for_route`, Indonesian unless a route says "en") from the alert's msgids and
parameters, times as `02:29 WIB`. It ends with the link to the alert's own page on the guard
post (`/alerts/<id>`: log in, one tap on "Akui"), when the page's public address is known,
never with a command to type.

Pictures: a notification of an alarm at a unit with a camera carries the trigger's still
(`picture`, its SHA-256 in the evidence vault); when the still is not stored yet, the text
goes at once and `with_picture(..., follow_up=True)` is the message that brings it later
(broker/alerts/picture_notes.py decides when).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from broker.alerts.config import NotifyConfig
from broker.alerts.lifecycle import Change, ChangeKind
from broker.alerts.localized import alert_text
from broker.alerts.rules import is_silent
from broker.i18n import DEFAULT, DEFAULT_TZ, N_, render
from protocol.alerting import Alert, Severity


class Notification(BaseModel):
    """One message for people; `id` is unique per alert and change, so it is sent once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    key: str
    alert_id: str
    site: str
    severity: Severity
    kind: ChangeKind
    title: str
    body: str
    created: int
    alert: Alert | None = None  # to write it in another language (None: stored before)
    tz: str = DEFAULT_TZ
    language: str = DEFAULT
    page_url: str | None = None
    """The guard post's public address; the notification links to `<page_url>/alerts/<id>`."""
    picture: str | None = None
    """SHA-256 of the trigger's still in the evidence vault, sent as an attachment."""
    follow_up: bool = False
    """The picture of an alert whose text went earlier (its id ends in `.picture`)."""

    @property
    def link(self) -> str | None:
        """The alert's own page on the guard post, where one tap acknowledges it."""
        if not self.page_url:
            return None
        return f"{self.page_url.rstrip('/')}/alerts/{self.alert_id}"

    def for_route(self, lang: str, page_url: str | None) -> Notification:
        """This notification as a route gets it: in lang, with the link to the alert's page
        under page_url (one stored without its alert stays as it is)."""
        if self.alert is None:
            return self
        return self._rewritten(language=lang, page_url=page_url)

    def in_language(self, lang: str) -> Notification:
        """This notification written in lang (one stored without its alert stays as it is)."""
        if self.alert is None or lang == self.language:
            return self
        return self._rewritten(language=lang)

    def with_picture(self, sha256: str, *, follow_up: bool) -> Notification:
        """This notification carrying the trigger's still; follow_up: as the message that
        brings the picture of an alert whose text went earlier (an id of its own)."""
        update: dict[str, object] = {"picture": sha256, "follow_up": follow_up}
        if follow_up:
            update["id"] = f"{self.id}.picture"
        note = self.model_copy(update=update)
        return note._rewritten() if note.alert is not None else note

    def _rewritten(self, **update: object) -> Notification:
        note = self.model_copy(update=update)
        assert note.alert is not None
        title, body = _words(
            note.alert,
            note.kind,
            note.tz,
            note.language,
            link=note.link,
            picture=note.picture,
            follow_up=note.follow_up,
        )
        return note.model_copy(update={"title": title, "body": body})


class NoteWatch(BaseModel):
    """What the policy remembers per alert key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    last_sent: int | None = None
    last_alert: str | None = None  # the alert id people were last told about


def decide(
    watch: NoteWatch, change: Change, config: NotifyConfig, zone: ZoneInfo, key: str, now: int
) -> tuple[NoteWatch, Notification | None]:
    """Whether this alert change tells people, honouring the cooldown of its key (a silent
    alert, duress, has none: each disarm under duress is news for the police)."""
    alert = change.alert
    if change.kind in (ChangeKind.RAISED, ChangeKind.REPEATED):
        silent = is_silent(alert.rule)
        cooled = (
            silent or watch.last_sent is None or now - watch.last_sent >= config.cooldown_s * 10**9
        )
        if not cooled:
            return watch, None
        suffix = f"{change.kind.value}.{alert.count}"
    elif change.kind in (ChangeKind.CLEARED, ChangeKind.RESOLVED):
        if not config.notify_clears or watch.last_alert != alert.id:
            return watch, None
        suffix = change.kind.value
    else:
        return watch, None
    title, body = _words(alert, change.kind, zone.key, DEFAULT)
    note = Notification(
        id=f"{alert.id}.{suffix}",
        key=key,
        alert_id=alert.id,
        site=alert.site,
        severity=alert.severity,
        kind=change.kind,
        title=title,
        body=body,
        created=now,
        alert=alert,
        tz=zone.key,
    )
    if change.kind in (ChangeKind.RAISED, ChangeKind.REPEATED):
        watch = NoteWatch(last_sent=now, last_alert=alert.id)
    return watch, note


TAGS = {
    Severity.CRITICAL: N_("CRITICAL"),
    Severity.WARNING: N_("WARNING"),
    ChangeKind.CLEARED: N_("CLEARED"),
    ChangeKind.RESOLVED: N_("RESOLVED"),
}


def _words(
    alert: Alert,
    kind: ChangeKind,
    tz: str,
    lang: str,
    *,
    link: str | None = None,
    picture: str | None = None,
    follow_up: bool = False,
) -> tuple[str, str]:
    """Title and body of a notification about alert in lang; link: the alert's page on the
    guard post; picture: the SHA-256 of the trigger's still it carries."""
    text = alert_text(alert, lang)
    closing = kind in (ChangeKind.CLEARED, ChangeKind.RESOLVED)
    params = {
        "tag_msg": TAGS[kind] if closing else TAGS[alert.severity],
        "title": text.title,
        "count": str(alert.count),
        "site": alert.site,
        "device": alert.device,
        "sensor": alert.sensor or "",
        "id": alert.id,
        "tz": tz,
        "raised_at": str(alert.raised_at),
        "closed_at": str(alert.closed_at or alert.last_seen),
        "by": alert.closed_by or "",
        "note": text.note or "",
        "link": link or "",
        "sha256": picture or "",
    }
    if follow_up:
        title = render(N_("[{tag_msg}] {title} (picture)"), params, lang)
    elif kind is ChangeKind.REPEATED:
        title = render(N_("[{tag_msg}] {title} (again, {count} times)"), params, lang)
    else:
        title = render(N_("[{tag_msg}] {title}"), params, lang)
    lines = [text.detail] if text.detail and not follow_up else []
    if alert.sensor:
        lines.append(render(N_("site {site}, unit {device}, {sensor}"), params, lang))
    else:
        lines.append(render(N_("site {site}, unit {device}"), params, lang))
    if not follow_up:
        lines.append(render(N_("raised {raised_at}, seen {count} time(s)"), params, lang))
    if picture:
        lines.append(render(N_("picture of the trigger attached, SHA-256 {sha256}"), params, lang))
    if kind is ChangeKind.RESOLVED:
        said = N_("resolved by {by}: {note}") if text.note else N_("resolved by {by}")
        lines.append(render(said, params, lang))
    elif kind is ChangeKind.CLEARED:
        lines.append(render(N_("cleared {closed_at}: {note}"), params, lang))
    elif link:
        lines.append(render(N_("open to acknowledge: {link}"), params, lang))
    else:
        lines.append(render(N_("alert {id}"), params, lang))
    return title, "\n".join(lines)
