"""Public keys of the units, read from the provisioning registry's certificates."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from protocol.signing import PublicKey

log = logging.getLogger("jaga.collector.keys")

RELOAD_EVERY_S = 30.0


class KeyStore:
    """Every key a unit has been issued, newest first; re-reads the registry for newcomers."""

    def __init__(self, registry_dir: Path) -> None:
        from provisioning.registry import Registry

        self._registry = Registry(registry_dir)
        self._keys: dict[tuple[str, str], list[PublicKey]] = {}
        self._misses: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def keys(self, site: str, device: str) -> list[PublicKey]:
        ident = (site, device)
        with self._lock:
            hit = self._keys.get(ident)
            if hit:
                return hit
            if time.monotonic() - self._misses.get(ident, -1e9) < RELOAD_EVERY_S:
                return []
            certs = self._registry.device_certificates(site, device)
            keys = [
                k
                for c in certs
                if isinstance(
                    k := c.public_key(), ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                )
            ]
            if keys:
                self._keys[ident] = keys
            else:
                self._misses[ident] = time.monotonic()
                log.warning("no certificate for unit %s/%s in the registry", site, device)
            return keys
