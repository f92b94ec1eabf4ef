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

Which CA signs: the site CA (ca/ca.key in the registry the server holds). The two-level CA of
issue #19 (an issuing CA on the server under an offline root, path length 0) is not built yet;
the authority only calls CertificateAuthority.issue_device, so it moves to the issuing CA
without changing the wire.

Renewal rules: the client certificate must be the unit's current one (the newest of its
lineage: device.toml's cert_serial), not revoked, of an unrevoked unit, and the CSR must ask
for the same subject with a new key. Every refusal is recorded in enrolment/log.jsonl.
"""

from __future__ import annotations

import base64
import binascii
import threading
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7
from cryptography.x509.oid import NameOID

from provisioning import certs
from provisioning.ca import DEFAULT_CERT_DAYS, CertificateAuthority
from provisioning.enrolment import read_csr
from provisioning.errors import ProvisioningError
from provisioning.registry import Registry
from provisioning.tokens import TokenRefused, claim_token, record_event

CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"


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

    def __init__(self, registry: Registry, *, days: int = DEFAULT_CERT_DAYS) -> None:
        self.registry = registry
        self.days = days
        self._lock = threading.Lock()

    def cacerts(self) -> bytes:
        return encode_certs([self.registry.ca_certificate()])

    def simpleenroll(
        self, label: str, token: str | None, body: bytes, *, now: datetime | None = None
    ) -> Enrolled:
        """Certify the CSR in body if token is this unit's unspent, unexpired token."""
        with self._lock:
            try:
                return self._enroll(label, token, body, now)
            except TokenRefused as exc:  # recorded by claim_token
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
        with self._lock:
            try:
                return self._reenroll(label, client_cert, body, now)
            except EstRefused as exc:
                self._refused("renew-refused", label, exc)
                raise
            except ProvisioningError as exc:
                refused = EstRefused(400, str(exc))
                self._refused("renew-refused", label, refused)
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
        claim_token(self.registry, token, site=label, device=request.device, now=now)
        issued = CertificateAuthority(self.registry).issue_device(
            request.site, request.device, request.public_key, days=self.days, now=now
        )
        record_event(
            self.registry, "enrolled", site=request.site, device=request.device,
            serial=issued.cert.serial_number, by="token",
        )  # fmt: skip
        return self._answer(issued.cert)

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
        record = self.registry.device(site, device)
        serial = client.serial_number
        if record.revoked_at is not None or self.registry.is_revoked(serial):
            raise EstRefused(403, f"unit {device!r} of site {site!r} is revoked: it never renews")
        if record.cert_serial != serial:
            raise EstRefused(
                403,
                f"certificate serial {serial} is not the newest of unit {device!r} "
                f"(serial {record.cert_serial}); only the newest renews",
            )
        request = read_csr(_csr_pem(body), self.registry)
        if (request.site, request.device) != (site, device):
            raise EstRefused(403, "the CSR asks for another unit than the client certificate")
        spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if request.public_key.public_bytes(*spki) == client.public_key().public_bytes(*spki):
            raise EstRefused(400, "renewal needs a new key; the CSR reuses the current one")
        issued = CertificateAuthority(self.registry).issue_device(
            site, device, request.public_key, days=self.days, now=now
        )
        record_event(
            self.registry, "renewed", site=site, device=device, previous=serial,
            serial=issued.cert.serial_number, by="unit",
        )  # fmt: skip
        return self._answer(issued.cert)

    def _answer(self, cert: x509.Certificate) -> Enrolled:
        return Enrolled(encode_certs([cert, self.registry.ca_certificate()]), cert)

    def _refused(self, event: str, label: str, exc: EstRefused) -> None:
        record_event(self.registry, event, site=label, status=exc.status, message=str(exc))


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
