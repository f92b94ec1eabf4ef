"""The evidence export's folder: names, the grammar of a signed body, the collector's manifest.

The folder is the contract, checked by `verify.sh` (openssl, sha256sum), by `jaga-collector
audit verify-export` and by anyone's own verifier:

  certs/ca.pem            the site CA: one PEM certificate, checked against the pinned
                          fingerprint (SHA-256 of its DER bytes)
  certs/unit.pem          the unit's certificate: OU = site, CN = unit, issued by that CA
                          or by the issuing CA below it
  certs/issuing.pem       only when an issuing CA signed the unit's certificate: that issuing
                          CA (one PEM certificate, path length 0), itself signed by the CA;
                          never trusted on its own, only as the link between the two
  certs/unit-<serial>.pem the unit's older certificates (it renews with a new key, #19)
                          whose keys signed events of the stretch, serial in decimal; each
                          names the same site and unit as certs/unit.pem
  certs/issuing-<serial>.pem
                          the issuing CA's other certificates (it renews too) the unit's
                          certificates chain through at their events' times; links only
  events/<seq>.body       the exact bytes the unit signed (seq zero-padded to 20 digits,
                          so names sort in chain order)
  events/<seq>.sig        the signature over them: DER (ECDSA P-256, SHA-256) or raw (Ed25519)
  subject                 the seq numbers the export is about, one a line
  pictures/<sha256>.jpg   the pictures the subject events sign
  manifest.json           the collector's account (custody lines, why the chain starts and
                          ends where it does): unsigned, nothing in it is trusted
  verify.sh, VERIFY.txt   the check and what it does (Indonesian, English)
  witness/<name>/key.pem  a witness's public key (SPKI PEM), checked against a fingerprint
                          the auditor brings (SHA-256 of its DER), never trusted on its own
  witness/<name>/<seq>-<time>.body, .sig
                          one cosignature of that witness (protocol/cosignature.py): the
                          exact signed text and its raw 64-byte Ed25519 signature (seq
                          zero-padded to 20 digits, the witness's time in ms to 15); those
                          at seqs of the exported chain, and each witness's first beyond it

A body's fields are read as text, never through a JSON number parser: `ts` (nanoseconds) does
not fit a double. BODY names the only form a body may take, so that text is unambiguous.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from protocol.ids import DeviceId, SiteId
from protocol.models import HEX64, MAX_SEQ, Token

CA_PEM = "certs/ca.pem"
UNIT_PEM = "certs/unit.pem"
ISSUING_PEM = "certs/issuing.pem"
EVENTS = "events"
PICTURES = "pictures"
CERTS = "certs"
SUBJECT = "subject"
MANIFEST = "manifest.json"
VERIFY_SH = "verify.sh"
VERIFY_TXT = "VERIFY.txt"
WITNESS = "witness"
WITNESS_KEY = "key.pem"
COSIGNATURE_FILE = re.compile(r"[0-9]{20}-[0-9]{15}\.(body|sig)")
ENDS_AT_LINE = re.compile(r'^    "ends_at": "([a-z]+)",$', re.MULTILINE)
LAST_SEQ_LINE = re.compile(r'^    "last_seq": ([0-9]+),$', re.MULTILINE)
"""Where the manifest (as `export` writes it: indent 2, sorted keys) says the chain ends and
why: read by line, the same way in verify.sh, export_verify and the Node verifier, so that a
witness's cosignature beyond a chain said to end at the newest stored event is a truncation
all three see."""

SEQ_DIGITS = 20
"""Every seq (at most 2**63 - 1, 19 digits) zero-padded to this many, so names sort by seq."""

UNIT_MORE = re.compile(r"unit-[0-9]{1,49}\.pem")
ISSUING_MORE = re.compile(r"issuing-[0-9]{1,49}\.pem")
"""Names in certs/ of the unit's other certificates and of the other issuing certificates."""

EVENT_FILE = re.compile(r"[0-9]{20}\.(body|sig)")
PICTURE_FILE = re.compile(r"[0-9a-f]{64}\.jpg")
SUBJECT_LINE = re.compile(r"[1-9][0-9]{0,18}")


