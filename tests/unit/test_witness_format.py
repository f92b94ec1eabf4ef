"""The witness's cosignature is checkable with openssl alone; its chain judgement is pure."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from broker.mosquitto import WitnessIdentity, acl_rules, render_dynsec
from protocol.cosignature import (
    Cosignature,
    CosignatureError,
    fingerprint,
    parse_signed,
    sign,
    verify_cosignature,
)
from witness.chains import Conflict, Extends, Held, Seen, judge
from witness.keys import make_key

HEAD = "ab" * 32


def cosignature(seq: int = 42) -> Cosignature:
    return Cosignature(
        "bawaslu-bangka-barat", "bangka-barat", "gudang-01", seq, HEAD, 1_796_000_000_123
    )


def test_a_cosignature_verifies_with_openssl_against_the_published_fingerprint(
    tmp_path: Path,
) -> None:
    made = make_key(tmp_path)
    from witness.keys import load_key

    signed = sign(cosignature(), load_key(made.key_path))
    (tmp_path / "body.txt").write_bytes(signed.body)
    (tmp_path / "body.sig").write_bytes(base64.b64decode(signed.sig))
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(made.public_path), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(der).hexdigest() == made.fingerprint
    verify = [
        "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(made.public_path), "-rawin",
        "-in", str(tmp_path / "body.txt"), "-sigfile", str(tmp_path / "body.sig"),
    ]  # fmt: skip
    assert subprocess.run(verify, capture_output=True, check=False).returncode == 0
    (tmp_path / "body.txt").write_bytes(signed.body.replace(b"seq 42", b"seq 43"))
    assert subprocess.run(verify, capture_output=True, check=False).returncode != 0
    assert signed.body.decode().splitlines()[0] == "jaga-witness v1"
    assert signed.body.decode().splitlines()[-1] == "time 2026-11-30T00:53:20.123Z"


def test_verify_cosignature_refuses_another_key_and_a_changed_body() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signed = parse_signed(sign(cosignature(), key).to_json())
    assert verify_cosignature(signed.body, signed.sig, key.public_key()) == cosignature()
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(CosignatureError):
        verify_cosignature(signed.body, signed.sig, other)
    with pytest.raises(CosignatureError):
        verify_cosignature(
            signed.body.replace(b"gudang-01", b"gudang-02"), signed.sig, key.public_key()
        )
    assert fingerprint(key.public_key()) != fingerprint(other)


A, B, C, D, E, F, Z = ("a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64, "f" * 64, "0" * 64)


@pytest.mark.parametrize(
    ("seq", "digest", "prev", "held", "verdict"),
    [
        (5, E, D, Held(4, None, D, None), Extends()),
        (5, E, D, Held(5, E, D, None), Seen()),
        (5, F, D, Held(5, E, D, None), Conflict("fork", 5, E, F)),
        (6, F, Z, Held(5, None, E, None), Conflict("fork", 5, E, Z)),
        (2, F, A, Held(5, B, A, B), Conflict("rewind", 2, B, F)),
        (3, C, B, Held(5, None, B, A), Conflict("rewind", 3, A, C)),
    ],
)
def test_judge_names_a_different_event_at_a_held_seq_a_fork_at_the_head_a_rewind_below(
    seq: int, digest: str, prev: str, held: Held, verdict: object
) -> None:
    assert judge(seq, digest, prev, held) == verdict


def test_a_witness_may_read_its_sites_events_and_write_only_its_own_topic() -> None:
    rules = acl_rules(WitnessIdentity("bawaslu", ("bangka-barat",)))
    assert rules == [
        ("read", "jaga/v1/bangka-barat/+/event"),
        ("write", "jaga/v1/bangka-barat/witness/bawaslu"),
    ]
    assert '"witness:bawaslu"' in render_dynsec([WitnessIdentity("bawaslu", ("bangka-barat",))])
