"""X.509 building blocks of the site CA (P-256 keys, certificates, CRLs), `cryptography` only."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANIZATION = "Jaga"
CLOCK_SKEW = timedelta(minutes=5)
"""Back-date not_before a little: a unit without an RTC may run slightly behind the CA's clock."""

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


def new_key() -> PrivateKey:
    """A fresh ECDSA P-256 key: what Mosquitto/OpenSSL and the event signatures both use."""
    return ec.generate_private_key(ec.SECP256R1())


def is_p256(key: object) -> bool:
    """True for an EC public or private key on P-256."""
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM without a passphrase: the unit and the broker start unattended."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key_pem(data: bytes) -> PrivateKey:
    """Load a P-256 private key; raise ValueError for anything else."""
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not is_p256(key):
        raise ValueError("not an ECDSA P-256 private key")
    return key


@dataclass(frozen=True, slots=True)
class Validity:
    """When a certificate is valid; explicit so tests can make expired or future ones."""

    not_before: datetime
    not_after: datetime

    @classmethod
    def for_days(cls, days: int, now: datetime | None = None) -> Validity:
        if days < 1:
            raise ValueError(f"--days must be at least 1, not {days}")
        start = now or datetime.now(UTC)
        return cls(start - CLOCK_SKEW, start + timedelta(days=days))

    def __post_init__(self) -> None:
        if self.not_before.tzinfo is None or self.not_after.tzinfo is None:
            raise ValueError("validity times must carry a time zone")
        if self.not_after <= self.not_before:
            raise ValueError("not_after must come after not_before")


def ca_name(name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def device_name(site: str, device: str) -> x509.Name:
    """Unit subject: CN is the device id (Mosquitto's username), OU the site."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, site),
            x509.NameAttribute(NameOID.COMMON_NAME, device),
        ]
    )


def service_name(common_name: str) -> x509.Name:
    """Subject of a collector, operator or broker certificate."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def single_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    """The one value of oid in name, or None when absent or repeated."""
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else None


def make_ca(
    key: PrivateKey, name: str, validity: Validity, serial: int, *, path_length: int = 1
) -> x509.Certificate:
    """Self-signed site root CA; path length 1 leaves room for one issuing CA below it (roots
    made before #19 have 0: they sign units themselves and can have no issuing CA)."""
    subject = ca_name(name)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def make_issuing(
    *,
    public_key: PublicKey,
    name: str,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    serial: int,
    validity: Validity,
) -> x509.Certificate:
    """The issuing CA, signed by the root: signs unit certificates and its CRL (path length 0)."""
    return (
        x509.CertificateBuilder()
        .subject_name(ca_name(name))
        .issuer_name(root_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(root_cert)),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )


def path_length(cert: x509.Certificate) -> int | None:
    """The CA certificate's path length constraint (None: unlimited or not a CA)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return None


def issue_client(
    *,
    subject: x509.Name,
    public_key: PublicKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    serial: int,
    validity: Validity,
) -> x509.Certificate:
    """Leaf certificate for a TLS client that also signs events (units, collector, operators)."""
    return (
        _leaf(subject, public_key, ca_cert, ca_key, serial, validity)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def issue_server(
    *,
    hosts: Sequence[str],
    public_key: PublicKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    serial: int,
    validity: Validity,
) -> x509.Certificate:
    """The broker's TLS server certificate, naming every host the units dial."""
    if not hosts:
        raise ValueError("the broker certificate needs at least one host name or address")
    return (
        _leaf(service_name(hosts[0]), public_key, ca_cert, ca_key, serial, validity)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(alt_names(hosts))), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def alt_names(hosts: Iterable[str]) -> Iterable[x509.GeneralName]:
    """An IP address SAN for addresses, a DNS SAN for names."""
    for host in hosts:
        try:
            yield x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            yield x509.DNSName(host)


def san_hosts(cert: x509.Certificate) -> set[str]:
    """Host names and addresses a server certificate is valid for."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(san.get_values_for_type(x509.DNSName))
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return names


@dataclass(frozen=True, slots=True)
class Revocation:
    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags | None = None


def make_crl(
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    revoked: Iterable[Revocation],
    number: int,
    last_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """CRL signed by the CA; OpenSSL refuses every client once next_update has passed."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(ca_cert)),
            critical=False,
        )
    )
    for item in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(item.serial)
        entry = entry.revocation_date(item.revoked_at)
        if item.reason is not None:
            entry = entry.add_extension(x509.CRLReason(item.reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, hashes.SHA256())


def _leaf(
    subject: x509.Name,
    public_key: PublicKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    serial: int,
    validity: Validity,
) -> x509.CertificateBuilder:
    if not is_p256(public_key):
        raise ValueError("only ECDSA P-256 keys are issued certificates")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(ca_cert)),
            critical=False,
        )
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _ec_public(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("the CA certificate does not hold an EC key")
    return key
