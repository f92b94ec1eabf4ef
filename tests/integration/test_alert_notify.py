"""Alert notifications through apprise to a real HTTP endpoint on loopback (no patched sender).

The endpoint is http.server on 127.0.0.1; apprise posts to it with `json://127.0.0.1:PORT/...`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from broker.alerts.config import AlertsConfig, NotifyConfig, Route, SiteAlerts
from broker.alerts.delivery import Notifier
from broker.alerts.engine import AlertEngine
from broker.alerts.store import AlertStore
from protocol.alerting import Severity
from protocol.models import Event, Kind
from tests.unit.test_alerts_support import MON, NIGHTS_AND_SUNDAY, SITE, S, event, jkt

pytestmark = pytest.mark.integration

NIGHT = jkt(MON, "22:00")


class Endpoint:
    """A webhook receiver: records each POST, answers from a script of status codes."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        self.hold = threading.Event()
        self.hold.set()
        self.arrived = threading.Condition()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.hold.wait(30)
                code = endpoint.statuses.pop(0) if endpoint.statuses else 200
                with endpoint.arrived:
                    endpoint.requests.append(
                        {"path": self.path, "status": code, "json": json.loads(body)}
                    )
                    endpoint.arrived.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    """The engine and a started Notifier, as the collector will wire them."""

    def __init__(
        self,
        tmp: Path,
        url: str,
        pictures: Callable[[str], Path] | None = None,
        page_url: str | None = None,
        **notify: Any,
    ) -> None:
        settings: dict[str, Any] = {
            "routes": [Route(severities=[Severity.CRITICAL], urls=[f"{url}?rto=5"])],
            "cooldown_s": 300,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2,
            "attempts": 50,
        }
        settings.update(notify)
        config = AlertsConfig(
            sites={SITE: SiteAlerts(schedule=NIGHTS_AND_SUNDAY)},
            notify=NotifyConfig.model_validate(settings),
        )
        self.store = AlertStore(tmp / "alerts.sqlite3")
        self.engine = AlertEngine(config, self.store, NIGHT)
        self.notifier = Notifier(
            config.notify, tmp / "notify.sqlite3", pictures=pictures, page_url=page_url
        )
        self.notifier.start()

    def door_opens(self, ts: int, seq: int | None = None) -> None:
        ev: Event = event(Kind.DOOR, "open", ts, sensor="pintu-belakang", seq=seq)
        changes = self.engine.on_event(ev, ts)
        self.notifier.submit(changes.notifications)
        self.engine.confirm(changes)

    def close(self) -> None:
        self.notifier.stop(5)
        self.store.close()


@pytest.fixture
def endpoints() -> Iterator[list[Endpoint]]:
    made: list[Endpoint] = []
    yield made
    for e in made:
        e.close()


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


def test_one_forced_door_sends_exactly_one_notification_with_the_alert(
    tmp_path: Path, endpoints: list[Endpoint], rigs: list[Rig]
) -> None:
    endpoint = Endpoint()
    endpoints.append(endpoint)
    rig = Rig(tmp_path, endpoint.url)
    rigs.append(rig)
    rig.door_opens(NIGHT + 5 * S)
    assert rig.notifier.wait_idle(15)
    (request,) = endpoint.wait_for(1)
    (alert,) = rig.engine.open_alerts()
    body = request["json"]
    assert request["path"] == "/hook"
    # Indonesian: the route sets no language (a route with language = "en" gets English).
    assert body["title"] == (
        "[KRITIS] Pintu dibuka paksa di bangka-barat/gudang-01/pintu-belakang saat siaga"
    )
    assert alert.id in body["message"]
    assert "dibuka pukul 22:00 WIB saat siaga" in body["message"]
    assert body["type"] == "failure"
    assert [d[2] for d in rig.notifier.deliveries()] == ["sent"]


def test_a_burst_of_triggers_within_the_cooldown_is_still_one_notification(
    tmp_path: Path, endpoints: list[Endpoint], rigs: list[Rig]
) -> None:
    endpoint = Endpoint()
    endpoints.append(endpoint)
    rig = Rig(tmp_path, endpoint.url)
    rigs.append(rig)
    for i in range(100):
        rig.door_opens(NIGHT + i * S)
    assert rig.notifier.wait_idle(15)
    assert len(endpoint.wait_for(1)) == 1
    (alert,) = rig.engine.open_alerts()
    assert alert.count == 100
    assert len(endpoint.requests) == 1


