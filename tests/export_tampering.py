"""Evidence exports damaged as a forger or an accident would, and the three verifiers that must
all refuse them: the export's own verify.sh (PATH /usr/bin:/bin), `jaga-collector audit
verify-export`, and the independent Node verifier (tests/verifiers/verify_export.mjs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

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


def verify_all(folder: Path, pin: str) -> Verdicts:
    run = {"capture_output": True, "text": True, "check": False, "timeout": 300}
    sh = subprocess.run(  # type: ignore[call-overload]
        ["/bin/sh", str(folder / "verify.sh"), pin], env={"PATH": "/usr/bin:/bin"}, **run
    )
    node = subprocess.run(  # type: ignore[call-overload]
        ["node", str(NODE_VERIFIER), str(folder), pin], **run
    )
    python = subprocess.run(  # type: ignore[call-overload]
        [str(COLLECTOR), "audit", "verify-export", str(folder), "--ca-fingerprint", pin], **run
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