def event_name(seq: int, part: Literal["body", "sig"]) -> str:
    """`events/<seq>.body` or `.sig`, seq zero-padded."""
    return f"{EVENTS}/{seq:0{SEQ_DIGITS}d}.{part}"


def unit_pem_name(serial: int) -> str:
    """`certs/unit-<serial>.pem`: an older certificate of the unit that signed events."""
    return f"{CERTS}/unit-{serial}.pem"


def issuing_pem_name(serial: int) -> str:
    """`certs/issuing-<serial>.pem`: another certificate of an issuing CA, a link only."""
    return f"{CERTS}/issuing-{serial}.pem"


def cosignature_name(witness: str, seq: int, time_ms: int, part: Literal["body", "sig"]) -> str:
    """`witness/<name>/<seq>-<time>.body` or `.sig`: seq to 20 digits, ms to 15."""
    return f"{WITNESS}/{witness}/{seq:0{SEQ_DIGITS}d}-{time_ms:015d}.{part}"


_ID = r"[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?"
_TOKEN = r"[A-Za-z0-9_.:-]{1,64}"
_NAT = r"(0|[1-9][0-9]{0,18})"
_HEX = r"[0-9a-f]{64}"
_KINDS = "camera|checkpoint|door|motion|patrol|system|tamper"
_SENSOR = r'"' + _ID + r'":"[a-z-]{1,32}"'
BODY = re.compile(
    r'\{"boot_id":"' + _TOKEN + r'",("cause":"' + _TOKEN + r'",)?'
    r'("checkpoint":\{"interval_s":'
    + _NAT
    + r',"sensors":\{('
    + _SENSOR
    + r"(,"
    + _SENSOR
    + r')*)?\},"uptime_s":'
    + _NAT
    + r"\},)?"
    r'"clock_synced":(true|false),"device":"' + _ID + r'","id":"' + _TOKEN + r'",'
    r'"kind":"(' + _KINDS + r')","mono_ns":' + _NAT + r',"prev":"' + _HEX + r'",'
    r'"sensor":"' + _ID + r'","seq":' + _NAT + r',"site":"' + _ID + r'",'
    r'("snapshot_sha256":\[("' + _HEX + r'"(,"' + _HEX + r'")*)?\],)?'
    r'"state":"[a-z-]{1,32}","ts":' + _NAT + r',"v":1\}'
)
"""A signed event body exactly as protocol.signing.canonical_bytes makes it (keys sorted, no
spaces, ASCII): verify.sh holds the same expression (grep -E), tests/verifiers the same in
JavaScript; a test compares them, so a new field or kind changes all three together."""


class ChainEnd(StrEnum):
    """Why the exported chain starts or ends where it does (the collector's word, unsigned)."""

    CHECKPOINT = "checkpoint"
    """At the unit's signed checkpoint nearest the event."""
    LIMIT = "limit"
    """No checkpoint near: a fixed number of events from the event."""
    GENESIS = "genesis"
    """The unit's first event (seq 1)."""
    HEAD = "head"
    """The newest event the collector holds of the unit."""
    GAP = "gap"
    """The collector does not hold the next event (or holds one that does not link)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


CustodyValue = (
    Annotated[str, StringConstraints(max_length=1024)]
    | Annotated[int, Field(ge=-(2**63), lt=2**63)]
    | bool
    | None
)
CustodyKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]


class ManifestPicture(_Strict):
    """One picture: the collector's custody lines for it (what it says it did, not signed)."""

    sha256: HEX64
    custody: list[dict[CustodyKey, CustodyValue]] = Field(max_length=10_000)


class ManifestChain(_Strict):
    """The exported stretch of the unit's chain and why it starts and ends there."""

    first_seq: Seq
    last_seq: Seq
    starts_at: ChainEnd
    ends_at: ChainEnd


class Manifest(_Strict):
    """`manifest.json` as `evidence export` writes it; anything else is refused whole."""

    v: Literal[2]
    event_id: Token
    site: SiteId
    device: DeviceId
    chain: ManifestChain
    pictures: list[ManifestPicture] = Field(max_length=64 * 1024)
