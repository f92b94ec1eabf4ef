"""A year of unit certificates in a few minutes: enrolment, renewal through an outage of the
enrolment endpoint, revocation, against the real endpoint and the real broker (#19).

    .venv/bin/python -m bench.lifecycle [--quick]

What runs for real: Mosquitto (broker-config's mutual TLS, ACL, CRLs, dynamic security), the
enrolment endpoint (provisioning.est_server.EstServer over HTTPS with the broker's certificate;
its authority judges every request at the simulated time), the units' own renewal loop
as systemd/jaga-agent-renew.timer runs it on a unit: every 6 hours (+ up to 30 min random
delay) `jaga-agent renew` looks at the certificate (agent.renewal.due_for: 2/3 of the lifetime
with its per-certificate jitter) and, when due, renews (agent.renewal.renew_with_retries: a new
key over EST with TLS client authentication, tenacity backoff while the endpoint is away, never
giving up; a refusal ends the run and the timer tries again later), the CA (root + issuing CA,
both made at the simulated start), InfluxDB and the collector.

What is simulated, and how:

- time: a simulated year ending now. One clock drives the endpoint's authority (validity
  of what it issues, token expiry, grace and lineage rules) and every unit's timer, through
  the seams they already have (`now=` / `sleep=`). A discrete-event driver runs each unit's
  timer loop in its own thread and advances the clock to the earliest wake-up once every unit
  sleeps; HTTPS requests happen while the clock stands still.
- clock skew: each unit's clock is off by a fixed amount in ±5 minutes.
- the outage: the endpoint is shut down (port closed: connection refused) for 3 simulated
  days from day 99, when most units' fifth renewal falls due; they retry with backoff.
- connectivity: Mosquitto cannot be given a simulated time, so a unit's connection is judged
  with cryptography: every simulated day (at noon) each unit "reconnects" with the certificate
  it holds: the leaf must be valid at that moment and chain to the issuing CA and the root,
  both valid then. Between the daily checks nothing can be missed either: at each renewal the
  certificate being replaced must still have been valid (a gap would count). At the end (the
  simulated year ends now) every unit connects for real, with the certificate its timer last
  installed, to the real broker. units_lost_connectivity counts units that failed any of these.
- enrolment latency (enrol_s_p95) is real time: a unit's bundle token, `jaga-agent enroll
  --token-file` against `jaga-provision enrol-server`, `jaga-agent simulate` started, until its
  first event is stored in InfluxDB by the collector.
- revocation (revocation_kick_s): real time. A unit holds a live MQTT session; it is revoked
  (the code of `device revoke`) at a random moment of the server's 30-second broker-kick timer,
  whose next tick cuts the session (the dynamic-security plugin); measured until paho sees the
  disconnect. Its renewal is then tried and must be refused.
- provision_2000_s comes from bench.provision's last result (bench/results/provision.json).
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import shutil
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from paho.mqtt.enums import CallbackAPIVersion

from agent.est_client import EstError, install, request_certificate
from agent.renewal import UnitTls, due_for, renew, renew_with_retries
from bench.report import RESULTS, Report, Row, parse_args, workdir
from devstack.stack import SCENARIOS, Stack, UnitSpec, jaga
from provisioning.ca import CertificateAuthority
from provisioning.est import EnrolmentAuthority
from provisioning.est_server import EstServer, serve_in_thread, server_context
from provisioning.kick import kick, revoked_usernames
from provisioning.register import add_device, add_site
from provisioning.registry import Registry
from provisioning.tokens import issue_token
from provisioning.wiring import parse_wiring

SITE = "s1"
CERT_DAYS = 30
OUTAGE_START_DAY = 99
OUTAGE_DAYS = 3
SKEW_S = 300.0
KICK_TIMER_S = 30.0
TIMER_BOOT_S = 600.0
TIMER_EVERY_S = 6 * 3600.0
TIMER_RANDOM_S = 1800.0
"""systemd/jaga-agent-renew.timer: OnBootSec=10min, OnUnitInactiveSec=6h,
RandomizedDelaySec=30min."""
WIRING = ("--door", "17:pintu-utama", "--pir", "27:lorong", "--tamper", "22")
log = logging.getLogger("bench.lifecycle")


class SimOver(Exception):
    """Raised in a unit's thread when the simulated year is over."""


