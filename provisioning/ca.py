"""The site CA's operations: issue, log, revoke and publish the CRL, all inside the registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from broker.mosquitto import CollectorIdentity, OperatorIdentity, WitnessIdentity
from provisioning import certs
from provisioning.certs import PrivateKey, PublicKey, Validity
from provisioning.errors import ProvisioningError
from provisioning.files import replace, write_new, write_private_key
from provisioning.records import CaLog, CertKind, IssuedCert, ServiceRole
from provisioning.registry import Registry

DEFAULT_CA_DAYS = 3650
DEFAULT_CERT_DAYS = 365
DEFAULT_CRL_DAYS = 365
"""OpenSSL refuses every client once the CRL's nextUpdate passes: keep this generous."""
GITIGNORE = "# Private keys never go into version control.\n*.key\n*.tar.gz\n"


class RevokeReason(StrEnum):
    """Why a unit is revoked; written into the CRL as its reason code."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key-compromise"
    RETIRED = "retired"
    SUPERSEDED = "superseded"

    @property
    def crl_reason(self) -> x509.ReasonFlags | None:
        return {
            RevokeReason.UNSPECIFIED: None,
            RevokeReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
            RevokeReason.RETIRED: x509.ReasonFlags.cessation_of_operation,
            RevokeReason.SUPERSEDED: x509.ReasonFlags.superseded,
        }[self]


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate just written into the registry."""

    cert: x509.Certificate
    cert_path: Path
    key_path: Path | None = None


