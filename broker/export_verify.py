"""`audit verify-export`: our own check of an evidence export, the same checks as its verify.sh.

It believes nothing the export says on its own: the auditor brings the CA (its SHA-256
fingerprint, published in advance); every event must be signed with the key of one of the
unit's certificates (certs/unit.pem, and certs/unit-<serial>.pem when the unit renewed its key
within the stretch), all naming the event's site and unit, that chained to that CA (directly
or through one of the issuing certificates) when the event was made; each of them must vouch
for at least one event; each body must link to the one before; every picture must hash to a
name a signed event lists. The folder's layout is broker/export_format.py's; verify.sh, this
module and tests/verifiers/verify_export.mjs must agree on every export. Reading the folder's
files is broker/export_files.py's job; the pinned CA and a unit certificate,
broker/export_trust.py's; which certificates an export carries, broker/export_lineage.py's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.verification import VerificationError

from broker.export_files import (
    CHUNK,
    PICTURE_MAX_BYTES,
    SMALL_MAX_BYTES,
    ExportError,
    listing,
    load_manifest,
    one_line,
    open_plain,
    os_reason,
    read_plain,
)
from broker.export_format import (
    BODY,
    CERTS,
    EVENT_FILE,
    EVENTS,
    ISSUING_MORE,
    ISSUING_PEM,
    PICTURE_FILE,
    PICTURES,
    SUBJECT,
    SUBJECT_LINE,
    UNIT_MORE,
    UNIT_PEM,
    event_name,
)
from broker.export_trust import (
    PinnedCA,
    anchor,
    ca_fingerprint,
    certificate,
    normalise_fingerprint,
    unit_key,
    unit_name,
    verifier,
)
from broker.export_witnesses import Exported, check_witnesses
from protocol.signing import GENESIS, PublicKey, SignatureError, verify_bytes

__all__ = [
    "ExportError",
    "ExportReport",
    "PinnedCA",
    "ca_fingerprint",
    "load_manifest",
    "normalise_fingerprint",
    "verify_export",
]


@dataclass
class ExportReport:
    events: int = 0
    pictures: int = 0
    cosignatures: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    witnessed: list[str] = field(default_factory=list)
    """What the given witnesses' cosignatures show: each one, and by when each saw the chain."""

    @property
    def ok(self) -> bool:
        return not self.problems


# -- the checks ----------------------------------------------------------------------------


@dataclass
class _Chain:
    """What the events so far have established."""

    last_seq: int | None = None
    last_hash: str = ""
    last_file: str = ""
    named: set[str] = field(default_factory=set)
    bodies: dict[int, dict[str, Any]] = field(default_factory=dict)


def verify_export(folder: Path, pinned: PinnedCA, witnesses: tuple[str, ...] = ()) -> ExportReport:
    """Re-check an export against the pinned CA; ExportError if the manifest is unreadable."""
    load_manifest(folder)  # the collector's account: well-formed, or the export is refused
    report = ExportReport()
    for sub in (CERTS, EVENTS, PICTURES):
        path = folder / sub
        if path.is_symlink() or not path.is_dir():
            report.problems.append(f"{sub}/: missing or not a plain folder")
    trust = _trust(folder, pinned, report.problems)
    if trust is None:
        return report
    site_device = trust.site_device
    chain = _Chain()
    for name in listing(folder, EVENTS):
        if not EVENT_FILE.fullmatch(name):
            report.problems.append(f"{EVENTS}/{name}: not a file an export holds")
        elif name.endswith(".body"):
            _check_event(folder, name, trust, chain, report)
        elif not os.path.lexists(folder / EVENTS / name.replace(".sig", ".body")):
            report.problems.append(f"{EVENTS}/{name}: no body beside it")
    if report.events == 0:
        report.problems.append(f"{EVENTS}/: no signed events")
    else:
        report.problems += [
            f"{s.name}: vouches for no event here (none is signed with its key while it "
            "chained to the CA): not a certificate of this export"
            for s in trust.signers
            if not s.vouched
        ]
    wanted = _subject_pictures(folder, chain, report)
    _check_pictures(folder, chain.named, report)
    for sha in wanted:
        if not (folder / PICTURES / f"{sha}.jpg").is_file():
            report.problems.append(
                f"{PICTURES}/{sha}.jpg: signed by an event of the subject, not here"
            )
    first = min(chain.bodies, default=None)
    if first is not None and chain.last_seq is not None:
        exported = Exported(site_device[0], site_device[1], first, chain.last_seq)
        seen = check_witnesses(folder, witnesses, exported)
        report.problems += seen.problems
        report.cosignatures, report.witnessed = seen.cosignatures, seen.lines
    else:
        report.problems += [
            f"witness {w}: no exported chain to check it against" for w in witnesses
        ]
    report.first_seq = min(chain.bodies, default=None)
    report.last_seq = chain.last_seq
    return report