class Endpoint:
    """The real HTTPS endpoint on a fixed port, which can be taken away and brought back."""

    def __init__(self, registry: Registry, authority: EnrolmentAuthority, port: int) -> None:
        self.registry = registry
        self.authority = authority
        self.port = port
        self.server: EstServer | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def up(self) -> None:
        self.server = EstServer(
            ("127.0.0.1", self.port), self.authority, server_context(self.registry)
        )
        serve_in_thread(self.server)

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class SimClock:
    """Discrete-event time for threads that sleep through `sleeper(i)`: the driver advances
    `now` to the earliest wake-up once every thread sleeps (or has ended)."""

    def __init__(self, start: datetime, threads: int) -> None:
        self.now = start
        self.threads = threads
        self.over = False
        self._cv = threading.Condition()
        self._waiting: dict[int, datetime] = {}
        self._ended: set[int] = set()
        self._events = [threading.Event() for _ in range(threads)]

    def sleeper(self, i: int) -> Callable[[float], None]:
        def sleep(seconds: float) -> None:
            event = self._events[i]
            with self._cv:
                if self.over:
                    raise SimOver
                event.clear()
                self._waiting[i] = self.now + timedelta(seconds=max(0.0, seconds))
                self._cv.notify_all()
            event.wait()
            if self.over:
                raise SimOver

        return sleep

    def ended(self, i: int) -> None:
        with self._cv:
            self._ended.add(i)
            self._waiting.pop(i, None)
            self._cv.notify_all()

    def settle(self) -> dict[int, datetime]:
        """Wait until every thread sleeps or has ended; their wake-up times."""
        with self._cv:
            self._cv.wait_for(lambda: len(self._waiting) + len(self._ended) >= self.threads)
            return dict(self._waiting)

    def wake_due(self) -> None:
        with self._cv:
            due = [i for i, at in self._waiting.items() if at <= self.now]
            for i in due:
                del self._waiting[i]
                self._events[i].set()

    def finish(self) -> None:
        with self._cv:
            self.over = True
            for event in self._events:
                event.set()


@dataclass
class Unit:
    device: str
    folder: Path
    skew: timedelta
    tls: UnitTls
    renewals: int = 0
    lost: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


