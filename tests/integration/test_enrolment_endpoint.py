"""The enrolment endpoint for real on loopback (TLS with the site CA): a unit enrols with its
one-time token once, a reused, expired or other site's token is refused and recorded, a unit
renews with a new key authenticated by its current certificate, and a revoked one cannot."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from agent.enroll import EnrollError, enroll_with_token
from agent.est_client import EstError, EstUnavailable
from agent.renewal import UnitTls, renew, renew_with_retries
from provisioning.ca import CertificateAuthority, RevokeReason
from provisioning.est_server import EstServer, make_server
from provisioning.registry import Registry
from provisioning.tokens import issue_token
from tests.support import provision, served

WIRING = shlex.split("--door 17:pintu-utama --tamper 22")


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    root = tmp_path / "reg"
    provision(root, "ca", "init", "--name", "Jaga CA Enrol")
    provision(root, "issuing-ca", "create")
    for site in ("gudang-1", "gudang-2"):
        provision(root, "site", "add", site, "--name", site, "--timezone", "Asia/Jakarta",
           "--broker-host", "127.0.0.1")  # fmt: skip
    provision(root, "device", "add", "gudang-1", "pintu-depan", *WIRING)
    provision(root, "device", "add", "gudang-2", "pintu-b", *WIRING)
    registry = Registry(root)
    CertificateAuthority(registry).issue_server(["127.0.0.1", "localhost"])
    return registry


@pytest.fixture
def server(reg: Registry) -> Iterator[EstServer]:
    with served(make_server(reg, "127.0.0.1", 0, days=30)) as srv:
        yield srv


def unit_dir(tmp_path: Path, reg: Registry, site: str, device: str) -> Path:
    """The unit's /etc/jaga as the bundle leaves it: agent.toml and ca.crt, no key, no cert."""
    folder = tmp_path / f"unit-{device}"
    folder.mkdir()
    shutil.copy(reg.device_dir(site, device) / "agent.toml", folder / "agent.toml")
    shutil.copy(reg.ca_cert_path, folder / "ca.crt")
    return folder


def url(server: EstServer) -> str:
    return f"https://127.0.0.1:{server.port}"


