"""The enrolment authority: EST's (RFC 7030) simpleenroll and simplereenroll over the registry.

Why EST-shaped HTTPS and not an MQTT claim flow like AWS fleet provisioning: a unit that has no
certificate yet cannot pass the broker's mutual TLS, so a claim flow would need a shared claim
certificate on every SD card and a broker ACL for it; a stolen card would let anyone knock on
the broker. EST needs only the site CA to check the server (the bundle's ca.crt) and a one-time
token; renewal is the same request authenticated by TLS with the unit's current certificate
(RFC 7030 §3.3.2), so renewing never depends on the broker being up, and the broker keeps a
single kind of client. The unit speaks it with the standard library (http.client + ssl): no new
package on the Pi.

Wire (RFC 7030 §4.2): POST /.well-known/est/<site>/simpleenroll (the label is the site) with
Content-Type application/pkcs10 and the CSR as base64 DER; the token in
``Authorization: Bearer <token>``. simplereenroll the same, with the unit's current certificate
as TLS client certificate instead of a token. The answer is application/pkcs7-mime
(smime-type=certs-only), base64 DER: the unit's new certificate and the CA that signed it
(a PKCS#7 SET: the client finds its own by its key). GET /.well-known/est/cacerts gives the
CA certificate the same way.

Which CA signs: the issuing CA (ca/issuing/<gen>/ca.key on the server; the root stays on the
technician's laptop), or the root in a registry that has no issuing CA (made before #19). The
answer carries the leaf, the issuing CA and the root: the unit keeps leaf + issuing CA as its
certificate file, the chain it presents to Mosquitto (whose cafile is the root alone).

Renewal rules (the lineage of a unit is every certificate issued to it):
- the unit is not revoked: a revoked lineage never renews, whichever of its certificates, old
  or new, authenticates the request (revocation revokes them all);
- the client certificate is one the registry issued (same bytes as certs/<serial>.crt), not
  revoked, from an issuing CA that is not revoked;
- it is the newest of its lineage (device.toml's cert_serial), or its direct predecessor
  within RETRY_WINDOW of the newest being issued for it (the answer to a renewal was lost: the
  unit still holds the older pair and asks again; the newer certificate never reached it);
- it has not expired, or it expired less than the grace period ago (the unit was cut off
  through an outage) and it is the newest of its lineage: an expired older one never renews;
- the CSR asks for the same unit with a key never certified for it before.
TLS checks the chain to the root but not the time (X509_V_FLAG_NO_CHECK_TIME): expiry and
grace are judged here. Every renewal, enrolment and refusal is recorded in enrolment/log.jsonl.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7
from cryptography.x509.oid import NameOID

from provisioning import certs
from provisioning.ca import DEFAULT_CERT_DAYS, CertificateAuthority
from provisioning.enrolment import read_csr
from provisioning.errors import ProvisioningError
from provisioning.lifecycle import record_event
from provisioning.registry import Registry
from provisioning.tokens import TokenRefused, check_token, spend_token

CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
DEFAULT_GRACE_DAYS = 30
"""A unit whose certificate expired during an outage may still renew this long after."""
RETRY_WINDOW = timedelta(hours=24)
"""How long the predecessor of the newest certificate may ask again (a lost answer)."""


class EstRefused(ProvisioningError):
    """A request the authority answers with an HTTP error: status and a message for people."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Enrolled:
    body: bytes
    cert: x509.Certificate


def encode_certs(chain: list[x509.Certificate]) -> bytes:
    """certs-only PKCS#7, DER, base64 (RFC 7030 §4.1.3)."""
    return base64.encodebytes(pkcs7.serialize_certificates(chain, Encoding.DER))


def decode_certs(body: bytes) -> list[x509.Certificate]:
    """The certificates in a certs-only answer; ValueError when it is not one."""
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error:
        raise ValueError("the answer is not base64") from None
    return list(pkcs7.load_der_pkcs7_certificates(der))


def encode_csr(csr: x509.CertificateSigningRequest) -> bytes:
    return base64.encodebytes(csr.public_bytes(Encoding.DER))


