"""A camera event's pictures as outbox messages: the one place that chunks them, so the first
upload and a resend put the very same bytes on the very same topic. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.snapshot import ChunkRole, payload_budget, split

ROLES: dict[str, ChunkRole] = {"before": "before", "still": "still", "after": "after"}


def chunk_role(role: str) -> ChunkRole:
    """A picture's role as the wire spells it (ValueError for a role the wire does not know)."""
    try:
        return ROLES[role]
    except KeyError:
        raise ValueError(f"{role!r} is not a picture role") from None


@dataclass(frozen=True, slots=True)
class Picture:
    """One picture of a camera event, with its role in the set."""

    sha256: str
    role: ChunkRole
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class Chunks:
    """The messages carrying some pictures, in order, and which picture each one carries."""

    messages: tuple[tuple[str, bytes], ...]
    owners: tuple[str, ...]
    """The sha256 of the picture each message carries, message by message."""

    def rows_by_picture(self, rows: Sequence[int]) -> dict[str, list[int]]:
        """The outbox rows carrying each picture, given the rows the messages were stored in."""
        if len(rows) != len(self.owners):
            raise ValueError(f"{len(rows)} rows for {len(self.owners)} messages")
        out: dict[str, list[int]] = {}
        for sha, row in zip(self.owners, rows, strict=True):
            out.setdefault(sha, []).append(row)
        return out


def chunk(topic: str, event_id: str, pictures: Sequence[Picture], max_packet_size: int) -> Chunks:
    """Split each picture into messages on the event's snapshot topic that fit the broker's
    packet limit (max_packet_size, as the broker is configured)."""
    budget = payload_budget(max_packet_size, topic)
    messages: list[tuple[str, bytes]] = []
    owners: list[str] = []
    for p in pictures:
        parts = split(event_id, p.sha256, p.role, p.jpeg, budget)
        messages += [(topic, part) for part in parts]
        owners += [p.sha256] * len(parts)
    return Chunks(tuple(messages), tuple(owners))
