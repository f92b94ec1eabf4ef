"""`make demo`: a site of three simulated units through real Mosquitto (mutual TLS), the
collector and InfluxDB, with the events shown live and a summary read back from InfluxDB.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from broker import i18n
from broker.alerts.localized import alert_text
from broker.i18n import N_
from devstack.ports import free_port
from devstack.process import StartError
from devstack.quiet_demo import CHECKPOINT_S, Night, prove
from devstack.stack import DATABASE, DEMO_WITNESS, Stack, jaga
from devstack.watch import NotificationSink, SiteWatch

STORED = re.compile(
    r"stored (?P<site>\S+)/(?P<device>\S+) seq=(?P<seq>\d+) "
    r"(?P<kind>\S+) (?P<sensor>\S+) (?P<state>\S+)"
)
STORED_MANY = re.compile(r"stored (?P<site>\S+)/(?P<device>\S+) seq=(?P<seqs>\S+) \((?P<n>\d+) ")
"""A unit's events that came in one batch share a line (broker/collector/settle.py)."""


def _follow(path: Path, stop: threading.Event) -> None:
    """Print each event the collector stores, as it stores it."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.1)
    with path.open(encoding="utf-8", errors="replace") as fh:
        while not stop.is_set():
            line = fh.readline()
            if not line:
                time.sleep(0.1)
                continue
            m = STORED.search(line)
            if m:
                print(
                    f"  {time.strftime('%H:%M:%S')}  {m['device']:<12} {m['kind']:<10} "
                    f"{m['sensor']:<15} {m['state']:<10} seq {m['seq']}",
                    flush=True,
                )
            elif many := STORED_MANY.search(line):
                print(
                    f"  {time.strftime('%H:%M:%S')}  {many['device']:<12} "
                    f"{many['n'] + ' events':<37} seq {many['seqs']}",
                    flush=True,
                )


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    seconds = float(os.environ.get("DEMO_SECONDS", "60"))
    root = Path(os.environ.get("DEMO_DIR", "run/demo")).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    signal.signal(signal.SIGTERM, _interrupt)
    sink = NotificationSink()
    password = secrets.token_urlsafe(9)
    web_port = free_port()
    stack = Stack(
        root, heartbeat_s=5, alerts=demo_alerts(sink.url), web=demo_web(web_port, password)
    )
    stack.checkpoint_s = CHECKPOINT_S  # signed checkpoints within the demo's minute
    stack.enrol = True  # each unit makes its key and enrols with its bundle's one-time token
    stop_follow = threading.Event()
    watch: SiteWatch | None = None
    try:
        print(f"demo: provisioning site {stack.site} in {stack.registry} with jaga-provision")
        stack.provision()
        _enrol(stack)
        print(
            f"demo: starting Mosquitto (mutual TLS on 127.0.0.1:{stack.broker_port}), "
            "InfluxDB, the collector"
        )
        stack.start_broker()
        stack.start_influx()
        stack.start_collector()
        stack.start_witness()
        print(f"demo: witness {DEMO_WITNESS} watches the site with a key of its own")
        assert stack.collector is not None
        follower = threading.Thread(
            target=_follow, args=(stack.collector.log_path, stop_follow), daemon=True
        )
        follower.start()
        watch = SiteWatch(stack.registry, stack.broker_port, stack.site).start()
        print(
            f"demo: the guard post's page: http://127.0.0.1:{web_port}/ (login budi / {password})"
        )
        print(f"demo: the wall of live cameras: http://127.0.0.1:{web_port}/wall (same login)")
        print(f"demo: {len(stack.units)} simulated units play their scenarios for {seconds:g} s")
        print(f"  {'time':<8}  {'unit':<12} {'kind':<10} {'sensor':<15} {'state':<10}")
        started = time.monotonic()
        for unit in stack.units:
            stack.start_agent(unit, seconds)
        night = _night(stack, watch, started, seconds)
        produced = {u.device: stack.produced(u.device) for u in stack.units}
        stored = _wait_stored(stack, produced, timeout=20)
        stop_follow.set()
        time.sleep(1.0)  # the last alert changes reach the watcher
        _summary(stack, produced, stored, watch, sink)
        return 0 if prove(stack, night) else 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping everything", file=sys.stderr)
        return 130
    except StartError as exc:
        print(f"demo: a part did not start:\n{exc}", file=sys.stderr)
        return 1
    finally:
        stop_follow.set()
        if watch is not None:
            watch.stop()
        stack.stop_all()
        sink.stop()


def _enrol(stack: Stack) -> None:
    """The units enrol as on a real site: `jaga-agent enroll --token-file` with the token of
    their bundle against the running enrolment endpoint; then every file outside the unit
    folders (registry, bundles, server folders) is searched for a unit's private key."""
    server = stack.start_enrolment()
    print(f"demo: enrolment endpoint {server.url}; each unit makes its key and enrols")
    stack.enrol_units()
    enrolled, leaked = stack.enrolment_check()
    print(
        f"enrolment: {enrolled} units enrolled with one-time tokens, {leaked} keys left their units"
    )


