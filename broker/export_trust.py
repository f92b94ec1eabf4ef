"""What an evidence export's signatures rest on: the CA the auditor pins, and the unit
certificate, which must be in its standard form, chain to that CA alone and name one site and
one unit. Problems are appended to the caller's list, one line each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)

from broker.export_files import SMALL_MAX_BYTES, one_line, os_reason, read_plain
from broker.export_format import CA_PEM, UNIT_PEM
from protocol.signing import PublicKey

FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def ca_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER bytes, 64 lowercase hex digits: what auditors pin.

    The same value `jaga-provision ca fingerprint` prints and `openssl x509 -noout
    -fingerprint -sha256` shows (there in upper case with colons)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def normalise_fingerprint(text: str) -> str:
    """Accept the hex as printed by jaga-provision or openssl; ValueError for anything else."""
    value = text.strip().lower()
    if value.startswith("sha256 fingerprint="):
        value = value.split("=", 1)[1]
    value = value.replace(":", "").replace(" ", "")
    if not FINGERPRINT.match(value):
        raise ValueError(
            "a CA fingerprint is 64 hexadecimal digits (SHA-256), as `jaga-provision ca "
            "fingerprint` prints it"
        )
    return value


@dataclass(frozen=True, slots=True)
class PinnedCA:
    """The CA the auditor trusts, brought from outside the export.

    fingerprint: SHA-256 of its DER certificate (from --ca-fingerprint, or of --ca FILE).
    certificate: the certificate itself when the auditor brought it (--ca FILE)."""

    fingerprint: str
    certificate: x509.Certificate | None = None

    @classmethod
    def of(cls, certificate: x509.Certificate) -> PinnedCA:
        return cls(ca_fingerprint(certificate), certificate)


def certificate(folder: Path, name: str, problems: list[str]) -> x509.Certificate | None:
    """Exactly one PEM certificate in its standard form, nothing before, after or beside it."""
    try:
        data = read_plain(folder, name, SMALL_MAX_BYTES)
    except OSError as exc:
        problems.append(f"{name}: {os_reason(exc)}")
        return None
    try:
        cert = x509.load_pem_x509_certificate(data)
        # Parsed lazily: a damaged key, name or extension shows only when read.
        cert.public_key(), cert.subject, cert.extensions
    except ValueError:
        cert = None
    if cert is None or cert.public_bytes(Encoding.PEM).rstrip(b"\n") != data.rstrip(b"\n"):
        problems.append(f"{name}: not one PEM certificate")
        return None
    return cert


def anchor(folder: Path, pinned: PinnedCA, problems: list[str]) -> x509.Certificate | None:
    """The pinned CA: the export's certs/ca.pem only if it is byte for byte the pinned one."""
    carried = certificate(folder, CA_PEM, problems)
    if carried is None:
        return None
    found = ca_fingerprint(carried)
    if found != pinned.fingerprint:
        problems.append(
            f"{CA_PEM} ({one_line(carried.subject.rfc4514_string())}) has fingerprint {found}, "
            f"is not the pinned CA {pinned.fingerprint}: nothing it vouches for is trusted"
        )
        return None
    return carried


def unit_name(
    unit: x509.Certificate, problems: list[str], where: str = UNIT_PEM
) -> tuple[str, str] | None:
    """The (site, unit) the unit certificate names: OU and CN, one of each."""
    site = _single(unit.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    device = _single(unit.subject, NameOID.COMMON_NAME)
    if site is None or device is None:
        problems.append(f"{where} does not name one site (OU) and one unit (CN)")
        return None
    return site, device


def unit_key(
    unit: x509.Certificate, problems: list[str], where: str = UNIT_PEM
) -> PublicKey | None:
    """The unit's public key, if it is one a unit signs with."""
    key = unit.public_key()
    if isinstance(key, ed25519.Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    problems.append(f"{where}: the key is neither ECDSA P-256 nor Ed25519")
    return None


def _single(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        return None
    value = values[0].value
    return value if re.fullmatch(r"[a-z0-9-]+", value) else None


def verifier(anchor: x509.Certificate, when: datetime, depth: int = 0) -> ClientVerifier:
    """RFC 5280 path validation to the anchor alone, as of `when`; unit certificates carry
    no subjectAltName (their name is CN = unit, OU = site), so it may be absent. depth 1: one
    issuing CA (given to verify() as the intermediate) may stand between them."""
    leaf = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return (
        PolicyBuilder()
        .store(Store([anchor]))
        .time(when)
        .max_chain_depth(depth)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=leaf)
        .build_client_verifier()
    )
