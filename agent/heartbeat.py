"""What the unit says about itself: the retained status (birth, and the will the broker sends
when the unit goes silent) and the periodic heartbeat the collector supervises. Builders only:
they read figures and write nothing (the loop's upkeep does the writing, before them)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent import __version__, host
from agent.camera.store import Pressure
from agent.identity import days_left
from agent.outbox import Outbox
from kernel.units import MB
from protocol.models import Heartbeat, Status


@dataclass(frozen=True, slots=True)
class Reports:
    """Builds one unit's status and heartbeats; what does not change while it runs is here."""

    site: str
    device: str
    boot_id: str
    sensors: tuple[str, ...]
    interval_s: int
    data_dir: Path
    cert_not_after: datetime | None

    def status(self, online: bool) -> Status:
        """Online (birth: version and sensors) or offline (the will)."""
        not_after = self.cert_not_after
        return Status(
            site=self.site,
            device=self.device,
            state="online" if online else "offline",
            boot_id=self.boot_id,
            version=__version__ if online else None,
            sensors=self.sensors if online else None,
            cert_not_after=int(not_after.timestamp()) if not_after else None,
        )

    def heartbeat(
        self,
        *,
        wall_ns: int,
        clock_synced: bool,
        outbox: Outbox,
        disk_full: bool,
        connected_since: float | None,
        evidence: Pressure | None,
    ) -> Heartbeat:
        """The unit's figures now; connected_since is time.monotonic() of the last connect."""
        last_seq, head = outbox.chain()
        return Heartbeat(
            site=self.site,
            device=self.device,
            ts=wall_ns,
            boot_id=self.boot_id,
            uptime_s=host.uptime_s(),
            interval_s=self.interval_s,
            cpu_temp_c=host.cpu_temp_c(),
            disk_free_mb=host.disk_free_mb(self.data_dir),
            disk_full=disk_full,
            outbox_depth=outbox.depth(),
            clock_synced=clock_synced,
            last_seq=last_seq,
            chain_head=head,
            cert_days_left=days_left(self.cert_not_after),
            undervoltage=host.undervoltage(),
            connected_since_s=(
                int(time.monotonic() - connected_since) if connected_since is not None else None
            ),
            evidence_used_mb=evidence.used_bytes // MB if evidence else None,
            evidence_held_mb=evidence.held_bytes // MB if evidence else None,
            evidence_refused=evidence.refused_files if evidence else None,
            evidence_full=evidence.full if evidence else False,
        )
