"""The pictures' way into the outbox: an evidence set becomes pictures on disk, a signed camera
event that vouches for them and their chunks, stored in one transaction; a resend chunks them
again from the evidence store, exactly as the first time. Sending is the publisher's job."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PIL import Image

from agent.camera.chunks import ROLES, Chunks, Picture, chunk, chunk_role
from agent.camera.evidence import EvidenceSet, roles_by_size
from agent.camera.store import EvidenceStore, Pressure
from agent.clock import Clock
from agent.outbox import NewEvent, Outbox, OutboxFull
from agent.recorder import Recorder
from protocol import models
from protocol.models import Event, Kind
from protocol.snapshot import ChunkRole
from protocol.topics import DeviceTopics

log = logging.getLogger("jaga.agent")

PICTURE_EVENTS_PER_RESEND = 16
"""Camera events whose pictures one resend re-chunks: the work runs on the main loop (which
reads the sensors), so it is bounded; the collector asks again for any still missing."""


@dataclass(frozen=True, slots=True)
class PicturesAgain:
    """What a resend did with the pictures of the camera events it covered."""

    events: int = 0
    queued: int = 0
    """Pictures chunked again from the evidence store into the outbox."""
    waiting: int = 0
    """Pictures whose chunks were still in the outbox: nothing to do."""
    gone: tuple[str, ...] = ()
    """Pictures the evidence store no longer has (as event id/sha256)."""
    deferred: int = 0
    """Camera events past PICTURE_EVENTS_PER_RESEND, left for the collector's later asks."""
    error: str | None = None

    def describe(self) -> str:
        """The resend's answer, continued with what happened to the pictures."""
        if not self.events:
            return ""
        text = f"; pictures of {self.events} camera event(s): {self.queued} queued again"
        if self.waiting:
            text += f", {self.waiting} still queued"
        if self.gone:
            text += f", {len(self.gone)} no longer kept on the unit"
        if self.deferred:
            text += f"; {self.deferred} more camera event(s) left for later asks"
        if self.error:
            text += f", {self.error}"
        return text


