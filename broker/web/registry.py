"""Tiles for every registered unit from the start, before any of them has said a word."""

from __future__ import annotations

from pathlib import Path

from broker.web.state import LiveState


def preload(state: LiveState, registry_dir: Path) -> int:
    """Add the registry's sites (with their names) and live units; how many units."""
    from provisioning.registry import Registry  # as broker.keys does: only where needed

    registry = Registry(registry_dir)
    for site in registry.sites():
        state.add_site(site.id, site.name)
    count = 0
    for site_id, device in registry.devices():
        record = registry.device(site_id, device)
        if record.revoked_at is None:
            state.add_unit(site_id, device, [(s.name, str(s.kind)) for s in record.sensors])
            count += 1
    return count
