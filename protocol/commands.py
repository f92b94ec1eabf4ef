"""Signed commands: to a unit on jaga/v1/<site>/<device>/cmd/<name> (and the unit's answers),
and operators' site commands on jaga/v1/<site>/cmd/<arm|disarm|ack|resolve>.

Only the collector and operators may publish commands (broker ACL), and every command is
signed: the envelope carries the sender's certificate (from the site CA) and a signature
over the command's bytes, so the receiver knows who asked — the certificate's CN must be the
command's `by` — instead of taking a name on trust. Every command carries a random nonce and
its time: the receiver remembers the nonces it accepted (on disk) and refuses one seen before,
and refuses a command older than its window, so a recorded command cannot be replayed.

A unit may have no synchronised clock (no RTC, no NTP yet). It then cannot tell "now", but it
knows a time real time has surely passed: the newest command time it accepted (and the time
its clock showed whenever it was synchronised). A command older than that by more than
MAX_SKEW_NS is refused whatever the clock says; within that margin the nonce memory refuses
a replay. Only a unit that has never accepted a command nor been synchronised can be handed
an old command once (and never the same one again).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Annotated, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, StringConstraints, model_validator

from protocol.alerting import AlertId, ZoneName
from protocol.ids import DeviceId, SensorName, SiteId
from protocol.models import MAX_TS_NS, Text, Token, WireError, WireModel, parse

MAX_RESEND = 50_000
MAX_LEASE_S = 60.0
"""The longest a unit streams on one live command without another."""
MIN_LIVE_FPS = 0.1
MAX_LIVE_FPS = 5.0
MAX_SKEW_NS = 10 * 60 * 10**9
SITE_WINDOW_NS = 2 * 60 * 10**9
"""A site command older (or further ahead) than this is refused by the collector."""
By = Annotated[str, StringConstraints(pattern=r"^(operator|collector):[A-Za-z0-9_.@-]{1,64}$")]
OperatorBy = Annotated[str, StringConstraints(pattern=r"^operator:[A-Za-z0-9_.@-]{1,64}$")]
Ns = Annotated[int, Field(ge=0, lt=MAX_TS_NS)]
Nonce = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


def new_nonce() -> str:
    """128 random bits: no two commands ever share one."""
    return secrets.token_urlsafe(16)


class Resend(WireModel):
    """Publish events first_seq..last_seq again: the collector found them missing."""

    v: Literal[1] = 1
    by: By
    ts: Ns
    nonce: Nonce = Field(default_factory=new_nonce)
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)

    @model_validator(mode="after")
    def _range(self) -> Resend:
        if self.last_seq < self.first_seq:
            raise ValueError("last_seq is before first_seq")
        if self.last_seq - self.first_seq >= MAX_RESEND:
            raise ValueError(f"at most {MAX_RESEND} events per resend")
        return self


class Snapshot(WireModel):
    """Take an evidence set now."""

    v: Literal[1] = 1
    by: By
    ts: Ns
    nonce: Nonce = Field(default_factory=new_nonce)
    cause: Token | None = Field(
        default=None, description="who asked, as the camera event's cause (e.g. guard:budi)"
    )


class Live(WireModel):
    """Stream low-resolution frames on the unit's live topic until `lease_s` from now (0: stop
    now); renewed while someone watches, so a unit nobody renews stops by itself."""

    v: Literal[1] = 1
    by: By
    ts: Ns
    nonce: Nonce = Field(default_factory=new_nonce)
    lease_s: float = Field(ge=0, le=MAX_LEASE_S)
    fps: float = Field(default=2.0, ge=MIN_LIVE_FPS, le=MAX_LIVE_FPS)


class SiteCommand(WireModel):
    """An operator's arm, disarm, bypass, unbypass, ack or resolve; the site and the command
    are signed too, so a signed disarm of one site is no disarm of another, nor an arm."""

    v: Literal[1] = 1
    site: SiteId
    cmd: Literal["arm", "disarm", "ack", "resolve", "bypass", "unbypass"]
    by: OperatorBy
    ts: Ns
    nonce: Nonce = Field(default_factory=new_nonce)
    how: Literal["cli", "mqtt"] = "mqtt"
    alert_id: AlertId | None = Field(default=None, description="ack and resolve: which alert")
    note: Text | None = Field(default=None, description="resolve: what it was")
    zone: ZoneName | None = Field(default=None, description="arm, disarm: one zone (none: all)")
    code: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="disarm: the operator's PIN (a duress PIN raises duress)"
    )
    device: DeviceId | None = Field(default=None, description="bypass, unbypass: the sensor's unit")
    sensor: SensorName | None = Field(default=None, description="bypass, unbypass: the sensor")
    for_s: float | None = Field(
        default=None, gt=0, le=7 * 24 * 3600, description="bypass: how long"
    )
    reason: Text | None = Field(default=None, description="bypass: why")

    @property
    def operator(self) -> str:
        """The operator's name as the audit trail records it (the CN without operator:)."""
        return self.by.removeprefix("operator:")


