"""`audit verify-export`'s check of the witnesses an auditor names: their cosignatures in an
export, as verify.sh's section 6 and the Node verifier check them.

For each witness fingerprint given (SHA-256 of the witness key's SPKI DER, published by the
witness in advance): a `witness/<name>/key.pem` with that fingerprint; every cosignature in
that folder signed by it, naming the export's unit; one at a seq of the exported chain must
carry that event's hash as its head (protocol/cosignature.py), and one at or after the last
subject event covers the subject; one beyond the exported chain while the manifest says the
chain ends at the newest event stored proves the tail was cut. The witness's time says by
when the events existed at the latest.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from broker.export_files import SMALL_MAX_BYTES, listing, os_reason, read_plain
from broker.export_format import (
    COSIGNATURE_FILE,
    ENDS_AT_LINE,
    LAST_SEQ_LINE,
    MANIFEST,
    SUBJECT,
    SUBJECT_LINE,
    WITNESS,
    WITNESS_KEY,
    ChainEnd,
    event_name,
)
from protocol.cosignature import CosignatureError, format_time, verify_cosignature


@dataclass(frozen=True, slots=True)
class Exported:
    """What the export's events established: their unit and the seqs they run over."""

    site: str
    device: str
    first_seq: int
    last_seq: int


@dataclass
class Witnessed:
    """What the witnesses' check found: problems, the cosignatures that passed, what to say."""

    problems: list[str] = field(default_factory=list)
    cosignatures: int = 0
    lines: list[str] = field(default_factory=list)


def check_witnesses(folder: Path, fingerprints: tuple[str, ...], chain: Exported) -> Witnessed:
    """Each given witness's cosignatures against the exported chain."""
    out = Witnessed()
    if not fingerprints:
        return out
    ends_at_head = _chain_claim(folder, chain, out)
    keys: dict[str, str] = {}
    for name in listing(folder, WITNESS):
        try:
            pem = read_plain(folder, f"{WITNESS}/{name}/{WITNESS_KEY}", SMALL_MAX_BYTES)
            keys[name] = _fingerprint(pem)
        except (OSError, ValueError):
            continue
    subject_last = _subject_last(folder)
    for pin in dict.fromkeys(fingerprints):
        names = [n for n, fp in keys.items() if fp == pin]
        if not names:
            out.problems.append(
                f"witness {pin}: no {WITNESS}/<name>/{WITNESS_KEY} with this fingerprint, "
                "so no cosignature of it in this export"
            )
        for name in names:
            _check_one(folder, name, pin, chain, subject_last, ends_at_head, out)
    return out


def _fingerprint(pem: bytes) -> str:
    key = load_pem_public_key(pem)
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _chain_claim(folder: Path, chain: Exported, out: Witnessed) -> bool:
    """Whether the manifest says the chain ends at the newest event stored; a problem when it
    does not say where it ends as `evidence export` writes it, or says another seq."""
    try:
        text = read_plain(folder, MANIFEST, 32 * 1024 * 1024).decode("utf-8", "replace")
    except OSError:
        text = ""
    ends, lasts = ENDS_AT_LINE.findall(text), LAST_SEQ_LINE.findall(text)
    if len(ends) != 1 or len(lasts) != 1:
        out.problems.append(
            f"{MANIFEST}: does not say where the chain ends, in the form evidence export writes"
        )
        return False
    if lasts[0] != str(chain.last_seq):
        out.problems.append(
            f"{MANIFEST}: says the chain ends at seq {lasts[0][:20]}; its events end at seq "
            f"{chain.last_seq}"
        )
    return bool(ends[0] == ChainEnd.HEAD.value)


def _subject_last(folder: Path) -> int | None:
    try:
        lines = read_plain(folder, SUBJECT, SMALL_MAX_BYTES).decode("ascii", "replace").split("\n")
    except OSError:
        return None
    seqs = [int(line) for line in lines if SUBJECT_LINE.fullmatch(line)]
    return max(seqs, default=None)