def demo_web(port: int, password: str) -> dict[str, object]:
    """The collector's [web] for the demo: the guard post's page on loopback, one guard."""
    from broker.web.passwords import hash_password

    return {
        "bind": f"127.0.0.1:{port}",
        "accounts": [
            {
                "name": "budi",
                "full_name": "Budi Santoso",
                "role": "guard",
                "sites": ["bangka-barat"],
                "password_hash": hash_password(password),
            }
        ],
    }


def demo_alerts(notify_url: str) -> dict[str, object]:
    """The collector's [alerts] for the demo: armed by hand, short windows, one webhook."""
    return {
        "sites": {
            "bangka-barat": {
                "exit_delay_s": 2,
                "entry_delay_s": 10,
                "posts": [
                    {"device": "pos-jaga-01", "sensor": "patroli", "every_min": 0.5, "grace_min": 0}
                ],
                "thresholds": {"heartbeat_s": 5, "offline_after_beats": 3},
                # The night's armed zone (#18): every door and PIR of the three units.
                "zones": [
                    {"name": "perimeter", "members": ["gudang-01", "gudang-02", "pos-jaga-01"]}
                ],
            }
        },
        "notify": {"routes": [{"urls": [notify_url]}], "cooldown_s": 300},
        "resume_grace_s": 0,
    }


BYPASSED = "pos-jaga-01/pintu-pos"
"""The sensor the demo's operator bypasses for the night (the guards' own door)."""

# The narration speaks Indonesian unless DEMO_LANGUAGE=en (the guard post's two languages).
LANG = i18n.language(os.environ.get("DEMO_LANGUAGE"))


def _say(msgid: str, **params: str) -> None:
    """One line of the story in LANG (msgids marked with N_, `{name}` fields from params)."""
    text = i18n.translator(LANG).gettext(msgid).format(**params)
    print(f"  {time.strftime('%H:%M:%S')}  ** {text}", flush=True)