def chain_of(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def valid_at(chain: list[x509.Certificate], root: x509.Certificate, at: datetime) -> str | None:
    """Why the broker would refuse this chain at `at` (its time), or None: each certificate
    valid then, each signed by the next, the last by the root."""
    for cert, issuer in zip(chain, [*chain[1:], root], strict=True):
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            name = cert.subject.rfc4514_string()
            return f"{name} not valid at {at:%Y-%m-%d %H:%M} (until {cert.not_valid_after_utc})"
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return f"{cert.subject.rfc4514_string()} not signed by {issuer.subject}"
    return None


class RetryCounter(logging.Handler):
    """Counts the renewal loop's 'endpoint unreachable; retrying' warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.units: set[str] = set()
        """Units (their loop's thread is named after them) that had to wait for the endpoint."""

    def emit(self, record: logging.LogRecord) -> None:
        if "unreachable" in record.getMessage():
            self.count += 1
            self.units.add(record.threadName or "")


def simulate_year(
    registry: Registry,
    endpoint: Endpoint,
    units: list[Unit],
    start: datetime,
    end: datetime,
    outage: tuple[int, int],
) -> dict[str, float]:
    """Run every unit's renewal timer from start to end (simulated; days counted from start);
    judge connectivity daily."""
    clock = SimClock(start, len(units))
    endpoint.authority.clock = lambda: clock.now
    root = registry.ca_certificate()
    days = (end - start).days
    outage_from = start + timedelta(days=outage[0])
    outage_to = outage_from + timedelta(days=outage[1])
    min_margin = [timedelta(days=CERT_DAYS)]

    def on_renewed(unit: Unit, previous: list[x509.Certificate]) -> Callable[[object], None]:
        def renewed(_cert: object) -> None:
            unit.renewals += 1
            why = valid_at(previous, root, clock.now)
            if why is not None:
                unit.lost.append(f"replaced after expiry: {why}")
            else:
                min_margin[0] = min(min_margin[0], previous[0].not_valid_after_utc - clock.now)
            previous[:] = chain_of(unit.tls.cert)

        return renewed

    def main(i: int, unit: Unit) -> None:
        renewed = on_renewed(unit, chain_of(unit.tls.cert))
        sleep = clock.sleeper(i)
        rng = random.Random(unit.device)
        try:
            sleep(TIMER_BOOT_S)
            while True:  # systemd/jaga-agent-renew.timer and its `jaga-agent renew` run
                due, _ = due_for(unit.tls, clock.now + unit.skew)
                if due:
                    try:
                        renewed(renew_with_retries(unit.tls, sleep=sleep))
                    except EstError as exc:  # the run ends with status 1; the timer goes on
                        unit.refusals.append(str(exc))
                sleep(TIMER_EVERY_S + rng.uniform(0, TIMER_RANDOM_S))
        except SimOver:
            pass
        except Exception as exc:  # anything else: the unit's renewal is broken
            unit.lost.append(f"renewal failed: {exc!r}")
        finally:
            clock.ended(i)

    threads = [
        threading.Thread(target=main, args=(i, u), daemon=True, name=u.device)
        for i, u in enumerate(units)
    ]
    for t in threads:
        t.start()
    checks: list[datetime] = [start + timedelta(days=d, hours=12) for d in range(days)]
    heapq.heapify(checks)
    boundaries = [outage_from, outage_to]
    daily = 0
    try:
        while True:
            waits = clock.settle()
            nxt = min([*waits.values(), *(checks[:1]), *boundaries, end])
            if nxt >= end:
                break
            clock.now = max(clock.now, nxt)
            if boundaries and clock.now >= boundaries[0]:
                at = boundaries.pop(0)
                if at == outage_from:
                    endpoint.down()
                else:
                    endpoint.up()
            while checks and checks[0] <= clock.now:
                heapq.heappop(checks)
                daily += 1
                for unit in units:
                    why = valid_at(chain_of(unit.tls.cert), root, clock.now)
                    if why is not None:
                        unit.lost.append(f"daily reconnect refused: {why}")
            clock.wake_due()
    finally:
        clock.finish()
        for t in threads:
            t.join(timeout=30)
        endpoint.authority.clock = lambda: datetime.now(UTC)
        if endpoint.server is None:
            endpoint.up()
    return {"daily_checks": daily, "min_margin_days": min_margin[0].total_seconds() / 86400}


def mqtt_client(unit: Unit) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unit.device, protocol=mqtt.MQTTv5)
    client.tls_set(
        ca_certs=str(unit.tls.ca), certfile=str(unit.tls.cert), keyfile=str(unit.tls.key)
    )
    return client


def connects(unit: Unit, port: int, timeout: float = 10.0) -> bool:
    """Connect for real to the broker with the unit's certificate: CONNACK success?"""
    client = mqtt_client(unit)
    result: list[bool] = []
    done = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object) -> None:
        result.append(not rc.is_failure)
        done.set()

    client.on_connect = on_connect
    client.on_connect_fail = lambda *_a: done.set()
    try:
        client.connect("127.0.0.1", port, keepalive=30)
    except (OSError, ssl.SSLError):
        return False
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return bool(result and result[0])


