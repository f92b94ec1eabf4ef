"""Evidence exports damaged as a forger or an accident would, and the three verifiers that must
all refuse them: the export's own verify.sh (PATH /usr/bin:/bin), `jaga-collector audit
verify-export`, and the independent Node verifier (tests/verifiers/verify_export.mjs)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provisioning import certs

NODE_VERIFIER = Path(__file__).parent / "verifiers" / "verify_export.mjs"
COLLECTOR = Path(sys.executable).parent / "jaga-collector"


@dataclass(frozen=True)
class Verdicts:
    """What each verifier said: exit code and output."""

    sh: subprocess.CompletedProcess[str]
    node: subprocess.CompletedProcess[str]
    python: subprocess.CompletedProcess[str]

    @property
    def codes(self) -> tuple[int, int, int]:
        return self.sh.returncode, self.node.returncode, self.python.returncode

    def all_pass(self) -> bool:
        return self.codes == (0, 0, 0)

    def all_fail(self) -> bool:
        return self.codes == (1, 1, 1)

    def __str__(self) -> str:
        return "\n".join(
            f"--- {n} ({r.returncode})\n{r.stdout[-1500:]}{r.stderr[-500:]}"
            for n, r in (("verify.sh", self.sh), ("node", self.node), ("python", self.python))
        )


def verify_all(folder: Path, pin: str, *witnesses: str) -> Verdicts:
    """The three verifiers on folder, with the CA's fingerprint and any witnesses'."""
    run = {"capture_output": True, "text": True, "check": False, "timeout": 300}
    sh = subprocess.run(  # type: ignore[call-overload]
        ["/bin/sh", str(folder / "verify.sh"), pin, *witnesses],
        env={"PATH": "/usr/bin:/bin"},
        **run,
    )
    node = subprocess.run(  # type: ignore[call-overload]
        ["node", str(NODE_VERIFIER), str(folder), pin, *witnesses], **run
    )
    named = [arg for w in witnesses for arg in ("--witness-fingerprint", w)]
    python = subprocess.run(  # type: ignore[call-overload]
        [str(COLLECTOR), "audit", "verify-export", str(folder), "--ca-fingerprint", pin, *named],
        **run,
    )
    return Verdicts(sh, node, python)


def bodies(folder: Path) -> list[Path]:
    return sorted((folder / "events").glob("*.body"))


def _flip(path: Path, at: int, new: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + 1] = new
    path.write_bytes(bytes(data))


def picture_byte(folder: Path) -> None:
    victim = sorted((folder / "pictures").iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))


def body_byte(folder: Path) -> None:
    """A digit of the middle event's mono_ns changed: still a well-formed body."""
    victim = bodies(folder)[len(bodies(folder)) // 2]
    text = victim.read_bytes()
    at = text.index(b'"mono_ns":') + len(b'"mono_ns":')
    _flip(victim, at, b"9" if text[at : at + 1] != b"9" else b"8")


def signature_byte(folder: Path) -> None:
    victim = bodies(folder)[len(bodies(folder)) // 2].with_suffix(".sig")
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0x01
    victim.write_bytes(bytes(data))


def certificate_byte(folder: Path) -> None:
    """One base64 character in the middle of the unit certificate's PEM changed."""
    victim = folder / "certs" / "unit.pem"
    text = victim.read_bytes()
    at = len(text) // 2
    while text[at : at + 1] in (b"\n", b"-"):
        at += 1
    _flip(victim, at, b"A" if text[at : at + 1] != b"A" else b"B")


def dropped_event(folder: Path) -> None:
    victim = bodies(folder)[len(bodies(folder)) // 2]
    victim.unlink()
    victim.with_suffix(".sig").unlink()


def dropped_subject_event(folder: Path) -> None:
    seq = int((folder / "subject").read_text().split()[-1])
    victim = folder / "events" / f"{seq:020d}.body"
    victim.unlink()
    victim.with_suffix(".sig").unlink()


def reordered_events(folder: Path) -> None:
    """Two neighbouring events swapped, each moved under the other's name (body and sig)."""
    found = bodies(folder)
    a, b = found[len(found) // 2 - 1], found[len(found) // 2]
    for suffix in (".body", ".sig"):
        x, y = a.with_suffix(suffix), b.with_suffix(suffix)
        tmp = x.with_name("swap")
        x.rename(tmp)
        y.rename(x)
        tmp.rename(y)


def resigner(name: str | None, carried: str) -> Callable[[Path], None]:
    """The export re-made by a forger: a self-made CA (named `name`, or like the real one),
    a unit certificate naming the same unit, every body signed again (the links still hold);
    the forger's CA (own) or the real one (real) in certs/ca.pem."""

    def resign(folder: Path) -> None:
        real_ca = x509.load_pem_x509_certificate((folder / "certs" / "ca.pem").read_bytes())
        unit = x509.load_pem_x509_certificate((folder / "certs" / "unit.pem").read_bytes())
        ca_key, unit_key = certs.new_key(), certs.new_key()
        validity = certs.Validity(real_ca.not_valid_before_utc, real_ca.not_valid_after_utc)
        subject = real_ca.subject if name is None else certs.ca_name(name)
        forged_ca = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(real_ca.serial_number)
            .not_valid_before(validity.not_before)
            .not_valid_after(validity.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        forged_unit = certs.issue_client(
            subject=unit.subject,
            public_key=unit_key.public_key(),
            ca_cert=forged_ca,
            ca_key=ca_key,
            serial=unit.serial_number,
            validity=certs.Validity(unit.not_valid_before_utc, unit.not_valid_after_utc),
        )
        for body in bodies(folder):
            sig = unit_key.sign(body.read_bytes(), ec.ECDSA(hashes.SHA256()))
            body.with_suffix(".sig").write_bytes(sig)
        (folder / "certs" / "unit.pem").write_bytes(certs.cert_pem(forged_unit))
        (folder / "certs" / "ca.pem").write_bytes(
            certs.cert_pem(forged_ca if carried == "own" else real_ca)
        )

    return resign


DAMAGE: dict[str, Callable[[Path], None]] = {
    "a picture byte": picture_byte,
    "an event body byte": body_byte,
    "a signature byte": signature_byte,
    "a certificate byte": certificate_byte,
    "a dropped event": dropped_event,
    "a dropped subject event": dropped_subject_event,
    "reordered events": reordered_events,
    "re-signed under a self-made CA": resigner("Forged CA", "own"),
    "re-signed under a CA named like the real one": resigner(None, "own"),
    "re-signed under a twin CA, carrying the real CA": resigner(None, "real"),
}


def damaged_copy(genuine: Path, where: Path, damage: str) -> Path:
    """A copy of the genuine export with one damage done."""
    shutil.copytree(genuine, where, symlinks=True)
    DAMAGE[damage](where)
    return where


# -- witnesses' cosignatures (checked when the auditor names the witness) ----------------------


def cosignature_files(folder: Path, suffix: str) -> list[Path]:
    return sorted((folder / "witness").glob(f"*/*{suffix}"))


def cosignatures_removed(folder: Path) -> None:
    """The witness's key stays; every cosignature of it goes."""
    for path in cosignature_files(folder, ".body") + cosignature_files(folder, ".sig"):
        path.unlink()


def witness_folder_removed(folder: Path) -> None:
    shutil.rmtree(folder / "witness")


def cosignature_body_byte(folder: Path) -> None:
    """The last digit of the first cosignature's time changed: still a well-formed body."""
    victim = cosignature_files(folder, ".body")[0]
    text = victim.read_bytes()
    at = len(text) - 3  # ...mmmZ\n: the last millisecond digit
    _flip(victim, at, b"1" if text[at : at + 1] != b"1" else b"2")


def cosignature_signature_byte(folder: Path) -> None:
    victim = cosignature_files(folder, ".sig")[0]
    data = bytearray(victim.read_bytes())
    data[10] ^= 0x01
    victim.write_bytes(bytes(data))


def cosigned_by_another_key(folder: Path) -> None:
    """The first cosignature's body signed again by a key that is not the witness's."""
    other = ed25519.Ed25519PrivateKey.generate()
    victim = cosignature_files(folder, ".body")[0]
    victim.with_suffix(".sig").write_bytes(other.sign(victim.read_bytes()))


def witness_key_replaced(folder: Path) -> None:
    """Every cosignature signed again by a forger's key, which replaces key.pem."""
    other = ed25519.Ed25519PrivateKey.generate()
    for body in cosignature_files(folder, ".body"):
        body.with_suffix(".sig").write_bytes(other.sign(body.read_bytes()))
    for key in (folder / "witness").glob("*/key.pem"):
        key.write_bytes(
            other.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )


def truncated_below_a_cosignature(folder: Path) -> None:
    """As a forger hides the chain's end: the newest events go, from below the highest seq a
    witness cosigned (keeping the subject), and the manifest says the chain ends at the newest
    event stored, at the new last seq. The witness's cosignatures stay as they were."""
    cosigned = max(int(p.name[:20]) for p in cosignature_files(folder, ".body"))
    subject = max(int(line) for line in (folder / "subject").read_text().split())
    last = max(int(p.name[:20]) for p in bodies(folder))
    keep = min(cosigned, last) - 1
    assert keep >= subject, "the witness must have cosigned beyond the subject for this damage"
    for body in bodies(folder):
        if int(body.name[:20]) > keep:
            body.unlink()
            body.with_suffix(".sig").unlink()
    manifest = (folder / "manifest.json").read_text()
    manifest = re.sub(r'(?m)^    "last_seq": [0-9]+,$', f'    "last_seq": {keep},', manifest)
    manifest = re.sub(r'(?m)^    "ends_at": "[a-z]+",$', '    "ends_at": "head",', manifest)
    (folder / "manifest.json").write_text(manifest)


WITNESS_DAMAGE: dict[str, Callable[[Path], None]] = {
    "cosignatures removed": cosignatures_removed,
    "witness folder removed": witness_folder_removed,
    "a cosignature body byte": cosignature_body_byte,
    "a cosignature signature byte": cosignature_signature_byte,
    "a cosignature by another key": cosigned_by_another_key,
    "the witness key replaced": witness_key_replaced,
    "a truncated chain the witness cosigned further": truncated_below_a_cosignature,
}


def witness_damaged_copy(genuine: Path, where: Path, damage: str) -> Path:
    shutil.copytree(genuine, where, symlinks=True)
    WITNESS_DAMAGE[damage](where)
    return where
