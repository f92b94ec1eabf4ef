"""Which certificates an export carries (broker/export_lineage.py), from a real registry: a
unit the root signed carries no issuing certificate; events no certificate's key signed carry
the unit's current certificate (the verifiers then refuse them); a unit without any
certificate is an export error, one line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.cli.evidence import _lineage
from broker.export import ExportError
from broker.export_lineage import lineage
from protocol.models import Event, EventBody, Kind
from protocol.signing import GENESIS, sign
from provisioning import certs
from provisioning.ca import CertificateAuthority
from provisioning.registry import Registry
from tests.support import provision

WIRING = ("--door", "17:pintu", "--pin-factory", "mock")


def registry(root: Path, *, issuing: bool) -> Registry:
    provision(root, "ca", "init", "--name", "Jaga CA Lineage")
    if issuing:
        provision(root, "issuing-ca", "create")
    provision(root, "site", "add", "s1", "--name", "s1", "--timezone", "Asia/Jakarta",
              "--broker-host", "127.0.0.1")  # fmt: skip
    provision(root, "device", "add", "s1", "u-1", *WIRING)
    return Registry(root)


def event(key: certs.PrivateKey, seq: int = 1) -> Event:
    body = EventBody(id=f"ev-{seq}", site="s1", device="u-1", sensor="pintu", kind=Kind.DOOR,
                     state="open", seq=seq, boot_id="b", ts=time.time_ns(), mono_ns=seq,
                     clock_synced=True, prev=GENESIS)  # fmt: skip
    return sign(body, key)


def test_a_unit_the_root_signed_carries_no_issuing_certificate(tmp_path: Path) -> None:
    reg = registry(tmp_path / "reg", issuing=False)
    ca = CertificateAuthority(reg)
    old, new = certs.new_key(), certs.new_key()
    before = ca.issue_device("s1", "u-1", old.public_key())
    after = ca.issue_device("s1", "u-1", new.public_key(), previous=before.cert.serial_number)
    found = lineage(reg, [event(old, 1), event(new, 2)])
    assert found.unit == after.cert and found.issuing is None
    assert found.more_units == {before.cert.serial_number: certs.cert_pem(before.cert)}
    assert found.more_issuing == {}


def test_only_certificates_that_signed_an_event_are_carried(tmp_path: Path) -> None:
    reg = registry(tmp_path / "reg", issuing=True)
    ca = CertificateAuthority(reg)
    old, new = certs.new_key(), certs.new_key()
    before = ca.issue_device("s1", "u-1", old.public_key())
    ca.issue_device("s1", "u-1", new.public_key(), previous=before.cert.serial_number)
    found = lineage(reg, [event(old)])
    assert found.unit == before.cert and found.more_units == {}
    assert found.issuing == reg.issuing_certificate(1)


def test_events_no_certificate_signed_carry_the_current_one(tmp_path: Path) -> None:
    reg = registry(tmp_path / "reg", issuing=True)
    issued = CertificateAuthority(reg).issue_device("s1", "u-1", certs.new_key().public_key())
    found = lineage(reg, [event(certs.new_key())])
    assert found.unit == issued.cert and found.more_units == {}


def test_a_unit_without_a_certificate_is_one_clear_export_error(tmp_path: Path) -> None:
    reg = registry(tmp_path / "reg", issuing=True)
    with pytest.raises(ExportError, match=r"^no certificate for s1/u-1 in the registry$"):
        _lineage(reg, [event(certs.new_key())])
