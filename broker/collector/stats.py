"""The collector's running figures: the status line, the systemd STATUS= and its own point."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CollectorStats:
    received: int = 0
    stored_events: int = 0
    duplicates: int = 0
    rejected: int = 0
    integrity: int = 0
    batches: int = 0
    store_failures: int = 0
    refused_points: int = 0
    resend_requests: int = 0
    deferred: int = 0
    pictures: int = 0
    pictures_dropped: int = 0
    """Partial or unvouched pictures given up (timed out, over a unit's bound, refused)."""
    evidence_refused: int = 0
    alerts: int = 0
    alert_failures: int = 0
    commands_refused: int = 0
    cosignatures: int = 0
    """Witnesses' cosignatures stored."""
    connected: bool = False
    last_error: str | None = None
    by_reason: dict[str, int] = field(default_factory=dict)
