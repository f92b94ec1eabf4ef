"""`audit verify-export` trusts only the CA the auditor brings: an export that vouches for
itself, names another unit, lacks a signed picture or points outside its folder fails."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from broker.export_verify import PinnedCA, verify_export
from provisioning import certs
from tests.unit.export_fixtures import (
    DEVICE,
    NOW,
    PICTURES,
    SITE,
    Authority,
    authority,
    make_export,
    signed_events,
    verify_cli,
)


@pytest.fixture(scope="module")
def real() -> Authority:
    return authority()


def test_a_genuine_export_verifies_against_the_pinned_fingerprint_or_ca_file(
    real: Authority, tmp_path: Path
) -> None:
    folder = make_export(tmp_path / "case-17", real)
    result = verify_cli(folder, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 0, result.output
    assert "export: 2 events, 3 pictures verified, 0 problems" in result.stdout
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(certs.cert_pem(real.ca))
    assert verify_cli(folder, "--ca", str(ca_file)).exit_code == 0
    # As openssl prints it (upper case, colons) is accepted too.
    openssl = ":".join(real.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    assert verify_cli(folder, "--ca-fingerprint", f"SHA256 Fingerprint={openssl}").exit_code == 0


def test_without_a_pinned_ca_it_refuses_and_says_where_the_fingerprint_comes_from(
    real: Authority, tmp_path: Path
) -> None:
    folder = make_export(tmp_path / "case", real)
    result = verify_cli(folder)
    assert result.exit_code == 2
    assert "jaga-provision ca fingerprint" in result.stderr and "published" in result.stderr
    assert "Traceback" not in result.output
    bad = verify_cli(folder, "--ca-fingerprint", "abc123")
    assert bad.exit_code == 2 and "64 hexadecimal digits" in bad.stderr
    missing = verify_cli(folder, "--ca", str(tmp_path / "nope.crt"))
    assert missing.exit_code == 2 and "nope.crt" in missing.stderr


def test_an_export_re_signed_under_a_self_made_ca_fails(real: Authority, tmp_path: Path) -> None:
    forger = authority("Forged CA")  # consistent in itself: CA, unit certificate, signatures
    folder = make_export(tmp_path / "forged", forger)
    result = verify_cli(folder, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 1
    assert "is not the pinned CA" in result.stdout
    assert "0 pictures verified" in result.stdout


def test_a_self_made_ca_with_the_real_ca_s_name_fails_whichever_ca_the_export_carries(
    real: Authority, tmp_path: Path
) -> None:
    twin = authority()  # the same CA name, a key of its own
    assert twin.ca.subject == real.ca.subject and twin.unit.issuer == real.ca.subject
    carries_twin = make_export(tmp_path / "twin", twin)
    result = verify_cli(carries_twin, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 1 and "is not the pinned CA" in result.stdout
    # The real CA's certificate copied in, beside a unit certificate the twin issued.
    carries_real = make_export(tmp_path / "real-ca", twin, carried_ca=real.ca)
    result = verify_cli(carries_real, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 1
    assert "does not chain to the CA at the event's time" in result.stdout
    # And with the auditor's own copy of the CA certificate.
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(certs.cert_pem(real.ca))
    assert verify_cli(carries_twin, "--ca", str(ca_file)).exit_code == 1
    assert verify_cli(carries_real, "--ca", str(ca_file)).exit_code == 1


@pytest.mark.parametrize(
    ("when", "valid_from", "days"),
    [
        ("before", NOW + timedelta(days=10), 30),  # the event predates the certificate
        ("after", NOW - timedelta(days=40), 30),  # the certificate had expired
    ],
)
def test_a_certificate_not_valid_at_the_event_s_time_fails(
    when: str, valid_from: object, days: int, tmp_path: Path
) -> None:
    who = authority(unit_validity=certs.Validity.for_days(days, valid_from))  # type: ignore[arg-type]
    folder = make_export(tmp_path / when, who)
    result = verify_cli(folder, "--ca-fingerprint", who.fingerprint)
    assert result.exit_code == 1, result.output
    assert "does not chain to the CA at the event's time" in result.stdout
    assert "not valid at validation time" in result.stdout


@pytest.mark.parametrize(
    ("site", "device"), [(SITE, "gudang-02"), ("pangkal-pinang", DEVICE)], ids=["unit", "site"]
)
def test_a_certificate_of_another_unit_or_site_does_not_vouch_for_this_unit_s_events(
    site: str, device: str, tmp_path: Path
) -> None:
    # gudang-02's own key and certificate sign events that claim to be gudang-01's.
    other = authority(site=site, device=device)
    events = signed_events(other.unit_key, PICTURES)  # site/device: gudang-01's
    folder = make_export(tmp_path / "other", other, events=events)
    result = verify_cli(folder, "--ca-fingerprint", other.fingerprint)
    assert result.exit_code == 1
    assert f"the certificate is {site}/{device}'s" in result.stdout


def test_a_signed_picture_left_out_of_the_export_fails(real: Authority, tmp_path: Path) -> None:
    folder = make_export(tmp_path / "short", real)
    dropped = sorted((folder / "pictures").iterdir())[1]
    dropped.unlink()
    result = verify_cli(folder, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 1
    assert f"pictures/{dropped.name}: signed by an event of the subject, not here" in result.stdout


def test_a_picture_that_is_a_symbolic_link_is_refused_even_to_the_right_bytes(
    real: Authority, tmp_path: Path
) -> None:
    folder = make_export(tmp_path / "case", real)
    victim = sorted((folder / "pictures").iterdir())[0]
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(victim.read_bytes())
    victim.unlink()
    os.symlink(outside, victim)
    result = verify_cli(folder, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 1
    assert "is a symbolic link" in result.stdout


def test_a_changed_signature_or_picture_byte_fails(real: Authority, tmp_path: Path) -> None:
    folder = make_export(tmp_path / "case", real)
    sig = sorted((folder / "events").glob("*.sig"))[-1]
    data = bytearray(sig.read_bytes())
    data[-3] ^= 0x01
    sig.write_bytes(bytes(data))
    result = verify_cli(folder, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 1 and "the signature does not verify" in result.stdout
    folder = make_export(tmp_path / "pic", real)
    victim = sorted((folder / "pictures").iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    result = verify_cli(folder, "--ca-fingerprint", real.fingerprint)
    assert result.exit_code == 1 and "not the one its event signed" in result.stdout


def test_the_report_counts_only_pictures_of_verified_events(
    real: Authority, tmp_path: Path
) -> None:
    report = verify_export(make_export(tmp_path / "case", real), PinnedCA.of(real.ca))
    assert report.ok and (report.events, report.pictures) == (2, 3)
    report = verify_export(make_export(tmp_path / "f", authority()), PinnedCA.of(real.ca))
    assert not report.ok and (report.events, report.pictures) == (0, 0)
    assert "is not the pinned CA" in " ".join(report.problems)
