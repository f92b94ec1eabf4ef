"""`audit verify-export`: our own check of an evidence export, the same checks as its verify.sh.

It believes nothing the export says on its own: the auditor brings the CA (its SHA-256
fingerprint, published in advance); the unit certificate must chain to that CA, have been
valid when each event was made and name each event's site and unit; its key must have signed
every body; each body must link to the one before; every picture must hash to a name a signed
event lists. The folder's layout is broker/export_format.py's; verify.sh, this module and
tests/verifiers/verify_export.mjs must agree on every export.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from pydantic import ValidationError

from broker.export_format import (
    BODY,
    CA_PEM,
    CERTS,
    EVENT_FILE,
    EVENTS,
    MANIFEST,
    PICTURE_FILE,
    PICTURES,
    SUBJECT,
    SUBJECT_LINE,
    UNIT_PEM,
    Manifest,
    event_name,
)
from protocol.signing import GENESIS, PublicKey, SignatureError, verify_bytes

MANIFEST_MAX_BYTES = 32 * 1024 * 1024
"""Far above any real export (custody lines of its pictures); a bigger file is refused."""
PICTURE_MAX_BYTES = 64 * 1024 * 1024
SMALL_MAX_BYTES = 256 * 1024
"""Certificates, bodies, signatures and the subject list are far smaller."""
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024


class ExportError(Exception):
    """The export's manifest cannot be read; the message says why, in one line."""


def ca_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER bytes, 64 lowercase hex digits: what auditors pin.

    The same value `jaga-provision ca fingerprint` prints and `openssl x509 -noout
    -fingerprint -sha256` shows (there in upper case with colons)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def normalise_fingerprint(text: str) -> str:
    """Accept the hex as printed by jaga-provision or openssl; ValueError for anything else."""
    value = text.strip().lower()
    if value.startswith("sha256 fingerprint="):
        value = value.split("=", 1)[1]
    value = value.replace(":", "").replace(" ", "")
    if not FINGERPRINT.match(value):
        raise ValueError(
            "a CA fingerprint is 64 hexadecimal digits (SHA-256), as `jaga-provision ca "
            "fingerprint` prints it"
        )
    return value


@dataclass(frozen=True, slots=True)
class PinnedCA:
    """The CA the auditor trusts, brought from outside the export.

    fingerprint: SHA-256 of its DER certificate (from --ca-fingerprint, or of --ca FILE).
    certificate: the certificate itself when the auditor brought it (--ca FILE)."""

    fingerprint: str
    certificate: x509.Certificate | None = None

    @classmethod
    def of(cls, certificate: x509.Certificate) -> PinnedCA:
        return cls(ca_fingerprint(certificate), certificate)


@dataclass
class ExportReport:
    events: int = 0
    pictures: int = 0
    cosignatures: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# -- reading files inside the export, never through a link ---------------------------------


def load_manifest(folder: Path) -> Manifest:
    """The export's manifest, validated; ExportError with one line saying what is wrong."""
    where = folder / MANIFEST
    try:
        data = _read_plain(folder, MANIFEST, MANIFEST_MAX_BYTES)
    except FileNotFoundError:
        raise ExportError(
            f"{where}: not found; give a folder made by `jaga-collector evidence export`"
        ) from None
    except OSError as exc:
        raise ExportError(f"{where}: {_os_reason(exc)}") from None
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise ExportError(f"{where}: {_summarise(exc)}") from None
    except (ValueError, RecursionError) as exc:
        raise ExportError(f"{where}: {_one_line(str(exc))}") from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "the file"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    text = "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    return _one_line(text) + " (not a manifest `evidence export` writes: damaged or altered)"


