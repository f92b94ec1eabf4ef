"""`jaga-collector audit quiet` against the real stack (Mosquitto, InfluxDB, collector, a unit
signing a checkpoint every 2 s): a quiet window is quiet; a window with a door opening names
it; a window in which the unit was paused (SIGSTOP) names the gap."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509

from broker.export_trust import ca_fingerprint
from devstack.stack import DATABASE, Stack, UnitSpec
from tests.support import eventually

pytestmark = pytest.mark.integration
DEVICE = "gudang-01"
S = 1_000_000_000

SCENARIO = """\
# Nothing moves but one door: opened 10 s after the start, shut a second later.
[[step]]
at = 10.0
sensor = "pintu-utama"
action = "open"
once = true

[[step]]
at = 11.0
sensor = "pintu-utama"
action = "close"
once = true
"""


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / S, dt.UTC).isoformat()


def quiet(stack: Stack, start_ns: int, end_ns: int) -> tuple[int, str]:
    done = stack.collector_cli(
        "audit", "quiet", "--site", stack.site, "--device", DEVICE,
        "--from", iso(start_ns), "--to", iso(end_ns),
    )  # fmt: skip
    print(done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout


def checkpoint_times(stack: Stack) -> list[int]:
    assert stack.influx is not None
    rows = stack.influx.query(
        f'SELECT "seq" FROM "event" WHERE "device" = \'{DEVICE}\' AND "kind" = \'checkpoint\'',
        db=DATABASE,
    )
    return [int(r["time"]) for r in rows]


def door_opened_at(stack: Stack) -> int | None:
    assert stack.influx is not None
    rows = stack.influx.query(
        f'SELECT "seq" FROM "event" WHERE "device" = \'{DEVICE}\' AND "kind" = \'door\' '
        "AND \"state\" = 'open'",
        db=DATABASE,
    )
    return int(rows[0]["time"]) if rows else None


def test_audit_quiet_says_quiet_names_a_door_opening_and_names_a_paused_units_gap(
    stack: Stack, tmp_path: Path
) -> None:
    config_path = stack.unit_dir(DEVICE) / "agent.toml"
    config = tomllib.loads(config_path.read_text())
    config["checkpoint_s"] = 2
    config_path.write_text(tomli_w.dumps(config))
    scenario = tmp_path / "one-door.toml"
    scenario.write_text(SCENARIO)
    stack.start_servers()
    agent = stack.start_agent(UnitSpec(DEVICE, (), scenario))

    opened = eventually(lambda: door_opened_at(stack), timeout=40)
    assert opened is not None
    eventually(lambda: [t for t in checkpoint_times(stack) if t > opened + 3 * S], timeout=20)
    first = min(checkpoint_times(stack))

    # quiet: from just after the first checkpoint to 2 s before the door opened
    code, out = quiet(stack, first + S // 2, opened - 2 * S)
    assert code == 0, out
    assert out.startswith(f"quiet: {stack.site}/{DEVICE} from ")
    assert "every door closed, no motion while armed" in out

    # the proof of that quiet, exported, checks with openssl alone against the pinned CA
    proof = tmp_path / "quiet-proof"
    done = stack.collector_cli(
        "audit", "quiet", "--site", stack.site, "--device", DEVICE,
        "--from", iso(first + S // 2), "--to", iso(opened - 2 * S), "--export", str(proof),
    )  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    ca = x509.load_pem_x509_certificate((stack.registry / "ca" / "ca.crt").read_bytes())
    checked = subprocess.run(
        ["sh", "verify.sh", ca_fingerprint(ca)],
        cwd=proof,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    print(checked.stdout[-600:], checked.stderr[-600:])
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # the door opening is named
    code, out = quiet(stack, opened - S, opened + 2 * S)
    assert code == 1, out
    assert out.startswith("not quiet: ")
    assert "  event: door pintu-utama opened at " in out
    assert "gap:" not in out

    # the unit paused for 14 s (allowed between checkpoints: 2 x 2 s + 5 s)
    paused_at = time.time_ns()
    agent.pause()
    time.sleep(14)
    agent.resume()
    resumed_at = time.time_ns()
    eventually(lambda: [t for t in checkpoint_times(stack) if t > resumed_at + 2 * S], timeout=20)
    code, out = quiet(stack, paused_at - 2 * S, resumed_at + S)
    assert code == 1, out
    assert "  gap: no checkpoint for 0:00:1" in out
    assert "stopped, paused or cut off" in out
