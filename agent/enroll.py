"""On the unit: make its private key and a certificate request, so the key never leaves the unit."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import load_config
from kernel.files import Durability, atomic_write

ORGANIZATION = "Jaga"
"""Must match the O= that `jaga-provision device sign` expects."""


class EnrollError(Exception):
    """Enrolment cannot go on; the message says what to do."""


def enroll(config_path: Path, force: bool = False) -> Path:
    """Create the P-256 key at broker.tls.key (0600) and <device>.csr beside it; return the CSR."""
    config = load_config(config_path)
    if config.broker.tls is None:
        raise EnrollError(f"{config_path}: [broker.tls] is missing; enrolment needs its key path")
    key_path = config.broker.tls.key
    if key_path.exists() and not force:
        raise EnrollError(
            f"{key_path} already exists; refusing to replace the unit's key "
            "(use --force only if the unit must be enrolled again)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, config.site),
            x509.NameAttribute(NameOID.COMMON_NAME, config.device),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    _write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    csr_path = key_path.parent / f"{config.device}.csr"
    _write(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644)
    return csr_path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace path atomically with data at mode, never briefly readable by others.

    FSYNC_FILE: a power cut may bring back the previous key or request, whole; enrolling again
    makes a new one, so the rename need not be synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, durability=Durability.FSYNC_FILE, mode=mode)


def enroll_with_token(
    config_path: Path, token: str, server: str | None, force: bool = False
) -> Path:
    """Make the key here, have the site's enrolment endpoint certify it with the one-time token,
    and install key (0600) and certificate at broker.tls.key/cert; return the certificate path."""
    from agent.est_client import endpoint, install, request_certificate

    config = load_config(config_path)
    tls = config.broker.tls
    if tls is None:
        raise EnrollError(f"{config_path}: [broker.tls] is missing; enrolment needs its paths")
    if tls.key.exists() and not force:
        raise EnrollError(
            f"{tls.key} already exists; refusing to replace the unit's key "
            "(use --force only if the unit must be enrolled again)"
        )
    if not tls.ca.is_file():
        raise EnrollError(f"{tls.ca} is missing: the bundle's ca.crt checks the server")
    new = request_certificate(
        endpoint(config.broker.host, server), config.site, config.device, tls.ca, token=token
    )
    install(new, tls.key, tls.cert)
    return tls.cert