class CertificateAuthority:
    """The CA whose key lives in the registry (ca/ca.key)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @classmethod
    def init(
        cls,
        registry: Registry,
        name: str,
        *,
        days: int = DEFAULT_CA_DAYS,
        now: datetime | None = None,
    ) -> CertificateAuthority:
        """Make the CA key, certificate, an empty CRL and the log; refuse if a CA exists."""
        if registry.ca_cert_path.exists() or registry.ca_key_path.exists():
            raise ProvisioningError(
                f"a CA already exists in {registry.ca_dir}; refusing to replace it "
                "(every unit trusts it: a new CA means re-enrolling every unit)"
            )
        if not name.strip():
            raise ProvisioningError("--name must not be empty")
        now = now or _now()
        validity = _validity(days, now)
        key = certs.new_key()
        cert = certs.make_ca(key, name, validity, x509.random_serial_number())
        write_private_key(registry.ca_key_path, certs.key_pem(key))
        write_new(registry.ca_cert_path, certs.cert_pem(cert), what="CA certificate")
        gitignore = registry.root / ".gitignore"
        if not gitignore.exists():
            write_new(gitignore, GITIGNORE.encode())
        registry.save_ca_log(CaLog(name=name, created=now))
        ca = cls(registry)
        ca.refresh_crl(now=now)
        return ca

    def issue_device(
        self,
        site: str,
        device: str,
        public_key: PublicKey,
        *,
        days: int = DEFAULT_CERT_DAYS,
        validity: Validity | None = None,
        now: datetime | None = None,
    ) -> Issued:
        """Certificate for a registered unit; kept as device.crt and certs/<serial>.crt."""
        record = self.registry.device(site, device)
        if record.revoked_at is not None:
            raise ProvisioningError(
                f"device {device!r} was revoked on {record.revoked_at:%Y-%m-%d}; "
                "register the replacement under a new device id"
            )
        validity = validity or _validity(days, now)
        folder = self.registry.device_dir(site, device)
        serial, log = self._allocate()
        ca_cert, ca_key = self._load()
        cert = certs.issue_client(
            subject=certs.device_name(site, device),
            public_key=public_key,
            ca_cert=ca_cert,
            ca_key=ca_key,
            serial=serial,
            validity=validity,
        )
        pem = certs.cert_pem(cert)
        write_new(folder / "certs" / f"{serial}.crt", pem, what="certificate")
        replace(folder / "device.crt", pem)
        self._log(log, cert, "device", site=site, device=device)
        self.registry.save_device(record.model_copy(update={"cert_serial": serial}))
        return Issued(cert, folder / "device.crt")

    def issue_service(
        self,
        role: ServiceRole,
        name: str,
        *,
        days: int = DEFAULT_CERT_DAYS,
        validity: Validity | None = None,
        now: datetime | None = None,
    ) -> Issued:
        """Key and certificate for the collector or an operator (CN collector:<name> etc.)."""
        identity: CollectorIdentity | OperatorIdentity | WitnessIdentity
        if role == "collector":
            identity = CollectorIdentity(name)
        elif role == "witness":
            identity = WitnessIdentity(name)
        else:
            identity = OperatorIdentity(name)
        cert_path = self.registry.identity_path(role, name, ".crt")
        key_path = self.registry.identity_path(role, name, ".key")
        if cert_path.exists() or key_path.exists():
            raise ProvisioningError(f"{role} {name!r} already has a certificate ({cert_path})")
        validity = validity or _validity(days, now)
        key = certs.new_key()
        serial, log = self._allocate()
        ca_cert, ca_key = self._load()
        cert = certs.issue_client(
            subject=certs.service_name(identity.username),
            public_key=key.public_key(),
            ca_cert=ca_cert,
            ca_key=ca_key,
            serial=serial,
            validity=validity,
        )
        write_private_key(key_path, certs.key_pem(key))
        write_new(cert_path, certs.cert_pem(cert), what="certificate")
        self._log(log, cert, role, name=name)
        return Issued(cert, cert_path, key_path)

    def issue_server(
        self,
        hosts: list[str],
        *,
        days: int = DEFAULT_CERT_DAYS,
        validity: Validity | None = None,
        now: datetime | None = None,
    ) -> Issued:
        """The broker's server key and certificate (broker/server.crt|.key), replacing any."""
        validity = validity or _validity(days, now)
        key = certs.new_key()
        serial, log = self._allocate()
        ca_cert, ca_key = self._load()
        cert = certs.issue_server(
            hosts=hosts,
            public_key=key.public_key(),
            ca_cert=ca_cert,
            ca_key=ca_key,
            serial=serial,
            validity=validity,
        )
        key_path = self.registry.broker_dir / "server.key"
        cert_path = self.registry.broker_dir / "server.crt"
        write_private_key(key_path, certs.key_pem(key), overwrite=True)
        replace(cert_path, certs.cert_pem(cert))
        self._log(log, cert, "server", name=hosts[0])
        return Issued(cert, cert_path, key_path)

    def revoke_device(
        self,
        site: str,
        device: str,
        reason: RevokeReason = RevokeReason.UNSPECIFIED,
        *,
        now: datetime | None = None,
    ) -> list[int]:
        """Revoke every certificate of the unit, mark it revoked and rewrite the CRL."""
        record = self.registry.device(site, device)
        if record.revoked_at is not None:
            raise ProvisioningError(
                f"device {device!r} was already revoked on {record.revoked_at:%Y-%m-%d}"
            )
        now = now or _now()
        log = self.registry.ca_log()
        serials = []
        for entry in log.issued:
            mine = entry.kind == "device" and entry.site == site and entry.device == device
            if mine and entry.revoked_at is None:
                entry.revoked_at = now
                entry.reason = reason.value
                serials.append(entry.serial)
        self.registry.save_ca_log(log)
        self.registry.save_device(
            record.model_copy(update={"revoked_at": now, "revoked_reason": reason.value})
        )
        self.refresh_crl(now=now)
        return serials

    def refresh_crl(self, *, days: int = DEFAULT_CRL_DAYS, now: datetime | None = None) -> Path:
        """Re-sign ca/crl.pem with every revoked serial and a new nextUpdate."""
        if days < 1:
            raise ProvisioningError(f"--days must be at least 1, not {days}")
        now = now or _now()
        log = self.registry.ca_log()
        ca_cert, ca_key = self._load()
        revoked = [
            certs.Revocation(e.serial, e.revoked_at, _crl_reason(e.reason))
            for e in log.issued
            if e.revoked_at is not None
        ]
        log.crl_number += 1
        log.crl_next_update = now + timedelta(days=days)
        crl = certs.make_crl(
            ca_cert=ca_cert,
            ca_key=ca_key,
            revoked=revoked,
            number=log.crl_number,
            last_update=now - certs.CLOCK_SKEW,
            next_update=log.crl_next_update,
        )
        replace(self.registry.crl_path, crl.public_bytes(Encoding.PEM))
        self.registry.save_ca_log(log)
        return self.registry.crl_path

    def _load(self) -> tuple[x509.Certificate, PrivateKey]:
        cert = self.registry.ca_certificate()
        try:
            key = certs.load_key_pem(self.registry.ca_key_path.read_bytes())
        except FileNotFoundError:
            raise ProvisioningError(
                f"{self.registry.ca_key_path} is missing: only the machine holding the CA key "
                "can issue or revoke certificates"
            ) from None
        except ValueError as exc:
            raise ProvisioningError(f"{self.registry.ca_key_path}: {exc}") from None
        return cert, key

    def _allocate(self) -> tuple[int, CaLog]:
        log = self.registry.ca_log()
        serial = log.next_serial
        log.next_serial += 1
        return serial, log

    def _log(
        self,
        log: CaLog,
        cert: x509.Certificate,
        kind: CertKind,
        *,
        site: str | None = None,
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        log.issued.append(
            IssuedCert(
                serial=cert.serial_number,
                kind=kind,
                subject=cert.subject.rfc4514_string(),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                site=site,
                device=device,
                name=name,
            )
        )
        self.registry.save_ca_log(log)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER bytes as 64 lowercase hex digits: what auditors pin.

    `openssl x509 -noout -fingerprint -sha256` shows the same digits (upper case, colons);
    `jaga-collector audit verify-export --ca-fingerprint` checks exports against it."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _now() -> datetime:
    """Whole seconds: certificates and CRLs carry no more, and the log stays readable."""
    return datetime.now(UTC).replace(microsecond=0)


def _validity(days: int, now: datetime | None) -> Validity:
    try:
        return Validity.for_days(days, now or _now())
    except ValueError as exc:
        raise ProvisioningError(str(exc)) from None


def _crl_reason(reason: str | None) -> x509.ReasonFlags | None:
    try:
        return RevokeReason(reason).crl_reason if reason else None
    except ValueError:
        return None