def _night(stack: Stack, watch: SiteWatch, started: float, seconds: float) -> Night:
    """The night shift: the site is armed; later one unit loses its network for a while (until
    the collector raises unit-offline, and at least MIN_PAUSE_S: a gap to `audit quiet`)."""
    night = Night()
    time.sleep(min(3.0, seconds / 10))
    config = stack.root / "collector" / "collector.toml"
    armed = jaga(
        "jaga-collector", "arm", stack.site, "--zone", "perimeter", "--by", "demo",
        "--config", config, check=False,
    )  # fmt: skip
    night.armed_ns = time.time_ns() if armed.returncode == 0 else None
    said = armed.stdout.strip() or armed.stderr.strip()
    _say(N_("operator demo arms the site: {said}"), said=said)
    # The guards come and go by the post's door all night: bypassed for the demo's length.
    bypassed = jaga(
        "jaga-collector", "bypass", stack.site, BYPASSED, "--for", f"{int(seconds) + 60}s",
        "--reason", "pintu pos dipakai penjaga", "--by", "demo", "--config", config, check=False,
    )  # fmt: skip
    said = bypassed.stdout.strip().splitlines()[-1].strip() if bypassed.returncode == 0 else ""
    _say(
        N_("operator demo bypasses {sensor}: {said}"),
        sensor=BYPASSED,
        said=said or bypassed.stderr.strip(),
    )
    cut_at = started + seconds * 0.35
    victim = stack.agents.get(night.paused_device)
    deadline = started + seconds + 30
    cut = False
    while any(a.running for a in stack.agents.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
        if victim is None or not victim.running:
            continue
        if not cut and time.monotonic() >= cut_at:
            victim.pause()  # no FIN: the unit just goes silent, as a cut cable does
            night.paused_ns, cut = time.time_ns(), True
            unit = night.paused_device
            _say(N_("{unit} loses its network (process paused, no goodbye)"), unit=unit)
        elif cut and watch.raised("unit-offline") and night.long_enough(time.time_ns()):
            victim.resume()
            night.resumed_ns, victim = time.time_ns(), None
            _say(N_("{unit} is back on the network"), unit=night.paused_device)
    if victim is not None and cut:
        victim.resume()
        night.resumed_ns = time.time_ns()
    return night


def _wait_stored(stack: Stack, produced: dict[str, int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        stored = stack.stored()
        if all(stored.get(d, 0) >= n for d, n in produced.items()) or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


def _summary(
    stack: Stack,
    produced: dict[str, int],
    stored: dict[str, int],
    watch: SiteWatch,
    sink: NotificationSink,
) -> None:
    assert stack.influx is not None
    rows = stack.influx.query(
        'SELECT count("state") FROM "event" WHERE "site" = '
        f'\'{stack.site}\' GROUP BY "device", "kind"',
        db=DATABASE,
    )
    kinds: dict[str, dict[str, int]] = {}
    for r in rows:
        kinds.setdefault(str(r["device"]), {})[str(r["kind"])] = int(r["count"])
    print("\ndemo: read back from InfluxDB")
    print(f"  {'unit':<12} {'produced':>8} {'stored':>7}  by kind")
    for device, n in produced.items():
        by_kind = ", ".join(f"{k} {v}" for k, v in sorted(kinds.get(device, {}).items()))
        print(f"  {device:<12} {n:>8} {stored.get(device, 0):>7}  {by_kind}")
    audit = stack.collector_cli("audit", "verify", "--site", stack.site)
    for line in audit.stdout.splitlines():
        plain = line.startswith(("verified:", "evidence:"))
        print(line if plain else f"audit: {line}")
    if audit.returncode not in (0, 1):
        print(f"audit: failed to run: {audit.stderr.strip()}")
    _witness(stack)
    _custody(stack, watch)
    alerts = watch.raised()
    by_rule: dict[str, int] = {}
    for a in alerts.values():
        by_rule[a.rule] = by_rule.get(a.rule, 0) + 1
    print(f"demo: alerts seen on jaga/v1/{stack.site}/alert/#")
    for a in sorted(alerts.values(), key=lambda a: a.raised_at):
        title = alert_text(a, LANG).title  # from the alert's msgid and parameters
        print(f"  {a.severity.value:<8} {a.rule:<14} {a.device:<12} x{a.count:<3} {title}")
    print(f"notifications: {len(sink.received)} delivered to the local webhook")
    lat = sorted(watch.latencies_ms(("forced-door", "intrusion")))
    p99 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.0f}" if lat else "n/a"
    print(
        f"alerts: {len(alerts)} raised, {by_rule.get('forced-door', 0)} forced-door, "
        f"{by_rule.get('unit-offline', 0)} unit-offline, {by_rule.get('patrol-missed', 0)} "
        f"patrol-missed, pin-to-alert p99 {p99} ms"
    )
    total = sum(stored.get(d, 0) for d in produced)
    lost = sum(max(0, n - stored.get(d, 0)) for d, n in produced.items())
    units = sum(1 for d in produced if stored.get(d, 0))
    print(f"demo: {total} events stored in InfluxDB from {units} units, {lost} lost")
    _phone(stack, watch, sink)


def _phone(stack: Stack, watch: SiteWatch, sink: NotificationSink) -> None:
    """What a guard's phone got: the camera alarms (forced door, intrusion at a unit with a
    camera) whose notification brought the trigger's still, and how long after the trigger
    (the unit's clock) the picture reached the phone's webhook."""
    cameras = {u.device for u in stack.units if "--camera" in u.wiring}
    alarms = [
        a.id
        for a in watch.raised().values()
        if a.rule in ("forced-door", "intrusion") and a.device in cameras
    ]
    first: dict[str, int] = {}
    deadline = time.monotonic() + 15  # the last alarm's still may be on its way
    while time.monotonic() < deadline:
        first = {}
        for at, alert_id, _ in sink.pictures():
            first.setdefault(alert_id, at)
        if all(a in first for a in alarms):
            break
        time.sleep(0.5)
    delays = []
    for alert_id in alarms:
        trigger = watch.trigger_ts(alert_id)
        if alert_id in first and trigger is not None:
            delays.append((first[alert_id] - trigger) / 1e9)
    delays.sort()
    p95 = f"{delays[max(0, math.ceil(len(delays) * 0.95) - 1)]:.1f}" if delays else "n/a"
    pictured = sum(1 for a in alarms if a in first)
    print(
        f"phone: {pictured} of {len(alarms)} camera alarms notified with their picture, "
        f"trigger->picture p95 {p95} s"
    )


def _witness(stack: Stack) -> None:
    """The independent witness's own count, from its own log (`jaga-witness status`)."""
    if stack.witness is None:
        return
    config = stack.witness.config
    said = jaga("jaga-witness", "status", "--config", config, check=False)
    print(said.stdout.strip() or f"witness: status failed: {said.stderr.strip()}")


def _custody(stack: Stack, watch: SiteWatch) -> None:
    """Export the first forced-door alarm's evidence and check it as an auditor would: with
    the export's own verify.sh (openssl, sha256sum) against the fingerprint of the CA this
    demo made (`jaga-provision ca fingerprint`), never against the CA inside the export, and
    the witness's (`jaga-witness fingerprint`), whose cosignatures the export carries."""
    forced = sorted(
        (a for a in watch.raised("forced-door").values() if a.event_id),
        key=lambda a: a.raised_at,
    )
    if not forced:
        print("custody: no forced-door alarm to export")
        return
    event_id = str(forced[0].event_id)
    folder = stack.root / "evidence" / event_id
    made = stack.collector_cli("evidence", "export", event_id, folder)
    if made.returncode != 0:
        print(f"custody: evidence export failed: {made.stderr.strip()}")
        return
    pin = jaga("jaga-provision", "--dir", stack.registry, "ca", "fingerprint").stdout.strip()
    # The witness's fingerprint as it published it: its cosignatures must cover the events.
    witnesses = []
    if stack.witness is not None:
        home = stack.witness.config.parent
        said = jaga("jaga-witness", "fingerprint", "--dir", home, check=False)
        witnesses = said.stdout.split()[:1]
    check = subprocess.run(
        ["sh", str(folder / "verify.sh"), pin, *witnesses],
        capture_output=True,
        text=True,
        check=False,
    )
    shown = folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder
    passed = re.search(
        r"RESULT: all checks passed: (\d+) events, (\d+) pictures, (\d+) cosignatures",
        check.stdout,
    )
    if check.returncode != 0 or passed is None:
        last = (check.stdout.strip().splitlines() or [check.stderr.strip()])[-1]
        print(f"custody: {shown}: verify.sh failed: {last}")
        return
    events, pictures, cosignatures = passed.groups()
    print(
        f"custody: {shown}: {events} events, {pictures} pictures, {cosignatures} "
        "cosignatures; verify.sh passed"
    )


if __name__ == "__main__":
    sys.exit(main())
