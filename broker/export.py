"""Evidence export: an event, the stretch of its unit's chain around it, the pictures it
caused, and a `verify.sh` that checks it all with openssl and sha256sum alone.

The folder's layout is broker/export_format.py's; broker/export_verify.py is our own check of
it. The collector is trusted to store, never to vouch: nothing here adds a claim an auditor
must believe. Every file is created new (O_EXCL|O_NOFOLLOW) in a new or empty folder.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from broker.cosignatures import StoredCosignature, cosignatures, first_beyond
from broker.evidence import EvidenceVault
from broker.evidence_events import EvidenceEvents
from broker.export_chain import REACH, ChainError, ChainStretch, read_window, stretch_around
from broker.export_format import (
    CA_PEM,
    CERTS,
    EVENTS,
    ISSUING_PEM,
    MANIFEST,
    PICTURES,
    SUBJECT,
    UNIT_PEM,
    VERIFY_SH,
    VERIFY_TXT,
    WITNESS,
    WITNESS_KEY,
    ChainEnd,
    cosignature_name,
    event_name,
    issuing_pem_name,
    unit_pem_name,
)
from protocol.cosignature import CosignatureError, parse_cosignature
from protocol.models import Event
from protocol.signing import canonical_bytes

_CHUNK = 1024 * 1024
KIT = {VERIFY_SH: "export_verify.sh.tmpl", VERIFY_TXT: "export_VERIFY.txt.tmpl"}
"""Files every export carries unchanged, from this package."""


class ExportError(Exception):
    """The export cannot be made, or its manifest cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an export holds: the events it is about, the stretch of chain around them."""

    event_id: str
    subject: tuple[Event, ...]
    stretch: ChainStretch
    cosignatures: tuple[StoredCosignature, ...] = ()
    """Witnesses' cosignatures at seqs of the stretch, and each witness's first beyond it."""

    @property
    def pictures(self) -> list[tuple[Event, str]]:
        """Each picture once, with the first subject event that signs it."""
        seen: dict[str, Event] = {}
        for event in self.subject:
            for sha in event.snapshot_sha256 or ():
                seen.setdefault(sha, event)
        return [(event, sha) for sha, event in seen.items()]


def find_evidence_events(stored: EvidenceEvents, event_id: str) -> list[Event]:
    """The event itself if it carries pictures, else the camera events it caused that do."""
    event = stored.event(event_id)
    if event is None:
        raise ExportError(f"no event with id {event_id} in InfluxDB")
    signing = stored.signing(event)
    if not signing:
        raise ExportError(f"event {event_id} has no pictures")
    return signing


def gather(stored: EvidenceEvents, event_id: str) -> Evidence:
    """The event, the events signing its pictures, and the unit's chain around them.

    May raise ExportError, or broker.influx_reader.QueryFailed."""
    event = stored.event(event_id)
    if event is None:
        raise ExportError(f"no event with id {event_id} in InfluxDB")
    unit = (event.site, event.device)
    signing = [e for e in stored.signing(event) if (e.site, e.device) == unit]
    if not signing:
        raise ExportError(f"event {event_id} has no pictures")
    subject = sorted({e.seq: e for e in (event, *signing)}.values(), key=lambda e: e.seq)
    for _ in range(2):
        window = read_window(
            stored.reader,
            event.site,
            event.device,
            max(1, subject[0].seq - REACH),
            subject[-1].seq + REACH,
        )
        try:
            stretch = stretch_around(window, subject)
        except ChainError as exc:
            raise ExportError(f"{event.site}/{event.device}: {exc}") from None
        first, last = stretch.events[0].seq, stretch.events[-1].seq
        beyond = first_beyond(stored.reader, event.site, event.device, last)
        # A witness ahead of the newest event stored: read once more, as the collector may
        # have stored it since; still ahead, the export shows the cut to every verifier.
        if stretch.ends_at is not ChainEnd.HEAD or not beyond:
            break
    within = cosignatures(stored.reader, event.site, event.device, first, last)
    return Evidence(event_id, tuple(subject), stretch, (*within, *beyond))


def export(
    evidence: Evidence,
    store: EvidenceVault,
    unit_cert: bytes,
    ca_cert: bytes,
    dest: Path,
    witness_keys: Mapping[str, bytes] | None = None,
    issuing_cert: bytes | None = None,
    more_units: Mapping[int, bytes] | None = None,
    more_issuing: Mapping[int, bytes] | None = None,
) -> None:
    """Write the export into dest, which must be new or an empty folder.

    witness_keys: each witness's public key (PEM), by name, as the registry holds it; a
    witness without one has its cosignatures exported without its key (the auditor brings
    it).
    issuing_cert: the issuing CA that signed unit_cert (PEM), when the root did not.
    more_units, more_issuing: the unit's other certificates whose keys signed events of the
    stretch (it renewed, #19), and the issuing CA certificates they chain through, by serial
    (broker/export_lineage.py finds them all in the registry)."""
    events = evidence.stretch.events
    first = events[0]
    with _Folder.open(dest) as folder:
        folder.write(VERIFY_SH, [_kit(VERIFY_SH)])
        folder.write(VERIFY_TXT, [_kit(VERIFY_TXT)])
        folder.mkdir(CERTS)
        folder.write(CA_PEM, [ca_cert])
        folder.write(UNIT_PEM, [unit_cert])
        if issuing_cert is not None:
            folder.write(ISSUING_PEM, [issuing_cert])
        for serial, pem in sorted((more_units or {}).items()):
            folder.write(unit_pem_name(serial), [pem])
        for serial, pem in sorted((more_issuing or {}).items()):
            folder.write(issuing_pem_name(serial), [pem])
        folder.mkdir(EVENTS)
        for event in events:
            folder.write(event_name(event.seq, "body"), [canonical_bytes(event)])
            folder.write(event_name(event.seq, "sig"), [_signature_bytes(event.sig)])
        folder.write(SUBJECT, ["".join(f"{e.seq}\n" for e in evidence.subject).encode()])
        folder.mkdir(PICTURES)
        custody = _custody(evidence, store)
        for event, sha in evidence.pictures:
            if not store.has(sha):
                raise ExportError(f"picture {sha} of event {event.id} is not in the store")
            folder.write(f"{PICTURES}/{sha}.jpg", _store_bytes(store, sha))
        manifest = {
            "v": 2,
            "event_id": evidence.event_id,
            "site": first.site,
            "device": first.device,
            "chain": {
                "first_seq": first.seq,
                "last_seq": events[-1].seq,
                "starts_at": evidence.stretch.starts_at.value,
                "ends_at": evidence.stretch.ends_at.value,
            },
            "pictures": [{"sha256": sha, "custody": custody[sha]} for _, sha in evidence.pictures],
        }
        folder.write(MANIFEST, [json.dumps(manifest, indent=2, sort_keys=True).encode()])
        _write_cosignatures(folder, evidence.cosignatures, witness_keys or {})


def _write_cosignatures(
    folder: _Folder, stored: tuple[StoredCosignature, ...], keys: Mapping[str, bytes]
) -> None:
    """witness/<name>/key.pem and each cosignature's body and raw signature. The collector
    never checked them (it holds no witness key): the auditor's fingerprint decides."""
    files: dict[str, tuple[bytes, bytes]] = {}
    for c in stored:
        try:
            said = parse_cosignature(c.body.encode())
            sig = base64.b64decode(c.sig, validate=True)
        except (CosignatureError, binascii.Error, ValueError, UnicodeEncodeError):
            continue  # not a cosignature: nothing an auditor could check
        if (said.witness, said.site, said.device) != (c.witness, c.site, c.device):
            continue
        name = cosignature_name(said.witness, said.seq, said.time_ms, "body")
        files[name] = (c.body.encode(), sig)
    if not files:
        return
    folder.mkdir(WITNESS)
    for witness in sorted({name.split("/")[1] for name in files}):
        folder.mkdir(f"{WITNESS}/{witness}")
        if witness in keys:
            folder.write(f"{WITNESS}/{witness}/{WITNESS_KEY}", [keys[witness]])
    for name, (body, sig) in sorted(files.items()):
        folder.write(name, [body])
        folder.write(name.removesuffix(".body") + ".sig", [sig])


def _signature_bytes(sig: str) -> bytes:
    """The signature as openssl reads it: DER for ECDSA, the raw 64 bytes for Ed25519 (v1
    events carry exactly these bytes, base64url-encoded)."""
    return base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))


