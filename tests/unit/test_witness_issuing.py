"""The witness believes a unit certificate signed by an issuing CA only when its pinned root
signed that issuing CA (#19): a registry copy cannot slip in a CA of its own."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provisioning import certs
from provisioning.ca import CertificateAuthority
from provisioning.registry import Registry
from tests.support import provision
from witness.units import UnitKeys

SPKI = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_the_witness_believes_issuing_ca_units_of_its_root_and_no_others(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    provision(root, "ca", "init", "--name", "Jaga CA Witness")
    provision(root, "issuing-ca", "create")
    provision(root, "site", "add", "s1", "--name", "s1", "--timezone", "Asia/Jakarta",
              "--broker-host", "127.0.0.1")  # fmt: skip
    for device in ("u-1", "u-2"):
        provision(root, "device", "add", "s1", device, "--door", "17:pintu")
    reg = Registry(root)
    key = certs.new_key()
    CertificateAuthority(reg).issue_device("s1", "u-1", key.public_key())
    # A second "issuing CA" the root never signed, and a certificate for u-2 from it.
    rogue_key = certs.new_key()
    rogue = certs.make_ca(rogue_key, "Jaga CA Witness issuing 1", certs.Validity.for_days(30), 7)
    (reg.issuing_dir(9)).mkdir(parents=True)
    (reg.issuing_dir(9) / "ca.crt").write_bytes(certs.cert_pem(rogue))
    forged = certs.issue_client(
        subject=certs.device_name("s1", "u-2"), public_key=certs.new_key().public_key(),
        ca_cert=rogue, ca_key=rogue_key, serial=8, validity=certs.Validity.for_days(30),
    )  # fmt: skip
    (reg.device_dir("s1", "u-2") / "device.crt").write_bytes(certs.cert_pem(forged))
    keys = UnitKeys(root, reg.ca_certificate())
    found = keys.keys("s1", "u-1")
    assert {k.public_bytes(*SPKI) for k in found} == {key.public_key().public_bytes(*SPKI)}
    assert keys.keys("s1", "u-2") == []
