"""Evidence export: an event's pictures plus a manifest an auditor can re-check offline.

The manifest holds the signed events exactly as stored, the unit's certificate and the site
CA's certificate, and per picture its hash and custody lines. `verify_export` believes none of
it on its own: the auditor brings the CA (its SHA-256 fingerprint, published in advance), and
the export's unit certificate must chain to that CA, have been valid when each event was made
and name each event's site and unit; its key must have signed every event; every picture a
signed event names must be in the folder, as a plain file, and still hash to that name.
"""

from __future__ import annotations

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
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from broker.evidence import EvidenceVault
from broker.evidence_events import EvidenceEvents
from protocol.models import HEX64, Event, Token
from protocol.signing import SignatureError, verify

MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 32 * 1024 * 1024
"""Far above any real export (a few events, their custody lines); a bigger file is refused."""
PICTURE_MAX_BYTES = 64 * 1024 * 1024
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024


class ExportError(Exception):
    """The export cannot be made, or its manifest cannot be read; the message says why."""


# -- the manifest ------------------------------------------------------------------------

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _plain_name(value: str) -> str:
    if not _PLAIN_NAME.fullmatch(value):
        raise ValueError("must be the name of a file right inside the export folder (no '/')")
    return value


FileName = Annotated[str, AfterValidator(_plain_name)]
"""A plain name inside the export folder: no '/', no '..', not absolute."""
Pem = Annotated[str, StringConstraints(min_length=1, max_length=64 * 1024)]
CustodyValue = (
    Annotated[str, StringConstraints(max_length=1024)]
    | Annotated[int, Field(ge=-(2**63), lt=2**63)]
    | bool
    | None
)
CustodyKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ManifestPicture(_Strict):
    """One picture of the export: which signed event names it, its hash, its file."""

    event_id: Token
    sha256: HEX64
    file: FileName
    custody: list[dict[CustodyKey, CustodyValue]] = Field(max_length=10_000)
    """The collector's custody lines: what it says it did, not signed, shown to the reader."""


class Manifest(_Strict):
    """`manifest.json` as `evidence export` writes it; anything else is refused whole."""

    v: Literal[1]
    events: list[Event] = Field(min_length=1, max_length=1024)
    unit_certificate: Pem
    ca_certificate: Pem
    pictures: list[ManifestPicture] = Field(max_length=64 * 1024)


def load_manifest(folder: Path) -> Manifest:
    """The export's manifest, validated; ExportError with one line saying what is wrong."""
    where = folder / MANIFEST
    try:
        data = _read_plain_file(folder, MANIFEST, MANIFEST_MAX_BYTES)
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
    except (ValueError, RecursionError) as exc:  # an event's own check (state for its kind)
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
    return exc.strerror or str(exc)


def _read_plain_file(folder: Path, name: str, max_bytes: int) -> bytes:
    """A regular file directly in folder, never through a symbolic link, at most max_bytes."""
    with _open_plain(folder, name) as fd:
        data = bytearray()
        while len(data) <= max_bytes:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                return bytes(data)
            data += chunk
    raise OSError(errno.EFBIG, f"larger than {max_bytes // (1024 * 1024)} MB")


@contextlib.contextmanager
def _open_plain(folder: Path, name: str) -> Iterator[int]:
    """A descriptor of the regular file `name` right inside folder; OSError for a symbolic
    link (ELOOP), a FIFO or device (EINVAL), or a name that is not a plain file name."""
    if "/" in name or name in ("", ".", ".."):
        raise OSError(errno.EINVAL, "not a plain file name")
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # O_NONBLOCK: a planted FIFO must not hang the check; it is refused just below.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)


# -- making an export --------------------------------------------------------------------


def find_evidence_events(stored: EvidenceEvents, event_id: str) -> list[Event]:
    """The event itself if it carries pictures, else the camera events it caused that do."""
    event = stored.event(event_id)
    if event is None:
        raise ExportError(f"no event with id {event_id} in InfluxDB")
    signing = stored.signing(event)
    if not signing:
        raise ExportError(f"event {event_id} has no pictures")
    return signing


def export(
    events: list[Event], store: EvidenceVault, unit_cert: bytes, ca_cert: bytes, dest: Path
) -> Path:
    """Copy the pictures into dest and write the manifest; returns the manifest's path.

    dest must be new or an empty folder: every file is created there, never opened through a
    name that already exists, so a symbolic link planted in dest cannot redirect a write."""
    dir_fd = _open_destination(dest)
    try:
        pictures: list[dict[str, Any]] = []
        for event in events:
            # Ids are the unit's choice: only this unit's lines for this id are its custody.
            custody = [
                c
                for c in store.custody(event_id=event.id)
                if (c.get("site"), c.get("device")) == (event.site, event.device)
            ]
            for sha in event.snapshot_sha256 or ():
                if not store.has(sha):
                    raise ExportError(f"picture {sha} of event {event.id} is not in the store")
                name = f"{sha}.jpg"
                _write_new(dir_fd, dest, name, _store_bytes(store, sha))
                pictures.append(
                    {
                        "event_id": event.id,
                        "sha256": sha,
                        "file": name,
                        "custody": [c for c in custody if c.get("sha256") == sha],
                    }
                )
        manifest = {
            "v": 1,
            "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
            "unit_certificate": unit_cert.decode(),
            "ca_certificate": ca_cert.decode(),
            "pictures": pictures,
        }
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        _write_new(dir_fd, dest, MANIFEST, iter([text]))
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return dest / MANIFEST


