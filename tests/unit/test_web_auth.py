"""The guard-post page's access rules in isolation: config, password hashes, sessions, pauses."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError

from broker.web.addresses import address_group
from broker.web.config import Account, WebConfig, split_bind
from broker.web.logouts import Logouts
from broker.web.passwords import hash_password, verify_password
from broker.web.sessions import SessionBook, csrf_ok, load_or_create_secret
from broker.web.throttle import LoginThrottle

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
HASH = hash_password("correct horse", CHEAP)
OPERATOR_NAME = re.compile(r"^\S(?:[^\x00-\x1f\x7f]{0,62}\S)?$")  # protocol.alerting (OperatorName)


def account(**kw: object) -> Account:
    fields: dict[str, object] = {
        "name": "budi",
        "role": "guard",
        "sites": ["bangka-barat"],
        "password_hash": HASH,
    }
    return Account.model_validate(fields | kw)


def web(**kw: object) -> WebConfig:
    return WebConfig.model_validate({"accounts": [account().model_dump()]} | kw)


# config ---------------------------------------------------------------------------------


def test_a_guard_must_name_its_own_sites_and_cannot_take_all() -> None:
    with pytest.raises(ValidationError, match="a guard must list its own sites"):
        account(sites=[])
    with pytest.raises(ValidationError, match="a guard must list its own sites"):
        account(sites=["*"])
    assert account(role="operator", sites=["*"]).can_see("any-site")
    assert account(role="operator", sites=[]).can_see("any-site")
    guard = account(sites=["bangka-barat"])
    assert guard.can_see("bangka-barat") and not guard.can_see("pangkal-pinang")


def test_a_password_in_clear_or_a_bad_site_id_is_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError, match="web hash-password"):
        account(password_hash="rahasia")
    with pytest.raises(ValidationError, match="site 'Bangka Barat' is not valid"):
        account(sites=["Bangka Barat"])


def test_plain_http_is_refused_on_a_public_address_unless_asked_for() -> None:
    assert web().bind == "127.0.0.1:8080"
    assert web(bind="[::1]:9000").port == 9000
    with pytest.raises(ValidationError, match=r"configure \[web.tls\]"):
        web(bind="0.0.0.0:8080")
    assert web(bind="0.0.0.0:8443", tls={"cert": "s.crt", "key": "s.key"}).tls is not None
    assert web(bind="192.168.1.10:8080", allow_plain_http=True).host == "192.168.1.10"


def test_no_accounts_and_twice_the_same_name_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        WebConfig.model_validate({"accounts": []})
    same = account().model_dump()
    with pytest.raises(ValidationError, match="budi listed more than once"):
        WebConfig.model_validate({"accounts": [same, same]})


def test_the_pages_caps_default_well_under_the_descriptor_limit_and_are_checked() -> None:
    cfg = web()
    assert cfg.max_connections == 128 and cfg.max_connections_per_address == 32
    assert cfg.request_timeout_s == 10 and cfg.login_concurrency == 2
    with pytest.raises(
        ValidationError, match=r"max_connections_per_address \(64\) cannot be above"
    ):
        web(max_connections=32, max_connections_per_address=64)
    with pytest.raises(ValidationError, match="max_connections"):
        web(max_connections=100_000)
    with pytest.raises(ValidationError, match="request_timeout_s"):
        web(request_timeout_s=0)
    with pytest.raises(ValidationError, match="login_concurrency"):
        web(login_concurrency=0)


@pytest.mark.parametrize("bind", ["8080", "localhost", ":8080", "host:http", "::1:80", "h:70000"])
def test_a_bind_that_is_not_host_port_names_the_form(bind: str) -> None:
    with pytest.raises(ValueError, match="use host:port"):
        split_bind(bind)


def test_the_name_carried_into_the_alert_lifecycle_fits_its_operator_name() -> None:
    longest = account(name="a" * 24, full_name="B" * 36)
    assert OPERATOR_NAME.fullmatch(longest.who), longest.who
    assert account(full_name="Budi Santoso").who == "Budi Santoso (budi)"
    assert account().who == "budi"
    with pytest.raises(ValidationError):
        account(full_name="Budi\nSantoso")


def test_relative_tls_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    cfg = web(tls={"cert": "tls/s.crt", "key": "/etc/s.key"}).resolved(tmp_path)
    assert cfg.tls is not None
    assert cfg.tls.cert == tmp_path / "tls/s.crt" and cfg.tls.key == Path("/etc/s.key")


# passwords ------------------------------------------------------------------------------


def test_a_hash_verifies_its_password_and_nothing_else() -> None:
    assert HASH.startswith("$argon2id$")
    assert verify_password(HASH, "correct horse")
    assert not verify_password(HASH, "correct horse ")
    assert not verify_password("$argon2id$garbage", "correct horse")
    with pytest.raises(ValueError):
        hash_password("")


# the pause after wrong passwords --------------------------------------------------------


def test_five_wrong_passwords_pause_the_account_and_the_pause_ends() -> None:
    t = LoginThrottle(max_failures=5, window_s=300)
    keys = ("user:budi", "ip:10.0.0.9")
    for i in range(4):
        assert t.failed(keys, 100.0 + i) == i + 1
        assert t.retry_after(keys, 100.0 + i) == 0
    t.failed(keys, 104.0)
    assert t.retry_after(keys, 104.0) == pytest.approx(296)  # until the first is 300 s old
    assert t.retry_after(("user:budi", "ip:10.0.0.10"), 200.0) > 0  # another address: still
    assert t.retry_after(("user:sari", "ip:10.0.0.10"), 200.0) == 0
    assert t.retry_after(keys, 400.0) == 0


def test_guessing_many_accounts_from_one_address_pauses_that_address() -> None:
    t = LoginThrottle(max_failures=3, window_s=60)
    for i, name in enumerate(["a", "b", "c"]):
        t.failed((f"user:{name}", "ip:10.0.0.9"), float(i))
    assert t.retry_after(("user:d", "ip:10.0.0.9"), 3.0) > 0
    assert t.retry_after(("user:d", "ip:10.0.0.8"), 3.0) == 0


def test_attempts_still_being_checked_count_so_a_parallel_burst_is_stopped() -> None:
    t = LoginThrottle(max_failures=3, window_s=60)
    keys = ("user:budi", "ip:10.0.0.9")
    started = []
    for i in range(10):  # all arrive before the first hash check is done
        if t.retry_after(keys, 10.0 + i / 100) == 0:
            t.failed(keys, 10.0 + i / 100)
            started.append(i)
    assert started == [0, 1, 2]


def test_a_right_password_is_forgiven_so_a_guard_may_log_in_often() -> None:
    t = LoginThrottle(max_failures=3, window_s=60)
    keys = ("user:budi", "ip:10.0.0.9")
    for i in range(20):
        t.failed(keys, float(i))
        t.forgive(keys, float(i))
    assert t.retry_after(keys, 20.0) == 0
    t.failed(keys, 21.0)
    t.failed(keys, 22.0)
    assert t.failed(keys, 100.0) == 1  # the two mistakes fell out of the window


def test_an_ipv6_host_counts_as_its_slash_64_and_a_mapped_ipv4_as_itself() -> None:
    assert address_group("10.0.0.9") == "10.0.0.9"
    assert address_group("::ffff:10.0.0.9") == "10.0.0.9"
    assert address_group("2001:db8:0:7::1") == address_group("2001:db8:0:7:ab:cd:ef:1")
    assert address_group("2001:db8:0:7::1") == "2001:db8:0:7::/64"
    assert address_group("2001:db8:0:8::1") != address_group("2001:db8:0:7::1")
    assert address_group("fe80::1%eth0") == "fe80::/64"
    assert address_group("unknown") == "unknown"


def test_a_flood_of_addresses_cannot_grow_the_throttle_without_bound() -> None:
    t = LoginThrottle(max_keys=100)
    for i in range(1000):
        t.failed((f"ip:10.0.{i // 256}.{i % 256}",), 0.0)
    assert len(t._failures) == 100


# sessions and CSRF tokens ---------------------------------------------------------------


def test_a_session_cookie_reads_back_until_its_lifetime_ends() -> None:
    book = SessionBook(b"k" * 32, lifetime_s=3600)
    cookie, issued = book.issue(account(), now=1000.0)
    assert book.read(cookie, 1000.0) == issued
    assert book.read(cookie, 4599.0) == issued
    assert book.read(cookie, 4600.0) is None


def test_a_forged_altered_or_foreign_cookie_is_no_session() -> None:
    book = SessionBook(b"k" * 32, lifetime_s=3600)
    cookie, _ = book.issue(account(), now=1000.0)
    assert book.read(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1], 1000.0) is None
    assert SessionBook(b"x" * 32, lifetime_s=3600).read(cookie, 1000.0) is None
    assert book.read("", 1000.0) is None and book.read(None, 1000.0) is None


def test_logging_out_revokes_that_session_only() -> None:
    book = SessionBook(b"k" * 32, lifetime_s=3600)
    one, s1 = book.issue(account(), now=0.0)
    two, _ = book.issue(account(), now=0.0)
    book.revoke(s1, now=1.0)
    assert book.read(one, 2.0) is None
    assert book.read(two, 2.0) is not None


def test_a_logout_is_kept_on_disk_only_until_its_session_would_have_ended(
    tmp_path: Path,
) -> None:
    path = tmp_path / "web-logouts.sqlite"
    book = SessionBook(b"k" * 32, lifetime_s=3600, logouts=Logouts(path))
    old, s_old = book.issue(account(), now=0.0)
    new, s_new = book.issue(account(), now=3000.0)
    book.revoke(s_old, now=1.0)
    book.revoke(s_new, now=3601.0)  # s_old's lifetime is over: its row goes
    reopened = Logouts(path)
    assert s_new.sid in reopened and s_old.sid not in reopened and len(reopened) == 1
    after = SessionBook(b"k" * 32, lifetime_s=3600, logouts=reopened)
    assert after.read(new, 3602.0) is None and after.read(old, 3602.0) is None


def test_each_session_has_its_own_csrf_token_compared_in_full() -> None:
    book = SessionBook(b"k" * 32, lifetime_s=3600)
    _, s1 = book.issue(account(), now=0.0)
    _, s2 = book.issue(account(), now=0.0)
    assert s1.csrf != s2.csrf and len(s1.csrf) >= 24
    assert csrf_ok(s1, s1.csrf)
    assert not csrf_ok(s1, s2.csrf) and not csrf_ok(s1, "") and not csrf_ok(s1, None)
    assert not csrf_ok(s1, s1.csrf[:-1])


def test_the_login_form_token_must_match_its_signed_cookie() -> None:
    book = SessionBook(b"k" * 32, lifetime_s=3600)
    token, cookie = book.login_token()
    assert book.login_token_ok(cookie, token)
    other, _ = book.login_token()
    assert not book.login_token_ok(cookie, other)
    assert not book.login_token_ok(None, token) and not book.login_token_ok(cookie, "")


def test_the_signing_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "web-session.key"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


# the hash-password command --------------------------------------------------------------


def test_hash_password_prints_a_hash_that_verifies_and_never_the_password() -> None:
    from typer.testing import CliRunner

    from broker.web.cli import web_app

    runner = CliRunner()
    done = runner.invoke(
        web_app, ["hash-password", "--stdin", "--name", "budi"], input="jaga-malam-17\n"
    )
    assert done.exit_code == 0, done.output
    assert "jaga-malam-17" not in done.output
    assert 'name = "budi"' in done.output
    hashed = re.search(r'password_hash = "(\$argon2id\$[^"]+)"', done.output)
    assert hashed is not None and verify_password(hashed.group(1), "jaga-malam-17")
    short = runner.invoke(web_app, ["hash-password", "--stdin"], input="pendek\n")
    assert short.exit_code == 2 and "at least 8 characters" in short.output
