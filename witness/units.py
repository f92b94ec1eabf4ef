"""Unit certificates the witness believes: from its copy of the registry, each one checked
against the CA whose fingerprint it pins. The copy is not trusted; the pinned CA is."""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from kernel.unit_keys import UnitKeyCache
from protocol.signing import PublicKey

log = logging.getLogger("jaga.witness")


class TrustError(Exception):
    """The registry copy's CA is not the pinned one; the message says what to check."""


def load_pinned_ca(registry_dir: Path, fingerprint: str) -> x509.Certificate:
    """registry_dir/ca/ca.crt if its SHA-256 fingerprint is the pinned one; TrustError else."""
    path = registry_dir / "ca" / "ca.crt"
    try:
        ca = x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise TrustError(
            f"{path} is missing: registry_dir must be a copy of the registry's ca/ and devices/"
        ) from None
    except (OSError, ValueError) as exc:
        raise TrustError(f"{path}: not a readable PEM certificate ({exc})") from None
    found = ca.fingerprint(hashes.SHA256()).hex()
    if found != fingerprint:
        raise TrustError(
            f"{path} has fingerprint {found}, not the pinned ca_fingerprint {fingerprint}: "
            "this registry copy is not from the CA you were told to trust"
        )
    return ca


class UnitKeys:
    """Public keys of every certificate the pinned CA issued to a unit (old ones included,
    for events signed before a renewal); a renewal or a newcomer is seen within
    kernel.unit_keys' interval."""

    def __init__(self, registry_dir: Path, ca: x509.Certificate) -> None:
        self.root = registry_dir / "devices"
        self.ca = ca
        self.issuing_dir = registry_dir / "ca" / "issuing"
        self._cache: UnitKeyCache[PublicKey] = UnitKeyCache(
            self._read, lambda site, device: self.root / site / device
        )

    def keys(self, site: str, device: str) -> list[PublicKey]:
        return self._cache.keys(site, device)

    def _read(self, site: str, device: str) -> list[PublicKey]:
        return [
            k for c in self._certificates(site, device) if (k := self._accepted(c, site, device))
        ]

    def _certificates(self, site: str, device: str) -> list[x509.Certificate]:
        folder = self.root / site / device
        paths = [folder / "device.crt", *sorted((folder / "certs").glob("*.crt"))]
        found = []
        for path in paths:
            try:
                found.append(x509.load_pem_x509_certificate(path.read_bytes()))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.warning("%s: unreadable certificate, ignored (%s)", path, exc)
        return found

    def _signers(self) -> list[x509.Certificate]:
        """The pinned CA and every issuing CA in the copy that the pinned CA signed (#19)."""
        found = [self.ca]
        for path in sorted(self.issuing_dir.glob("*/ca.crt")):
            try:
                issuing = x509.load_pem_x509_certificate(path.read_bytes())
                issuing.verify_directly_issued_by(self.ca)
            except (OSError, ValueError, TypeError, InvalidSignature) as exc:
                log.warning("%s: not an issuing CA of the pinned CA, ignored (%s)", path, exc)
                continue
            if _is_ca(issuing):
                found.append(issuing)
        return found

    def _accepted(self, cert: x509.Certificate, site: str, device: str) -> PublicKey | None:
        """The certificate's key if the pinned CA signed it for this unit, directly or through
        an issuing CA it signed; None otherwise."""
        try:
            signer = next((s for s in self._signers() if s.subject == cert.issuer), self.ca)
            cert.verify_directly_issued_by(signer)
        except (InvalidSignature, ValueError, TypeError) as exc:
            log.warning(
                "certificate %s of %s/%s not issued by the pinned CA (%s)",
                cert.serial_number,
                site,
                device,
                type(exc).__name__,
            )
            return None
        names = (_one(cert, NameOID.COMMON_NAME), _one(cert, NameOID.ORGANIZATIONAL_UNIT_NAME))
        if names != (device, site):
            log.warning(
                "certificate %s names %s, not %s/%s", cert.serial_number, names, site, device
            )
            return None
        key = cert.public_key()
        return (
            key if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) else None
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _one(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = cert.subject.get_attributes_for_oid(oid)
    value = values[0].value if len(values) == 1 else None
    return value if isinstance(value, str) else None