def _check_one(
    folder: Path,
    name: str,
    pin: str,
    chain: Exported,
    subject_last: int | None,
    ends_at_head: bool,
    out: Witnessed,
) -> None:
    where = f"{WITNESS}/{name}"
    pem = read_plain(folder, f"{where}/{WITNESS_KEY}", SMALL_MAX_BYTES)
    key = load_pem_public_key(pem)
    canonical = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    if canonical.rstrip(b"\n") != pem.rstrip(b"\n"):
        out.problems.append(f"{where}/{WITNESS_KEY}: not one PEM public key")
        return
    if not isinstance(key, ed25519.Ed25519PublicKey):
        out.problems.append(f"{where}/{WITNESS_KEY}: not an Ed25519 key")
        return
    covered: tuple[int, str] | None = None
    for file in listing(folder, where):
        if file == WITNESS_KEY:
            continue
        if not COSIGNATURE_FILE.fullmatch(file):
            out.problems.append(f"{where}/{file}: not a file an export holds")
            continue
        body_name = f"{where}/{file.removesuffix('.sig').removesuffix('.body')}.body"
        sig_name = body_name.removesuffix(".body") + ".sig"
        if file.endswith(".sig"):
            if not (folder / body_name).exists() and not (folder / body_name).is_symlink():
                out.problems.append(f"{sig_name}: no body beside it")
            continue
        try:
            body = read_plain(folder, body_name, SMALL_MAX_BYTES)
            sig = read_plain(folder, sig_name, SMALL_MAX_BYTES)
        except OSError as exc:
            out.problems.append(f"{exc.filename or body_name}: {os_reason(exc)}")
            continue
        before = len(out.problems)
        try:
            said = verify_cosignature(body, base64.b64encode(sig).decode(), key)
        except CosignatureError as exc:
            out.problems.append(f"{sig_name}: does not verify over {body_name}: {exc}")
            continue
        when = format_time(said.time_ms)
        if said.witness != name:
            out.problems.append(f"{body_name}: a cosignature by {said.witness}, not by {name}")
        if (said.site, said.device) != (chain.site, chain.device):
            out.problems.append(
                f"{body_name}: cosigns {said.site}/{said.device}; the export's unit is "
                f"{chain.site}/{chain.device}"
            )
        if said.seq < chain.first_seq:
            out.problems.append(
                f"{body_name}: seq {said.seq} lies before the exported chain (seq "
                f"{chain.first_seq} to {chain.last_seq})"
            )
        elif said.seq > chain.last_seq:
            if ends_at_head:
                out.problems.append(
                    f"{body_name}: {name} cosigned seq {said.seq} at {when}, but {MANIFEST} "
                    f"says seq {chain.last_seq} is the newest event stored: the chain was cut "
                    f"after seq {chain.last_seq}"
                )
            elif len(out.problems) == before:
                out.lines.append(
                    f"witness {name}: seq {said.seq} cosigned at {when}, beyond the exported "
                    f"chain (the unit's chain went on)"
                )
        else:
            event = event_name(said.seq, "body")
            try:
                found = hashlib.sha256(read_plain(folder, event, SMALL_MAX_BYTES)).hexdigest()
            except OSError as exc:
                out.problems.append(
                    f"{body_name}: cosigns seq {said.seq}; {event}: {os_reason(exc)}"
                )
                continue
            if found != said.head:
                out.problems.append(
                    f"{body_name}: cosigns seq {said.seq} with head {said.head}, but {event} "
                    f"hashes to {found}: not the chain the witness saw"
                )
            elif len(out.problems) == before:
                out.lines.append(f"witness {name}: seq {said.seq} cosigned at {when}")
                reaches = subject_last is None or said.seq >= subject_last
                if reaches and covered is None:  # the first by name: the lowest seq
                    covered = (said.time_ms, f"seq {said.seq}")
        if len(out.problems) == before:
            out.cosignatures += 1
    if covered is None:
        out.problems.append(
            f"witness {name} ({pin}): no cosignature of seq {subject_last or chain.first_seq} "
            f"to {chain.last_seq}, so none covering the subject's events"
        )
    else:
        out.lines.append(
            f"witness {name} saw the chain to {covered[1]} by {format_time(covered[0])}: the "
            "subject's events existed then at the latest"
        )
