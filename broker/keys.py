"""Public keys of the units, read from the provisioning registry's certificates."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from kernel.unit_keys import UnitKeyCache
from protocol.signing import PublicKey


class KeyStore:
    """Every key a unit has been issued, newest first, from the registry's certificates;
    a renewal or a newcomer is seen within kernel.unit_keys' interval."""

    def __init__(self, registry_dir: Path) -> None:
        from provisioning.registry import Registry

        registry = Registry(registry_dir)
        self._registry = registry
        self._cache: UnitKeyCache[PublicKey] = UnitKeyCache(self._read, registry.device_dir)

    def keys(self, site: str, device: str) -> list[PublicKey]:
        return self._cache.keys(site, device)

    def _read(self, site: str, device: str) -> list[PublicKey]:
        return [
            k
            for c in self._registry.device_certificates(site, device)
            if isinstance(k := c.public_key(), ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
        ]
