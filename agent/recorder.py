"""Signing and storing the unit's events in the outbox, and the disk-full flag that goes with
it: an event is on disk, numbered and chained, before the siren, the camera or the link hear of
it; a full disk is reported once and in every heartbeat, and alarms spend the reserve."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from agent.clock import Clock
from agent.outbox import Appended, Attachments, NewEvent, Outbox, OutboxFull, Signer

log = logging.getLogger("jaga.agent")


class Recorder:
    """Turns what the unit saw into signed, stored events; owns the disk-full flag."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        site: str,
        device: str,
        boot_id: str,
        topic: str,
        signer: Signer,
        stored: Callable[[], None],
    ) -> None:
        self.outbox = outbox
        self._site, self._device, self._boot_id, self._topic = site, device, boot_id, topic
        self._signer = signer
        self._stored = stored
        """Called once an event is on disk: the link sends it (publisher.wake)."""
        self.disk_full = False
        self._dropping = False
        self.events_stored = 0

    def record(
        self, new: NewEvent, clock: Clock, attachments: Attachments | None = None
    ) -> Appended | None:
        """Sign and store one event (and its attachments), its wall time taken from `clock`
        now; None when the disk refused it (flagged, logged once until an event fits again)."""
        mono_now, wall_now = clock.mono_ns(), clock.wall_ns()
        new = replace(
            new, ts=max(0, wall_now - (mono_now - new.mono_ns)), clock_synced=clock.synced()
        )
        try:
            appended = self.outbox.append_event_with(
                new,
                site=self._site,
                device=self._device,
                boot_id=self._boot_id,
                topic=self._topic,
                signer=self._signer,
                attachments=attachments,
            )
        except OutboxFull as exc:
            if not self._dropping:
                log.error(
                    "outbox disk is full, event %s/%s not stored (and the next ones until "
                    "there is room): %s",
                    new.sensor,
                    new.state,
                    exc,
                )
            self._dropping = True
            self.disk_full = True
            return None
        self._dropping = False
        if not self.outbox.reserve_path.exists():
            if not self.disk_full:
                log.error("outbox disk is full: using the reserve kept for alarms")
            self.disk_full = not self.outbox.restore_reserve()
        else:
            self.disk_full = False
        self.events_stored += 1
        event = appended.event
        log.info("event seq=%d %s %s %s", event.seq, event.kind, event.sensor, event.state)
        self._stored()
        return appended

    def recheck_disk(self) -> None:
        """Before a heartbeat: a full disk that has room again gets its reserve back."""
        if self.disk_full and self.outbox.restore_reserve():
            log.info("outbox disk has room again")
            self.disk_full = False
