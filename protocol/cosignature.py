"""Witness cosignatures and fork reports: small signed texts that openssl alone can check.

A witness (Bawaslu, the police, a party's witness) holds its own Ed25519 key, never one from
the site CA, and signs what it saw of a unit's hash chain. Like a Go checksum-database signed
note or a Sigstore/CT checkpoint (origin, tree size, root hash), the signed bytes are a short
UTF-8 text of lines, each ended by a newline; simpler, because a unit's chain is a list, not
a Merkle tree: its head (the hash the next event carries as `prev`) commits to every event
before it, so (seq, head) plays the part of (tree size, root hash). A cosignature::

    jaga-witness v1
    witness bawaslu-bangka-barat
    site bangka-barat
    device gudang-01
    seq 42
    head 3b1f...64 lowercase hex digits...
    time 2026-12-01T10:00:00.123Z

says: "this witness saw, no later than `time` by its own clock (UTC, milliseconds), the event
of that unit at `seq` whose hash (protocol.signing.event_hash: SHA-256 of the event's
canonical bytes without `sig`) is `head`". `sig` is the Ed25519 signature over exactly those
bytes, in standard base64 (RFC 4648 section 4, with padding). An auditor checks one with::

    printf '%s' "$SIG" | base64 -d > body.sig
    openssl pkeyutl -verify -pubin -inkey witness.pub -rawin -in body.txt -sigfile body.sig

and the key with its fingerprint, published in advance: SHA-256 of the key's
SubjectPublicKeyInfo DER (as CT's log ids are), 64 lowercase hex digits::

    openssl pkey -pubin -in witness.pub -outform DER | sha256sum

A cosignature at seq N covers every event of the unit up to N: an export that holds the chain
from an event to seq N shows the event was there when the witness signed. A fork report
(`jaga-witness-fork v1`, same layout with `kind`, `seq`, `seen`, `offered`) says the witness
was offered, at `seq`, a hash other than the one it holds there, and refused to cosign it;
`kind` is `rewind` when that seq lies below the head it had cosigned or seen, else `fork`.

On MQTT (jaga/v1/<site>/witness/<name>) both travel as JSON: {"v": 1, "type":
"cosignature" | "fork", "body": <the text>, "sig": <base64>}.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.ids import InvalidIdentifier, check_id

COSIGNATURE_HEADER = "jaga-witness v1"
FORK_HEADER = "jaga-witness-fork v1"
MAX_PAYLOAD = 4096
"""A cosignature or fork report is a few hundred bytes; anything far larger is refused."""
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_SEQ = re.compile(r"^[1-9][0-9]{0,18}$")


class CosignatureError(ValueError):
    """A cosignature or fork report that does not parse or does not verify; says which."""


@dataclass(frozen=True, slots=True)
class Cosignature:
    """One witness's signed view of one unit's chain head."""

    witness: str
    site: str
    device: str
    seq: int
    head: str
    time_ms: int
    """The witness's own clock, ms since the Unix epoch (UTC)."""

    def body(self) -> bytes:
        """The exact bytes the witness signs."""
        return _lines(
            COSIGNATURE_HEADER,
            ("witness", self.witness),
            ("site", self.site),
            ("device", self.device),
            ("seq", str(self.seq)),
            ("head", self.head),
            ("time", format_time(self.time_ms)),
        )


ForkKind = Literal["fork", "rewind"]


@dataclass(frozen=True, slots=True)
class ForkReport:
    """A witness refused an event: at `seq` it holds `seen`, and was offered `offered`."""

    witness: str
    site: str
    device: str
    kind: ForkKind
    seq: int
    seen: str
    offered: str
    time_ms: int

    def body(self) -> bytes:
        return _lines(
            FORK_HEADER,
            ("witness", self.witness),
            ("site", self.site),
            ("device", self.device),
            ("kind", self.kind),
            ("seq", str(self.seq)),
            ("seen", self.seen),
            ("offered", self.offered),
            ("time", format_time(self.time_ms)),
        )


@dataclass(frozen=True, slots=True)
class Signed:
    """A body and its signature as they travel and are stored."""

    type: Literal["cosignature", "fork"]
    body: bytes
    sig: str
    """Standard base64 of the 64-byte Ed25519 signature over body."""

    def to_json(self) -> bytes:
        data = {"v": 1, "type": self.type, "body": self.body.decode(), "sig": self.sig}
        return json.dumps(data, separators=(",", ":")).encode()


def fingerprint(key: ed25519.Ed25519PublicKey) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo DER, 64 lowercase hex digits."""
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def sign(item: Cosignature | ForkReport, key: ed25519.Ed25519PrivateKey) -> Signed:
    body = item.body()
    sig = base64.b64encode(key.sign(body)).decode()
    return Signed("cosignature" if isinstance(item, Cosignature) else "fork", body, sig)


def verify_cosignature(body: bytes | str, sig: str, key: ed25519.Ed25519PublicKey) -> Cosignature:
    """The cosignature in body if sig is key's signature over it; CosignatureError otherwise.

    Pure: what an export's checker calls with each witness key the auditor brought (match a
    key to its published fingerprint with `fingerprint`)."""
    data = body.encode() if isinstance(body, str) else body
    _verify(data, sig, key)
    return parse_cosignature(data)


def verify_fork(body: bytes | str, sig: str, key: ed25519.Ed25519PublicKey) -> ForkReport:
    """The fork report in body if sig is key's signature over it; CosignatureError otherwise."""
    data = body.encode() if isinstance(body, str) else body
    _verify(data, sig, key)
    return parse_fork(data)


