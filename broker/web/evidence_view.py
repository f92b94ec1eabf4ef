"""The evidence viewer's content for one event: its pictures, their hashes, whether they verify.

A door opening is one event; the pictures around it come in the camera event it caused
(`cause` = the door event's id), which signs their SHA-256. Three sources are set side by
side: what the unit signed (the camera event's `snapshot_sha256`), what the evidence store
holds (files named by their hash, and the custody log), and whether each stored file still
hashes to its name (EvidenceVault.verify). A picture the unit signed but the store lacks is
listed as missing; one the store has that no signed event names is flagged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from broker.influx_reader import QueryFailed
from broker.web.state import LiveState
from broker.web.views import AlertView
from protocol.models import Event

log = logging.getLogger("jaga.web.evidence")
T = TypeVar("T")


class Evidence(Protocol):
    """What the viewer needs of broker.evidence.EvidenceVault."""

    def path(self, sha256: str) -> Path: ...

    def has(self, sha256: str) -> bool: ...

    def verify(self, sha256: str) -> bool: ...

    def custody(
        self,
        *,
        event_id: str | None = None,
        sha256: str | None = None,
        site: str | None = None,
        device: str | None = None,
    ) -> list[dict[str, Any]]: ...


class EventSource(Protocol):
    """Stored events the page has not seen (since a restart): broker.evidence_events, which
    `evidence export` reads too. Either may raise QueryFailed: the page then shows what it has."""

    def event(self, event_id: str) -> Event | None: ...

    def caused(self, event: Event) -> list[Event]: ...


@dataclass(frozen=True, slots=True)
class PictureRow:
    sha256: str
    event_id: str
    role: str | None
    size: int | None
    received_at: int | None
    device: str | None
    stored: bool
    verifies: bool
    signed: bool | None
    """Among the hashes its (camera) event signed; None when that event is not known."""

    @property
    def url(self) -> str:
        return f"/pictures/{self.sha256}.jpg"


@dataclass(frozen=True, slots=True)
class EvidencePage:
    event_id: str
    site: str
    event: Event | None
    camera_events: tuple[Event, ...]
    pictures: tuple[PictureRow, ...]
    missing: tuple[str, ...]
    alerts: tuple[AlertView, ...]
    custody: tuple[dict[str, Any], ...]

    @property
    def intact(self) -> bool:
        """Every stored picture still hashes to its name and none the unit signed is missing."""
        return all(p.verifies for p in self.pictures) and not self.missing

    @property
    def vouched(self) -> bool:
        """Intact, and every picture is one the unit signed."""
        return self.intact and all(p.signed for p in self.pictures)


def build(
    event_id: str, state: LiveState, store: Evidence | None, source: EventSource | None
) -> EvidencePage | None:
    """Everything known about event_id's evidence; None when nothing at all is known."""
    record = state.event(event_id)
    event = record.event if record is not None else None
    if event is None and source is not None:
        event = _stored(lambda: source.event(event_id), None)
    caused: list[Event] = []
    if event is not None:
        caused = state.caused_by(event_id)
        if not caused and source is not None and not event.snapshot_sha256:
            cause = event
            caused = _stored(lambda: source.caused(cause), [])
    signing = ([event] if event is not None and event.snapshot_sha256 else []) + [
        c for c in caused if c.snapshot_sha256
    ]
    ids = [event_id] + [c.id for c in caused if c.id != event_id]
    # Event ids are the units' own: with the event known, only its unit's lines are its own.
    unit = {"site": event.site, "device": event.device} if event is not None else {}
    custody = [
        c for i in ids for c in (store.custody(event_id=i, **unit) if store is not None else [])
    ]
    live = [p for i in ids for p in state.pictures_of(i)]
    site = (
        event.site
        if event is not None
        else next((str(c["site"]) for c in custody), None)
        or next((p.site for p in live if p.site), None)
    )
    if site is None:
        return None
    signed_by: dict[str, str] = {sha: e.id for e in signing for sha in e.snapshot_sha256 or ()}
    order: list[tuple[str, str]] = [(sha, eid) for sha, eid in signed_by.items()]
    for sha, eid in [(str(c["sha256"]), str(c["event_id"])) for c in custody] + [
        (p.sha256, p.event_id) for p in live
    ]:
        if sha not in {s for s, _ in order}:
            order.append((sha, eid))
    known = {e.id for e in signing} | ({event_id} if event is not None else set())
    first: dict[str, dict[str, Any]] = {}
    for c in custody:
        first.setdefault(str(c["sha256"]), c)
    roles = {p.sha256: p.role for p in live}
    rows: list[PictureRow] = []
    missing: list[str] = []
    for sha, eid in order:
        stored = store is not None and store.has(sha)
        if not stored and sha in signed_by:
            missing.append(sha)
            continue
        c = first.get(sha, {})
        rows.append(
            PictureRow(
                sha256=sha,
                event_id=eid,
                role=roles.get(sha),
                size=c.get("bytes"),
                received_at=c.get("ts"),
                device=c.get("device"),
                stored=stored,
                verifies=stored and store is not None and store.verify(sha),
                signed=True if sha in signed_by else (False if eid in known else None),
            )
        )
    alerts = {a.id: a for i in ids for a in state.alerts_of_event(i)}
    return EvidencePage(
        event_id=event_id,
        site=site,
        event=event,
        camera_events=tuple(c for c in caused if c.id != event_id),
        pictures=tuple(rows),
        missing=tuple(missing),
        alerts=tuple(alerts.values()),
        custody=tuple(custody),
    )


def _stored(read: Callable[[], T], otherwise: T) -> T:
    """What storage answers, or `otherwise` when InfluxDB cannot (the page shows what it has)."""
    try:
        return read()
    except QueryFailed as exc:
        log.warning("evidence viewer: cannot read events from InfluxDB: %s", exc)
        return otherwise
