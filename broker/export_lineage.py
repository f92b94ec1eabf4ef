"""Which certificates an export carries: every certificate of the unit whose key signed an event
of the stretch (a unit renews with a new key, #19), and for each the issuing CA certificate(s)
valid when those events were made (the issuing CA renews too: same key, new certificate).

The registry knows every certificate it issued (devices/<site>/<unit>/certs/<serial>.crt,
ca/issuing/<generation>/<serial>.crt); nothing here is trusted by a verifier, which checks
each event against these certificates and the root the auditor pins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from protocol.models import Event
from protocol.signing import SignatureError, verify
from provisioning.registry import Registry


@dataclass(frozen=True, slots=True)
class Lineage:
    """The certificates to export: unit (certs/unit.pem) is the newest unit certificate that
    signed an event, issuing (certs/issuing.pem) the issuing certificate it chains through at
    its newest event; the others by serial (certs/unit-<serial>.pem, issuing-<serial>.pem)."""

    unit: x509.Certificate
    issuing: x509.Certificate | None = None
    more_unit_certs: tuple[x509.Certificate, ...] = ()
    more_issuing_certs: tuple[x509.Certificate, ...] = field(default=())

    @property
    def unit_pem(self) -> bytes:
        return self.unit.public_bytes(Encoding.PEM)

    @property
    def issuing_pem(self) -> bytes | None:
        return self.issuing.public_bytes(Encoding.PEM) if self.issuing is not None else None

    @property
    def more_units(self) -> dict[int, bytes]:
        return {c.serial_number: c.public_bytes(Encoding.PEM) for c in self.more_unit_certs}

    @property
    def more_issuing(self) -> dict[int, bytes]:
        return {c.serial_number: c.public_bytes(Encoding.PEM) for c in self.more_issuing_certs}


def lineage(registry: Registry, events: Sequence[Event]) -> Lineage:
    """The certificates of the unit that signed events (all of one unit), as the registry
    holds them; LookupError when the registry holds none for the unit."""
    site, device = events[0].site, events[0].device
    known = registry.device_certificates(site, device)
    issuers = _issuing_certificates(registry)
    signed: dict[int, tuple[x509.Certificate, list[datetime]]] = {}
    for event in events:
        cert = _signer(known, issuers, event)
        if cert is not None:
            signed.setdefault(cert.serial_number, (cert, []))[1].append(_when(event))
    if not signed:
        # No certificate's key signed them: the current one, and the verifiers say so.
        current = registry.device_certificate(site, device)
        if current is None:
            raise LookupError(f"no certificate for {site}/{device} in the registry")
        signed[current.serial_number] = (current, [_when(events[-1])])
    units = sorted(signed.values(), key=lambda found: found[0].serial_number, reverse=True)
    first: x509.Certificate | None = None
    links: dict[int, x509.Certificate] = {}
    for n, (cert, times) in enumerate(units):
        candidates = [i for i in issuers if _issued_by(cert, i)]
        for when in sorted(times, reverse=True):
            link = _valid_at(candidates, when) or (candidates[0] if candidates else None)
            if link is None:
                continue
            if n == 0 and first is None:
                first = link
            elif link.serial_number != (first.serial_number if first else None):
                links.setdefault(link.serial_number, link)
    return Lineage(
        unit=units[0][0],
        issuing=first,
        more_unit_certs=tuple(cert for cert, _ in units[1:]),
        more_issuing_certs=tuple(links[s] for s in sorted(links, reverse=True)),
    )


def _when(event: Event) -> datetime:
    return datetime.fromtimestamp(event.ts // 10**9, UTC)


def _signer(
    known: Sequence[x509.Certificate], issuers: list[x509.Certificate], event: Event
) -> x509.Certificate | None:
    """The newest certificate whose key signed event and that was valid when it was made (and
    an issuing certificate of its issuer too, when one signed it); else the newest whose key
    signed it (an event made outside its validity: exported, and refused by every verifier);
    else None. Newest first, as the verifiers try them: two certificates of one key may both
    verify, and the one a verifier credits must be one exported for it."""
    keyed = []
    for cert in reversed(known):
        try:
            verify(event, cert.public_key())  # type: ignore[arg-type]
        except (SignatureError, TypeError, ValueError):
            continue
        keyed.append(cert)
    when = _when(event)
    for cert in keyed:
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            continue
        links = [i for i in issuers if _issued_by(cert, i)]
        if not links or _valid_at(links, when) is not None:
            return cert
    return keyed[0] if keyed else None


def _issuing_certificates(registry: Registry) -> list[x509.Certificate]:
    """Every issuing CA certificate the root made, newest first (renewals keep the key)."""
    found: dict[int, x509.Certificate] = {}
    for generation in registry.issuing_generations():
        for path in registry.issuing_dir(generation).glob("*.crt"):
            try:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
            except ValueError:
                continue
            found.setdefault(cert.serial_number, cert)
    return sorted(found.values(), key=lambda c: c.not_valid_before_utc, reverse=True)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _valid_at(candidates: list[x509.Certificate], when: datetime) -> x509.Certificate | None:
    for cert in candidates:
        if cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            return cert
    return None
