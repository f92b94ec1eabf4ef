"""Re-checks stored events from InfluxDB alone: every signature, every chain link, every gap.

A gap (seqs missing between two stored events) is judged by whether a resend can still
close it. It can only when the collector never received those events — its chain book has
an open gap for them, so it keeps asking the unit — and the unit still keeps them (the
KEPT_BY_UNIT latest). A gap the collector's book holds as stored is an event that reached the
collector and is gone from InfluxDB (deleted, or overwritten by a point at the same time): a
resent copy would be a duplicate to the collector and never written again. Such gaps, and
gaps nobody is asking for, fail the audit.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from broker.evidence import EvidenceVault
from broker.influx_reader import InfluxReader, quote_string
from broker.ingest import Keys
from protocol import models
from protocol.models import Event, WireError
from protocol.signing import GENESIS, SignatureError, event_hash, verify


@dataclass
class AuditReport:
    events: int = 0
    gaps: int = 0
    failures: int = 0
    pictures: int = 0
    picture_events: int = 0
    mismatches: int = 0
    missing: int = 0
    lost_gaps: int = 0
    """Gaps no resend can close: the audit fails on them."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.lost_gaps

    def line(self) -> str:
        line = f"verified: {self.events} events, {self.gaps} gaps, {self.failures} failures"
        return line + (f", {self.lost_gaps} gaps no resend can close" if self.lost_gaps else "")

    def evidence_line(self) -> str:
        line = (
            f"evidence: {self.pictures} pictures for {self.picture_events} events, "
            f"{self.mismatches} hash mismatches"
        )
        return line + (f", {self.missing} missing" if self.missing else "")


def audit_site(
    ql: InfluxReader,
    keys: Keys,
    site: str,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    evidence: EvidenceVault | None = None,
    book: CollectorBook | None = None,
) -> AuditReport:
    """Verify every event of a site in the window; a gap is a run of missing seqs, judged
    against the collector's chain book (None: no book, so no gap can be shown closable)."""
    where = [f'"site" = {quote_string(site)}']
    if since_ns is not None:
        where.append(f"time >= {since_ns}")
    if until_ns is not None:
        where.append(f"time <= {until_ns}")
    rows = ql.rows(
        f'SELECT "raw", "hash", "seq" FROM "event" WHERE {" AND ".join(where)} GROUP BY "device"'
    )
    report = AuditReport()
    by_device: dict[str, list[tuple[Event, str]]] = defaultdict(list)
    for row in rows:
        device = str(row.get("device", "?"))
        try:
            event = models.parse(Event, str(row.get("raw", "")).encode())
        except WireError as exc:
            report.failures += 1
            report.problems.append(f"{device} seq {row.get('seq')}: unreadable event: {exc}")
            continue
        if (event.site, event.device) != (site, device):
            report.failures += 1
            report.problems.append(f"{device} seq {event.seq}: stored under another unit's tags")
            continue
        if not signature_ok(keys, event):
            report.failures += 1
            report.problems.append(f"{device} seq {event.seq}: signature does not verify")
            continue
        digest = event_hash(event)
        if row.get("hash") not in (None, digest):
            report.failures += 1
            report.problems.append(f"{device} seq {event.seq}: stored hash does not match")
            continue
        report.events += 1
        by_device[device].append((event, digest))
        if event.snapshot_sha256 and evidence is not None:
            _check_pictures(report, evidence, device, event)
    for device, items in sorted(by_device.items()):
        items.sort(key=lambda item: item[0].seq)
        expected = 1 if since_ns is None else items[0][0].seq
        prev_digest: str | None = None
        for event, digest in items:
            if event.seq > expected:
                report.gaps += 1
                newest = max(items[-1][0].seq, book.last_seq(device) if book else 0)
                why = unclosable(device, expected, event.seq - 1, book, newest)
                if why is None:
                    report.problems.append(
                        f"{device}: seq {expected}..{event.seq - 1} missing "
                        "(not received yet: the collector keeps asking the unit for them)"
                    )
                else:
                    report.lost_gaps += 1
                    report.problems.append(
                        f"{device}: seq {expected}..{event.seq - 1} missing, and no resend can "
                        f"close the gap: {why}"
                    )
                prev_digest = None
            elif event.seq < expected:  # the same seq twice with different content
                report.failures += 1
                report.problems.append(f"{device} seq {event.seq}: stored twice")
                continue
            if event.seq == 1 and event.prev != GENESIS:
                report.failures += 1
                report.problems.append(f"{device} seq 1: does not start the chain")
            if prev_digest is not None and event.prev != prev_digest:
                report.failures += 1
                report.problems.append(
                    f"{device} seq {event.seq}: does not chain to the one before"
                )
            prev_digest = digest
            expected = event.seq + 1
    return report