def parse_cosignature(body: bytes) -> Cosignature:
    """Read a cosignature's body (without checking its signature); strict about every line."""
    f = _fields(body, COSIGNATURE_HEADER, ("witness", "site", "device", "seq", "head", "time"))
    return Cosignature(
        witness=f["witness"],
        site=f["site"],
        device=f["device"],
        seq=int(f["seq"]),
        head=f["head"],
        time_ms=parse_time(f["time"]),
    )


def parse_fork(body: bytes) -> ForkReport:
    names = ("witness", "site", "device", "kind", "seq", "seen", "offered", "time")
    f = _fields(body, FORK_HEADER, names)
    kind = f["kind"]
    if kind not in ("fork", "rewind"):
        raise CosignatureError(f"kind {kind!r} is neither fork nor rewind")
    if not _HEX64.match(f["seen"]) or not _HEX64.match(f["offered"]):
        raise CosignatureError("seen and offered must be 64 lowercase hex digits")
    return ForkReport(
        witness=f["witness"],
        site=f["site"],
        device=f["device"],
        kind="fork" if kind == "fork" else "rewind",
        seq=int(f["seq"]),
        seen=f["seen"],
        offered=f["offered"],
        time_ms=parse_time(f["time"]),
    )


def parse_signed(payload: bytes) -> Signed:
    """The JSON that travels on a witness topic; CosignatureError for anything else."""
    if len(payload) > MAX_PAYLOAD:
        raise CosignatureError(f"payload of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        raise CosignatureError("payload is not JSON") from None
    if not isinstance(data, dict) or set(data) != {"v", "type", "body", "sig"}:
        raise CosignatureError("payload must be an object with exactly v, type, body, sig")
    kind, body, sig = data["type"], data["body"], data["sig"]
    if data["v"] != 1 or kind not in ("cosignature", "fork"):
        raise CosignatureError("payload is not v 1 of a cosignature or fork report")
    if not isinstance(body, str) or not isinstance(sig, str):
        raise CosignatureError("body and sig must be strings")
    return Signed("cosignature" if kind == "cosignature" else "fork", body.encode(), sig)


def format_time(ms: int) -> str:
    """RFC 3339 UTC with milliseconds: 2026-12-01T10:00:00.123Z."""
    stamp = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


def parse_time(text: str) -> int:
    if not _TIME.match(text):
        raise CosignatureError(f"time {text!r} is not like 2026-12-01T10:00:00.123Z")
    try:
        whole = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise CosignatureError(f"time {text!r} is not a real date") from None
    return int(whole.timestamp()) * 1000 + int(text[20:23])


def _lines(header: str, *pairs: tuple[str, str]) -> bytes:
    return "".join([f"{header}\n", *(f"{k} {v}\n" for k, v in pairs)]).encode()


def _fields(body: bytes, header: str, names: tuple[str, ...]) -> dict[str, str]:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise CosignatureError("body is not ASCII") from None
    if not text.endswith("\n"):
        raise CosignatureError("body must end with a newline")
    lines = text[:-1].split("\n")
    if lines[0] != header:
        raise CosignatureError(f"body does not start with {header!r}")
    if len(lines) != len(names) + 1:
        raise CosignatureError(f"body must have {len(names) + 1} lines: {header}, {names}")
    out: dict[str, str] = {}
    for name, line in zip(names, lines[1:], strict=True):
        key, _, value = line.partition(" ")
        if key != name or not value or " " in value:
            raise CosignatureError(f"expected a line '{name} <value>', found {line[:80]!r}")
        out[name] = value
    try:
        check_id(out["witness"], "witness", allow_reserved=True)
        check_id(out["site"], "site")
        check_id(out["device"], "device")
    except InvalidIdentifier as exc:
        raise CosignatureError(str(exc)) from None
    if not _SEQ.match(out["seq"]) or int(out["seq"]) >= 2**63:
        raise CosignatureError(f"seq {out['seq'][:30]!r} is not a positive integer")
    if "head" in out and not _HEX64.match(out["head"]):
        raise CosignatureError("head must be 64 lowercase hex digits")
    return out


def _verify(data: bytes, sig: str, key: ed25519.Ed25519PublicKey) -> None:
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise CosignatureError("sig is not standard base64") from None
    if len(raw) != 64:
        raise CosignatureError("sig is not a 64-byte Ed25519 signature")
    try:
        key.verify(raw, data)
    except InvalidSignature:
        raise CosignatureError("signature does not verify with this witness's key") from None
