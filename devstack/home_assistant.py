"""A real Home Assistant for the integration test (#20): its own cached venv, started headless.

`homeassistant` 2024.3.x is the last release for Python 3.11. It goes into a venv of its own
under ~/.cache/jaga (JAGA_HA_VENV elsewhere), made once under a file lock (tests may run in
parallel) and reused; `python -m devstack.home_assistant` makes it ahead of `make test`.
HA starts with `--skip-pip`, so everything it would fetch at its first start is installed
here: the requirements of the integrations it sets up (mqtt's paho-mqtt 1.6.1, the
frontend, the recorder's SQLAlchemy that analytics imports, ...), pinned as 2024.3.3 pins
them, and josepy<2 (the acme its cloud integration imports breaks with josepy 2).

The config is minimal (no default_config): http on a loopback port, api, frontend for the
screenshot; MQTT is a config entry written into .storage before the first start, pointing
at the test's Mosquitto over TLS with the Home Assistant identity's certificate. A user and
a token come from the onboarding API.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.ports import free_port
from devstack.process import ManagedProcess

HA_VERSION = "2024.3.3"
REQUIREMENTS = (
    f"homeassistant=={HA_VERSION}",
    "paho-mqtt==1.6.1",  # mqtt
    "home-assistant-frontend==20240307.0",  # frontend
    "janus==1.0.0",  # file_upload (mqtt's dependency)
    "Pillow==10.2.0",  # image_upload (person, onboarding)
    "psutil-home-assistant==0.0.1",  # hardware
    "securetar==2024.2.1",  # backup
    "SQLAlchemy==2.0.27",  # recorder, imported by analytics (onboarding) through energy
    "fnv-hash-fast==0.5.0",  # recorder
    "numpy==1.26.0",  # camera (set up with mqtt's platforms)
    "PyTurboJPEG==1.7.1",  # camera
    "josepy<2",  # acme (cloud, set up at every start) needs josepy 1's ComparableX509
)
DEFAULT_VENV = Path.home() / ".cache" / "jaga" / "ha-2024.3"
CLIENT_ID = "http://127.0.0.1/"  # HA's auth takes any URL as an OAuth client id


class InstallFailed(RuntimeError):
    """Home Assistant could not be installed; the message holds pip's last lines."""


def venv_dir() -> Path:
    return Path(os.environ.get("JAGA_HA_VENV", str(DEFAULT_VENV)))


