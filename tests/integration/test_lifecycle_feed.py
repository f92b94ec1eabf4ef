"""The lifecycle reaches InfluxDB and the alerts (#19): the real collector follows the registry's
enrolment log, writes each enrolment, renewal, revocation and refusal as a `lifecycle` point
naming who and when, and raises an alert for a reused token and for a refused renewal."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.stack import DATABASE, DEMO_UNITS, Stack
from devstack.watch import SiteWatch
from provisioning import certs
from provisioning.ca import CertificateAuthority
from provisioning.est import EnrolmentAuthority, EstRefused, encode_csr
from provisioning.registry import Registry
from provisioning.tokens import issue_token
from tests.support import eventually

pytestmark = pytest.mark.integration
SITE = "bangka-barat"
UNIT = DEMO_UNITS[0].device


@pytest.fixture
def site(tmp_path: Path, registry: Path) -> Iterator[Stack]:
    own = tmp_path / "registry-copy"  # its log grows here, not in the session's registry
    shutil.copytree(registry, own)
    s = Stack(tmp_path, units=DEMO_UNITS, registry_dir=own, heartbeat_s=2)
    s.configure_broker()
    s.start_servers()
    try:
        yield s
    finally:
        s.stop_all()


def csr() -> bytes:
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, certs.ORGANIZATION),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SITE),
        x509.NameAttribute(NameOID.COMMON_NAME, UNIT),
    ])  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    return encode_csr(x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
        key, hashes.SHA256()))  # fmt: skip


def lifecycle(site: Stack) -> list[dict[str, Any]]:
    assert site.influx is not None
    return site.influx.query('SELECT * FROM "lifecycle" ORDER BY time', db=DATABASE)


def test_enrolments_renewals_and_refusals_become_points_and_refusals_raise_alerts(
    site: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = SiteWatch(site.registry, site.broker_port, SITE).start()
    try:
        reg = Registry(site.registry)
        monkeypatch.setenv("JAGA_TECHNICIAN", "dewi")
        token = issue_token(reg, SITE, UNIT).token
        authority = EnrolmentAuthority(reg)
        first = authority.simpleenroll(SITE, token, csr())
        with pytest.raises(EstRefused, match="already used"):
            authority.simpleenroll(SITE, token, csr())
        CertificateAuthority(reg).revoke_device(SITE, UNIT)
        with pytest.raises(EstRefused, match="revoked"):
            authority.simplereenroll(SITE, first.cert, csr())
        rows = eventually(
            lambda: (found := lifecycle(site)) and len(found) >= 5 and found, timeout=60
        )
        seen = {(r["event"], r["device"]) for r in rows}
        assert {("token-issued", UNIT), ("enrolled", UNIT), ("enrol-refused", UNIT),
                ("revoked", UNIT), ("renew-refused", UNIT)} <= seen  # fmt: skip
        enrolled = next(r for r in rows if r["event"] == "enrolled")
        assert enrolled["by"] == "token" and enrolled["technician"] == "dewi"
        assert enrolled["serial"] == first.cert.serial_number
        assert next(r for r in rows if r["event"] == "revoked")["by"] == "dewi"
        alerts = eventually(
            lambda: len(found := watch.raised("enrolment-refused")) >= 2 and found, timeout=60
        )
        keys = sorted(a.sensor or "" for a in alerts.values())
        assert keys == ["renewal-403", "token-reused"], keys
        assert all(a.device == UNIT and a.site == SITE for a in alerts.values())
    finally:
        watch.stop()
