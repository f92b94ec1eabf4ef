"""Service identities beyond their certificate: the sites an operator may act on, and revocation
of a collector or operator (its certificate goes into the CRL, its files out of the way)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from broker.mosquitto import ALL_SITES
from protocol.ids import InvalidIdentifier, check_id
from provisioning.ca import CertificateAuthority, RevokeReason
from provisioning.errors import ProvisioningError
from provisioning.records import ServiceRole
from provisioning.registry import Registry


def operator_sites(registry: Registry, sites: list[str], *, every_site: bool) -> list[str]:
    """The sites an operator will get, checked against the registry; a clear error otherwise."""
    if every_site:
        if sites:
            raise ProvisioningError("give either --site (one or more) or --all-sites, not both")
        return [ALL_SITES]
    if not sites:
        raise ProvisioningError(
            "an operator acts on named sites: give --site <site> (repeat it for more), "
            "or --all-sites for a control room that watches every site"
        )
    for site in sites:
        try:
            check_id(site, "site")
        except InvalidIdentifier as exc:
            raise ProvisioningError(str(exc)) from None
        registry.site(site)  # a clear error for a site that is not registered
    return list(dict.fromkeys(sites))


def revoke_identity(
    registry: Registry,
    role: ServiceRole,
    name: str,
    reason: RevokeReason = RevokeReason.UNSPECIFIED,
    *,
    now: datetime | None = None,
) -> tuple[list[int], Path]:
    """Put every certificate of the identity in the CRL and move its files to identities/revoked/.

    Returns the serials revoked and the folder the files went to. The broker refuses the
    identity once it has the new CRL (broker-config, then a reload), and the ACL drops it."""
    try:
        cert_path = registry.identity_path(role, name, ".crt")
    except InvalidIdentifier as exc:
        raise ProvisioningError(str(exc)) from None
    if not cert_path.exists():
        known = ", ".join(registry.identities(role)) or "none"
        raise ProvisioningError(
            f"no {role} identity {name!r} holds a certificate (current {role}s: {known})"
        )
    now = now or datetime.now(UTC).replace(microsecond=0)
    log = registry.ca_log()
    serials = []
    for entry in log.issued:
        if entry.kind == role and entry.name == name and entry.revoked_at is None:
            entry.revoked_at = now
            entry.reason = reason.value
            serials.append(entry.serial)
    registry.save_ca_log(log)
    CertificateAuthority(registry).refresh_crl(now=now)
    current = registry.identity_certificate(role, name)
    serial = current.serial_number if current is not None else 0
    folder = registry.root / "identities" / "revoked"
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".crt", ".key", ".toml"):
        path = registry.identity_path(role, name, suffix)
        if path.exists():
            path.replace(folder / f"{role}-{name}-{serial}{suffix}")
    return serials, folder