class SignedCommand(WireModel):
    """The envelope: the command's JSON, the sender's certificate and its signature."""

    v: Literal[1] = 1
    body: Annotated[str, StringConstraints(max_length=4096)]
    cert: Annotated[str, StringConstraints(max_length=8192)]
    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,200}$")]


class CommandResult(WireModel):
    """What the unit did with a command."""

    v: Literal[1] = 1
    cmd: Annotated[str, StringConstraints(pattern=r"^[a-z-]{1,32}$")]
    ok: bool
    detail: Annotated[str, StringConstraints(max_length=500)] = ""
    ts: int = Field(ge=0)


class CommandRefused(Exception):
    """A command the unit will not carry out; the message says why (for log and result)."""


UnitCommand = Resend | Snapshot | Live
"""A command to one unit, on jaga/v1/<site>/<device>/cmd/<resend|snapshot|live>."""


def sign_command(
    command: Resend | Snapshot | Live | SiteCommand,
    key: ec.EllipticCurvePrivateKey,
    cert_pem: bytes,
) -> bytes:
    """The envelope to publish for a command, signed with the sender's key."""
    body = command.model_dump_json()
    raw = key.sign(body.encode(), ec.ECDSA(hashes.SHA256()))
    sig = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return SignedCommand(body=body, cert=cert_pem.decode(), sig=sig).to_json()


def open_command(
    payload: bytes,
    model: type[Resend] | type[Snapshot] | type[Live],
    ca: x509.Certificate,
    now_ns: int,
    clock_synced: bool,
    known_ns: int = 0,
) -> UnitCommand:
    """Check the envelope (CA, CN = by, signature, age) and return the command inside.

    known_ns: a time the receiver knows has passed (its newest accepted command, or its clock
    when last synchronised); a command older than that by MAX_SKEW_NS is refused even while
    the clock is not synchronised. The caller refuses a nonce it has seen (NonceBook)."""
    cert, cn, body = _open_envelope(payload, ca, ("operator:", "collector:"))
    try:
        command = parse(model, body)
    except WireError as exc:
        raise CommandRefused(f"{cn}: {exc}") from None
    if command.by != cn:
        raise CommandRefused(f"command says it is from {command.by}, but {cn} signed it")
    if command.ts < known_ns - MAX_SKEW_NS:
        age_s = (known_ns - command.ts) // 10**9
        raise CommandRefused(
            f"command from {cn} is {age_s} s older than a newer one already seen (replay?)"
        )
    if clock_synced:
        _valid_now(cert, cn, now_ns)
        if abs(now_ns - command.ts) > MAX_SKEW_NS:
            raise CommandRefused(f"command from {cn} is too old or from the future (replay?)")
    return command


def open_site_command(
    payload: bytes, ca: x509.Certificate, now_ns: int
) -> tuple[SiteCommand, x509.Certificate]:
    """Check an operator's site command (CA, CN = by, signature, within SITE_WINDOW_NS of now);
    the caller checks the operator may act on the site, and refuses a nonce it has seen."""
    cert, cn, body = _open_envelope(payload, ca, ("operator:",))
    try:
        command = parse(SiteCommand, body)
    except WireError as exc:
        raise CommandRefused(f"{cn}: {exc}") from None
    if command.by != cn:
        raise CommandRefused(f"command says it is from {command.by}, but {cn} signed it")
    _valid_now(cert, cn, now_ns)
    if abs(now_ns - command.ts) > SITE_WINDOW_NS:
        raise CommandRefused(f"command from {cn} is too old or from the future (replay?)")
    return command, cert


def _open_envelope(
    payload: bytes, ca: x509.Certificate, roles: tuple[str, ...]
) -> tuple[x509.Certificate, str, bytes]:
    """The signer's certificate, its CN and the signed body, once all three check out."""
    try:
        env = parse(SignedCommand, payload)
        cert = x509.load_pem_x509_certificate(env.cert.encode())
    except (WireError, ValueError) as exc:
        raise CommandRefused(f"not a signed command: {str(exc)[:200]}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise CommandRefused("the sender's certificate is not from this site's CA") from None
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    if not cn.startswith(roles):
        allowed = "neither operator nor collector" if len(roles) > 1 else "not an operator"
        raise CommandRefused(f"{cn or 'an unnamed certificate'} is {allowed}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CommandRefused("the sender's key is not ECDSA")
    try:
        raw = base64.urlsafe_b64decode(env.sig + "=" * (-len(env.sig) % 4))
        key.verify(raw, env.body.encode(), ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        raise CommandRefused(f"signature of {cn} does not verify") from None
    return cert, cn, env.body.encode()


def _valid_now(cert: x509.Certificate, cn: str, now_ns: int) -> None:
    now = dt.datetime.fromtimestamp(now_ns / 1e9, dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CommandRefused(f"{cn}'s certificate is not valid now")


def load_pem_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("commands are signed with P-256 keys")
    return key
