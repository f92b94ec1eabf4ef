"""One-time enrolment tokens: single use, short-lived, bound to one unit of a site, kept hashed.

A token reads ``jet1.<site>.<device>.<secret>``: the ids only say where to look (they are not
secret), the 32 random bytes of the secret are. The registry keeps the SHA-256 of the whole
token, never the token::

    enrolment/tokens/<site>/<device>.toml        sha256, issued_at, expires_at (one per unit:
                                                 a new token replaces an unused older one)
    enrolment/tokens/<site>/<device>.<h16>.used  created with O_EXCL when the token is spent,
                                                 so two requests racing with it cannot both win
    enrolment/log.jsonl                          every issue, enrolment, renewal and refusal

A token is refused, with the reason said and recorded, when it is malformed or unknown (no such
unit, or its hash matches no token issued), expired, already used, or shown for another site.

A failure does not burn a token: the enrolment authority checks it (check_token), issues the
certificate, then spends it (spend_token), all under the registry's file lock, so a request
that fails before its certificate exists (bad CSR, missing issuing key, full disk) leaves the
token usable, and two requests with one token can never both win.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from kernel.files import fsync_dir
from protocol.ids import InvalidIdentifier, check_id
from provisioning.errors import ProvisioningError
from provisioning.files import PRIVATE_MODE, replace
from provisioning.lifecycle import record_event, technician
from provisioning.records import Record
from provisioning.registry import Registry

PREFIX = "jet1"
MAX_TTL = timedelta(hours=24)
DEFAULT_TTL = timedelta(hours=24)
log = logging.getLogger(__name__)


class Refusal(StrEnum):
    """Why a token was refused (the wire's and the log's word for it)."""

    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REUSED = "reused"
    WRONG_SITE = "wrong-site"
    WRONG_UNIT = "wrong-unit"
    REVOKED = "revoked"


class TokenRefused(ProvisioningError):
    """The token cannot enrol this request; str() is the message for the unit's technician."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TokenRecord(Record):
    """What the registry keeps of a token: its hash and its life, never the token."""

    sha256: str
    issued_at: datetime
    expires_at: datetime
    by: str | None = None
    """The technician who asked for it (the enrolment's record names them)."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    site: str
    device: str
    expires_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_dir(registry: Registry) -> Path:
    return registry.root / "enrolment" / "tokens"


def issue_token(
    registry: Registry,
    site: str,
    device: str,
    *,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
    by: str | None = None,
) -> IssuedToken:
    """A new token for a registered, unrevoked unit; replaces any older unused one.
    by: the technician (default: technician())."""
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ProvisioningError("a token lives more than 0 and at most 24 hours")
    record = registry.device(site, device)
    if record.revoked_at is not None:
        raise ProvisioningError(f"device {device!r} is revoked; it gets no enrolment token")
    now = now or _now()
    token = f"{PREFIX}.{site}.{device}.{secrets.token_urlsafe(32)}"
    who = by or technician()
    kept = TokenRecord(sha256=token_hash(token), issued_at=now, expires_at=now + ttl, by=who)
    data = kept.model_dump(mode="python", exclude_none=True)
    path = _record_path(registry, site, device)
    replace(path, _toml(data), mode=PRIVATE_MODE)
    record_event(
        registry, "token-issued", site=site, device=device, expires_at=kept.expires_at, by=who
    )
    return IssuedToken(token, site, device, kept.expires_at)


def claim_token(
    registry: Registry,
    token: str,
    *,
    site: str,
    device: str,
    now: datetime | None = None,
) -> None:
    """Check and spend token at once (for callers that issue nothing in between)."""
    with registry.locked():
        kept = check_token(registry, token, site=site, device=device, now=now)
        spend_token(registry, site, device, kept.sha256, now=now)


def check_token(
    registry: Registry,
    token: str,
    *,
    site: str,
    device: str,
    now: datetime | None = None,
) -> TokenRecord:
    """What the registry keeps of the token if it may enrol unit device of site now; else
    TokenRefused (recorded) saying why. Spends nothing: spend_token once the certificate
    exists."""
    now = now or _now()
    try:
        return _check(registry, token, site=site, device=device, now=now)
    except TokenRefused as refused:
        record_event(
            registry, "enrol-refused", site=site, device=device, reason=refused.reason.value,
            message=str(refused),
        )  # fmt: skip
        log.warning("enrolment refused for %s/%s: %s", site, device, refused)
        raise


def spend_token(
    registry: Registry, site: str, device: str, sha256: str, *, now: datetime | None = None
) -> None:
    """Mark the token spent for good (O_EXCL marker, fsynced with its folder)."""
    now = now or _now()
    used = _used_path(registry, site, device, sha256)
    used.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(used, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        raise TokenRefused(Refusal.REUSED, "this enrolment token was already used") from None
    with os.fdopen(fd, "w") as out:
        out.write(now.isoformat() + "\n")
        out.flush()
        os.fsync(out.fileno())  # spent for good: a power cut must not make it usable again
    fsync_dir(used.parent)


def _check(registry: Registry, token: str, *, site: str, device: str, now: datetime) -> TokenRecord:
    parts = token.strip().split(".")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[3]:
        raise TokenRefused(Refusal.MALFORMED, "not a Jaga enrolment token (jet1.<site>.<unit>.…)")
    _, t_site, t_device, _ = parts
    try:
        check_id(t_site, "site")
        check_id(t_device, "device")
    except InvalidIdentifier:
        raise TokenRefused(Refusal.MALFORMED, "the token names no valid site and unit") from None
    kept = _read(registry, t_site, t_device)
    if kept is None or not hmac.compare_digest(kept.sha256, token_hash(token.strip())):
        raise TokenRefused(
            Refusal.UNKNOWN,
            "unknown enrolment token (never issued, or replaced by a newer one): ask for a new "
            "one with `jaga-provision device token`",
        )
    if t_site != site:
        raise TokenRefused(Refusal.WRONG_SITE, f"this token is for site {t_site!r}, not {site!r}")
    if t_device != device:
        raise TokenRefused(
            Refusal.WRONG_UNIT, f"this token is for unit {t_device!r}, not {device!r}"
        )
    if _used_path(registry, t_site, t_device, kept.sha256).exists():
        raise TokenRefused(Refusal.REUSED, "this enrolment token was already used")
    if now >= kept.expires_at:
        raise TokenRefused(
            Refusal.EXPIRED,
            f"this enrolment token expired at {kept.expires_at:%Y-%m-%d %H:%M} UTC: ask for a "
            "new one with `jaga-provision device token`",
        )
    if registry.device(site, device).revoked_at is not None:
        raise TokenRefused(Refusal.REVOKED, f"unit {device!r} is revoked")
    return kept


def _record_path(registry: Registry, site: str, device: str) -> Path:
    return tokens_dir(registry) / site / f"{device}.toml"


def _used_path(registry: Registry, site: str, device: str, sha256: str) -> Path:
    return tokens_dir(registry) / site / f"{device}.{sha256[:16]}.used"


def _read(registry: Registry, site: str, device: str) -> TokenRecord | None:
    path = _record_path(registry, site, device)
    if not path.exists():
        return None
    try:
        return TokenRecord.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError):
        return None


def _toml(data: dict[str, Any]) -> bytes:
    return tomli_w.dumps(data).encode()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
