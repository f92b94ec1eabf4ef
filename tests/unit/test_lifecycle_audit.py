"""The lifecycle audit (#19): every token, enrolment, renewal, revocation and refusal is a record
naming who and when, shown by `jaga-provision device list`."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning import certs
from provisioning.est import EnrolmentAuthority, EstRefused, encode_csr
from provisioning.lifecycle import read_log
from provisioning.registry import Registry
from provisioning.tokens import issue_token
from tests.support import provision


def csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, certs.ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "s1"),
        x509.NameAttribute(NameOID.COMMON_NAME, "u-1"),
    ])  # fmt: skip
    request = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return encode_csr(request.sign(key, hashes.SHA256()))


def test_device_list_names_who_enrolled_renewed_and_revoked_a_unit_and_when(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "reg"
    provision(root, "ca", "init", "--name", "Jaga CA Audit")
    provision(root, "issuing-ca", "create")
    provision(root, "site", "add", "s1", "--name", "s1", "--timezone", "Asia/Jakarta",
              "--broker-host", "127.0.0.1")  # fmt: skip
    provision(root, "device", "add", "s1", "u-1", "--door", "17:pintu")
    reg = Registry(root)
    monkeypatch.setenv("JAGA_TECHNICIAN", "alice")
    token = issue_token(reg, "s1", "u-1").token
    authority = EnrolmentAuthority(reg)
    first = authority.simpleenroll("s1", token, csr(ec.generate_private_key(ec.SECP256R1())))
    renewed = authority.simplereenroll(
        "s1", first.cert, csr(ec.generate_private_key(ec.SECP256R1()))
    )
    with pytest.raises(EstRefused):
        authority.simpleenroll("s1", token, csr(ec.generate_private_key(ec.SECP256R1())))
    monkeypatch.setenv("JAGA_TECHNICIAN", "bob")
    provision(root, "device", "revoke", "s1", "u-1")
    listed = provision(root, "device", "list", "--history")
    lines = listed.splitlines()
    assert lines[0].startswith("s1\tu-1\trevoked ") and "by bob" in lines[0]
    assert "last: " in lines[0] and "revoked" in lines[0].split("last: ")[1]
    history = "\n".join(lines[1:])
    assert "token-issued by alice" in history
    assert f"enrolled serial {first.cert.serial_number} by token (token from alice)" in history
    assert f"renewed serial {renewed.cert.serial_number} by unit" in history
    assert "enrol-refused reason reused" in history
    assert "revoked by bob reason unspecified" in history
    assert all(r["at"] for r in read_log(root))
