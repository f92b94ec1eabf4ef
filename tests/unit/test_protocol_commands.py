"""Units carry out only commands signed by an operator or the collector of their own CA."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from protocol.commands import CommandRefused, Resend, Snapshot, open_command, sign_command
from provisioning.certs import (
    Validity,
    device_name,
    issue_client,
    make_ca,
    new_key,
    service_name,
)

NOW = time.time_ns()
VALID = Validity(
    dt.datetime.fromtimestamp(NOW / 1e9, dt.UTC) - dt.timedelta(days=1),
    dt.datetime.fromtimestamp(NOW / 1e9, dt.UTC) + dt.timedelta(days=30),
)
"""Certificates valid around NOW, however long after collection a test runs."""


def authority() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    return make_ca(key, "test CA", Validity.for_days(30), 1), key  # type: ignore[return-value]


CA, CA_KEY = authority()
OTHER_CA, OTHER_KEY = authority()


def identity(
    cn: str | None = None, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] = (CA, CA_KEY)
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = new_key()
    name = service_name(cn) if cn else device_name("bangka-barat", "gudang-01")
    cert = issue_client(
        subject=name,
        public_key=key.public_key(),
        ca_cert=ca[0],
        ca_key=ca[1],
        serial=7,
        validity=VALID,
    )
    return key, cert.public_bytes(Encoding.PEM)  # type: ignore[return-value]


def resend(by: str, ts: int = NOW) -> Resend:
    return Resend(by=by, ts=ts, first_seq=3, last_seq=9)


def test_a_command_signed_by_the_collector_is_opened() -> None:
    key, cert = identity("collector:main")
    cmd = open_command(sign_command(resend("collector:main"), key, cert), Resend, CA, NOW, True)
    assert isinstance(cmd, Resend) and (cmd.first_seq, cmd.last_seq) == (3, 9)


def test_an_operator_may_ask_for_pictures() -> None:
    key, cert = identity("operator:budi")
    payload = sign_command(Snapshot(by="operator:budi", ts=NOW), key, cert)
    assert open_command(payload, Snapshot, CA, NOW, True).by == "operator:budi"


@pytest.mark.parametrize(
    ("why", "build"),
    [
        (
            "CA",
            lambda: sign_command(
                resend("operator:budi"), *identity("operator:budi", (OTHER_CA, OTHER_KEY))
            ),
        ),
        ("signed it", lambda: sign_command(resend("operator:budi"), *identity("operator:eko"))),
        ("neither operator", lambda: sign_command(resend("collector:main"), *identity(None))),
        (
            "too old",
            lambda: sign_command(
                resend("collector:main", NOW - 11 * 60 * 10**9), *identity("collector:main")
            ),
        ),
        ("not a signed command", lambda: resend("collector:main").to_json()),
    ],
)
def test_commands_that_do_not_prove_who_sent_them_are_refused(why: str, build: object) -> None:
    payload = build()  # type: ignore[operator]
    with pytest.raises(CommandRefused, match=why):
        open_command(payload, Resend, CA, NOW, True)


def test_a_changed_byte_in_the_body_breaks_the_signature() -> None:
    key, cert = identity("collector:main")
    payload = sign_command(resend("collector:main"), key, cert).replace(
        b'last_seq\\":9', b'last_seq\\":8'
    )
    with pytest.raises(CommandRefused, match="does not verify"):
        open_command(payload, Resend, CA, NOW, True)


def test_without_a_synchronised_clock_the_age_cannot_be_judged_and_is_not() -> None:
    key, cert = identity("collector:main")
    old = sign_command(resend("collector:main", NOW - 3600 * 10**9), key, cert)
    assert open_command(old, Resend, CA, NOW, False).by == "collector:main"
