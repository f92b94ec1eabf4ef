"""Commands to a unit on jaga/v1/<site>/<device>/cmd/<name>, and the unit's answers.

Only the collector and operators may publish commands (broker ACL), and every command is
signed: the envelope carries the sender's certificate (from the site CA) and a signature
over the command's bytes, so the unit knows who asked — the certificate's CN must be the
command's `by` — instead of taking a name on trust.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, StringConstraints, model_validator

from protocol.models import MAX_TS_NS, WireError, WireModel, parse

MAX_RESEND = 50_000
MAX_SKEW_NS = 10 * 60 * 10**9
By = Annotated[str, StringConstraints(pattern=r"^(operator|collector):[A-Za-z0-9_.@-]{1,64}$")]
Ns = Annotated[int, Field(ge=0, lt=MAX_TS_NS)]


class Resend(WireModel):
    """Publish events first_seq..last_seq again: the collector found them missing."""

    v: Literal[1] = 1
    by: By
    ts: Ns
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


def sign_command(
    command: Resend | Snapshot, key: ec.EllipticCurvePrivateKey, cert_pem: bytes
) -> bytes:
    """The envelope to publish for a command, signed with the sender's key."""
    body = command.model_dump_json()
    raw = key.sign(body.encode(), ec.ECDSA(hashes.SHA256()))
    sig = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return SignedCommand(body=body, cert=cert_pem.decode(), sig=sig).to_json()


def open_command(
    payload: bytes,
    model: type[Resend] | type[Snapshot],
    ca: x509.Certificate,
    now_ns: int,
    clock_synced: bool,
) -> Resend | Snapshot:
    """Check the envelope (CA, CN = by, signature, age) and return the command inside."""
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
    if not cn.startswith(("operator:", "collector:")):
        raise CommandRefused(f"{cn or 'an unnamed certificate'} is neither operator nor collector")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CommandRefused("the sender's key is not ECDSA")
    try:
        raw = base64.urlsafe_b64decode(env.sig + "=" * (-len(env.sig) % 4))
        key.verify(raw, env.body.encode(), ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        raise CommandRefused(f"signature of {cn} does not verify") from None
    try:
        command = parse(model, env.body.encode())
    except WireError as exc:
        raise CommandRefused(f"{cn}: {exc}") from None
    if command.by != cn:
        raise CommandRefused(f"command says it is from {command.by}, but {cn} signed it")
    if clock_synced:
        now = dt.datetime.fromtimestamp(now_ns / 1e9, dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CommandRefused(f"{cn}'s certificate is not valid now")
        if abs(now_ns - command.ts) > MAX_SKEW_NS:
            raise CommandRefused(f"command from {cn} is too old or from the future (replay?)")
    return command


def load_pem_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("commands are signed with P-256 keys")
    return key
