"""The unit's check of a signed command before it acts: signature (protocol.commands), age even
without a synchronised clock, and a nonce never accepted before (remembered on disk)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from kernel.nonces import NonceBook, NonceBookUnavailable
from protocol.commands import (
    MAX_SKEW_NS,
    CommandRefused,
    Live,
    Resend,
    Snapshot,
    UnitCommand,
    open_command,
)


class CommandGate:
    """Opens signed commands for one unit; refuses forged, stale and replayed ones."""

    def __init__(self, ca: x509.Certificate, path: Path) -> None:
        self.ca = ca
        self.nonces = NonceBook(path, MAX_SKEW_NS)

    def open(
        self,
        payload: bytes,
        model: type[Resend] | type[Snapshot] | type[Live],
        now_ns: int,
        clock_synced: bool,
    ) -> UnitCommand:
        """The command, once it may be carried out (CommandRefused otherwise)."""
        try:
            if clock_synced:
                self.nonces.note(now_ns)  # real time has reached this: older commands are stale
            command = open_command(
                payload, model, self.ca, now_ns, clock_synced, known_ns=self.nonces.newest()
            )
            admitted = self.nonces.admit(command.nonce, command.ts)
        except NonceBookUnavailable as exc:  # a full disk: refused, never carried out unrecorded
            raise CommandRefused(f"cannot remember the command, so it is refused: {exc}") from None
        if not admitted:
            raise CommandRefused(f"command from {command.by} was already carried out (replay?)")
        return command

    def close(self) -> None:
        self.nonces.close()
