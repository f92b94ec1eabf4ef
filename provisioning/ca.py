"""The site CA's operations: issue, log, revoke and publish the CRLs, all inside the registry.

Two levels (#19): the root (ca/ca.key) stays on the technician's laptop and signs the issuing
CA, the broker's and services' certificates; the issuing CA (ca/issuing/<gen>/ca.key, path
length 0) lives on the server and signs unit certificates (token enrolment, renewal). A
registry without an issuing CA (made before #19, and the bench's `device add --generate-key`
on such a registry) has its units signed by the root as before. Each CA keeps its own CRL;
the broker gets them concatenated, and a revoked issuing CA's CRL is left out of it, which is
what makes Mosquitto 2.0.11 (leaf-only CRL check) refuse every unit it signed.

Every issuing operation holds the registry's file lock (Registry.locked): the enrolment server
and a technician's CLI never allocate the same serial."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from broker.mosquitto import (
    CollectorIdentity,
    HomeAssistantIdentity,
    Identity,
    OperatorIdentity,
    WitnessIdentity,
)
from provisioning import certs
from provisioning.certs import PrivateKey, PublicKey, Validity
from provisioning.errors import ProvisioningError
from provisioning.files import replace, write_new, write_private_key
from provisioning.lifecycle import record_event, technician
from provisioning.records import CaLog, CertKind, IssuedCert, ServiceRole
from provisioning.registry import Registry

DEFAULT_CA_DAYS = 3650
DEFAULT_CERT_DAYS = 365
DEFAULT_ISSUING_DAYS = 5 * 365
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
    chain: tuple[x509.Certificate, ...] = ()
    """The issuing CA certificate to present after the leaf (empty when the root signed)."""

    def chain_pem(self) -> bytes:
        """Leaf then issuing CA, as the unit's certificate file holds them."""
        return b"".join(certs.cert_pem(c) for c in (self.cert, *self.chain))


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
        cert = certs.make_ca(key, name, validity, x509.random_serial_number(), path_length=1)
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
        previous: int | None = None,
        by: str | None = None,
        key_generated_centrally: bool = False,
    ) -> Issued:
        """Certificate for a registered unit, signed by the issuing CA (the root when the
        registry has none); kept as device.crt (leaf + issuing CA) and certs/<serial>.crt.
        key_generated_centrally: the bench shortcut made the key here (said in device.toml,
        in the same write as the new serial)."""
        with self.registry.locked():
            record = self.registry.device(site, device)
            if record.revoked_at is not None:
                raise ProvisioningError(
                    f"device {device!r} was revoked on {record.revoked_at:%Y-%m-%d}; "
                    "register the replacement under a new device id"
                )
            validity = validity or _validity(days, now)
            folder = self.registry.device_dir(site, device)
            generation, ca_cert, ca_key = self._unit_signer()
            serial, log = self._allocate()
            cert = certs.issue_client(
                subject=certs.device_name(site, device),
                public_key=public_key,
                ca_cert=ca_cert,
                ca_key=ca_key,
                serial=serial,
                validity=validity,
            )
            chain = (ca_cert,) if generation is not None else ()
            issued = Issued(cert, folder / "device.crt", chain=chain)
            write_new(folder / "certs" / f"{serial}.crt", certs.cert_pem(cert), what="certificate")
            replace(folder / "device.crt", issued.chain_pem())
            self._log(
                log, cert, "device", site=site, device=device, issuer=generation,
                previous=previous, by=by,
            )  # fmt: skip
            update: dict[str, object] = {"cert_serial": serial}
            if key_generated_centrally:
                update["key_generated_centrally"] = True
            self.registry.save_device(record.model_copy(update=update))
            return issued

    # the issuing CA ------------------------------------------------------------------------

    def create_issuing(
        self, *, days: int = DEFAULT_ISSUING_DAYS, now: datetime | None = None
    ) -> Issued:
        """A new issuing CA generation (key + certificate from the root) and its empty CRL."""
        with self.registry.locked():
            root_cert, root_key = self._load()
            if certs.path_length(root_cert) == 0:
                raise ProvisioningError(
                    "this root CA was made with path length 0 (before two-level CAs): it cannot "
                    "have an issuing CA, so it keeps signing units itself; a new root means "
                    "re-enrolling every unit of the site"
                )
            current = self.registry.current_issuing()
            if current is not None and not self.registry.issuing_revoked(current):
                raise ProvisioningError(
                    f"issuing CA {current} exists and is not revoked: `issuing-ca renew` extends "
                    "it; `issuing-ca revoke` first if its key may be stolen"
                )
            validity = _validity(days, now)
            serial, log = self._allocate()
            generation = log.issuing_generation + 1
            key = certs.new_key()
            name = f"{log.name} issuing {generation}"
            cert = certs.make_issuing(
                public_key=key.public_key(), name=name, root_cert=root_cert, root_key=root_key,
                serial=serial, validity=validity,
            )  # fmt: skip
            folder = self.registry.issuing_dir(generation)
            write_private_key(folder / "ca.key", certs.key_pem(key))
            write_new(folder / "ca.crt", certs.cert_pem(cert), what="issuing CA certificate")
            write_new(folder / f"{serial}.crt", certs.cert_pem(cert), what="certificate")
            log.issuing_generation = generation
            self._log(log, cert, "issuing", name=str(generation))
            self.refresh_crl(now=now, only={generation})
            return Issued(cert, folder / "ca.crt", folder / "ca.key")

    def renew_issuing(
        self, *, days: int = DEFAULT_ISSUING_DAYS, now: datetime | None = None
    ) -> Issued:
        """A new certificate from the root for the current issuing CA's key: same name and key,
        so every unit certificate and CRL it signed stays valid under the new one."""
        with self.registry.locked():
            generation = self._live_issuing()
            root_cert, root_key = self._load()
            folder = self.registry.issuing_dir(generation)
            old = self.registry.issuing_certificate(generation)
            assert old is not None  # _live_issuing checked
            key = self._issuing_key(generation)
            validity = _validity(days, now)
            serial, log = self._allocate()
            cert = certs.make_issuing(
                public_key=key.public_key(), name=_common_name(old), root_cert=root_cert,
                root_key=root_key, serial=serial, validity=validity,
            )  # fmt: skip
            write_new(folder / f"{serial}.crt", certs.cert_pem(cert), what="certificate")
            replace(folder / "ca.crt", certs.cert_pem(cert))
            self._log(log, cert, "issuing", name=str(generation), previous=old.serial_number)
            return Issued(cert, folder / "ca.crt", folder / "ca.key")

    def revoke_issuing(
        self, reason: RevokeReason = RevokeReason.KEY_COMPROMISE, *, now: datetime | None = None
    ) -> int:
        """Revoke the current issuing CA (every certificate of it) in the root's CRL; broker-config
        then leaves its CRL out, so the broker refuses every unit it signed. Returns its
        generation; units re-enrol (token) once `issuing-ca create` made the next one."""
        with self.registry.locked():
            generation = self._live_issuing()
            self._load()
            now = now or _now()
            log = self.registry.ca_log()
            for entry in log.issued:
                ours = entry.kind == "issuing" and entry.name == str(generation)
                if ours and entry.revoked_at is None:
                    entry.revoked_at = now
                    entry.reason = reason.value
            log.issuing_revoked.append(generation)
            self.registry.save_ca_log(log)
            self.refresh_crl(now=now, only={None})
            return generation

    def _live_issuing(self) -> int:
        generation = self.registry.current_issuing()
        if generation is None or self.registry.issuing_revoked(generation):
            raise ProvisioningError(
                "no live issuing CA: make one with `jaga-provision issuing-ca create`"
            )
        return generation

    def _issuing_key(self, generation: int) -> PrivateKey:
        path = self.registry.issuing_dir(generation) / "ca.key"
        try:
            return certs.load_key_pem(path.read_bytes())
        except FileNotFoundError:
            raise ProvisioningError(
                f"{path} is missing: the issuing CA's key lives on the server; run this there"
            ) from None
        except ValueError as exc:
            raise ProvisioningError(f"{path}: {exc}") from None

    def _unit_signer(self) -> tuple[int | None, x509.Certificate, PrivateKey]:
        """Who signs unit certificates: the issuing CA if the registry has one, else the root."""
        generation = self.registry.current_issuing()
        if generation is None:
            cert, key = self._load()
            return None, cert, key
        if self.registry.issuing_revoked(generation):
            raise ProvisioningError(
                f"issuing CA {generation} is revoked: make the next one with "
                "`jaga-provision issuing-ca create` (on the laptop holding the root key)"
            )
        issuing = self.registry.issuing_certificate(generation)
        if issuing is None:
            raise ProvisioningError(f"{self.registry.issuing_dir(generation)}/ca.crt is missing")
        return generation, issuing, self._issuing_key(generation)

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
        identity: Identity
        if role == "collector":
            identity = CollectorIdentity(name)
        elif role == "witness":
            identity = WitnessIdentity(name)
        elif role == "home-assistant":
            identity = HomeAssistantIdentity(name)
        else:
            identity = OperatorIdentity(name)
        cert_path = self.registry.identity_path(role, name, ".crt")
        key_path = self.registry.identity_path(role, name, ".key")
        if cert_path.exists() or key_path.exists():
            raise ProvisioningError(f"{role} {name!r} already has a certificate ({cert_path})")
        validity = validity or _validity(days, now)
        key = certs.new_key()
        with self.registry.locked():
            ca_cert, ca_key = self._load()
            serial, log = self._allocate()
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
        with self.registry.locked():
            ca_cert, ca_key = self._load()
            serial, log = self._allocate()
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
        by: str | None = None,
    ) -> list[int]:
        """Revoke every certificate of the unit (its whole lineage), mark it revoked and
        rewrite the CRLs of the CAs that signed them."""
        with self.registry.locked():
            record = self.registry.device(site, device)
            if record.revoked_at is not None:
                raise ProvisioningError(
                    f"device {device!r} was already revoked on {record.revoked_at:%Y-%m-%d}"
                )
            now = now or _now()
            log = self.registry.ca_log()
            serials = []
            issuers: set[int | None] = set()
            for entry in log.issued:
                mine = entry.kind == "device" and entry.site == site and entry.device == device
                if mine and entry.revoked_at is None:
                    entry.revoked_at = now
                    entry.reason = reason.value
                    serials.append(entry.serial)
                    issuers.add(entry.issuer)
            self._check_keys(issuers)
            who = by or technician()
            self.registry.save_ca_log(log)
            self.registry.save_device(
                record.model_copy(
                    update={"revoked_at": now, "revoked_reason": reason.value, "revoked_by": who}
                )
            )
            self.refresh_crl(now=now, only=issuers or {None})
            record_event(
                self.registry, "revoked", site=site, device=device, serials=serials,
                reason=reason.value, by=who,
            )  # fmt: skip
            return serials

    def refresh_crl(
        self,
        *,
        days: int = DEFAULT_CRL_DAYS,
        now: datetime | None = None,
        only: set[int | None] | None = None,
    ) -> list[Path]:
        """Re-sign the CRLs with every revoked serial and a new nextUpdate: the root's
        (ca/crl.pem) and each live issuing CA's (ca/issuing/<gen>/crl.pem). only: just these
        (None in it: the root); without it, every CRL whose CA key is on this machine.
        Returns the CRL files written."""
        if days < 1:
            raise ProvisioningError(f"--days must be at least 1, not {days}")
        now = now or _now()
        written: list[Path] = []
        with self.registry.locked():
            log = self.registry.ca_log()
            targets = only if only is not None else self._signable()
            self._check_keys(targets)
            for issuer in sorted(targets, key=lambda g: -1 if g is None else g):
                if issuer is None:
                    ca_cert, ca_key = self._load()
                    path = self.registry.crl_path
                else:
                    found = self.registry.issuing_certificate(issuer)
                    if found is None or self.registry.issuing_revoked(issuer):
                        continue
                    ca_cert, ca_key = found, self._issuing_key(issuer)
                    path = self.registry.issuing_dir(issuer) / "crl.pem"
                revoked = [
                    certs.Revocation(e.serial, e.revoked_at, _crl_reason(e.reason))
                    for e in log.issued
                    if e.revoked_at is not None and e.issuer == issuer
                ]
                log.crl_number += 1
                next_update = now + timedelta(days=days)
                if issuer is None:
                    log.crl_next_update = next_update
                crl = certs.make_crl(
                    ca_cert=ca_cert,
                    ca_key=ca_key,
                    revoked=revoked,
                    number=log.crl_number,
                    last_update=now - certs.CLOCK_SKEW,
                    next_update=next_update,
                )
                replace(path, crl.public_bytes(Encoding.PEM))
                written.append(path)
            self.registry.save_ca_log(log)
        return written

    def _signable(self) -> set[int | None]:
        """The CAs whose key this machine holds (the root on the laptop, issuing on the server)."""
        found: set[int | None] = {None} if self.registry.ca_key_path.exists() else set()
        for generation in self.registry.issuing_generations():
            key = self.registry.issuing_dir(generation) / "ca.key"
            if key.exists() and not self.registry.issuing_revoked(generation):
                found.add(generation)
        if not found:
            self._load()  # says which key is missing
        return found

    def _check_keys(self, issuers: set[int | None]) -> None:
        """Refuse before changing anything when a CRL to re-sign has no key on this machine."""
        for issuer in issuers:
            if issuer is None:
                self._load()
            elif not self.registry.issuing_revoked(issuer):
                self._issuing_key(issuer)

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
        issuer: int | None = None,
        previous: int | None = None,
        by: str | None = None,
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
                issuer=issuer,
                previous=previous,
                by=by,
            )
        )
        self.registry.save_ca_log(log)


def crl_paths(registry: Registry) -> list[Path]:
    """The root's CRL and every unrevoked issuing CA's, as broker-config concatenates them."""
    found = [registry.crl_path]
    for generation in registry.issuing_generations():
        path = registry.issuing_dir(generation) / "crl.pem"
        if path.exists() and not registry.issuing_revoked(generation):
            found.append(path)
    return found


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


def _common_name(cert: x509.Certificate) -> str:
    value = certs.single_attribute(cert.subject, x509.oid.NameOID.COMMON_NAME)
    if value is None:
        raise ProvisioningError("the issuing CA certificate has no single common name")
    return value


def _crl_reason(reason: str | None) -> x509.ReasonFlags | None:
    try:
        return RevokeReason(reason).crl_reason if reason else None
    except ValueError:
        return None
