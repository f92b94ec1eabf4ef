"""agent.toml: a good file loads; each mistake is a ConfigError that names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config
from kernel.config import ConfigError

GOOD = """\
site = "gudang-3"
device = "pintu-1"
heartbeat_s = 15
data_dir = "data"
pin_factory = "mock"

[broker]
host = "mqtt.jaga.lan"
port = 8883

[broker.tls]
ca = "tls/ca.crt"
cert = "tls/device.crt"
key = "/etc/jaga/device.key"

[[sensors]]
name = "pintu-utama"
kind = "door"
pin = 17
held_open_s = 90

[[sensors]]
name = "pir-1"
kind = "motion"
pin = 27

[[sensors]]
name = "lid"
kind = "tamper"
pin = 22

[[sensors]]
name = "patroli"
kind = "patrol"
pin = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site" / "agent.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_a_good_file_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert isinstance(config, AgentConfig)
    assert (config.site, config.device, config.heartbeat_s) == ("gudang-3", "pintu-1", 15)
    assert config.broker.host == "mqtt.jaga.lan"
    assert [s.name for s in config.sensors] == ["pintu-utama", "pir-1", "lid", "patroli"]
    assert config.sensors[0].held_open_s == 90
    assert config.sensors[1].retrigger_s == 30.0
    assert config.sensors[0].debounce_ms == 50


def test_relative_paths_are_resolved_against_the_files_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    folder = tmp_path / "site"
    assert config.data_dir == folder / "data"
    assert config.broker.tls is not None
    assert config.broker.tls.ca == folder / "tls" / "ca.crt"
    assert config.broker.tls.cert == folder / "tls" / "device.crt"
    assert config.broker.tls.key == Path("/etc/jaga/device.key")  # absolute stays as is
    assert config.key_path == Path("/etc/jaga/device.key")


def test_relative_signing_key_is_resolved_and_preferred(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'signing_key = "keys/sign.pem"\n' + GOOD))
    assert config.key_path == tmp_path / "site" / "keys" / "sign.pem"


def test_key_defaults_to_the_data_dir_without_tls(tmp_path: Path) -> None:
    text = GOOD.replace(
        '[broker.tls]\nca = "tls/ca.crt"\ncert = "tls/device.crt"\nkey = "/etc/jaga/device.key"\n',
        "",
    )
    config = load_config(write(tmp_path, text))
    assert config.broker.tls is None
    assert config.key_path == tmp_path / "site" / "data" / "identity.key"


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path) -> None:
    text = """\
site = "s1"
device = "d1"
[broker]
host = "h"
[[sensors]]
name = "pintu"
kind = "door"
pin = 4
"""
    config = load_config(write(tmp_path, text))
    assert config.broker.port == 8883
    assert config.broker.keepalive_s == 6  # the will 9 s after the last packet (#21)
    assert config.heartbeat_s == 60
    assert config.pin_factory == "lgpio"
    assert config.data_dir == Path("/var/lib/jaga")


@pytest.mark.parametrize(
    ("kind", "active_high", "pull_up"),
    [
        ("door", True, True),
        ("motion", True, False),
        ("tamper", True, True),
        ("patrol", False, True),
    ],
)
def test_wiring_defaults_per_kind(kind: str, active_high: bool, pull_up: bool) -> None:
    config = AgentConfig.model_validate(
        {
            "site": "s1",
            "device": "d1",
            "broker": {"host": "h"},
            "sensors": [{"name": "x", "kind": kind, "pin": 5}],
        }
    )
    sensor = config.sensors[0]
    assert (sensor.is_active_high, sensor.uses_pull_up) == (active_high, pull_up)


def test_wiring_given_in_the_file_overrides_the_kind_default(tmp_path: Path) -> None:
    wiring = "pin = 27\nactive_high = false\npull_up = true"
    text = GOOD.replace("pin = 27", wiring)
    pir = load_config(write(tmp_path, text)).sensors[1]
    assert (pir.is_active_high, pir.uses_pull_up) == (False, True)


