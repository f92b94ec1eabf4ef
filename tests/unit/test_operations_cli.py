"""`jaga-collector bypass`, `unbypass`, `arm --zone`, `disarm --code` and `pin-hash` (#18): a
mistake is one line naming the fix, said before anything is signed or sent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.cli import app
from broker.cli.arming import duration_s
from broker.web.passwords import verify_password

CONFIG = """
registry_dir = "registry"
[alerts.sites.bangka-barat]
bypass_max_min = 120
zones = [{ name = "perimeter", members = ["gudang-01"] }]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(CONFIG)
    return path


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    done = CliRunner().invoke(app, list(args), input=stdin)
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return done.exit_code, done.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("bypass", "bangka-barat", "gudang-01", "--for", "1h"), "is not device/sensor"),
        (("bypass", "bangka-barat", "gudang-01/pintu", "--for", "2d"), "is not a duration"),
        (("bypass", "bangka-barat", "gudang-01/pintu", "--for", "3h"), "at most 120 min"),
        (("bypass", "bangka-barat", "Gudang 01/pintu", "--for", "1h"), "device 'Gudang 01'"),
        (("unbypass", "bangka-barat", "gudang-01"), "is not device/sensor"),
        (("unbypass", "bangka-barat", "Gudang 01/pintu"), "device 'Gudang 01'"),
        (("arm", "bangka-barat", "--zone", "gudang"), "has no zone 'gudang'"),
        (("disarm", "bangka-barat", "--zone", "ruang"), "its zones: default, perimeter"),
    ],
)
def test_a_mistake_is_one_line_before_anything_is_sent(
    config: Path, args: tuple[str, ...], said: str
) -> None:
    extra = ("--reason", "rusak") if args[0] == "bypass" else ()
    code, out = run(*args, *extra, "--by", "demo", "--config", str(config))
    assert code == 2 and said in out and len(out.strip().splitlines()) == 1, out


def test_a_bypass_needs_a_reason_that_says_something(config: Path) -> None:
    code, out = run(
        "bypass", "bangka-barat", "gudang-01/pintu", "--for", "1h", "--reason", " ",
        "--by", "demo", "--config", str(config),
    )  # fmt: skip
    assert code == 2 and "--reason must say why" in out


def test_durations_read_as_people_write_them() -> None:
    assert [duration_s(t) for t in ("2h", "90m", "1h30m", "45s", "1h5min")] == [
        7200,
        5400,
        5400,
        45,
        3900,
    ]


def test_pin_hash_prints_the_duress_line_and_never_the_pin() -> None:
    code, out = run("pin-hash", "--name", "budi", "--duress", "--stdin", stdin="2580\n")
    assert code == 0 and "2580" not in out.replace("[alerts.people.budi]", "")
    hashed = re.search(r'^duress_pin_hash = "(\$argon2id\$[^"]+)"$', out, re.M)
    assert hashed is not None and verify_password(hashed.group(1), "2580")
    code, out = run("pin-hash", "--name", "budi", "--stdin", stdin="12ab\n")
    assert code == 2 and "4 to 12 digits" in out
