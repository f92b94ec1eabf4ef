"""One-time enrolment tokens and the renewal schedule, with the clock passed in."""

from __future__ import annotations

import hashlib
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.renewal import MAX_CHECK_S, MIN_CHECK_S, is_due, jitter_of, renew_at, seconds_until_check
from provisioning.cli import app
from provisioning.errors import ProvisioningError
from provisioning.registry import Registry
from provisioning.tokens import Refusal, TokenRefused, claim_token, issue_token, tokens_dir
from tests.support import provision

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    root = tmp_path / "reg"
    provision(root, "ca", "init", "--name", "Jaga CA Token")
    for site in ("gudang-1", "gudang-2"):
        provision(root, "site", "add", site, "--name", site, "--timezone", "Asia/Jakarta",
           "--broker-host", "127.0.0.1")  # fmt: skip
    provision(root, "device", "add", "gudang-1", "pintu", *shlex.split("--door 17:pintu-utama"))
    return Registry(root)


def refusal(reg: Registry, token: str, site: str, now: datetime) -> Refusal:
    with pytest.raises(TokenRefused) as refused:
        claim_token(reg, token, site=site, device="pintu", now=now)
    return refused.value.reason


def test_a_token_is_kept_only_as_its_hash(reg: Registry) -> None:
    issued = issue_token(reg, "gudang-1", "pintu", now=T0)
    assert issued.token.startswith("jet1.gudang-1.pintu.") and len(issued.token) > 60
    assert issued.expires_at == T0 + timedelta(hours=24)
    stored = "".join(p.read_text() for p in tokens_dir(reg).rglob("*") if p.is_file())
    assert issued.token not in stored
    assert hashlib.sha256(issued.token.encode()).hexdigest() in stored


def test_a_token_is_used_once(reg: Registry) -> None:
    token = issue_token(reg, "gudang-1", "pintu", now=T0).token
    claim_token(reg, token, site="gudang-1", device="pintu", now=T0 + timedelta(hours=1))
    assert refusal(reg, token, "gudang-1", T0 + timedelta(hours=2)) is Refusal.REUSED


def test_a_token_expires(reg: Registry) -> None:
    token = issue_token(reg, "gudang-1", "pintu", ttl=timedelta(hours=2), now=T0).token
    assert refusal(reg, token, "gudang-1", T0 + timedelta(hours=2)) is Refusal.EXPIRED
    with pytest.raises(ProvisioningError, match="at most 24 hours"):
        issue_token(reg, "gudang-1", "pintu", ttl=timedelta(hours=25))


def test_unknown_wrong_site_and_replaced_tokens_are_refused(reg: Registry) -> None:
    old = issue_token(reg, "gudang-1", "pintu", now=T0).token
    new = issue_token(reg, "gudang-1", "pintu", now=T0).token
    assert refusal(reg, old, "gudang-1", T0) is Refusal.UNKNOWN
    assert refusal(reg, new, "gudang-2", T0) is Refusal.WRONG_SITE
    assert refusal(reg, "jet1.gudang-1.pintu.guess", "gudang-1", T0) is Refusal.UNKNOWN
    assert refusal(reg, "hello", "gudang-1", T0) is Refusal.MALFORMED
    log = (reg.root / "enrolment" / "log.jsonl").read_text()
    assert log.count('"enrol-refused"') == 4 and new not in log


def test_renewal_comes_at_two_thirds_of_the_lifetime() -> None:
    end = T0 + timedelta(days=30)
    assert renew_at(T0, end, 0.0) == T0 + timedelta(days=20)
    assert renew_at(T0, end, 1.0) == T0 + timedelta(days=21.5)
    assert renew_at(T0, end, -5.0) == T0 + timedelta(days=18.5)
    assert not is_due(T0 + timedelta(days=19), T0, end, 0.0)
    assert is_due(T0 + timedelta(days=20), T0, end, 0.0)


def test_jitter_is_stable_per_certificate_and_spread() -> None:
    values = [jitter_of(serial) for serial in range(1, 501)]
    assert all(-1.0 <= v < 1.0 for v in values)
    assert jitter_of(7) == jitter_of(7)
    assert min(values) < -0.8 and max(values) > 0.8


def test_the_unit_looks_again_between_a_minute_and_six_hours() -> None:
    assert seconds_until_check(T0, T0 - timedelta(hours=1)) == MIN_CHECK_S
    assert seconds_until_check(T0, T0 + timedelta(minutes=30)) == 1800
    assert seconds_until_check(T0, T0 + timedelta(days=3)) == MAX_CHECK_S


def test_device_token_prints_a_token_and_refuses_unknown_units(reg: Registry) -> None:
    result = CliRunner().invoke(
        app, ["device", "token", "gudang-1", "pintu", "--dir", str(reg.root)]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    claim_token(reg, token, site="gudang-1", device="pintu")
    result = CliRunner().invoke(
        app, ["device", "token", "gudang-1", "nope", "--dir", str(reg.root)]
    )
    assert result.exit_code == 1 and "unknown device 'nope'" in result.output
    assert "Traceback" not in result.output