def _one_line(text: str) -> str:
    """No line breaks or control characters from a hostile file reach the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:600]


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link; an export holds plain files only"
    if exc.errno == errno.ENOENT:
        return "missing"
    return exc.strerror or str(exc)


def _read_plain(folder: Path, name: str, max_bytes: int) -> bytes:
    """A regular file inside folder (`file` or `sub/file`), never through a symbolic link."""
    with _open_plain(folder, name) as fd:
        data = bytearray()
        while len(data) <= max_bytes:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                return bytes(data)
            data += chunk
    size = f"{max_bytes // 2**20} MB" if max_bytes >= 2**20 else f"{max_bytes // 1024} KB"
    raise OSError(errno.EFBIG, f"larger than {size}")


@contextlib.contextmanager
def _open_plain(folder: Path, name: str) -> Iterator[int]:
    """A descriptor of the regular file `name` (`file` or `sub/file`) inside folder; OSError
    for a symbolic link on the way (ELOOP), a FIFO or device (EINVAL)."""
    parts = name.split("/")
    if len(parts) > 2 or any(p in ("", ".", "..") for p in parts):
        raise OSError(errno.EINVAL, "not a file name inside the export")
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for sub in parts[:-1]:
            inner = os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = inner
        # O_NONBLOCK: a planted FIFO must not hang the check; it is refused just below.
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


def _listing(folder: Path, sub: str) -> list[str]:
    """Names in a sub-folder (not dot-files, as a shell glob), sorted; none if it is missing
    or a link (verify_export says so once)."""
    path = folder / sub
    if path.is_symlink() or not path.is_dir():
        return []
    return sorted(n for n in os.listdir(path) if not n.startswith("."))


# -- the checks ----------------------------------------------------------------------------


@dataclass
class _Chain:
    """What the events so far have established."""

    last_seq: int | None = None
    last_hash: str = ""
    last_file: str = ""
    valid_at: int | None = None
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
    anchor = _anchor(folder, pinned, report)
    unit = _certificate(folder, UNIT_PEM, report) if anchor is not None else None
    site_device = _unit_name(unit, report) if unit is not None else None
    key = _unit_key(unit, report) if unit is not None and site_device is not None else None
    if anchor is None or unit is None or site_device is None or key is None:
        return report
    chain = _Chain()
    for name in _listing(folder, EVENTS):
        if not EVENT_FILE.fullmatch(name):
            report.problems.append(f"{EVENTS}/{name}: not a file an export holds")
        elif name.endswith(".body"):
            _check_event(folder, name, anchor, unit, key, site_device, chain, report)
        elif not os.path.lexists(folder / EVENTS / name.replace(".sig", ".body")):
            report.problems.append(f"{EVENTS}/{name}: no body beside it")
    if report.events == 0:
        report.problems.append(f"{EVENTS}/: no signed events")
    wanted = _subject_pictures(folder, chain, report)
    _check_pictures(folder, chain.named, report)
    for sha in wanted:
        if not (folder / PICTURES / f"{sha}.jpg").is_file():
            report.problems.append(
                f"{PICTURES}/{sha}.jpg: signed by an event of the subject, not here"
            )
    for witness in witnesses:  # witness/ is checked here once exports carry cosignatures
        report.problems.append(f"witness {witness}: no cosignature of it in this export")
    report.first_seq = min(chain.bodies, default=None)
    report.last_seq = chain.last_seq
    return report


def _certificate(folder: Path, name: str, report: ExportReport) -> x509.Certificate | None:
    """Exactly one PEM certificate in its standard form, nothing before, after or beside it."""
    try:
        data = _read_plain(folder, name, SMALL_MAX_BYTES)
    except OSError as exc:
        report.problems.append(f"{name}: {_os_reason(exc)}")
        return None
    try:
        cert = x509.load_pem_x509_certificate(data)
        # Parsed lazily: a damaged key, name or extension shows only when read.
        cert.public_key(), cert.subject, cert.extensions
    except ValueError:
        cert = None
    if cert is None or cert.public_bytes(Encoding.PEM).rstrip(b"\n") != data.rstrip(b"\n"):
        report.problems.append(f"{name}: not one PEM certificate")
        return None
    return cert


def _anchor(folder: Path, pinned: PinnedCA, report: ExportReport) -> x509.Certificate | None:
    """The pinned CA: the export's certs/ca.pem only if it is byte for byte the pinned one."""
    carried = _certificate(folder, CA_PEM, report)
    if carried is None:
        return None
    found = ca_fingerprint(carried)
    if found != pinned.fingerprint:
        report.problems.append(
            f"{CA_PEM} ({_one_line(carried.subject.rfc4514_string())}) has fingerprint {found}, "
            f"is not the pinned CA {pinned.fingerprint}: nothing it vouches for is trusted"
        )
        return None
    return carried


