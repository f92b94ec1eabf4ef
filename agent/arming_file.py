"""The last arming state the unit heard, kept on disk so a unit cut off from the network after a
restart still knows whether the site is armed; and the arming message read for this site."""

from __future__ import annotations

import logging
from pathlib import Path

from kernel.files import Durability, atomic_write
from protocol import models
from protocol.alerting import ArmingState

log = logging.getLogger("jaga.agent")

NAME = "arming.json"


def load(path: Path) -> ArmingState | None:
    """The state kept at path; None when there is none or it cannot be read (logged)."""
    try:
        return models.parse(ArmingState, path.read_bytes())
    except FileNotFoundError:
        return None
    except models.WireError as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def save(path: Path, state: ArmingState) -> None:
    """Keep state durably before the unit acts on it: a power cut must not bring back an older
    arming state (a disarmed site sounding, or an armed one silent)."""
    atomic_write(path, state.to_json(), durability=Durability.FSYNC_FILE_AND_DIR)


def heard(payload: bytes, site: str) -> ArmingState | None:
    """The arming state in a message on the site's arming topic; None for an empty (cleared)
    message, one that does not validate (logged) and another site's."""
    if not payload:
        return None
    try:
        state = models.parse(ArmingState, payload)
    except models.WireError as exc:
        log.warning("arming message refused: %s", exc)
        return None
    return state if state.site == site else None