def ensure_venv(where: Path | None = None) -> Path:
    """The venv with Home Assistant, made now if it is not there yet (locked against a
    parallel test making it too); its `bin/hass` runs HA."""
    where = where or venv_dir()
    done = where / ".jaga-complete"
    wanted = "\n".join(REQUIREMENTS)
    if done.exists() and done.read_text() == wanted:
        return where
    where.parent.mkdir(parents=True, exist_ok=True)
    with (where.parent / f".{where.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and done.read_text() == wanted:
            return where  # another process made it while we waited
        _install(where)
        done.write_text(wanted)
    return where


def _install(where: Path) -> None:
    base = getattr(sys, "_base_executable", sys.executable)
    pip = [str(where / "bin" / "pip"), "install", "--disable-pip-version-check", *REQUIREMENTS]
    # A venv from an older list of requirements gets what is new (pip keeps the rest).
    steps = [pip] if (where / "bin" / "pip").exists() else [[base, "-m", "venv", str(where)], pip]
    for cmd in steps:
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            tail = "\n".join((run.stdout + run.stderr).splitlines()[-25:])
            raise InstallFailed(
                f"installing Home Assistant {HA_VERSION} into {where} failed "
                f"({' '.join(cmd[:4])} ...):\n{tail}"
            )


@dataclass(frozen=True)
class MqttEntry:
    """Where HA's MQTT integration connects: the test's broker, TLS, HA's own identity."""

    port: int
    ca: Path
    cert: Path
    key: Path
    prefix: str = "homeassistant"


class HomeAssistant(ManagedProcess):
    """`hass -c <config> --skip-pip` on a free loopback port; ready when its API answers."""

    stop_grace = 20.0

    def __init__(self, venv: Path, config_dir: Path, mqtt: MqttEntry) -> None:
        super().__init__("home-assistant", config_dir / "hass.out", cwd=config_dir)
        self.venv = venv
        self.config_dir = config_dir
        self.mqtt = mqtt
        self.port = free_port()
        self.token: str | None = None
        tmp = config_dir / "tmp"  # HA writes the MQTT certificates under $TMPDIR
        self.env = {**os.environ, "TMPDIR": str(tmp)}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(self.venv / "bin" / "hass"), "-c", str(self.config_dir), "--skip-pip"]

    def prepare(self) -> None:
        (self.config_dir / "tmp").mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(_configuration(self.port))
        storage = self.config_dir / ".storage"
        storage.mkdir(exist_ok=True)
        entries = storage / "core.config_entries"
        if not entries.exists():
            entries.write_text(json.dumps(_config_entries(self.mqtt), indent=1))
        onboarding = storage / "onboarding"
        if not onboarding.exists():
            # Every step but the user's done: its core_config step would add the default
            # integrations (met, radio_browser ...) whose requirements are not installed.
            done = {"done": ["core_config", "analytics", "integration"]}
            body = {"version": 4, "minor_version": 1, "key": "onboarding", "data": done}
            onboarding.write_text(json.dumps(body))

    def is_ready(self) -> bool:
        """Its API answers (401 without a token: HA's http server is up)."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/", timeout=1) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except (urllib.error.URLError, OSError):
            return False

    # the API -------------------------------------------------------------------------------

    def onboard(self) -> str:
        """A user and an access token (the onboarding API; the other steps are marked done)."""
        body = {
            "client_id": CLIENT_ID,
            "name": "Jaga",
            "username": "jaga",
            "password": "jaga-test-password",
            "language": "en",
        }
        code = self._post("/api/onboarding/users", body)["auth_code"]
        tokens = self._form(
            "/auth/token",
            {"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID},
        )
        self.token = str(tokens["access_token"])
        self.tokens = tokens
        return self.token

    def states(self) -> dict[str, dict[str, Any]]:
        """Every entity's state and attributes, by entity id."""
        return {s["entity_id"]: s for s in self._get("/api/states")}

    def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            return dict(self._get(f"/api/states/{entity_id}"))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def template(self, text: str) -> str:
        """Render a template in HA (device_attr, device_id ... for what /api/states lacks)."""
        return str(self._request("POST", "/api/template", {"template": text}, raw=True))

    def call(self, domain: str, service: str, data: dict[str, Any]) -> Any:
        return self._post(f"/api/services/{domain}/{service}", data)

    def _get(self, path: str) -> Any:
        return self._request("GET", path)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, raw: bool = False
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
        return text if raw else (json.loads(text) if text else None)

    def _form(self, path: str, fields: dict[str, str]) -> dict[str, Any]:
        from urllib.parse import urlencode

        req = urllib.request.Request(
            f"{self.url}{path}", data=urlencode(fields).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return dict(json.loads(r.read()))


def _configuration(port: int) -> str:
    return f"""\
homeassistant:
  name: Jaga
  latitude: -1.9
  longitude: 105.1
  elevation: 10
  unit_system: metric
  time_zone: Asia/Jakarta
  country: ID
  currency: IDR
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
frontend:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""


def _config_entries(mqtt: MqttEntry) -> dict[str, Any]:
    """.storage/core.config_entries with one MQTT entry, as HA's config flow would write it
    (certificate contents in the entry; HA writes them to files under $TMPDIR)."""
    entry = {
        "entry_id": "jagamqtt0000000000000000000000000",
        "version": 1,
        "minor_version": 1,
        "domain": "mqtt",
        "title": "Jaga broker",
        "data": {
            "broker": "127.0.0.1",
            "port": mqtt.port,
            "certificate": mqtt.ca.read_text(),
            "client_cert": mqtt.cert.read_text(),
            "client_key": mqtt.key.read_text(),
            "tls_insecure": False,
            "protocol": "3.1.1",
            "discovery": True,
            "discovery_prefix": mqtt.prefix,
            "birth_message": {
                "topic": f"{mqtt.prefix}/status",
                "payload": "online",
                "qos": 0,
                "retain": False,
            },
            "will_message": {
                "topic": f"{mqtt.prefix}/status",
                "payload": "offline",
                "qos": 0,
                "retain": False,
            },
        },
        "options": {},
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": None,
        "disabled_by": None,
    }
    return {
        "version": 1,
        "minor_version": 1,
        "key": "core.config_entries",
        "data": {"entries": [entry]},
    }


def main() -> int:
    """Make (or find) the cached venv; say where and how long it took."""
    started = time.monotonic()
    try:
        where = ensure_venv()
    except InstallFailed as exc:
        print(f"home-assistant: {exc}", file=sys.stderr)
        return 1
    print(f"home-assistant {HA_VERSION}: {where} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
