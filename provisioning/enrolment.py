"""Two ways a unit gets its certificate: its own CSR (the key never leaves it) or a bench key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocol.ids import InvalidIdentifier, check_id
from provisioning import certs
from provisioning.ca import DEFAULT_CERT_DAYS, CertificateAuthority, Issued
from provisioning.errors import ProvisioningError
from provisioning.files import write_private_key
from provisioning.lifecycle import record_event, technician
from provisioning.registry import Registry


@dataclass(frozen=True, slots=True)
class CsrRequest:
    """What a checked CSR asks for."""

    site: str
    device: str
    public_key: ec.EllipticCurvePublicKey


def read_csr(pem: bytes, registry: Registry) -> CsrRequest:
    """Check a unit's CSR against the registry; a ProvisioningError says what does not match."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise ProvisioningError(
            "not a PEM certificate signing request (expected the <device>.csr "
            "that `jaga-agent enroll` wrote)"
        ) from None
    if not csr.is_signature_valid:
        raise ProvisioningError("the CSR's signature does not verify: it was altered or damaged")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not certs.is_p256(key):
        raise ProvisioningError("the CSR's key is not ECDSA P-256; run `jaga-agent enroll` again")
    device = certs.single_attribute(csr.subject, NameOID.COMMON_NAME)
    site = certs.single_attribute(csr.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    org = certs.single_attribute(csr.subject, NameOID.ORGANIZATION_NAME)
    subject = csr.subject.rfc4514_string()
    if device is None or site is None or org != certs.ORGANIZATION:
        raise ProvisioningError(
            f"CSR subject {subject!r} must be CN=<device>, OU=<site>, O={certs.ORGANIZATION}"
        )
    try:
        check_id(site, "site in the CSR")
        check_id(device, "device in the CSR")
    except InvalidIdentifier as exc:
        raise ProvisioningError(str(exc)) from None
    registry.device(site, device)
    return CsrRequest(site, device, key)


def sign_csr(
    registry: Registry,
    pem: bytes,
    *,
    days: int = DEFAULT_CERT_DAYS,
    now: datetime | None = None,
) -> Issued:
    """Issue the certificate a registered unit asked for in its CSR."""
    request = read_csr(pem, registry)
    ca = CertificateAuthority(registry)
    who = technician()
    issued = ca.issue_device(
        request.site, request.device, request.public_key, days=days, now=now, by=who
    )
    record_event(registry, "issued", site=request.site, device=request.device,
                 serial=issued.cert.serial_number, by=who, how="csr")  # fmt: skip
    return issued


def issue_with_new_key(
    registry: Registry,
    site: str,
    device: str,
    *,
    days: int = DEFAULT_CERT_DAYS,
    now: datetime | None = None,
    overwrite: bool = False,
) -> Issued:
    """Bench shortcut: make the unit's key here (device.key, 0600) and certify it."""
    registry.device(site, device)
    key_path = registry.device_dir(site, device) / "device.key"
    if key_path.exists() and not overwrite:
        raise ProvisioningError(f"{key_path} already exists; refusing to replace the unit's key")
    key = certs.new_key()
    who = technician()
    issued = CertificateAuthority(registry).issue_device(
        site, device, key.public_key(), days=days, now=now, by=who, key_generated_centrally=True
    )
    write_private_key(key_path, certs.key_pem(key), overwrite=True)
    record_event(registry, "issued", site=site, device=device,
                 serial=issued.cert.serial_number, by=who, how="key made here")  # fmt: skip
    return Issued(issued.cert, issued.cert_path, key_path, issued.chain)


def csr_path_hint(path: Path) -> str:
    """What to tell a technician whose CSR path does not exist."""
    return (
        f"{path}: no such file (copy the <device>.csr that `jaga-agent enroll` wrote on the unit)"
    )