def _custody(evidence: Evidence, store: EvidenceVault) -> dict[str, list[dict[str, Any]]]:
    """Per picture, the collector's custody lines for it (ids are the unit's choice: only
    this unit's lines for the event's id)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for event in evidence.subject:
        lines = [
            c
            for c in store.custody(event_id=event.id)
            if (c.get("site"), c.get("device")) == (event.site, event.device)
        ]
        for sha in event.snapshot_sha256 or ():
            out[sha] = [c for c in lines if c.get("sha256") == sha]
    return out


def _kit(name: str) -> bytes:
    return resources.files("broker").joinpath(KIT[name]).read_bytes()


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


class _Folder:
    """A new or empty destination folder; every file and folder in it created new, never
    opened through a name that already exists, so a planted symbolic link redirects nothing."""

    def __init__(self, dest: Path, fd: int) -> None:
        self.dest = dest
        self.fds = {"": fd}

    @classmethod
    def open(cls, dest: Path) -> _Folder:
        try:
            dest.mkdir(parents=True)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ExportError(f"cannot make {dest}: {exc.strerror or exc}") from None
        try:
            fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ExportError(
                    f"{dest} is not a plain folder (a file or a symbolic link); "
                    "name a new folder for the export"
                ) from None
            raise ExportError(f"cannot open {dest}: {exc.strerror or exc}") from None
        if os.listdir(fd):
            os.close(fd)
            raise ExportError(
                f"{dest} is not empty; export into a new folder (nothing already in it is "
                "overwritten or followed)"
            )
        return cls(dest, fd)

    def __enter__(self) -> _Folder:
        return self

    def __exit__(self, *_: object) -> None:
        for fd in self.fds.values():
            os.fsync(fd)
            os.close(fd)

    def mkdir(self, name: str) -> None:
        try:
            os.mkdir(name, 0o755, dir_fd=self.fds[""])
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.fds[""])
        except FileExistsError:
            raise self._appeared(name) from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._appeared(name) from None
            raise
        self.fds[name] = fd

    def write(self, name: str, chunks: Iterator[bytes] | list[bytes]) -> None:
        """Create name (`file` or `folder/file`), write it, fsync it."""
        where, _, base = name.rpartition("/")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(base, flags, 0o644, dir_fd=self.fds[where])
        except FileExistsError:
            raise self._appeared(name) from None
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _appeared(self, name: str) -> ExportError:
        return ExportError(f"{self.dest / name} appeared while exporting; export into a new folder")
