"""The demo's "0 keys left their units" is a search, not a constant: a unit's key copied
anywhere outside its folder, in any usual encoding, is found; other keys are not mistaken."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.enrolment import keys_outside_units


def unit_with_key(root: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    folder = root / "units" / name
    folder.mkdir(parents=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / "device.key").write_bytes(pem)
    return folder, key


def test_a_unit_key_anywhere_outside_the_unit_folders_is_found_and_other_keys_are_not(
    tmp_path: Path,
) -> None:
    one, key = unit_with_key(tmp_path, "u1")
    two, _ = unit_with_key(tmp_path, "u2")
    registry = tmp_path / "registry"
    registry.mkdir()
    other = ec.generate_private_key(ec.SECP256R1())  # the CA's, the broker's: not a unit's
    (registry / "ca.key").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert keys_outside_units(tmp_path, [one, two]).found_elsewhere == ()

    sec1 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (registry / "copied.b64").write_bytes(base64.encodebytes(sec1))
    (tmp_path / "bundle.bin").write_bytes(
        b"x" + key.private_numbers().private_value.to_bytes(32, "big")
    )
    found = keys_outside_units(tmp_path, [one, two]).found_elsewhere
    assert sorted(Path(p).name for p in found) == ["bundle.bin", "copied.b64"]