def events(reg: Registry) -> list[dict[str, object]]:
    lines = (reg.root / "enrolment" / "log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_token_enrols_its_unit_once(tmp_path: Path, reg: Registry, server: EstServer) -> None:
    unit = unit_dir(tmp_path, reg, "gudang-1", "pintu-depan")
    token = issue_token(reg, "gudang-1", "pintu-depan").token
    cert_path = enroll_with_token(unit / "agent.toml", token, url(server))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=pintu-depan,OU=gudang-1,O=Jaga"
    assert cert.serial_number == reg.device("gudang-1", "pintu-depan").cert_serial
    assert (unit / "device.key").stat().st_mode & 0o777 == 0o600
    assert not (reg.device_dir("gudang-1", "pintu-depan") / "device.key").exists()
    with pytest.raises(EstError, match="already used") as refused:
        enroll_with_token(unit / "agent.toml", token, url(server), force=True)
    assert refused.value.status == 403
    assert [e["event"] for e in events(reg)][-2:] == ["enrolled", "enrol-refused"]
    assert events(reg)[-1]["reason"] == "reused"


def test_an_expired_token_is_refused(tmp_path: Path, reg: Registry, server: EstServer) -> None:
    unit = unit_dir(tmp_path, reg, "gudang-1", "pintu-depan")
    past = datetime.now(UTC) - timedelta(hours=25)
    token = issue_token(reg, "gudang-1", "pintu-depan", now=past).token
    with pytest.raises(EstError, match="expired"):
        enroll_with_token(unit / "agent.toml", token, url(server))
    assert not (unit / "device.key").exists()
    assert events(reg)[-1]["reason"] == "expired"


def test_another_sites_token_is_refused(tmp_path: Path, reg: Registry, server: EstServer) -> None:
    unit = unit_dir(tmp_path, reg, "gudang-2", "pintu-b")
    token = issue_token(reg, "gudang-1", "pintu-depan").token
    with pytest.raises(EstError, match="for site 'gudang-1', not 'gudang-2'"):
        enroll_with_token(unit / "agent.toml", token, url(server))
    assert events(reg)[-1]["reason"] == "wrong-site"
    unknown = token[:-4] + "AAAA"
    with pytest.raises(EstError, match="unknown enrolment token"):
        enroll_with_token(unit / "agent.toml", unknown, url(server))


def test_the_unit_refuses_a_server_the_site_ca_did_not_certify(
    tmp_path: Path, reg: Registry, server: EstServer
) -> None:
    unit = unit_dir(tmp_path, reg, "gudang-1", "pintu-depan")
    other = tmp_path / "other"
    provision(other, "ca", "init", "--name", "Someone Else")
    shutil.copy(other / "ca" / "ca.crt", unit / "ca.crt")
    token = issue_token(reg, "gudang-1", "pintu-depan").token
    with pytest.raises(EstError, match="not the site's server"):
        enroll_with_token(unit / "agent.toml", token, url(server))


def enrolled(tmp_path: Path, reg: Registry, server: EstServer) -> UnitTls:
    unit = unit_dir(tmp_path, reg, "gudang-1", "pintu-depan")
    token = issue_token(reg, "gudang-1", "pintu-depan").token
    enroll_with_token(unit / "agent.toml", token, url(server))
    return UnitTls(
        url(server), "gudang-1", "pintu-depan", unit / "ca.crt", unit / "device.crt",
        unit / "device.key",
    )  # fmt: skip


def keep_pair(tls: UnitTls, folder: Path) -> UnitTls:
    """A copy of the unit's current key and certificate, as a thief or a lost answer keeps it."""
    folder.mkdir()
    (folder / "device.crt").write_bytes(tls.cert.read_bytes())
    (folder / "device.key").write_bytes(tls.key.read_bytes())
    (folder / "device.key").chmod(0o600)
    return UnitTls(tls.base_url, tls.site, tls.device, tls.ca, *(folder / "device.crt",
                   folder / "device.key"))  # fmt: skip


def test_a_unit_renews_with_a_new_key_signed_by_the_issuing_ca(
    tmp_path: Path, reg: Registry, server: EstServer
) -> None:
    tls = enrolled(tmp_path, reg, server)
    first = keep_pair(tls, tmp_path / "first")
    cert = renew(tls)
    assert tls.cert.read_bytes() != first.cert.read_bytes()
    assert tls.key.read_bytes() != first.key.read_bytes()
    assert cert.serial_number == reg.device("gudang-1", "pintu-depan").cert_serial
    assert events(reg)[-1]["event"] == "renewed"
    chain = x509.load_pem_x509_certificates(tls.cert.read_bytes())
    issuing = reg.issuing_certificate(1)
    assert issuing is not None and chain == [cert, issuing]  # the chain Mosquitto is shown
    renew(tls)  # the newest renews again: the first pair is now two behind
    with pytest.raises(EstError, match="not the newest"):
        renew(first)


def test_a_unit_whose_renewal_answer_was_lost_asks_again_with_its_older_pair(
    tmp_path: Path, reg: Registry, server: EstServer
) -> None:
    tls = enrolled(tmp_path, reg, server)
    before = keep_pair(tls, tmp_path / "before")
    lost = renew(tls)  # issued, but say the answer never reached the unit
    again = renew(before)
    assert again.serial_number == reg.device("gudang-1", "pintu-depan").cert_serial
    assert again.serial_number > lost.serial_number


def test_a_revoked_unit_never_renews(tmp_path: Path, reg: Registry, server: EstServer) -> None:
    tls = enrolled(tmp_path, reg, server)
    before = tls.cert.read_bytes()
    CertificateAuthority(reg).revoke_device("gudang-1", "pintu-depan", RevokeReason.KEY_COMPROMISE)
    with pytest.raises(EstError, match="revoked") as refused:
        renew_with_retries(tls, sleep=lambda s: None)
    assert refused.value.status == 403
    assert tls.cert.read_bytes() == before
    assert events(reg)[-1]["event"] == "renew-refused"


def test_renewal_retries_while_the_endpoint_is_away(
    tmp_path: Path, reg: Registry, server: EstServer
) -> None:
    tls = enrolled(tmp_path, reg, server)
    port = server.port
    server.shutdown()
    server.server_close()
    waits: list[float] = []
    away = UnitTls(f"https://127.0.0.1:{port}", *(tls.site, tls.device, tls.ca, tls.cert, tls.key))
    revived = ExitStack()

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # the endpoint comes back on the same port after three tries
            revived.enter_context(served(make_server(reg, "127.0.0.1", port, days=30)))

    with revived:
        cert = renew_with_retries(away, sleep=sleep, initial_s=1, max_s=8)
    assert len(waits) == 3 and waits[0] < waits[2]
    assert cert.serial_number == reg.device("gudang-1", "pintu-depan").cert_serial


def test_an_unreachable_endpoint_is_said_not_refused(tmp_path: Path, reg: Registry) -> None:
    unit = unit_dir(tmp_path, reg, "gudang-1", "pintu-depan")
    token = issue_token(reg, "gudang-1", "pintu-depan").token
    with pytest.raises(EstUnavailable):
        enroll_with_token(unit / "agent.toml", token, "https://127.0.0.1:9")
    with pytest.raises(EnrollError, match="already exists"):
        (unit / "device.key").write_text("x")
        enroll_with_token(unit / "agent.toml", token, "https://127.0.0.1:9")