def _check_event(
    folder: Path, name: str, trust: _Trust, chain: _Chain, report: ExportReport
) -> None:
    """One body and its signature: its form, its unit, a certificate of the unit that signed
    it and chained to the CA at its time, its link to the event before."""
    before = len(report.problems)
    body_name = f"{EVENTS}/{name}"
    sig_name = body_name.removesuffix(".body") + ".sig"
    try:
        body = read_plain(folder, body_name, SMALL_MAX_BYTES)
    except OSError as exc:
        report.problems.append(f"{body_name}: {os_reason(exc)}")
        return
    try:
        sig = read_plain(folder, sig_name, SMALL_MAX_BYTES)
    except OSError as exc:
        report.problems.append(f"{sig_name}: {os_reason(exc)}")
        return
    if not all(0x20 <= b <= 0x7E for b in body):
        report.problems.append(
            f"{body_name}: not one line of printable ASCII, so not a signed event body"
        )
        return
    text = body.decode("ascii")
    if not BODY.fullmatch(text):
        report.problems.append(f"{body_name}: not in the form of a signed event")
        return
    fields = json.loads(text)  # the form is checked: integers are read exactly
    seq, ts, prev = int(fields["seq"]), int(fields["ts"]), str(fields["prev"])
    if seq != int(name.removesuffix(".body")):
        report.problems.append(f"{body_name}: holds seq {seq}, not the seq its name says")
    site_device = trust.site_device
    if (fields["site"], fields["device"]) != site_device:
        report.problems.append(
            f"{body_name}: an event of {fields['site']}/{fields['device']}; the certificate "
            f"is {site_device[0]}/{site_device[1]}'s"
        )
    problem = _signed(trust, (body_name, body), (sig_name, sig), ts // 10**9)
    if problem is not None:
        report.problems.append(problem)
    if chain.last_seq is not None:
        if seq != chain.last_seq + 1:
            report.problems.append(
                f"{body_name}: seq {seq} right after seq {chain.last_seq}: an event is missing "
                "or out of order"
            )
        if prev != chain.last_hash:
            report.problems.append(
                f"{body_name}: does not link to {chain.last_file} (its prev is not that "
                "body's SHA-256)"
            )
    elif seq == 1 and prev != GENESIS:
        report.problems.append(
            f"{body_name}: the unit's first event, but its prev is not {GENESIS}"
        )
    chain.last_seq, chain.last_hash, chain.last_file = (
        seq,
        hashlib.sha256(body).hexdigest(),
        body_name,
    )
    if len(report.problems) == before:  # only a verified event vouches for pictures
        chain.named.update(fields.get("snapshot_sha256", ()))
    chain.bodies[seq] = fields
    report.events += 1


@dataclass
class _Signer:
    """One certificate of the unit (certs/unit.pem, certs/unit-<serial>.pem)."""

    name: str
    cert: x509.Certificate
    key: PublicKey
    vouched: int = 0
    """Events it vouched for: signed with its key while it chained to the CA."""


@dataclass
class _Trust:
    """The pinned CA, the unit's certificates (certs/unit.pem first), all naming one unit, and
    the issuing CA certificates that may link them to the CA (never trusted on their own)."""

    ca: x509.Certificate
    site_device: tuple[str, str]
    signers: list[_Signer]
    issuing: list[x509.Certificate]
    valid: set[tuple[str, int]] = field(default_factory=set)
    """(certificate, second) pairs already found chaining to the CA."""


def _trust(folder: Path, pinned: PinnedCA, problems: list[str]) -> _Trust | None:
    """What the signatures rest on; None (with the problems said) when any of it is unsound."""
    ca = anchor(folder, pinned, problems)
    unit = certificate(folder, UNIT_PEM, problems) if ca is not None else None
    site_device = unit_name(unit, problems) if unit is not None else None
    key = unit_key(unit, problems) if unit is not None and site_device is not None else None
    if ca is None or unit is None or site_device is None or key is None:
        return None
    names = listing(folder, CERTS)
    sound = True
    issuing: list[x509.Certificate] = []
    links = [ISSUING_PEM] if os.path.lexists(folder / ISSUING_PEM) else []
    for where in links + [f"{CERTS}/{n}" for n in names if ISSUING_MORE.fullmatch(n)]:
        link = certificate(folder, where, problems)
        sound = sound and link is not None
        issuing += [link] if link is not None else []
    signers = [_Signer(UNIT_PEM, unit, key)]
    more = sorted((n for n in names if UNIT_MORE.fullmatch(n)), key=_serial, reverse=True)
    for where in [f"{CERTS}/{n}" for n in more]:
        other = certificate(folder, where, problems)
        named = unit_name(other, problems, where) if other is not None else None
        if other is not None and named is not None and named != site_device:
            problems.append(
                f"{where}: a certificate of {named[0]}/{named[1]}, not of this export's unit "
                f"{site_device[0]}/{site_device[1]} ({UNIT_PEM}): it vouches for nothing here"
            )
            named = None
        other_key = unit_key(other, problems, where) if other and named else None
        if other is None or other_key is None:
            sound = False
        else:
            signers.append(_Signer(where, other, other_key))
    return _Trust(ca, site_device, signers, issuing) if sound else None


def _signed(
    trust: _Trust, named_body: tuple[str, bytes], named_sig: tuple[str, bytes], secs: int
) -> str | None:
    """None when one of the unit's certificates verifies the signature (file name, bytes) over
    the body and chained to the CA at second secs; else the problem. They are tried newest
    first (certs/unit.pem, then by serial), as the exporter chose them: the first that vouches
    is the one credited (two certificates of one key may both verify)."""
    (body_name, body), (sig_name, sig) = named_body, named_sig
    encoded = base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    unchained: str | None = None
    for signer in trust.signers:
        try:
            verify_bytes(encoded, body, signer.key)
        except SignatureError:
            continue
        reason = _chains(trust, signer, secs)
        if reason is None:
            signer.vouched += 1
            return None
        unchained = unchained or (
            f"{body_name}: {signer.name} does not chain to the CA at the event's time "
            f"({secs} s since 1970): {one_line(reason)}"
        )
    if unchained is not None:
        return unchained
    others = " nor any other certificate in certs/" if len(trust.signers) > 1 else ""
    return f"{sig_name}: the signature does not verify over {body_name} with {UNIT_PEM}{others}"


def _serial(name: str) -> int:
    """The serial a certs/unit-<serial>.pem name says (ordering only; never trusted)."""
    return int(name.removeprefix("unit-").removesuffix(".pem"))


def _chains(trust: _Trust, signer: _Signer, secs: int) -> str | None:
    """None when the certificate chained to the pinned CA at second secs, directly or through
    one of the issuing certificates (each tried in turn); else why not (the last reason)."""
    if (signer.name, secs) in trust.valid:
        return None
    reason = "no path"
    for between in [[link] for link in trust.issuing] or [[]]:
        try:
            when = datetime.fromtimestamp(secs, UTC)
            verifier(trust.ca, when, len(between)).verify(signer.cert, between)
        except (VerificationError, OverflowError, OSError, ValueError) as exc:
            reason = str(exc)
            continue
        trust.valid.add((signer.name, secs))
        return None
    return reason


def _subject_pictures(folder: Path, chain: _Chain, report: ExportReport) -> list[str]:
    """The pictures the subject's events sign (the export is about them)."""
    try:
        data = read_plain(folder, SUBJECT, SMALL_MAX_BYTES)
    except OSError as exc:
        report.problems.append(f"{SUBJECT}: {os_reason(exc)}")
        return []
    if not data or any(b not in b"0123456789\n" for b in data):
        report.problems.append(f"{SUBJECT}: not seq numbers, one a line")
        return []
    wanted: list[str] = []
    for line in data.decode().split("\n"):
        if line == "":
            continue
        if not SUBJECT_LINE.fullmatch(line):
            report.problems.append(f"{SUBJECT}: '{line[:40]}' is not a seq number")
            continue
        body = chain.bodies.get(int(line))
        if body is None and not (folder / event_name(int(line), "body")).is_file():
            report.problems.append(f"{SUBJECT}: seq {line} is not among the events")
            continue
        wanted += [str(s) for s in (body or {}).get("snapshot_sha256", ())]
    return wanted


def _check_pictures(folder: Path, named: set[str], report: ExportReport) -> None:
    for name in listing(folder, PICTURES):
        where = f"{PICTURES}/{name}"
        if not PICTURE_FILE.fullmatch(name):
            report.problems.append(f"{where}: not a picture an export holds")
            continue
        sha = name.removesuffix(".jpg")
        problem = _picture_problem(folder, where, sha, named)
        if problem:
            report.problems.append(f"{where}: {problem}")
        else:
            report.pictures += 1


def _picture_problem(folder: Path, where: str, sha: str, named: set[str]) -> str | None:
    """Why the picture's file does not prove its hash, or None when it does."""
    digest = hashlib.sha256()
    try:
        with open_plain(folder, where) as fd:
            if sha not in named:
                return "no signed event in this export names it"
            size = 0
            while chunk := os.read(fd, CHUNK):
                size += len(chunk)
                if size > PICTURE_MAX_BYTES:
                    return f"larger than {PICTURE_MAX_BYTES // (1024 * 1024)} MB"
                digest.update(chunk)
    except OSError as exc:
        return os_reason(exc)
    if digest.hexdigest() != sha:
        return "its SHA-256 is not the one its event signed (the picture was changed)"
    return None
