"""What the witness makes of one signed event, given what it already holds of that unit's
chain: pure, no clock, no I/O. `log.WitnessLog.around` supplies the neighbours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Held:
    """What the witness holds around an offered event at `seq`."""

    head_seq: int
    """The highest seq it holds for the unit (0: none yet)."""
    at: str | None
    """Hash of the event it holds at seq."""
    before: str | None
    """Hash of the event it holds at seq - 1 (for seq 1: the genesis, always held)."""
    after_prev: str | None
    """`prev` of the event it holds at seq + 1: what that event says the hash at seq is."""


@dataclass(frozen=True, slots=True)
class Extends:
    """New and consistent with everything held: log it."""


@dataclass(frozen=True, slots=True)
class Seen:
    """The very event it holds at that seq (a redelivery)."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """Refused: at `seq` it holds `seen` and the event offers `offered` instead."""

    kind: Literal["fork", "rewind"]
    seq: int
    seen: str
    offered: str


Verdict = Extends | Seen | Conflict


def judge(seq: int, digest: str, prev: str, held: Held) -> Verdict:
    """An offered event (its seq, hash, prev) against the held chain.

    A conflict below the held head would rewrite history the witness has already seen pass
    (the head going back): a rewind. At or above the head, two events compete: a fork."""
    if held.at is not None:
        if held.at == digest:
            return Seen()
        return _conflict(seq, held.at, digest, held.head_seq)
    if held.before is not None and held.before != prev:
        return _conflict(seq - 1, held.before, prev, held.head_seq)
    if held.after_prev is not None and held.after_prev != digest:
        return _conflict(seq, held.after_prev, digest, held.head_seq)
    return Extends()


def _conflict(seq: int, seen: str, offered: str, head_seq: int) -> Conflict:
    return Conflict("rewind" if seq < head_seq else "fork", seq, seen, offered)