def _unit_name(unit: x509.Certificate, report: ExportReport) -> tuple[str, str] | None:
    site = _single(unit.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    device = _single(unit.subject, NameOID.COMMON_NAME)
    if site is None or device is None:
        report.problems.append(f"{UNIT_PEM} does not name one site (OU) and one unit (CN)")
        return None
    return site, device


def _unit_key(unit: x509.Certificate, report: ExportReport) -> PublicKey | None:
    key = unit.public_key()
    if isinstance(key, ed25519.Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    report.problems.append(f"{UNIT_PEM}: the key is neither ECDSA P-256 nor Ed25519")
    return None


def _single(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        return None
    value = values[0].value
    return value if re.fullmatch(r"[a-z0-9-]+", value) else None


def _check_event(
    folder: Path,
    name: str,
    anchor: x509.Certificate,
    unit: x509.Certificate,
    key: PublicKey,
    site_device: tuple[str, str],
    chain: _Chain,
    report: ExportReport,
) -> None:
    """One body and its signature: its form, its unit, its certificate's time, its signature,
    its link to the event before."""
    before = len(report.problems)
    body_name = f"{EVENTS}/{name}"
    sig_name = body_name.removesuffix(".body") + ".sig"
    try:
        body = _read_plain(folder, body_name, SMALL_MAX_BYTES)
    except OSError as exc:
        report.problems.append(f"{body_name}: {_os_reason(exc)}")
        return
    try:
        sig = _read_plain(folder, sig_name, SMALL_MAX_BYTES)
    except OSError as exc:
        report.problems.append(f"{sig_name}: {_os_reason(exc)}")
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
    if (fields["site"], fields["device"]) != site_device:
        report.problems.append(
            f"{body_name}: an event of {fields['site']}/{fields['device']}; the certificate "
            f"is {site_device[0]}/{site_device[1]}'s"
        )
    secs = ts // 10**9
    if secs != chain.valid_at:
        try:
            _verifier(anchor, datetime.fromtimestamp(secs, UTC)).verify(unit, [])
            chain.valid_at = secs
        except (VerificationError, OverflowError, OSError, ValueError) as exc:
            report.problems.append(
                f"{body_name}: {UNIT_PEM} does not chain to the CA at the event's time "
                f"({secs} s since 1970): {_one_line(str(exc))}"
            )
    encoded = base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    try:
        verify_bytes(encoded, body, key)
    except SignatureError:
        report.problems.append(
            f"{sig_name}: the signature does not verify over {body_name} with {UNIT_PEM}"
        )
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


def _verifier(anchor: x509.Certificate, when: datetime) -> ClientVerifier:
    """RFC 5280 path validation to the anchor alone, as of `when`; unit certificates carry
    no subjectAltName (their name is CN = unit, OU = site), so it may be absent."""
    leaf = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return (
        PolicyBuilder()
        .store(Store([anchor]))
        .time(when)
        .max_chain_depth(0)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=leaf)
        .build_client_verifier()
    )


def _subject_pictures(folder: Path, chain: _Chain, report: ExportReport) -> list[str]:
    """The pictures the subject's events sign (the export is about them)."""
    try:
        data = _read_plain(folder, SUBJECT, SMALL_MAX_BYTES)
    except OSError as exc:
        report.problems.append(f"{SUBJECT}: {_os_reason(exc)}")
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
    for name in _listing(folder, PICTURES):
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
        with _open_plain(folder, where) as fd:
            if sha not in named:
                return "no signed event in this export names it"
            size = 0
            while chunk := os.read(fd, _CHUNK):
                size += len(chunk)
                if size > PICTURE_MAX_BYTES:
                    return f"larger than {PICTURE_MAX_BYTES // (1024 * 1024)} MB"
                digest.update(chunk)
    except OSError as exc:
        return _os_reason(exc)
    if digest.hexdigest() != sha:
        return "its SHA-256 is not the one its event signed (the picture was changed)"
    return None
