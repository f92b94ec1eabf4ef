"""`jaga-collector alerts list` (#18): a silent duress alert is in the store, yet the list a
guard at the server could read leaves it out unless `--include-duress` asks for it."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from broker.alerts.config import AlertsConfig
from broker.alerts.engine import AlertEngine
from broker.alerts.store import AlertStore
from broker.cli import app
from protocol.alerting import ArmingHow

SITE = "bangka-barat"


def test_a_duress_alert_is_listed_only_when_asked_for(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    try:
        engine = AlertEngine(AlertsConfig(), store, time.time_ns())
        engine.on_enrolment_refused(SITE, "gudang-01", False, "used", "", time.time_ns())
        engine.duress(SITE, "budi", ArmingHow.WEB, time.time_ns())
        assert sorted(a.rule for a in store.alerts()) == ["duress", "enrolment-refused"]
    finally:
        store.close()
    config = tmp_path / "collector.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nregistry_dir = "registry"\n')

    def listed(*extra: str) -> str:
        done = CliRunner().invoke(app, ["alerts", "list", "--config", str(config), *extra])
        assert done.exit_code == 0, done.output
        return done.output

    plain = listed()
    assert len(plain.strip().splitlines()) == 1 and "gudang-01" in plain
    assert "budi" not in plain.lower() and "duress" not in plain.lower()
    assert "duress" not in listed("--all").lower()
    asked = listed("--include-duress")
    assert len(asked.strip().splitlines()) == 2 and "budi" in asked