KEPT_BY_UNIT = 20_000
"""Delivered events a unit keeps for a resend (agent.outbox's keep_delivered): a gap further
back than this behind the unit's newest event cannot be sent again."""


class CollectorBook:
    """The collector's chain book (data_dir/chain.sqlite3, broker.chain), opened read-only:
    which seqs of a unit it stored, and which gaps it still waits for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise sqlite3.OperationalError(f"{path} does not exist")
        self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            self._db.execute("SELECT 1 FROM chain, gap LIMIT 1").fetchall()
        except sqlite3.Error:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def stored(self, device: str, first: int, last: int) -> int:
        """How many of the seqs first..last the collector stored."""
        row = self._db.execute(
            "SELECT count(*) FROM chain WHERE device=? AND seq BETWEEN ? AND ?",
            (device, first, last),
        ).fetchone()
        return int(row[0])

    def open_gaps(self, device: str) -> list[tuple[int, int]]:
        rows = self._db.execute(
            "SELECT first, last FROM gap WHERE device=? ORDER BY first", (device,)
        ).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def last_seq(self, device: str) -> int:
        row = self._db.execute("SELECT max(seq) FROM chain WHERE device=?", (device,)).fetchone()
        return int(row[0] or 0)


def unclosable(
    device: str,
    first: int,
    last: int,
    book: CollectorBook | None,
    newest: int,
    kept: int = KEPT_BY_UNIT,
) -> str | None:
    """Why no resend can bring back the unit's seqs first..last; None while one still can."""
    if book is None:
        return "no chain book of the collector to show that it is still asking for them"
    stored = book.stored(device, first, last)
    if stored:
        return (
            f"the collector stored {stored} of them and InfluxDB no longer has them (deleted "
            "or overwritten); a resent copy is a duplicate to the collector, never written "
            "again (if InfluxDB was down, let the collector's spool drain and audit again)"
        )
    if not _covered(first, last, book.open_gaps(device)):
        return "the collector has no open gap for them, so nothing asks the unit for them"
    if first <= newest - kept:
        return f"the unit keeps only its latest {kept} events for a resend (newest: {newest})"
    return None


def _covered(first: int, last: int, gaps: list[tuple[int, int]]) -> bool:
    """first..last lies inside the union of the (sorted, disjoint) gaps."""
    at = first
    for a, b in gaps:
        if a <= at <= b:
            at = b + 1
            if at > last:
                return True
    return False


def _check_pictures(report: AuditReport, store: EvidenceVault, device: str, event: Event) -> None:
    """Each picture the event signed for is in the store and still hashes to its name."""
    report.picture_events += 1
    for sha in event.snapshot_sha256 or ():
        if not store.has(sha):
            report.missing += 1
            report.problems.append(f"{device} seq {event.seq}: picture {sha[:12]}... missing")
        elif store.verify(sha):
            report.pictures += 1
        else:
            report.mismatches += 1
            report.failures += 1
            report.problems.append(
                f"{device} seq {event.seq}: picture {sha[:12]}... changed since it was stored"
            )


def signature_ok(keys: Keys, event: Event) -> bool:
    """Signed by one of the keys the unit was ever issued."""
    for key in keys.keys(event.site, event.device):
        try:
            verify(event, key)
            return True
        except SignatureError:
            continue
    return False
