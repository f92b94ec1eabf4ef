"""The broker's config and ACL as rendered text: exactly the policy, nothing more."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.mosquitto import (
    CollectorIdentity,
    MosquittoSettings,
    OperatorIdentity,
    TlsFiles,
    UnitIdentity,
    acl_rules,
    render_acl,
    render_config,
)
from provisioning.broker_config import identities
from provisioning.ca import CertificateAuthority
from provisioning.enrolment import issue_with_new_key
from provisioning.register import add_device, add_site
from provisioning.registry import Registry
from provisioning.wiring import parse_wiring

EXPECTED_ACL = """\
user pintu-a
topic write jaga/v1/gudang-1/pintu-a/status
topic write jaga/v1/gudang-1/pintu-a/event
topic write jaga/v1/gudang-1/pintu-a/heartbeat
topic write jaga/v1/gudang-1/pintu-a/snapshot/+
topic write jaga/v1/gudang-1/pintu-a/cmd-result
topic write jaga/v1/gudang-1/pintu-a/live
topic read jaga/v1/gudang-1/pintu-a/cmd/+
topic read jaga/v1/gudang-1/arming

user pintu-c
topic write jaga/v1/gudang-1/pintu-c/status
topic write jaga/v1/gudang-1/pintu-c/event
topic write jaga/v1/gudang-1/pintu-c/heartbeat
topic write jaga/v1/gudang-1/pintu-c/snapshot/+
topic write jaga/v1/gudang-1/pintu-c/cmd-result
topic write jaga/v1/gudang-1/pintu-c/live
topic read jaga/v1/gudang-1/pintu-c/cmd/+
topic read jaga/v1/gudang-1/arming

user collector:main
topic read jaga/v1/#
topic write jaga/v1/deadletter
topic write jaga/v1/+/arming
topic write jaga/v1/+/alert/#
topic write jaga/v1/+/+/cmd/+
topic write homeassistant/#
topic write jaga/ha/#
topic read homeassistant/status
topic read jaga/ha/+/cmd
topic read jaga/ha/collector/+/status

user operator:budi
topic read jaga/v1/deadletter
topic read jaga/v1/gudang-1/+/status
topic read jaga/v1/gudang-1/+/event
topic read jaga/v1/gudang-1/+/heartbeat
topic read jaga/v1/gudang-1/+/snapshot/+
topic read jaga/v1/gudang-1/+/cmd/+
topic read jaga/v1/gudang-1/+/cmd-result
topic read jaga/v1/gudang-1/arming
topic read jaga/v1/gudang-1/alert/#
topic read jaga/v1/gudang-1/cmd/+
topic read jaga/v1/gudang-1/witness/+
topic write jaga/v1/gudang-1/cmd/+
topic write jaga/v1/gudang-1/+/cmd/+

user home-assistant:ha
topic read homeassistant/#
topic read jaga/ha/collector/+/status
topic write homeassistant/status
topic read jaga/ha/gudang-1/+/state
topic read jaga/ha/gudang-1/+/evidence
topic read jaga/ha/gudang-1/arming
topic read jaga/ha/gudang-1/arming/+
topic read jaga/v1/gudang-1/+/status
topic write jaga/ha/gudang-1/cmd
"""


def settings(**overrides: object) -> MosquittoSettings:
    base = Path("/etc/mosquitto/jaga")
    tls = TlsFiles(base / "ca.crt", base / "server.crt", base / "server.key", base / "crl.pem")
    kwargs: dict[str, object] = {
        "tls": tls,
        "acl_file": base / "acl",
        "dynsec_plugin": Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
        "dynsec_file": base / "dynsec.json",
        **overrides,
    }
    return MosquittoSettings(**kwargs)  # type: ignore[arg-type]


def body(text: str) -> str:
    """The text without comment lines and the blank line that follows the header."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")).lstrip() + "\n"


def test_acl_for_a_small_registry_is_exactly_the_policy(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    ca = CertificateAuthority.init(reg, "CA")
    add_site(reg, "gudang-1", name="G1", timezone="Asia/Jakarta", broker_host="localhost")
    for device in ("pintu-a", "pintu-b", "pintu-c"):
        add_device(reg, "gudang-1", device, parse_wiring(doors=["17"]))
    issue_with_new_key(reg, "gudang-1", "pintu-a")
    issue_with_new_key(reg, "gudang-1", "pintu-b")  # revoked below
    ca.revoke_device("gudang-1", "pintu-b")
    # pintu-c has no certificate yet: its block is there for when it enrols with its token
    ca.issue_service("collector", "main")
    ca.issue_service("operator", "budi")
    reg.save_operator_sites("budi", ["gudang-1"])
    ca.issue_service("home-assistant", "ha")
    reg.save_home_assistant("ha", "homeassistant", ["gudang-1"])  # its per-site block
    assert body(render_acl(identities(reg))) == EXPECTED_ACL


def test_a_home_assistant_made_before_sites_keeps_every_site(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    CertificateAuthority.init(reg, "CA").issue_service("home-assistant", "lama")
    (ha,) = identities(reg)
    rules = set(acl_rules(ha))
    assert ("write", "jaga/ha/+/cmd") in rules
    assert ("read", "jaga/ha/+/+/state") in rules
    assert ("read", "jaga/v1/+/+/status") in rules


def test_acl_refuses_two_identities_with_one_username() -> None:
    with pytest.raises(ValueError, match="share the username"):
        render_acl([UnitIdentity("s1", "u1"), UnitIdentity("s2", "u1")])


def test_identity_names_cannot_smuggle_acl_lines() -> None:
    with pytest.raises(ValueError):
        UnitIdentity("s1", "u1\ntopic readwrite #")
    with pytest.raises(ValueError):
        OperatorIdentity("a b")
    assert CollectorIdentity("main").username == "collector:main"


def test_config_has_the_mutual_tls_listener_and_outage_sized_queues() -> None:
    lines = set(render_config(settings(run_as_user="root")).splitlines())
    expected = {
        "per_listener_settings false",
        "allow_anonymous false",
        "acl_file /etc/mosquitto/jaga/acl",
        "user root",
        "persistence true",
        "persistence_location /var/lib/mosquitto",
        "autosave_interval 60",
        "persistent_client_expiration 14d",
        "max_queued_messages 1000000",
        "max_queued_bytes 0",
        "max_packet_size 262144",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "listener 8883 0.0.0.0",
        "cafile /etc/mosquitto/jaga/ca.crt",
        "certfile /etc/mosquitto/jaga/server.crt",
        "keyfile /etc/mosquitto/jaga/server.key",
        "crlfile /etc/mosquitto/jaga/crl.pem",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
        "plugin_opt_config_file /etc/mosquitto/jaga/dynsec.json",
        "tls_version tlsv1.2",
    }
    assert expected <= lines
    settings_lines = {line for line in lines if line and not line.startswith("#")}
    assert settings_lines == expected


def test_config_without_user_keeps_mosquittos_default() -> None:
    assert "user " not in render_config(settings())


@pytest.mark.parametrize(
    "overrides",
    [
        {"acl_file": Path("acl")},
        {"port": 0},
        {"persistent_client_expiration": "14 days"},
        {"bind": "0.0.0.0\nallow_anonymous true"},
    ],
)
def test_settings_refuse_what_mosquitto_would_misread(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        settings(**overrides)
