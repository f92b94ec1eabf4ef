"""The unit lifecycle under the two-level CA, against real Mosquitto 2.0.11 and the real
enrolment endpoint (#19): units enrol with one-time tokens and connect with the issuing CA's
chain (the broker trusts the root alone); refused tokens raise nothing usable; a renewal asked
during an outage, past the certificate's expiry, succeeds when the endpoint returns (grace);
a revoked unit is cut within a minute, refused by the concatenated CRLs, and never renews,
not even with a certificate of its lineage issued before the revocation; a revoked issuing
CA shuts out every unit it signed. One broker and one registry for the whole file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.enroll import enroll_with_token
from agent.est_client import EstError
from agent.renewal import UnitTls, renew, renew_with_retries
from devstack.mosquitto import Mosquitto
from devstack.ports import free_port
from provisioning import certs
from provisioning.ca import CertificateAuthority
from provisioning.est_server import EstServer, make_server, serve_in_thread
from provisioning.registry import Registry
from provisioning.tokens import issue_token
from tests.integration.test_revocation import (
    KICK_BUDGET_S,
    NOT_AUTHORIZED,
    WAIT_S,
    Broker,
    Client,
    refused,
    revoke_and_kick,
)
from tests.support import provision, served

pytestmark = pytest.mark.integration
WIRING = ("--door", "17:pintu", "--pin-factory", "mock")


@dataclass
class Site:
    broker: Broker
    registry: Registry
    est: EstServer
    root: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.est.port}"

    def unit(self, site: str, device: str) -> Path:
        """The unit's /etc/jaga as the bundle leaves it: agent.toml and the root's ca.crt."""
        folder = self.root / f"unit-{device}"
        folder.mkdir(exist_ok=True)
        shutil.copy(self.registry.device_dir(site, device) / "agent.toml", folder / "agent.toml")
        shutil.copy(self.registry.ca_cert_path, folder / "ca.crt")
        return folder

    def tls(self, folder: Path, device: str, site: str = "s1") -> UnitTls:
        return UnitTls(self.url, site, device, folder / "ca.crt", folder / "device.crt",
                       folder / "device.key")  # fmt: skip

    def log(self) -> list[dict[str, object]]:
        text = (self.registry.root / "enrolment" / "log.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("lifecycle")
    reg = root / "registry"
    provision(reg, "ca", "init", "--name", "Jaga lifecycle CA")
    provision(reg, "issuing-ca", "create")
    for s in ("s1", "s2"):
        provision(reg, "site", "add", s, "--name", s, "--timezone", "Asia/Jakarta",
                  "--broker-host", "127.0.0.1")  # fmt: skip
    for device in ("u-a", "u-b"):
        provision(reg, "device", "add", "s1", device, *WIRING)
    provision(reg, "device", "add", "s2", "u-c", *WIRING)
    provision(reg, "identity", "add", "collector", "kick")
    registry = Registry(reg)
    CertificateAuthority(registry).issue_server(["127.0.0.1", "localhost"])
    est = make_server(registry, "127.0.0.1", 0, days=30, grace_days=30)
    serve_in_thread(est)
    port = free_port()
    out = root / "broker"
    broker = Broker(reg, out, port, Mosquitto(out / "mosquitto.conf", port, root))
    here = Site(broker, registry, est, root)
    for device in ("u-a", "u-b"):
        token = issue_token(registry, "s1", device).token
        enroll_with_token(here.unit("s1", device) / "agent.toml", token, here.url)
    broker.configure()  # after enrolment: the ACL lets in units holding a certificate
    broker.mosquitto.start(timeout=WAIT_S)
    try:
        yield here
    finally:
        broker.mosquitto.stop()
        est.shutdown()
        est.server_close()


def connects(site: Site, folder: Path) -> bool:
    return not refused(site.broker, folder / "device.crt", folder / "device.key")


def test_token_units_connect_with_the_issuing_chain_and_bad_tokens_are_refused(
    site: Site,
) -> None:
    unit = site.root / "unit-u-a"
    chain = x509.load_pem_x509_certificates((unit / "device.crt").read_bytes())
    issuing = site.registry.issuing_certificate(1)
    assert issuing is not None and chain[1:] == [issuing]
    assert connects(site, unit)  # Mosquitto's cafile is the root alone
    reused = issue_token(site.registry, "s1", "u-b").token
    spare = site.root / "spare-u-b"
    spare.mkdir()
    shutil.copy(site.root / "unit-u-b" / "agent.toml", spare / "agent.toml")
    shutil.copy(site.registry.ca_cert_path, spare / "ca.crt")
    enroll_with_token(spare / "agent.toml", reused, site.url)
    with pytest.raises(EstError, match="already used"):
        enroll_with_token(spare / "agent.toml", reused, site.url, force=True)
    old = issue_token(site.registry, "s1", "u-b", now=datetime.now(UTC) - timedelta(hours=25))
    with pytest.raises(EstError, match="expired"):
        enroll_with_token(spare / "agent.toml", old.token, site.url, force=True)
    other = issue_token(site.registry, "s2", "u-c").token
    with pytest.raises(EstError, match="for site 's2', not 's1'"):
        enroll_with_token(spare / "agent.toml", other, site.url, force=True)
    reasons = [e.get("reason") for e in site.log() if e["event"] == "enrol-refused"]
    assert reasons[-3:] == ["reused", "expired", "wrong-site"]
    # The spare enrolment made u-b's newest certificate the spare's: the unit takes it back.
    for name in ("device.crt", "device.key"):
        shutil.copy(spare / name, site.root / "unit-u-b" / name)


def expired_pair(site: Site, folder: Path, device: str, ended: timedelta) -> None:
    """Give the unit a certificate of its own key that expired `ended` ago (the newest)."""
    key = serialization.load_pem_private_key((folder / "device.key").read_bytes(), None)
    now = datetime.now(UTC)
    issued = CertificateAuthority(site.registry).issue_device(
        "s1", device, key.public_key(),  # type: ignore[arg-type]
        validity=certs.Validity(now - ended - timedelta(days=30), now - ended),
    )  # fmt: skip
    (folder / "device.crt").write_bytes(issued.chain_pem())


def test_a_renewal_during_an_outage_past_expiry_succeeds_within_grace_when_the_endpoint_returns(
    site: Site,
) -> None:
    unit = site.root / "unit-u-b"
    expired_pair(site, unit, "u-b", timedelta(days=40))
    with pytest.raises(EstError, match="beyond the 30-day grace"):
        renew(site.tls(unit, "u-b"))
    before = site.root / "u-b-before"
    before.mkdir()
    for name in ("ca.crt", "device.crt", "device.key"):
        shutil.copy(unit / name, before / name)
    expired_pair(site, unit, "u-b", timedelta(days=2))  # cut off through an outage
    assert not connects(site, unit)
    port = free_port()
    away = UnitTls(f"https://127.0.0.1:{port}", "s1", "u-b", *(unit / "ca.crt",
                   unit / "device.crt", unit / "device.key"))  # fmt: skip
    waits: list[float] = []
    back = ExitStack()

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # the endpoint returns after two failed tries
            back.enter_context(
                served(make_server(site.registry, "127.0.0.1", port, days=30, grace_days=30))
            )

    with back:
        cert = renew_with_retries(away, sleep=sleep, initial_s=0.01, max_s=0.05)
    assert len(waits) == 2
    assert cert.not_valid_after_utc > datetime.now(UTC)
    assert site.log()[-1]["event"] == "renewed" and site.log()[-1]["grace"] is True
    assert connects(site, unit)
    with pytest.raises(EstError, match="not the newest"):
        renew(site.tls(before, "u-b"))  # the expired older one never renews


def test_a_revoked_unit_is_cut_within_a_minute_and_never_renews_with_any_of_its_certificates(
    site: Site,
) -> None:
    unit = site.root / "unit-u-a"
    first = site.root / "u-a-first"
    first.mkdir()
    for name in ("ca.crt", "device.crt", "device.key"):
        shutil.copy(unit / name, first / name)
    renew(site.tls(unit, "u-a"))  # a newer certificate of the same lineage
    live = Client(site.broker, unit / "device.crt", unit / "device.key")
    live.start()
    try:
        assert live.publish("jaga/v1/s1/u-a/event") < 128
        seconds = revoke_and_kick(site.broker, live, "device", "revoke", "s1", "u-a")
        print(f"revocation_kick_s issuing-signed unit: {seconds:.3f}")
        assert seconds <= KICK_BUDGET_S
    finally:
        live.stop()
    site.broker.configure()
    site.broker.reload()
    assert refused(site.broker, unit / "device.crt", unit / "device.key")
    assert connects(site, site.root / "unit-u-b")  # the concatenated CRLs refuse only u-a
    for pair in (unit, first):
        with pytest.raises(EstError, match="revoked"):
            renew(site.tls(pair, "u-a"))
    assert [e["event"] for e in site.log()][-2:] == ["renew-refused", "renew-refused"]


def test_a_revoked_issuing_ca_shuts_out_every_unit_it_signed(site: Site) -> None:
    """Its units' live sessions are cut by the kick too (Mosquitto checks CRLs only at
    connect, and only the leaf's), refused at connect once the broker has the CRLs, and
    a unit enrolled again under the next issuing CA gets its session back from the next
    kick run, without a broker restart (the plugin keeps a mute until one)."""
    unit = site.root / "unit-u-b"
    assert connects(site, unit)
    live = Client(site.broker, unit / "device.crt", unit / "device.key")
    live.start()
    try:
        assert live.publish("jaga/v1/s1/u-b/event") < 128
        seconds = revoke_and_kick(site.broker, live, "issuing-ca", "revoke")
        print(f"revocation_kick_s issuing CA: {seconds:.3f}")
        assert seconds <= KICK_BUDGET_S
    finally:
        live.stop()
    site.broker.configure()  # its CRL leaves the broker's crlfile
    site.broker.reload()
    assert refused(site.broker, unit / "device.crt", unit / "device.key")
    with pytest.raises(EstError):
        renew(site.tls(unit, "u-b"))
    provision(site.registry.root, "issuing-ca", "create")
    site.broker.configure()
    site.broker.reload()
    token = issue_token(site.registry, "s1", "u-b").token
    fresh = site.est
    fresh.shutdown()
    fresh.server_close()
    site.est = make_server(site.registry, "127.0.0.1", 0, days=30)  # trusts the new issuing CA
    serve_in_thread(site.est)
    enroll_with_token(unit / "agent.toml", token, site.url, force=True)
    chain = x509.load_pem_x509_certificates((unit / "device.crt").read_bytes())
    assert chain[1] == site.registry.issuing_certificate(2)
    assert connects(site, unit)
    back = Client(site.broker, unit / "device.crt", unit / "device.key")
    back.start()
    try:
        assert back.publish("jaga/v1/s1/u-b/event") == NOT_AUTHORIZED  # muted, until ...
        lifted = provision(
            site.registry.root, "broker-kick", "--broker", f"127.0.0.1:{site.broker.port}"
        )
        assert "gave back the session of 1 client(s) whose certificate is live again: u-b" in (
            lifted
        )
        assert back.connected.wait(WAIT_S)  # changing its roles dropped it: it is back
        assert back.publish("jaga/v1/s1/u-b/event") < 128
    finally:
        back.stop()