class EvidenceUpload:
    """Queues a camera's evidence for the broker and queues it again when asked."""

    def __init__(
        self,
        store: EvidenceStore,
        recorder: Recorder,
        topics: DeviceTopics,
        *,
        max_packet_size: int,
    ) -> None:
        self.store = store
        self._recorder = recorder
        self._outbox: Outbox = recorder.outbox
        self._topics = topics
        self._max_packet_size = max_packet_size
        self._gone_reported: set[tuple[str, str]] = set()
        """Pictures a resend asked for that the store no longer has, logged once each."""

    def _chunk(self, event_id: str, pictures: list[Picture]) -> Chunks:
        return chunk(self._topics.snapshot(event_id), event_id, pictures, self._max_packet_size)

    def first(self, evidence: EvidenceSet, clock: Clock) -> None:
        """The pictures around a trigger: on disk, vouched for by a signed camera event, queued."""
        stored = self.store.put(evidence)
        if not stored.kept:
            log.error("no room for the pictures of %s; see evidence_full", evidence.key)
            return
        pictures = [Picture(f.sha256, chunk_role(f.role.value), f.jpeg) for f in stored.kept]
        made: list[Chunks] = []

        def attachments(event: Event) -> list[tuple[str, bytes]]:
            made.append(self._chunk(event.id, pictures))
            return list(made[-1].messages)

        cause = evidence.key if not evidence.key.startswith("cmd-") else None
        new = NewEvent(
            "camera",
            Kind.CAMERA,
            "snapshot",
            0,
            evidence.trigger_ns,
            False,
            snapshot_sha256=stored.hashes,
            cause=cause,
        )
        appended = self._recorder.record(new, clock, attachments)
        if appended is None:
            self.store.release(stored.hashes)
            return
        self.store.claim(
            appended.event.id,
            stored.hashes,
            made[-1].rows_by_picture(appended.rows),
            roles={p.sha256: p.role for p in pictures},
        )

    def again(self, first_seq: int, last_seq: int) -> PicturesAgain:
        """A resend covers camera events: their pictures go again too, unless still queued.

        Delivered chunks leave the outbox at once (the evidence store keeps the pictures), so
        a broker that lost them after its PUBACK would leave the event without its pictures.
        They are chunked again from the evidence store, exactly as the first time (same topic,
        same chunk format), and stored in the outbox before anything is sent."""
        events, queued, waiting, gone = 0, 0, 0, []
        covered = self._outbox.picture_events(first_seq, last_seq)
        deferred = max(0, len(covered) - PICTURE_EVENTS_PER_RESEND)
        for raw in covered[:PICTURE_EVENTS_PER_RESEND]:
            try:
                event = models.parse(Event, raw)
            except models.WireError:
                continue
            events += 1
            todo: list[tuple[str, bytes, str | None]] = []
            for sha in event.snapshot_sha256 or ():
                claim = self.store.claim_of(event.id, sha)
                if claim and claim.rows and self._outbox.undelivered(claim.rows) == set(claim.rows):
                    waiting += 1  # never sent yet: its chunks are on their way
                    continue
                data = self._read(event, sha)
                if data is None:
                    gone.append(f"{event.id}/{sha}")
                    continue
                todo.append((sha, data, claim.role if claim else None))
            if not todo:
                continue
            roles = self._roles(event, todo)
            pictures = [
                Picture(sha, role, data) for (sha, data, _), role in zip(todo, roles, strict=True)
            ]
            chunks = self._chunk(event.id, pictures)
            try:
                rows = self._outbox.append_messages(chunks.messages)
            except OutboxFull as exc:
                log.error("no room in the outbox to send pictures of %s again: %s", event.id, exc)
                return PicturesAgain(
                    events, queued, waiting, tuple(gone), deferred, "outbox disk full"
                )
            self.store.requeued(event.id, chunks.rows_by_picture(rows))
            queued += len(todo)
            log.info(
                "camera event seq=%d: %d picture(s) queued again from the evidence store",
                event.seq,
                len(todo),
            )
        return PicturesAgain(events, queued, waiting, tuple(gone), deferred)

    def _read(self, event: Event, sha: str) -> bytes | None:
        """A picture a resend needs; None (logged once per picture) when the store lost it."""
        try:
            data = self.store.read(sha) if sha in self.store else None
        except FileNotFoundError:
            data = None
        if data is None and (event.id, sha) not in self._gone_reported:
            self._gone_reported.add((event.id, sha))
            log.warning(
                "picture %s of camera event seq=%d (%s) was asked for again but "
                "is no longer in the evidence store",
                sha,
                event.seq,
                event.id,
            )
        return data

    def _roles(self, event: Event, todo: list[tuple[str, bytes, str | None]]) -> list[ChunkRole]:
        """Each picture's role in its set, as recorded; guessed for claims made before roles
        were recorded (from picture sizes: the still is the full-resolution one)."""
        if all(role in ROLES for _, _, role in todo):
            return [chunk_role(str(role)) for _, _, role in todo]
        hashes = list(event.snapshot_sha256 or ())
        areas: list[int | None] = []
        for sha in hashes:
            try:
                with Image.open(self.store.path(sha)) as img:
                    areas.append(img.width * img.height)
            except (OSError, ValueError):
                areas.append(None)
        guessed = dict(zip(hashes, roles_by_size(areas), strict=True))
        return [
            chunk_role(role if role is not None and role in ROLES else guessed[sha].value)
            for sha, _, role in todo
        ]

    def settle(self) -> None:
        """Mark delivered the pictures whose chunks the broker has acknowledged (held no more)."""
        self.store.settle(self._outbox.undelivered)

    def pressure(self) -> Pressure:
        return self.store.pressure()