@pytest.mark.parametrize(
    ("old", "new", "field", "hint"),
    [
        ('pin_factory = "mock"', 'pin_factory = "mokc"', "pin_factory", "Input should be"),
        ("port = 8883", "port = 0", "broker.port", "greater than or equal to 1"),
        ("heartbeat_s = 15", 'heartbeat_s = "fast"', "heartbeat_s", "valid integer"),
        ("pin = 17", 'pin = "seventeen"', "sensors[0].pin", "valid integer"),
        ("held_open_s = 90", "held_open_s = 0", "sensors[0].held_open_s", "greater than 0"),
        ('kind = "door"', 'kind = "window"', "sensors[0].kind", "'door'"),
        ('host = "mqtt.jaga.lan"', 'host = ""', "broker.host", "at least 1 character"),
        ('host = "mqtt.jaga.lan"', "host = 3", "broker.host", "valid string"),
    ],
)
def test_wrong_values_name_the_field(
    tmp_path: Path, old: str, new: str, field: str, hint: str
) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    message = load_error(tmp_path, text)
    assert f"- {field}: " in message
    assert hint in message


def test_an_unknown_field_is_named_with_the_fix(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD.replace("pin = 27", "pin = 27\npinn = 3"))
    assert "- sensors[1].pinn: unknown field (check the spelling" in message


def test_an_unknown_top_level_field_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, "heartbeat = 10\n" + GOOD)
    assert "- heartbeat: unknown field" in message


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD.replace('device = "pintu-1"\n', ""))
    assert "- device: required field is missing" in message
    message = load_error(tmp_path, GOOD.replace("pin = 22\n", ""))
    assert "- sensors[2].pin: required field is missing" in message


def test_no_sensors_is_an_error(tmp_path: Path) -> None:
    text = "sensors = []\n" + GOOD.split("[[sensors]]")[0]
    message = load_error(tmp_path, text)
    assert "- sensors: List should have at least 1 item" in message


@pytest.mark.parametrize("pin", [0, 1, 28, 40, -3])
def test_a_pin_off_the_header_is_named(tmp_path: Path, pin: int) -> None:
    message = load_error(tmp_path, GOOD.replace("pin = 27", f"pin = {pin}"))
    assert f"- sensors[1]: pin {pin} is not a BCM GPIO on the 40-pin header (2-27)" in message


def test_a_pin_used_twice_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD.replace("pin = 27", "pin = 17"))
    assert "each pin can carry one sensor: pin 17 used twice" in message


def test_a_sensor_name_used_twice_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD.replace('name = "lid"', 'name = "pir-1"'))
    assert "sensor names must be unique: pir-1 repeated" in message


@pytest.mark.parametrize("site", ["Gudang-3", "gudang_3", "alert", "gudang 3", ""])
def test_a_bad_site_id_is_named(tmp_path: Path, site: str) -> None:
    message = load_error(tmp_path, GOOD.replace('site = "gudang-3"', f'site = "{site}"'))
    assert "- site: site " in message


def test_a_bad_sensor_name_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD.replace('name = "lid"', 'name = "Lid"'))
    assert "- sensors[2].name: sensor 'Lid' is not valid" in message


def test_every_mistake_is_listed_with_a_count(tmp_path: Path) -> None:
    text = GOOD.replace("pin = 27", "pin = 99").replace('device = "pintu-1"', 'device = "X"')
    message = load_error(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'site' / 'agent.toml'}: 2 problem(s):")
    assert "- device: " in message
    assert "- sensors[1]: pin 99" in message


def test_a_file_that_is_not_toml_is_a_config_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, "site = gudang-3\n")
    assert "not valid TOML" in message
    assert "line 1" in message


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.write_bytes(b'site = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load_config(missing)


def test_a_folder_instead_of_a_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_checkpoints_default_to_five_minutes_and_can_be_set(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, GOOD)).checkpoint_s == 300
    assert load_config(write(tmp_path, "checkpoint_s = 60\n" + GOOD)).checkpoint_s == 60


@pytest.mark.parametrize("value", ["0", "3601", "-5"])
def test_a_checkpoint_interval_out_of_range_names_the_field_and_the_range(
    tmp_path: Path, value: str
) -> None:
    message = load_error(tmp_path, f"checkpoint_s = {value}\n" + GOOD)
    assert f"- checkpoint_s: {value} is out of range: give 1 to 3600 seconds" in message


def test_a_checkpoint_interval_that_is_not_a_whole_number_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'checkpoint_s = "5m"\n' + GOOD)
    assert "- checkpoint_s: Input should be a valid integer" in message