def test_an_endpoint_answering_500_then_200_gets_the_notification_after_a_retry(
    tmp_path: Path, endpoints: list[Endpoint], rigs: list[Rig]
) -> None:
    endpoint = Endpoint(statuses=[500, 200])
    endpoints.append(endpoint)
    rig = Rig(tmp_path, endpoint.url)
    rigs.append(rig)
    rig.door_opens(NIGHT)
    assert rig.notifier.wait_idle(15)
    requests = endpoint.wait_for(2)
    assert [r["status"] for r in requests] == [500, 200]
    assert requests[0]["json"] == requests[1]["json"]
    ((note_id, _, state, attempts),) = rig.notifier.deliveries()
    assert (state, attempts) == ("sent", 2)
    assert note_id.endswith(".raised.1")


def test_an_endpoint_that_is_down_blocks_no_alert_and_gets_it_when_it_is_back(
    tmp_path: Path, endpoints: list[Endpoint], rigs: list[Rig]
) -> None:
    port = free_port()  # nothing listens here yet
    rig = Rig(tmp_path, f"json://127.0.0.1:{port}/hook")
    rigs.append(rig)
    started = time.monotonic()
    for device_n in range(20):  # twenty doors on twenty units: twenty alerts
        ev = event(
            Kind.DOOR, "open", NIGHT + device_n * S, device=f"gudang-{device_n:02d}", sensor="pintu"
        )
        changes = rig.engine.on_event(ev, NIGHT + device_n * S)
        rig.notifier.submit(changes.notifications)
    elapsed = time.monotonic() - started
    assert len(rig.engine.open_alerts()) == 20
    assert elapsed < 1.0, f"alerting took {elapsed:.2f}s with the endpoint down"
    assert rig.notifier.pending() == 20
    endpoint = Endpoint(port=port)
    endpoints.append(endpoint)
    assert rig.notifier.wait_idle(20)
    assert len(endpoint.wait_for(20)) == 20
    assert all(d[2] == "sent" for d in rig.notifier.deliveries())
    assert rig.notifier.stats.retries >= 1


def test_an_endpoint_that_hangs_blocks_no_alert(
    tmp_path: Path, endpoints: list[Endpoint], rigs: list[Rig]
) -> None:
    endpoint = Endpoint()
    endpoint.hold.clear()  # accepts the connection, never answers until released
    endpoints.append(endpoint)
    rig = Rig(tmp_path, endpoint.url)
    rigs.append(rig)
    started = time.monotonic()
    for device_n in range(20):
        ev = event(
            Kind.DOOR, "open", NIGHT + device_n * S, device=f"gudang-{device_n:02d}", sensor="pintu"
        )
        rig.notifier.submit(rig.engine.on_event(ev, NIGHT + device_n * S).notifications)
    elapsed = time.monotonic() - started
    assert len(rig.engine.open_alerts()) == 20
    assert elapsed < 1.0, f"alerting took {elapsed:.2f}s with the endpoint hanging"
    endpoint.hold.set()
    assert rig.notifier.wait_idle(20)
    assert len(endpoint.wait_for(20)) == 20


