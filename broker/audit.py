"""Re-checks stored events from InfluxDB alone: every signature, every chain link, every gap."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from broker.evidence import EvidenceStore
from broker.influxql import InfluxQL, quote_string
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
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"verified: {self.events} events, {self.gaps} gaps, {self.failures} failures"

    def evidence_line(self) -> str:
        line = (
            f"evidence: {self.pictures} pictures for {self.picture_events} events, "
            f"{self.mismatches} hash mismatches"
        )
        return line + (f", {self.missing} missing" if self.missing else "")


def audit_site(
    ql: InfluxQL,
    keys: Keys,
    site: str,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    evidence: EvidenceStore | None = None,
) -> AuditReport:
    """Verify every event of a site in the window; a gap is a run of missing seqs."""
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
        if not _signature_ok(keys, event):
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
                report.problems.append(f"{device}: seq {expected}..{event.seq - 1} missing")
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


def _check_pictures(report: AuditReport, store: EvidenceStore, device: str, event: Event) -> None:
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


def _signature_ok(keys: Keys, event: Event) -> bool:
    for key in keys.keys(event.site, event.device):
        try:
            verify(event, key)
            return True
        except SignatureError:
            continue
    return False
