"""A live frame on jaga/v1/<site>/<device>/live: one JPEG, stamped with its capture time.

The payload stays a plain JPEG any viewer can show: the stamp is a JPEG comment segment
(COM, 0xFFFE) right after the start-of-image marker, `jaga-live v1 ts=<ns> seq=<n>`, where ts is
the unit's wall clock at capture (ns since the epoch) and seq its frame count. Live frames are
never signed nor stored: they show what the camera sees now; evidence is the snapshot event.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

MAX_FRAME_BYTES = 200_000
"""A live frame larger than this is not sent (the broker's max_packet_size is 256 KiB)."""

_SOI = b"\xff\xd8"
_COM = b"\xff\xfe"
_STAMP = re.compile(rb"^jaga-live v1 ts=(\d{1,20}) seq=(\d{1,20})$")


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a live frame was captured (unit's wall clock, ns) and its number."""

    ts_ns: int
    seq: int


def stamp(jpeg: bytes, ts_ns: int, seq: int) -> bytes:
    """The JPEG with its capture stamp; ValueError if it is not a JPEG."""
    if not jpeg.startswith(_SOI):
        raise ValueError("not a JPEG (no start-of-image marker)")
    text = f"jaga-live v1 ts={ts_ns} seq={seq}".encode()
    return _SOI + _COM + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def read_stamp(frame: bytes) -> Stamp | None:
    """The stamp of a live frame; None when it has none (or is no JPEG)."""
    if not frame.startswith(_SOI + _COM) or len(frame) < 6:
        return None
    (length,) = struct.unpack(">H", frame[4:6])
    found = _STAMP.match(frame[6 : 4 + length])
    if found is None:
        return None
    return Stamp(int(found.group(1)), int(found.group(2)))
