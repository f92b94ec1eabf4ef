"""bench.live: the guard post's wall of cameras, unit to browser, and silence without a viewer.

    .venv/bin/python -m bench.live [--quick] [--cameras N]

Real units (`jaga-agent simulate`, one process each, simulated camera at its default 640x480,
2 frames/s) through the real Mosquitto (mutual TLS, ACL) and collector (its page, leases and
relay) into Debian's headless Chromium, logged in as a guard on /wall. A frame's age is the
browser's clock when the tile's image has loaded minus the capture time the unit stamped into
the JPEG (wall.js keeps them in window.jagaShown); all on one machine, so one clock. Bytes are
counted by a second collector identity on the live topics. Then the viewer leaves and, once
the leases have run out, every byte on the live topics is counted: there must be none.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from playwright.sync_api import sync_playwright

from bench.cpu import tree_cpu_s
from bench.mqttclients import tls_client
from bench.report import Report, Row, parse_args, workdir
from bench.site import Identity
from bench.stats import percentile
from broker.web.passwords import hash_password
from devstack.stack import Stack, UnitSpec
from protocol import topics

SITE = "bench"
GUARD, PASSWORD = "guard", "bench-live-17"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
LEASE_END_S = 12
"""The collector stops asking 2 s after the last viewer and a unit's lease lasts at most 10 s
after its last renewal: after this long no frame may flow."""
QUIET_SCENARIO = 'loop_s = 3600\n\n[[step]]\nat = 3500.0\nsensor = "pintu"\naction = "open"\n'


class LiveBytes:
    """Frames and bytes on the units' live topics, as a collector identity receives them."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if topics.parse_live_topic(msg.topic) is None:  # cmd/.../live asks are not frames
            return
        with self._lock:
            self.frames += 1
            self.bytes += len(msg.payload)

    def read(self) -> tuple[int, int]:
        with self._lock:
            return self.frames, self.bytes


def units(n: int) -> tuple[UnitSpec, ...]:
    return tuple(
        UnitSpec(f"kamera-{i:02d}", ("--door", "17:pintu", "--camera")) for i in range(1, n + 1)
    )


def stack_for(root: Path, cameras: int) -> Stack:
    web = {
        "bind": "127.0.0.1:0",
        "accounts": [
            {
                "name": GUARD,
                "role": "guard",
                "sites": [SITE],
                "password_hash": hash_password(PASSWORD),
            }
        ],
    }
    return Stack(root, units=units(cameras), site=SITE, heartbeat_s=10, web=web)


def page_url(stack: Stack, timeout_s: float = 30) -> str:
    """The page's address from the collector's log (it listens on a free port)."""
    log = stack.root / "collector" / "collector.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "guard-post page on " in line:
                return line.split("guard-post page on ", 1)[1].strip()
        time.sleep(0.2)
    raise RuntimeError(f"the collector never said where its page is: see {log}")


def spy(stack: Stack, counter: LiveBytes) -> mqtt.Client:
    reg = stack.registry
    ident = Identity(
        "collector:live-watch",
        reg / "ca" / "ca.crt",
        reg / "identities" / "collector-live-watch.crt",
        reg / "identities" / "collector-live-watch.key",
    )
    client = tls_client("bench-live-watch", ident)
    client.on_message = counter.on_message
    client.connect("127.0.0.1", stack.broker_port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise RuntimeError("the live-topic counter could not connect")
        time.sleep(0.05)
    client.subscribe(f"jaga/v1/{SITE}/+/live", qos=0)
    return client


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=None, help="units (default 16, quick 4)")


def main() -> int:
    args = parse_args(__doc__ or "", _options)
    cameras = args.cameras or (4 if args.quick else 16)
    warm_s, measure_s, idle_s = (10, 15, 20) if args.quick else (20, 60, 60)
    report = Report(
        "live",
        args.quick,
        {"cameras": cameras, "warm_s": warm_s, "measure_s": measure_s, "idle_s": idle_s},
    )
    root = workdir("live")
    stack = stack_for(root, cameras)
    counter = LiveBytes()
    client: mqtt.Client | None = None
    try:
        stack.provision()
        stack.collector_identity("live-watch")
        scenario = root / "quiet.toml"
        scenario.write_text(QUIET_SCENARIO)
        stack.start_broker()
        stack.start_influx()
        collector = stack.start_collector()
        url = page_url(stack)
        client = spy(stack, counter)
        for unit in stack.units:
            stack.start_agent(UnitSpec(unit.device, unit.wiring, scenario))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{url}/login?next=/wall")
            page.fill('input[name="name"]', GUARD)
            page.fill('input[name="password"]', PASSWORD)
            page.click('button[type="submit"]')
            page.wait_for_url("**/wall")
            shown = page.locator(".cam").count()
            page.wait_for_timeout(warm_s * 1000)
            page.evaluate("() => { window.jagaShown.length = 0; }")
            frames0, bytes0 = counter.read()
            cpu0, t0 = tree_cpu_s(collector.pid) or 0.0, time.monotonic()
            page.wait_for_timeout(measure_s * 1000)
            cpu1, t1 = tree_cpu_s(collector.pid) or 0.0, time.monotonic()
            frames1, bytes1 = counter.read()
            samples = page.evaluate("() => window.jagaShown.map(s => [s.camera, s.ageMs])")
            page.close()
            left = time.monotonic()
            browser.close()
        time.sleep(LEASE_END_S)
        idle0 = counter.read()
        time.sleep(idle_s)
        idle1 = counter.read()
        span = t1 - t0
        ages = [float(a) for _, a in samples]
        seen = {c for c, _ in samples}
        p50, p95 = percentile(ages, 50), percentile(ages, 95)
        per_cam = (bytes1 - bytes0) / span / cameras
        cpu = (cpu1 - cpu0) / span
        idle_bytes = idle1[1] - idle0[1]
        report.figure("cameras", len(seen))
        report.figure("tiles", shown)
        report.figure("frame_age_p50_ms", p50)
        report.figure("frame_age_p95_ms", p95)
        report.figure("frames_shown_per_s", round(len(ages) / span, 2))
        report.figure("frames_published_per_s", round((frames1 - frames0) / span, 2))
        report.figure("bytes_per_s_per_camera", round(per_cam))
        report.figure("collector_cpu_cores", round(cpu, 3))
        report.figure("idle_bytes", idle_bytes)
        report.figure("idle_window_s", idle_s)
        report.row(
            Row("cameras streaming to one wall", len(seen), "", target="16", met=len(seen) >= 16)
        )
        report.row(Row("frame age p50 (capture to shown)", p50, "ms", key=True))
        report.row(
            Row(
                f"frame age p95 at {len(seen)} cameras",
                p95,
                "ms",
                target="< 1000 ms",
                met=p95 is not None and p95 < 1000,
            )
        )
        report.row(Row("live bytes per camera", per_cam / 1000, "kB/s", key=True))
        report.row(Row("collector CPU (with its page)", cpu, "cores", key=True))
        report.row(
            Row(
                f"bytes on live topics, no viewer ({idle_s} s)",
                idle_bytes,
                "B",
                target="0",
                met=idle_bytes == 0,
            )
        )
        if idle_s < 60:
            report.note(
                f"idle_bytes counted over {idle_s} s (not a minute), {LEASE_END_S} s "
                "after the viewer left"
            )
        report.note(
            f"left the wall at {left - t1:.1f} s after the window; the idle count starts "
            f"{LEASE_END_S} s later, when every lease has run out"
        )
        report.finish()
        return 0
    finally:
        if client is not None:
            client.loop_stop()
            client.disconnect()
        stack.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
