"""The witness's own Ed25519 signing key: made here, never issued by the site CA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from kernel.files import Durability, atomic_write
from protocol.cosignature import fingerprint

KEY_FILE = "witness.key"
PUBLIC_FILE = "witness.pub"


class WitnessKeyError(Exception):
    """The key is missing, unreadable or not Ed25519; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Made:
    key_path: Path
    public_path: Path
    fingerprint: str


def make_key(folder: Path) -> Made:
    """A new key (0600) and its public half (PEM SPKI) in folder; never over an existing key."""
    key_path, public_path = folder / KEY_FILE, folder / PUBLIC_FILE
    if key_path.exists():
        raise WitnessKeyError(
            f"{key_path} already exists: a witness keeps its key (its fingerprint is published); "
            "choose another --dir to make a new one"
        )
    folder.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    atomic_write(key_path, pem, durability=Durability.FSYNC_FILE_AND_DIR, mode=0o600)
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    atomic_write(public_path, public, durability=Durability.FSYNC_FILE_AND_DIR, mode=0o644)
    return Made(key_path, public_path, fingerprint(key.public_key()))


def load_key(path: Path) -> ed25519.Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise WitnessKeyError(f"{path}: no such key; make one with `jaga-witness init`") from None
    except (OSError, ValueError, TypeError) as exc:
        raise WitnessKeyError(f"{path}: not a readable PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise WitnessKeyError(
            f"{path}: a witness key is Ed25519; make one with `jaga-witness init`"
        )
    return key