def _open_destination(dest: Path) -> int:
    """A descriptor of dest, made now or found empty; refuse a symbolic link or anything in it."""
    try:
        dest.mkdir(parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ExportError(f"cannot make {dest}: {exc.strerror or exc}") from None
    try:
        dir_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ExportError(
                f"{dest} is not a plain folder (a file or a symbolic link); "
                "name a new folder for the export"
            ) from None
        raise ExportError(f"cannot open {dest}: {exc.strerror or exc}") from None
    if os.listdir(dir_fd):
        os.close(dir_fd)
        raise ExportError(
            f"{dest} is not empty; export into a new folder (nothing already in it is "
            "overwritten or followed)"
        )
    return dir_fd


def _store_bytes(store: EvidenceVault, sha: str) -> Iterator[bytes]:
    """The stored picture in chunks; ExportError at the end if it no longer hashes to sha."""
    digest = hashlib.sha256()
    with store.path(sha).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            yield chunk
    if digest.hexdigest() != sha:
        raise ExportError(
            f"picture {sha} changed in the evidence store since it arrived; "
            "`jaga-collector audit verify` lists such pictures"
        )


def _write_new(dir_fd: int, dest: Path, name: str, chunks: Iterator[bytes]) -> None:
    """Create name in the folder (O_EXCL|O_NOFOLLOW: never an existing file or link), fsynced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    except FileExistsError:
        raise ExportError(
            f"{dest / name} appeared while exporting; export into a new folder"
        ) from None
    try:
        for chunk in chunks:
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)


# -- checking an export ------------------------------------------------------------------


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
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(folder: Path, pinned: PinnedCA) -> ExportReport:
    """Re-check an export against the pinned CA; ExportError if the manifest is unreadable."""
    manifest = load_manifest(folder)
    report = ExportReport()
    anchor = _anchor(manifest, pinned, report)
    unit = _load_certificate(manifest.unit_certificate, "unit", report)
    vouched: set[tuple[str, str]] = set()
    for event in manifest.events:
        if anchor is None or unit is None:
            break
        if _event_ok(event, unit, anchor, report):
            report.events += 1
            vouched.update((event.id, sha) for sha in event.snapshot_sha256 or ())
    verified: set[tuple[str, str]] = set()
    listed = {(p.event_id, p.sha256) for p in manifest.pictures}
    for pic in manifest.pictures:
        key = (pic.event_id, pic.sha256)
        if key not in vouched:
            report.problems.append(
                f"picture {pic.sha256[:12]}... is not named by a verified signed event "
                f"({pic.event_id})"
            )
            continue
        problem = _picture_problem(folder, pic)
        if problem:
            report.problems.append(f"picture {pic.sha256[:12]}... ({pic.file}): {problem}")
            continue
        verified.add(key)
    for event_id, sha in sorted(vouched - listed):
        report.problems.append(
            f"picture {sha[:12]}... named by signed event {event_id} is not in the export"
        )
    report.pictures = len(verified)
    return report


def _anchor(manifest: Manifest, pinned: PinnedCA, report: ExportReport) -> x509.Certificate | None:
    """The pinned CA: the export's CA certificate only if it is byte for byte the pinned one."""
    carried = _load_certificate(manifest.ca_certificate, "CA", report)
    if carried is not None and ca_fingerprint(carried) == pinned.fingerprint:
        return carried
    if carried is not None:
        report.problems.append(
            f"the export's CA certificate ({carried.subject.rfc4514_string()}, fingerprint "
            f"{ca_fingerprint(carried)}) is not the pinned CA {pinned.fingerprint}: "
            "nothing it vouches for is trusted"
        )
    if pinned.certificate is None:
        report.problems.append(
            "signatures not checked: the export does not carry the pinned CA's certificate "
            "(give it with --ca FILE to check them anyway)"
        )
    return pinned.certificate


def _load_certificate(pem: str, what: str, report: ExportReport) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        report.problems.append(f"the {what} certificate in the export is not a PEM certificate")
        return None


def _event_ok(
    event: Event, unit: x509.Certificate, anchor: x509.Certificate, report: ExportReport
) -> bool:
    """The certificate chains to the anchor at the event's time, names its unit, signed it."""
    label = f"event {event.id} ({event.site}/{event.device} seq {event.seq})"
    when = datetime.fromtimestamp(event.ts / 1e9, UTC)
    try:
        _verifier(anchor, when).verify(unit, [])
    except VerificationError as exc:
        clock = "" if event.clock_synced else " (the unit's clock was not synchronised)"
        report.problems.append(
            f"{label}: the unit's certificate does not chain to the pinned CA at "
            f"{when.isoformat(timespec='seconds')}{clock}: {_one_line(str(exc))}"
        )
        return False
    site = _single(unit.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    device = _single(unit.subject, NameOID.COMMON_NAME)
    if (site, device) != (event.site, event.device):
        report.problems.append(
            f"{label}: the unit's certificate names {site}/{device}, not the event's unit"
        )
        return False
    key = unit.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        report.problems.append(f"{label}: unsupported key type in the unit's certificate")
        return False
    try:
        verify(event, key)
    except SignatureError as exc:
        report.problems.append(f"{label}: {exc}")
        return False
    return True


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


def _single(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        return None
    return values[0].value


def _picture_problem(folder: Path, pic: ManifestPicture) -> str | None:
    """Why the picture's file does not prove its hash, or None when it does."""
    digest = hashlib.sha256()
    try:
        with _open_plain(folder, pic.file) as fd:
            size = 0
            while chunk := os.read(fd, _CHUNK):
                size += len(chunk)
                if size > PICTURE_MAX_BYTES:
                    return f"larger than {PICTURE_MAX_BYTES // (1024 * 1024)} MB"
                digest.update(chunk)
    except FileNotFoundError:
        return "missing from the export"
    except OSError as exc:
        return _os_reason(exc)
    if digest.hexdigest() != pic.sha256:
        return "does not match its hash"
    return None