class EnrolmentAuthority:
    """Answers enrolment and renewal requests; one lock serialises the CA's counters."""

    def __init__(
        self,
        registry: Registry,
        *,
        days: int = DEFAULT_CERT_DAYS,
        grace_days: int = DEFAULT_GRACE_DAYS,
    ) -> None:
        self.registry = registry
        self.days = days
        self.grace = timedelta(days=grace_days)
        self.clock: Callable[[], datetime | None] = lambda: None
        """The time a request is judged at when the caller gives none; None: the real time
        (a simulation, bench.lifecycle, sets its own clock here)."""
        self._lock = threading.Lock()

    def cacerts(self) -> bytes:
        """The root and the issuing CA that signs units now (if any)."""
        found = [self.registry.ca_certificate()]
        generation = self.registry.current_issuing()
        issuing = self.registry.issuing_certificate(generation) if generation else None
        return encode_certs(found + ([issuing] if issuing is not None else []))

    def simpleenroll(
        self, label: str, token: str | None, body: bytes, *, now: datetime | None = None
    ) -> Enrolled:
        """Certify the CSR in body if token is this unit's unspent, unexpired token."""
        now = now or self.clock()
        with self._lock:
            try:
                return self._enroll(label, token, body, now)
            except TokenRefused as exc:  # recorded by check_token
                raise EstRefused(403, str(exc)) from None
            except EstRefused as exc:
                self._refused("enrol-refused", label, exc)
                raise
            except ProvisioningError as exc:
                refused = EstRefused(400, str(exc))
                self._refused("enrol-refused", label, refused)
                raise refused from None

    def simplereenroll(
        self,
        label: str,
        client_cert: x509.Certificate | None,
        body: bytes,
        *,
        now: datetime | None = None,
    ) -> Enrolled:
        """Certify a new key for the unit whose current certificate authenticated the request."""
        now = now or self.clock()
        device = (
            certs.single_attribute(client_cert.subject, NameOID.COMMON_NAME)
            if client_cert is not None
            else None
        )
        serial = client_cert.serial_number if client_cert is not None else None
        with self._lock:
            try:
                return self._reenroll(label, client_cert, body, now)
            except EstRefused as exc:
                self._refused("renew-refused", label, exc, device=device, serial=serial)
                raise
            except ProvisioningError as exc:
                refused = EstRefused(400, str(exc))
                self._refused("renew-refused", label, refused, device=device, serial=serial)
                raise refused from None

    def _enroll(self, label: str, token: str | None, body: bytes, now: datetime | None) -> Enrolled:
        if not token:
            raise EstRefused(401, "no enrolment token (Authorization: Bearer <token>)")
        csr = _csr_pem(body)
        request = read_csr(csr, self.registry)
        if request.site != label:
            raise EstRefused(
                400, f"the CSR is for site {request.site!r} but was sent to site {label!r}"
            )
        with self.registry.locked():  # check, issue, spend: one step against every process
            kept = check_token(self.registry, token, site=label, device=request.device, now=now)
            issued = CertificateAuthority(self.registry).issue_device(
                request.site, request.device, request.public_key, days=self.days, now=now,
                by="token",
            )  # fmt: skip
            spend_token(self.registry, request.site, request.device, kept.sha256, now=now)
        record_event(
            self.registry, "enrolled", site=request.site, device=request.device,
            serial=issued.cert.serial_number, by="token", technician=kept.by,
        )  # fmt: skip
        return self._answer(issued.cert, issued.chain)

    def _reenroll(
        self, label: str, client: x509.Certificate | None, body: bytes, now: datetime | None
    ) -> Enrolled:
        if client is None:
            raise EstRefused(401, "renewal needs the unit's current certificate for TLS")
        site = certs.single_attribute(client.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
        device = certs.single_attribute(client.subject, NameOID.COMMON_NAME)
        if site is None or device is None:
            raise EstRefused(403, "the client certificate is not a unit's")
        if site != label:
            raise EstRefused(403, f"unit of site {site!r} renewing at site {label!r}")
        when = now or datetime.now(UTC)
        with self.registry.locked():
            self._may_renew(site, device, client, when)
            request = read_csr(_csr_pem(body), self.registry)
            if (request.site, request.device) != (site, device):
                raise EstRefused(403, "the CSR asks for another unit than the client certificate")
            spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            asked = request.public_key.public_bytes(*spki)
            if any(
                c.public_key().public_bytes(*spki) == asked
                for c in self.registry.device_certificates(site, device)
            ):
                raise EstRefused(400, "renewal needs a new key; the CSR reuses a certified one")
            issued = CertificateAuthority(self.registry).issue_device(
                site, device, request.public_key, days=self.days, now=now,
                previous=client.serial_number, by="unit",
            )  # fmt: skip
        record_event(
            self.registry, "renewed", site=site, device=device, previous=client.serial_number,
            serial=issued.cert.serial_number, by="unit",
            grace=when > client.not_valid_after_utc,
        )  # fmt: skip
        return self._answer(issued.cert, issued.chain)

    def _may_renew(self, site: str, device: str, client: x509.Certificate, now: datetime) -> None:
        """Raise EstRefused unless this certificate may renew its unit now (rules above)."""
        record = self.registry.device(site, device)
        serial = client.serial_number
        if record.revoked_at is not None:
            raise EstRefused(403, f"unit {device!r} of site {site!r} is revoked: it never renews")
        log = self.registry.ca_log()
        entry = log.find(serial)
        stored = self.registry.device_dir(site, device) / "certs" / f"{serial}.crt"
        if (
            entry is None
            or entry.kind != "device"
            or (entry.site, entry.device) != (site, device)
            or not stored.is_file()
            or x509.load_pem_x509_certificate(stored.read_bytes()) != client
        ):
            raise EstRefused(403, f"certificate serial {serial} was never issued to {device!r}")
        if entry.revoked_at is not None:
            raise EstRefused(403, f"certificate serial {serial} is revoked: it never renews")
        if entry.issuer is not None and self.registry.issuing_revoked(entry.issuer):
            raise EstRefused(
                403,
                f"certificate serial {serial} comes from a revoked issuing CA: enrol the unit "
                "again with a new token (jaga-provision device token)",
            )
        newest = record.cert_serial
        latest = log.find(newest) if newest is not None else None
        retry = (
            latest is not None
            and latest.previous == serial
            and latest.not_before + certs.CLOCK_SKEW + RETRY_WINDOW > now
        )
        if serial != newest and not retry:
            raise EstRefused(
                403,
                f"certificate serial {serial} is not the newest of unit {device!r} "
                f"(serial {newest}); only the newest renews",
            )
        if now < client.not_valid_before_utc - certs.CLOCK_SKEW:
            raise EstRefused(403, f"certificate serial {serial} is not valid yet")
        expired = now > client.not_valid_after_utc
        if expired and (serial != newest or now > client.not_valid_after_utc + self.grace):
            raise EstRefused(
                403,
                f"certificate serial {serial} expired on {client.not_valid_after_utc:%Y-%m-%d}, "
                f"beyond the {self.grace.days}-day grace (or not the newest): enrol the unit "
                "again with a new token",
            )

    def _answer(self, cert: x509.Certificate, chain: tuple[x509.Certificate, ...]) -> Enrolled:
        return Enrolled(encode_certs([cert, *chain, self.registry.ca_certificate()]), cert)

    def _refused(self, event: str, label: str, exc: EstRefused, **fields: object) -> None:
        record_event(self.registry, event, site=label, status=exc.status, message=str(exc),
                     **fields)  # fmt: skip


def _csr_pem(body: bytes) -> bytes:
    """The CSR as PEM from EST's base64 DER (PEM accepted too, for people with curl)."""
    if body.lstrip().startswith(b"-----BEGIN"):
        return body
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
        csr = x509.load_der_x509_csr(der)
    except (binascii.Error, ValueError):
        raise EstRefused(400, "the body is not a base64 DER PKCS#10 request") from None
    return csr.public_bytes(Encoding.PEM)
