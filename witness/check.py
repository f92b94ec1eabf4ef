"""`jaga-witness check`: what the witness saw, against what the collector's InfluxDB still has.

Every event the witness logged must be in InfluxDB (measurement `event`, same site, device and
seq) with the same hash; each one missing or changed is named. The stored `hash` field is
not taken on trust: it is recomputed from the stored signed bytes (`raw`) when they parse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from broker.influx_reader import InfluxReader, quote_string
from protocol.signing import canonical_bytes
from witness.log import WitnessLog


@dataclass(frozen=True, slots=True)
class Finding:
    site: str
    device: str
    seq: int
    what: str
    """`missing` or `changed`."""
    detail: str

    def line(self) -> str:
        return f"{self.what}: {self.site}/{self.device} seq {self.seq}: {self.detail}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    events: int
    units: int
    findings: list[Finding]


def stored_hashes(reader: InfluxReader, site: str, device: str) -> dict[int, set[str]]:
    """seq -> the hashes of what InfluxDB holds for the unit at that seq."""
    rows = reader.rows(
        'SELECT "seq", "hash", "raw" FROM "event" '
        f'WHERE "site" = {quote_string(site)} AND "device" = {quote_string(device)}'
    )
    found: dict[int, set[str]] = {}
    for row in rows:
        if row.get("seq") is None:
            continue
        found.setdefault(int(row["seq"]), set()).add(_hash_of(row))
    return found


def _hash_of(row: dict[str, object]) -> str:
    raw = row.get("raw")
    if isinstance(raw, str):
        try:
            return hashlib.sha256(canonical_bytes(json.loads(raw))).hexdigest()
        except (ValueError, TypeError, AttributeError):
            return "unreadable raw"
    return str(row.get("hash"))


def check(book: WitnessLog, reader: InfluxReader) -> CheckResult:
    """Every logged event against InfluxDB; may raise broker.influx_reader.QueryFailed."""
    findings: list[Finding] = []
    events = 0
    units = book.units()
    for site, device in units:
        stored = stored_hashes(reader, site, device)
        for seq, digest, _seen in book.held(site, device):
            events += 1
            have = stored.get(seq)
            if not have:
                findings.append(
                    Finding(site, device, seq, "missing", f"the witness saw hash {digest}")
                )
            elif digest not in have:
                others = ", ".join(sorted(have))
                findings.append(
                    Finding(site, device, seq, "changed", f"witness saw {digest}, stored {others}")
                )
    return CheckResult(events, len(units), findings)