def revocation_kicks(
    registry: Registry, port: int, units: list[Unit], rng: random.Random
) -> tuple[list[float], int]:
    """Revoke each unit at a random moment of the server's kick timer (every 30 s); seconds
    from the revocation to the unit's session dropping, and how many renewals were refused."""
    sessions: dict[str, tuple[mqtt.Client, threading.Event]] = {}
    for unit in units:
        client = mqtt_client(unit)
        connected, dropped = threading.Event(), threading.Event()
        client.on_connect = lambda *_a, ev=connected: ev.set()
        client.on_disconnect = lambda *_a, ev=dropped: ev.set()
        client.reconnect_delay_set(60, 120)  # a reconnect must not hide the drop
        client.connect("127.0.0.1", port, keepalive=30)
        client.loop_start()
        if not connected.wait(15):
            raise RuntimeError(f"{unit.device} did not connect for the revocation test")
        sessions[unit.device] = (client, dropped)
    stop = threading.Event()

    def timer() -> None:  # the server's broker-kick timer
        while not stop.wait(KICK_TIMER_S):
            names = revoked_usernames(registry)
            if names:
                kick(registry, "127.0.0.1", port, names)

    ticking = threading.Thread(target=timer, daemon=True)
    ticking.start()
    # Spread over the timer's period (one draw in each of len(units) equal slices): the last
    # lands near the end of a period, so the worst case shows.
    n = len(units)
    offsets = [KICK_TIMER_S * (k + rng.random()) / n for k in range(n)]
    started = time.monotonic()
    took: list[float] = []
    ca = CertificateAuthority(registry)
    revoked_at: dict[str, float] = {}
    for unit, offset in zip(units, offsets, strict=True):
        time.sleep(max(0.0, started + offset - time.monotonic()))
        revoked_at[unit.device] = time.monotonic()
        ca.revoke_device(SITE, unit.device, by="bench")
    for unit in units:
        client, dropped = sessions[unit.device]
        if dropped.wait(3 * KICK_TIMER_S):
            took.append(time.monotonic() - revoked_at[unit.device])
        else:
            took.append(float("inf"))
        client.loop_stop()
    stop.set()
    refused = 0
    for unit in units:
        try:
            renew(unit.tls)
        except EstError:
            refused += 1
    return took, refused


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    args = parse_args("A simulated year of unit certificates against the real endpoint and broker.")
    n_units = 10 if args.quick else 50
    days = 120 if args.quick else 365
    outage_day = 39 if args.quick else OUTAGE_START_DAY
    n_enrol = 3 if args.quick else 10
    n_revoke = 2 if args.quick else 3
    rng = random.Random(19)
    logging.basicConfig(level=logging.ERROR)
    retries = RetryCounter()
    renewal_log = logging.getLogger("agent.renewal")
    renewal_log.setLevel(logging.WARNING)
    renewal_log.propagate = False  # counted, not printed
    renewal_log.addHandler(retries)
    params = {
        "units": n_units, "simulated_days": days, "cert_days": CERT_DAYS,
        "outage": f"days {outage_day}-{outage_day + OUTAGE_DAYS}", "skew_s": SKEW_S,
        "enrol_units": n_enrol, "revoked_units": n_revoke, "kick_timer_s": KICK_TIMER_S,
    }  # fmt: skip
    report = Report("lifecycle", args.quick, params)
    root = workdir("lifecycle")
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)

    # The site as the technician makes it, a year ago: root, issuing CA, site, units.
    registry = Registry(root / "registry")
    made = start - timedelta(days=2)
    ca = CertificateAuthority.init(registry, "Jaga lifecycle bench", now=made)
    ca.create_issuing(now=made)
    enrol_specs = tuple(
        UnitSpec(f"baru-{n:02d}", WIRING, SCENARIOS / "gudang-01.toml") for n in range(n_enrol)
    )
    stack = Stack(root, units=enrol_specs, site=SITE, registry_dir=registry.root, enrol=True)
    add_site(registry, SITE, name="bench", timezone="Asia/Jakarta", broker_host="127.0.0.1",
             broker_port=stack.broker_port)  # fmt: skip
    sensors = parse_wiring(doors=("17:pintu",))
    year_units = [f"unit-{n:03d}" for n in range(n_units)]
    for device in year_units:
        add_device(registry, SITE, device, sensors, pin_factory="mock", now=start)
    for spec in enrol_specs:
        bundle = stack.bundle_path(spec.device)
        jaga("jaga-provision", "--dir", registry.root, "device", "add", SITE, spec.device,
             *spec.wiring, "--pin-factory", "mock", "--bundle", bundle)  # fmt: skip
    for identity in ("main", "kick"):
        jaga("jaga-provision", "--dir", registry.root, "identity", "add", "collector", identity)
    ca.refresh_crl()  # the broker's CRLs valid now (the CA was made a year ago)
    stack.configure_broker()
    stack.start_broker()
    port = stack.broker_port
    try:
        # Enrolment, in real time: token to the unit's first event stored in InfluxDB.
        stack.start_influx()
        stack.start_collector()
        server = stack.start_enrolment()
        enrol_s: list[float] = []
        for spec in enrol_specs:
            folder = stack.unit_dir(spec.device)
            t0 = time.monotonic()
            jaga("jaga-agent", "enroll", "--config", folder / "agent.toml", "--token-file",
                 folder / "enrol.token", "--server", server.url)  # fmt: skip
            stack.start_agent(spec)
            while stack.stored().get(spec.device, 0) < 1:
                if time.monotonic() - t0 > 180:
                    raise RuntimeError(f"{spec.device}: no event stored within 180 s")
                time.sleep(0.1)
            enrol_s.append(time.monotonic() - t0)
            stack.agents[spec.device].stop()
        server.stop()
        if stack.collector is not None:
            stack.collector.stop()

        # The year: every unit enrols at the start with its token, then renews by itself.
        authority = EnrolmentAuthority(registry, days=CERT_DAYS)
        endpoint = Endpoint(registry, authority, server.port)
        endpoint.up()
        units: list[Unit] = []
        for n, device in enumerate(year_units):
            folder = root / "units" / device
            folder.mkdir(parents=True)
            shutil.copy(registry.ca_cert_path, folder / "ca.crt")
            at = start + timedelta(minutes=5 * n)
            authority.clock = lambda at=at: at
            token = issue_token(registry, SITE, device, now=at).token
            tls = UnitTls(endpoint.url, SITE, device, folder / "ca.crt", folder / "device.crt",
                          folder / "device.key")  # fmt: skip
            install(request_certificate(endpoint.url, SITE, device, tls.ca, token=token),
                    tls.key, tls.cert)  # fmt: skip
            skew = timedelta(seconds=rng.uniform(-SKEW_S, SKEW_S))
            units.append(Unit(device, folder, skew, tls))
        wall = time.monotonic()
        # to `end`, which was now when the bench began: every certificate is valid in real time
        sim = simulate_year(
            registry, endpoint, units, start + timedelta(minutes=5 * n_units), end,
            (outage_day, OUTAGE_DAYS),
        )  # fmt: skip
        sim_wall = time.monotonic() - wall

        # The year ends now: every unit connects for real with what its loop installed.
        for unit in units:
            if not connects(unit, port):
                unit.lost.append("refused by the real broker at the end")
        kicks, refused = revocation_kicks(registry, port, units[:n_revoke], rng)
        endpoint.down()
    finally:
        stack.stop_all()

    renewals = sum(u.renewals for u in units)
    lost = [u for u in units if u.lost]
    provision = json.loads((RESULTS / "provision.json").read_text())["figures"]
    provision_s = provision.get("provision_2000_s")
    figures = {
        "units": n_units,
        "simulated_days": days,
        "ca_outage_days": OUTAGE_DAYS,
        "renewals": renewals,
        "units_lost_connectivity": len(lost),
        "revocation_kick_s": round(max(kicks), 2),
        "enrol_s_p95": round(p95(enrol_s), 2),
        "provision_2000_s": provision_s,
    }
    for key, value in figures.items():
        report.figure(key, value)
    extra = {
        "renewals_per_unit": round(renewals / n_units, 2),
        "retries_while_endpoint_away": retries.count,
        "units_that_waited_out_the_outage": len(retries.units),
        "min_margin_days_at_renewal": round(sim["min_margin_days"], 2),
        "daily_checks": sim["daily_checks"],
        "revocation_kick_s_each": [round(k, 2) for k in kicks],
        "revoked_renewals_refused": refused,
        "renewals_refused_unrevoked": sum(len(u.refusals) for u in units),
        "enrol_s_each": [round(s, 2) for s in enrol_s],
        "enrol_s_median": round(statistics.median(enrol_s), 2),
        "simulation_wall_s": round(sim_wall, 1),
    }
    for key, value in extra.items():
        report.figure(key, value)
    report.extra["lost_units"] = {u.device: u.lost[:3] for u in lost}
    report.row(Row("units", n_units, "", target=">= 50" if not args.quick else None,
                   met=n_units >= 50 if not args.quick else None, key=True))  # fmt: skip
    report.row(Row("simulated_days", days, "d", key=True))
    report.row(Row("ca_outage_days", OUTAGE_DAYS, "d", key=True))
    report.row(Row("renewals", renewals, "", key=True))
    report.row(Row("units_lost_connectivity", len(lost), "", target="0", met=not lost, key=True))
    report.row(Row("revocation_kick_s", figures["revocation_kick_s"], "s", target="<= 60 s",
                   met=max(kicks) <= 60, key=True))  # fmt: skip
    report.row(Row("enrol_s_p95", figures["enrol_s_p95"], "s", target="<= 60 s",
                   met=p95(enrol_s) <= 60, key=True))  # fmt: skip
    report.row(Row("provision_2000_s", provision_s, "s", target="<= 30 s",
                   met=None if provision_s is None else provision_s <= 30, key=True))  # fmt: skip
    report.row(Row("revoked renewals refused", refused, "", target=f"{n_revoke}",
                   met=refused == n_revoke))  # fmt: skip
    report.note(
        "time simulated (one clock for the endpoint's authority and every unit's renew timer; "
        "units skewed +-5 min); connectivity judged daily with cryptography at the simulated "
        "time and at each renewal, and for real against Mosquitto at the end (the year ends "
        "now); enrolment and revocation timed in real time; provision_2000_s from "
        "bench/results/provision.json"
    )
    report.finish()


if __name__ == "__main__":
    main()
