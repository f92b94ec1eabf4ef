"""Carrying out the control room's signed commands on the unit (resend, snapshot, live) and the
answer each one gets; the gate (agent.command_gate) decides first whether a command may be
carried out. A resend stores before it sends: rows requeued and pictures chunked again, then
the link rewinds."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from agent.camera.live import LiveTap
from agent.camera.service import CameraLoop
from agent.clock import Clock
from agent.command_gate import CommandGate
from agent.evidence_upload import EvidenceUpload, PicturesAgain
from agent.outbox import Outbox
from protocol.commands import CommandRefused, CommandResult, Live, Resend, Snapshot

MODELS: dict[str, type[Resend] | type[Snapshot] | type[Live]] = {
    "resend": Resend,
    "snapshot": Snapshot,
    "live": Live,
}
"""The commands a unit carries out, by the last level of their topic."""


@dataclass(frozen=True, slots=True)
class Answer:
    """How one command went, for the log and the cmd-result topic."""

    name: str
    ok: bool
    detail: str

    def result(self, ts_ns: int) -> CommandResult:
        """The cmd-result message; a name that is no command's is answered as "invalid"."""
        return CommandResult(
            cmd=self.name if self.name.isalpha() else "invalid",
            ok=self.ok,
            detail=self.detail[:500],
            ts=ts_ns,
        )


class Commands:
    """Opens each command through the gate and carries it out with the unit's parts."""

    def __init__(
        self,
        gate: CommandGate | None,
        outbox: Outbox,
        *,
        pictures: EvidenceUpload | None,
        camera: CameraLoop | None,
        rewind: Callable[[], None],
        live: LiveTap | None = None,
    ) -> None:
        self._gate = gate
        self._live = live
        self._outbox = outbox
        self._pictures = pictures
        self._camera = camera
        self._rewind = rewind

    def carry_out(self, name: str, payload: bytes, clock: Clock) -> Answer:
        """Carry out one signed command from the control room, judged by `clock` now; the
        answer says what happened."""
        ok, detail = self._carry_out(name, payload, clock)
        return Answer(name, ok, detail)

    def _carry_out(self, name: str, payload: bytes, clock: Clock) -> tuple[bool, str]:
        model = MODELS.get(name)
        if model is None:
            return False, f"unknown command {name!r}"
        if self._gate is None:
            return False, "refused: no CA certificate to check commands with ([broker.tls])"
        try:
            cmd = self._gate.open(payload, model, clock.wall_ns(), clock.synced())
        except CommandRefused as exc:
            return False, f"refused: {exc}"
        if isinstance(cmd, Resend):
            return self._resend(cmd)
        if self._camera is None:
            return False, "this unit has no camera"
        if isinstance(cmd, Live):
            if self._live is None:
                return False, "this unit has no live view"
            self._live.grant(cmd.lease_s, cmd.fps)
            if cmd.lease_s <= 0:
                return True, f"live view stopped for {cmd.by}"
            return True, f"live view for {cmd.by}: {cmd.lease_s:g} s at {cmd.fps:g} fps"
        # The cause names who asked (guard:budi); two asks within one set's time make one set.
        key = cmd.cause or f"cmd-{uuid.uuid4().hex[:16]}"
        self._camera.trigger(key, clock.mono_ns())
        return True, f"pictures requested by {cmd.by} ({key})"

    def _resend(self, cmd: Resend) -> tuple[bool, str]:
        """Store first (events requeued, pictures chunked again), then rewind the link."""
        count = self._outbox.requeue(cmd.first_seq, cmd.last_seq)
        pictures = (
            self._pictures.again(cmd.first_seq, cmd.last_seq)
            if self._pictures is not None
            else PicturesAgain()
        )
        self._rewind()
        wanted = cmd.last_seq - cmd.first_seq + 1
        detail = f"requeued {count} of seq {cmd.first_seq}..{cmd.last_seq} for {cmd.by}"
        if count < wanted:
            detail += f"; {wanted - count} no longer kept on the unit"
        ok = count == wanted and not pictures.gone and pictures.error is None
        return ok, detail + pictures.describe()

    def close(self) -> None:
        if self._gate is not None:
            self._gate.close()