def test_the_text_goes_at_once_and_the_still_follows_byte_for_byte_across_a_restart(
    tmp_path: Path, endpoints: list[Endpoint], rigs: list[Rig]
) -> None:
    """The alarm's text carries the link to the alert's page and no command; the collector
    stops before the trigger's still is stored; after the restart the still arrives as an
    attachment, byte for byte the picture the unit signed (the camera event's SHA-256)."""
    from agent.camera.simulated import SimulatedCamera
    from broker.evidence import EvidenceVault
    from broker.refs import EventRef

    endpoint = Endpoint()
    endpoints.append(endpoint)
    vault = EvidenceVault(tmp_path / "evidence", min_free_bytes=0)
    page = "https://pos.bangka-barat.example:8443"
    rig = Rig(tmp_path, endpoint.url, pictures=vault.path, page_url=page)
    rigs.append(rig)
    trigger: Event = event(Kind.DOOR, "open", NIGHT + 5 * S, sensor="pintu-belakang")
    changes = rig.engine.on_event(trigger, NIGHT + 5 * S)
    rig.notifier.submit(changes.notifications)
    rig.engine.confirm(changes)
    (text,) = endpoint.wait_for(1)
    (alert,) = rig.engine.open_alerts()
    assert text["json"]["attachments"] == []
    assert f"buka untuk mengakui: {page}/alerts/{alert.id}" in text["json"]["message"]
    assert "jaga-collector" not in text["json"]["message"]
    rig.notifier.stop(5)  # the collector stops between the text and the picture

    camera = SimulatedCamera("gudang-01", seed=7)
    camera.start()
    still = camera.still()
    camera.stop()
    sha = hashlib.sha256(still).hexdigest()
    shot = event(Kind.CAMERA, "snapshot", NIGHT + 5 * S + 1, sensor="camera")
    shot = shot.model_copy(update={"cause": trigger.id, "snapshot_sha256": (sha,)})
    again = Notifier(
        rig.notifier.config, tmp_path / "notify.sqlite3", pictures=vault.path, page_url=page
    )
    rig.notifier = again
    again.start()
    again.camera_events([shot])  # the camera event is stored ...
    vault.put(still, EventRef(shot.site, shot.device, shot.id))  # ... then its still
    again.pictures_stored([(shot.id, sha, "still")])
    assert again.wait_idle(15)
    _, picture = endpoint.wait_for(2)
    body = picture["json"]
    (attached,) = body["attachments"]
    data = base64.b64decode(attached["base64"])
    assert hashlib.sha256(data).hexdigest() == shot.snapshot_sha256[0]  # what the unit signed
    assert data == vault.path(sha).read_bytes()
    assert attached["mimetype"] == "image/jpeg"
    assert body["title"].endswith("(foto)")
    assert f"{page}/alerts/{alert.id}" in body["message"]
    assert [d[0] for d in again.deliveries()] == [
        f"{alert.id}.raised.1",
        f"{alert.id}.raised.1.picture",
    ]
    again.pictures_stored([(shot.id, sha, "still")])  # stored twice (a redelivery): sent once
    assert again.wait_idle(5)
    assert len(endpoint.requests) == 2
    vault.close()


def test_a_still_stored_before_the_alarm_notifies_goes_with_its_text(
    tmp_path: Path, endpoints: list[Endpoint], rigs: list[Rig]
) -> None:
    """A unit back online sends its door event, camera event and pictures in one burst: the
    still is in the vault before the alarm is judged, and the one notification carries it."""
    from broker.evidence import EvidenceVault
    from broker.refs import EventRef

    endpoint = Endpoint()
    endpoints.append(endpoint)
    vault = EvidenceVault(tmp_path / "evidence", min_free_bytes=0)
    rig = Rig(tmp_path, endpoint.url, pictures=vault.path)
    rigs.append(rig)
    trigger: Event = event(Kind.DOOR, "open", NIGHT + 5 * S, sensor="pintu-belakang")
    still = b"\xff\xd8 a still \xff\xd9"
    sha = hashlib.sha256(still).hexdigest()
    shot = event(Kind.CAMERA, "snapshot", NIGHT + 5 * S + 1, sensor="camera")
    shot = shot.model_copy(update={"cause": trigger.id, "snapshot_sha256": (sha,)})
    rig.notifier.camera_events([shot])
    vault.put(still, EventRef(shot.site, shot.device, shot.id))
    rig.notifier.pictures_stored([(shot.id, sha, "still")])
    rig.door_opens(NIGHT + 5 * S, seq=trigger.seq)
    assert rig.notifier.wait_idle(15)
    (only,) = endpoint.wait_for(1)
    (attached,) = only["json"]["attachments"]
    assert base64.b64decode(attached["base64"]) == still
    assert f"SHA-256 {sha}" in only["json"]["message"]
    assert "(foto)" not in only["json"]["title"]
    vault.close()
