"""The live view's parts in the collector: leases, the relay, the commands, the cameras.

Wired by the collector (frames from its one MQTT session) and handed to the page (`serve`).
Nothing here touches storage: frames are relayed, never stored, and a failure here never
stops events from being kept.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from broker.collector.asks import Signer, command_signer
from broker.collector.live import Camera, Leases, LiveCommands, Send
from broker.config import CollectorConfig
from broker.web.relay import Relay

log = logging.getLogger("jaga.collector.live")


class LiveView:
    """Leases + relay + signed commands, for one collector."""

    def __init__(
        self,
        leases: Leases,
        signer: Signer | None,
        publish: Send,
        registry_dir: Path | None,
        *,
        max_viewers: int = 1000,
        sites: frozenset[str] | None = None,
    ) -> None:
        self.leases = leases
        self.relay = Relay(leases, max_viewers=max_viewers)
        self.commands = LiveCommands(leases, self.relay.lock, signer, publish)
        self.relay.wake = self.commands.wake.set
        self.registry_dir = registry_dir
        self.sites = sites
        self._cameras: set[Camera] = set()
        self._read_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_collector(cls, config: CollectorConfig, publish: Send) -> LiveView:
        web = config.web
        budget = web.live_site_uplink_kbit_s if web is not None else None
        leases = Leases(
            fps=web.live_fps if web is not None else 2.0,
            site_budget_bytes_s=budget * 125 if budget else None,
        )
        return cls(
            leases,
            command_signer(config),
            publish,
            config.registry_dir,
            max_viewers=web.live_max_viewers if web is not None else 1000,
            sites=frozenset(config.mqtt.sites) or None,
        )

    def start(self) -> None:
        self.commands.start()

    def stop(self) -> None:
        self.relay.close_all()
        self.commands.stop()

    def save(self, site: str, device: str, cause: str) -> bool:
        return self.commands.save(site, device, cause)

    def cameras(self) -> set[Camera]:
        """The registry's units with a camera (of this collector's sites), re-read each minute."""
        with self._lock:
            if self.registry_dir is not None and time.monotonic() - self._read_at > 60:
                self._read_at = time.monotonic()
                try:
                    self._cameras = registry_cameras(self.registry_dir, self.sites)
                except Exception:  # the wall keeps the cameras it knew
                    log.exception("live view: cannot read the registry's cameras")
            return set(self._cameras)


def registry_cameras(registry_dir: Path, sites: frozenset[str] | None = None) -> set[Camera]:
    """(site, device) of every registered, unrevoked unit with a camera."""
    from provisioning.registry import Registry  # as broker.web.registry does

    registry = Registry(registry_dir)
    found: set[Camera] = set()
    for site, device in registry.devices():
        if sites is not None and site not in sites:
            continue
        record = registry.device(site, device)
        if record.camera and record.revoked_at is None:
            found.add((site, device))
    return found
