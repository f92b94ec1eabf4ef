"""`make rehearse`: the README's "Run it for real" — a unit on a Pi and the central server —
run as written, on machines booted with systemd as PID 1.

Both machines are Debian bookworm (what Raspberry Pi OS bookworm is built on) made by
debootstrap and booted under systemd-nspawn, sharing this machine's network: `gudang-01`
(user `pi`) and `jaga` (user `admin`). The provisioning laptop is this checkout (a fresh
`git clone` of HEAD, this venv on PATH).

The README's command blocks are read from README.md and run unchanged, in the order a
technician follows them (the Pi section says to update the server before the unit is
installed: the unit enrols there with its bundle's one-time token), each where its paragraph
says: laptop, Pi or server. What differs, and how:

- `ssh` and `scp` to pi@gudang-01.local and admin@jaga.example.internal are shell functions
  that enter the containers; the unit finds jaga.example.internal in /etc/hosts;
- the unit has no GPIO, so `jaga-provision device add` gets `--pin-factory mock`
  (gpiozero's MockFactory; the only fake, at the hardware boundary);
- python3-lgpio and python3-picamera2 come from Raspberry Pi's archive, which this machine
  cannot reach: the install script says it skips them;
- InfluxData's packages cannot be reached either: the server's InfluxDB at 127.0.0.1:8086 is
  Debian's 1.6 on this machine behind devstack's forwarder, which adds 1.8's /api/v2/write;
- this machine's clock is not NTP-synchronised, so the selftest's clock row fails (expected).

Then it checks what a technician would: the unit enrolled in its one install (key made on the
unit, certificate and chain from the server's enrolment endpoint, the token spent, the unit's
key in no file of the laptop's or the server's registry), both services active and saying so,
the unit's events in InfluxDB, second runs that change nothing, systemd's watchdog restarting a hung
agent, a SIGKILLed agent back with its outbox intact, journal levels, and the hardening
scores on the booted machines. Needs root, debootstrap and systemd-container (installed when
missing), the Debian mirror and PyPI, and ports 8883, 8443 and 8086 free. About 4 minutes.
Exit status: 0 as written, 1 a step failed, 3 this machine cannot host the rehearsal.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.enrolment import keys_outside_units
from devstack.forwarder import V2WriteForwarder
from devstack.influx import InfluxDB
from devstack.process import StartError
from devstack.stack import DATABASE, jaga

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PI_SECTION = ("### A unit on a Raspberry Pi", "### The central server")
SERVER_SECTION = ("### The central server", "### What systemd checks")
SITE = "bangka-barat"
DEVICE = "gudang-01"
BROKER_HOST = "jaga.example.internal"
CACHE = Path(os.environ.get("JAGA_REHEARSAL_CACHE", "/var/tmp/jaga-rehearsal"))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What Raspberry Pi OS Lite (or a Debian server) has before anyone touches it, near enough.
BASE_PACKAGES = (
    "systemd,systemd-sysv,systemd-timesyncd,dbus,sudo,ca-certificates,python3,iproute2,procps,less"
)
PLACES = (("laptop", "laptop"), ("On the Pi", "pi"), ("On the server", "server"))


class RehearsalFailed(RuntimeError):
    """A step of the README did not do what the README says."""


class RehearsalUnavailable(RuntimeError):
    """This machine cannot host the rehearsal (no mirror, no container): nothing was judged."""


@dataclass(frozen=True)
class Block:
    where: str  # "laptop", "pi" or "server"
    text: str


def section_blocks(readme: str, section: tuple[str, str]) -> list[Block]:
    """A section's ```sh blocks, each placed by the last paragraph before it."""
    start = readme.index(section[0])
    text = readme[start : readme.index(section[1], start)]
    parts = text.split("```")
    blocks = []
    for i in range(1, len(parts), 2):
        if not parts[i].startswith("sh\n"):
            continue
        paragraph = parts[i - 1].strip().split("\n\n")[-1]
        where = next((place for words, place in PLACES if words in paragraph), None)
        if where is None:
            raise RehearsalFailed(f"README: cannot tell where this block runs: {paragraph!r}")
        # A block inside a numbered list is indented, its closing fence too.
        code = textwrap.dedent(parts[i].removeprefix("sh\n")).rstrip(" ")
        blocks.append(Block(where, code))
    return blocks


def say(text: str) -> None:
    print(f"rehearse: {text}", flush=True)


# the machines: booted bookworms ---------------------------------------------------------------


def base_image() -> Path:
    """A cached tarball of a minimal bookworm (debootstrap), made once."""
    image = CACHE / "bookworm-minbase.tar"
    if image.exists():
        return image
    CACHE.mkdir(parents=True, exist_ok=True)
    build = CACHE / "build"
    shutil.rmtree(build, ignore_errors=True)
    say("building a bookworm image with debootstrap (once; about a minute)")
    for attempt in (1, 2):  # a mirror hiccup is worth one more try
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", build],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode == 0:
            break
        shutil.rmtree(build, ignore_errors=True)
        if attempt == 2:
            raise RehearsalUnavailable(f"debootstrap failed: {done.stderr[-500:]}")
    partial = image.with_suffix(".partial")
    subprocess.run(["tar", "-C", build, "-cf", partial, "."], check=True)
    partial.rename(image)
    shutil.rmtree(build)
    return image


class Machine:
    """A booted container (systemd as PID 1) with one sudo user, and a way into it."""

    def __init__(self, root: Path, hostname: str, user: str, hosts: str = "") -> None:
        self.hostname = hostname
        self.user = user
        self.rootfs = root / hostname / "rootfs"
        self.log = root / hostname / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self._prepare(hosts)

    def _prepare(self, hosts: str) -> None:
        """A first boot: the sudo user, a hostname, the mirror's CA."""
        self.rootfs.mkdir(parents=True)
        with tarfile.open(base_image()) as tar:
            tar.extractall(self.rootfs, filter="fully_trusted")
        (self.rootfs / "etc/hostname").write_text(f"{self.hostname}\n")
        with (self.rootfs / "etc/hosts").open("a") as fh:  # as Debian's installer has it
            fh.write(f"127.0.1.1\t{self.hostname}\n{hosts}")
        # This machine may reach the package mirrors through its own CA: trust it there too.
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", self.rootfs / "etc/ssl/certs/")
        if Path("/etc/pip.conf").exists():  # the same package index settings, if any
            shutil.copy("/etc/pip.conf", self.rootfs / "etc/pip.conf")
        subprocess.run(
            ["chroot", self.rootfs, "useradd", "--create-home", "--uid", "1000",
             "--shell", "/bin/bash", "--groups", "sudo", self.user],
            check=True,
        )  # fmt: skip
        sudoers = self.rootfs / f"etc/sudoers.d/010_{self.user}-nopasswd"
        sudoers.write_text(f"{self.user} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)

    def boot(self) -> None:
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--boot", "-D", self.rootfs,
             f"--machine={self.hostname}", "--console=pipe"],
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.leader = self._find_leader()
            if self.leader:
                state = self.run("systemctl is-system-running --wait", check=False, timeout=60)
                if state.stdout.strip() in ("running", "degraded"):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RehearsalUnavailable(f"{self.hostname} did not boot; see {self.log}")

    def _find_leader(self) -> int:
        """The container's PID 1: nspawn's child."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            return 0
        return int(pids[0]) if pids else 0

    def enter(self, as_user: bool = False) -> list[str]:
        """A command prefix that runs inside (as the user, in a login shell)."""
        prefix = [
            "nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net",
            "--pid", "--root", "--wd", "--", "/usr/bin/env", "-i", f"PATH={PATH}", "TERM=dumb",
        ]  # fmt: skip
        return [*prefix, "runuser", "--login", self.user, "--command"] if as_user else prefix

    def run(
        self, command: str, *, as_user: bool = False, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        argv = (
            [*self.enter(as_user), command] if as_user else [*self.enter(), "bash", "-c", command]
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RehearsalFailed(
                f"on {self.hostname}: {command}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done

    def unit_property(self, unit: str, name: str) -> str:
        return self.run(f"systemctl show -p {name} --value {unit}").stdout.strip()

    def security(self, unit: str) -> str:
        out = self.run(f"systemd-analyze security {unit} --no-pager", check=False).stdout
        found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\S+ \S+)", out)
        return found[1] if found else out[-300:]

    def shutdown(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # nspawn powers the container off
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# the laptop -----------------------------------------------------------------------------------


def laptop_prelude(home: Path, pi: Machine, server: Machine) -> str:
    """The technician's shell: the README's export, and ssh/scp that reach the containers."""
    hosts = {f"pi@{DEVICE}.local": pi, f"admin@{BROKER_HOST}": server}
    ssh_cases = "\n".join(
        f'        {at}) {shlex.join(m.enter(True))} "$*" ;;' for at, m in hosts.items()
    )
    scp_cases = "\n".join(
        f"        {at}:) home={shlex.quote(str(m.rootfs / 'home' / m.user))} ;;"
        for at, m in hosts.items()
    )
    return f"""
set -euo pipefail
export HOME={shlex.quote(str(home))}
export PATH={shlex.quote(str(REPO / ".venv/bin"))}:$PATH
export JAGA_PROVISION_DIR=~/jaga-provision
cd ~/jaga
# ssh and scp: the unit and the server are containers on this machine.
ssh() {{
    local at="$1"
    shift
    case "$at" in
{ssh_cases}
        *) echo "rehearsal: no host $at" >&2; return 1 ;;
    esac
}}
scp() {{
    local dest="${{@: -1}}" home f
    case "$dest" in
{scp_cases}
        *) echo "rehearsal: cannot copy to $dest" >&2; return 1 ;;
    esac
    for f in "${{@:1:$#-1}}"; do install -o 1000 -g 1000 -m 0644 "$f" "$home/"; done
}}
# No GPIO in the container: the unit reads gpiozero's MockFactory instead of lgpio.
jaga-provision() {{
    if [[ ${{1:-}} == device && ${{2:-}} == add ]]; then
        command jaga-provision "$@" --pin-factory mock
    else
        command jaga-provision "$@"
    fi
}}
"""


class BlockExit(RehearsalFailed):
    def __init__(self, code: int, output: str) -> None:
        super().__init__(f"exit status {code}:\n{output[-3000:]}")
        self.code = code
        self.output = output


def run_block(block: Block, prelude: str, machines: dict[str, Machine], transcript: Path) -> str:
    """Run one README block where it belongs; its output goes to the transcript and back."""
    say(f"{block.where}: " + " ; ".join(line for line in block.text.splitlines() if line))
    if block.where == "laptop":
        argv = ["bash", "-c", prelude + block.text]
    else:
        argv = [*machines[block.where].enter(True), "set -euo pipefail\n" + block.text]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    with transcript.open("a") as fh:
        fh.write(f"\n$ [{block.where}]\n{block.text}{output}[exit {done.returncode}]\n")
    for line in output.splitlines():
        print(f"    {line}", flush=True)
    if done.returncode != 0:
        raise BlockExit(done.returncode, output)
    return output


def only_the_clock_failed(output: str) -> bool:
    """The selftest's table: every FAIL row is the clock's (this machine has no NTP)."""
    failed = [line for line in output.splitlines() if line.startswith("FAIL")]
    return bool(failed) and all(line.split()[1] == "clock" for line in failed)


# the rehearsal --------------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    raise RehearsalFailed(f"{what}: not within {timeout:g} s")


def registry_digest(server: Machine) -> str:
    """The server registry's file contents, hashed (modes and owners left out)."""
    return server.run(
        "cd /etc/jaga/registry && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum"
    ).stdout


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Rehearsal:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.transcript = root / "transcript.txt"
        self.results: list[str] = []
        pi_blocks = section_blocks(README.read_text(), PI_SECTION)
        server_blocks = section_blocks(README.read_text(), SERVER_SECTION)
        shape = [b.where for b in pi_blocks], [b.where for b in server_blocks]
        if shape != (["laptop", "pi"], ["laptop", "server"]):
            raise RehearsalFailed(f"README's sections changed shape: {shape}")
        # The Pi section's order: the server is updated before the unit's install.
        self.blocks = [pi_blocks[0], *server_blocks, pi_blocks[1]]
        self.influx: InfluxDB | None = None
        self.forwarder: V2WriteForwarder | None = None
        self.machines: dict[str, Machine] = {}
        self.prelude = ""

    def stored(self, kind: str = "") -> int:
        assert self.influx is not None
        where = f"\"device\" = '{DEVICE}'" + (f" AND \"kind\" = '{kind}'" if kind else "")
        rows = self.influx.query(f'SELECT count("seq") FROM "event" WHERE {where}', db=DATABASE)
        return int(rows[0]["count"]) if rows else 0

    def run(self) -> list[str]:
        for port in (8883, 8443, 8086):
            if not port_free(port):
                raise RehearsalUnavailable(f"port {port} is taken on this machine")
        home = self.root / "laptop"
        home.mkdir(parents=True)
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(home / "jaga")], check=True)
        registry = home / "jaga-provision"
        # The README's Provisioning section before these: the CA and the site, as written there.
        jaga("jaga-provision", "--dir", registry, "ca", "init", "--name", "Jaga Bangka Barat")
        jaga("jaga-provision", "--dir", registry, "issuing-ca", "create")
        jaga(
            "jaga-provision", "--dir", registry, "site", "add", SITE, "--name",
            "Gudang logistik pemilu Bangka Barat", "--timezone", "Asia/Jakarta",
            "--broker-host", BROKER_HOST,
        )  # fmt: skip
        say("the server's InfluxDB (step 1): Debian's 1.6 here, 1.8's API at 127.0.0.1:8086")
        self.influx = InfluxDB(self.root / "influx").start()
        self.forwarder = V2WriteForwarder(
            self.influx.url, port=8086, version="1.8-compatible (devstack forwarder)"
        ).start()
        say("booting gudang-01 (the unit) and jaga (the server): bookworm, systemd as PID 1")
        pi = Machine(self.root, DEVICE, "pi", hosts=f"127.0.0.1\t{BROKER_HOST}\n")
        server = Machine(self.root, "jaga", "admin")
        self.machines = {"pi": pi, "server": server}
        pi.boot()
        server.boot()
        prelude = self.prelude = laptop_prelude(home, pi, server)
        for block in self.blocks:
            try:
                run_block(block, prelude, self.machines, self.transcript)
            except BlockExit as exc:
                # The unit's install ends with the selftest, and exits with its status.
                if not (block.where == "pi" and only_the_clock_failed(exc.output)):
                    raise
                self.results.append("selftest: every row PASS but the clock (no NTP here)")
        self.check_enrolment(home, pi, server)
        self.check_server(server)
        self.check_unit(pi)
        self.check_watchdog(pi)
        self.check_kill(pi)
        self.check_journal(pi)
        self.check_pool_in_sandbox(server)
        self.results.append(
            f"systemd-analyze security (booted): jaga-agent {pi.security('jaga-agent.service')}, "
            f"jaga-collector {server.security('jaga-collector.service')}"
        )
        return self.results

    def check_enrolment(self, laptop: Path, pi: Machine, server: Machine) -> None:
        """One install enrolled the unit: its key made there and nowhere else, certificate and
        chain from the server's endpoint, the token spent and the enrolment recorded."""
        etc = pi.rootfs / "etc/jaga"
        if not (etc / "device.key").exists() or not (etc / "device.crt").exists():
            raise RehearsalFailed("the unit's install left no key and certificate in /etc/jaga")
        chain = etc.joinpath("device.crt").read_text().count("BEGIN CERTIFICATE")
        if chain < 2:
            raise RehearsalFailed(f"the unit's device.crt holds {chain} certificate, no chain")
        registry = server.rootfs / "etc/jaga/registry"
        log = (registry / "enrolment/log.jsonl").read_text().splitlines()
        enrolled = [line for line in log if '"event": "enrolled"' in line and f'"{DEVICE}"' in line]
        spent = list((registry / "enrolment/tokens" / SITE).glob(f"{DEVICE}.*.used"))
        if not enrolled or '"by": "token"' not in enrolled[-1] or not spent:
            raise RehearsalFailed(f"the server recorded no token enrolment of {DEVICE}:\n{log}")
        leaked = keys_outside_units(laptop, [etc], registry, server.rootfs / "home/admin")
        if leaked.found_elsewhere:
            raise RehearsalFailed(f"the unit's key is also in {leaked.found_elsewhere}")
        self.results.append(
            f"unit, one install: enrolled with its bundle's token at jaga-enrol (chain of {chain}"
            "), the token spent, its key on the unit and in no file of laptop or server"
        )

    def check_server(self, server: Machine) -> None:
        for unit in ("mosquitto.service", "jaga-collector.service", "jaga-enrol.service"):
            if server.unit_property(unit, "ActiveState") != "active":
                raise RehearsalFailed(f"{unit} is not active on the server")
        status = server.unit_property("jaga-collector.service", "StatusText")
        errors = server.run("journalctl -u jaga-collector -p err --no-pager -o cat").stdout
        if errors.strip() or "UNHEALTHY" in status:
            raise RehearsalFailed(f"the collector is not healthy: {status}\n{errors}")
        self.results.append(f"server: mosquitto, jaga-collector active, no error logged: {status}")
        install = "cd ~ && sudo jaga/scripts/install-server.sh --registry jaga-provision"
        stale = server.run(install, as_user=True, check=False)
        if stale.returncode != 1 or "your copy lacks" not in stale.stderr:
            raise RehearsalFailed(
                f"the server took a registry copy older than its own:\n{stale.stdout}{stale.stderr}"
            )
        self.results.append("server, run again with the copy made before the enrolment: refused")
        # As the README says: bring the server's registry back, copy it again, run again.
        pull = re.search(
            r"`(ssh admin@jaga\.example\.internal sudo tar [^`]+)`", README.read_text()
        )
        if pull is None:
            raise RehearsalFailed("README: the command that brings the server's registry back")
        again_copy = (
            f"{pull[1]}\n"
            'tar -czf registry.tar.gz -C "$JAGA_PROVISION_DIR" --exclude=./ca/ca.key '
            "--exclude=device.key --exclude='operator-*.key' .\n"
            f"scp registry.tar.gz admin@{BROKER_HOST}:\n"
        )
        run_block(Block("laptop", again_copy), self.prelude, self.machines, self.transcript)
        server.run("cd ~ && rm -rf jaga-provision && mkdir jaga-provision && tar -xzf "
                   "registry.tar.gz -C jaga-provision", as_user=True)  # fmt: skip
        before = registry_digest(server)
        again = server.run(install, as_user=True, check=False)
        changes = re.search(r"install-server: (\d+) changes", again.stdout)
        if again.returncode != 0 or changes is None:
            raise RehearsalFailed(f"the server's second run:\n{again.stdout}{again.stderr}")
        said = "0 changes"
        if changes[1] != "0":
            # Known: files the enrolment endpoint wrote have modes the script sets again
            # (content unchanged). Said, checked to be modes only, and must settle at once.
            if registry_digest(server) != before:
                raise RehearsalFailed(f"the second run changed the registry:\n{again.stdout}")
            rewrote = re.findall(r"wrote (/etc/jaga/registry/\S+) \(mode", again.stdout)
            third = server.run(install, as_user=True, check=False)
            settled = re.search(r"install-server: (\d+) changes", third.stdout)
            if third.returncode != 0 or settled is None or settled[1] != "0":
                raise RehearsalFailed(f"the server's third run:\n{third.stdout}{third.stderr}")
            said = (
                f"{changes[1]} changes (modes of {len(rewrote)} registry files the enrolment "
                "endpoint wrote, content the same), then 0 changes"
            )
        self.results.append(
            f"server, with its registry brought back and copied again: install run again, {said}"
        )

    def check_pool_in_sandbox(self, server: Machine) -> None:
        """The collector checks signatures in spawned worker processes under load: the unit's
        sandbox must let it. ExecStartPost= runs in that same sandbox, as the same user."""
        dropin = server.rootfs / "etc/systemd/system/jaga-collector.service.d/rehearsal-pool.conf"
        dropin.parent.mkdir(parents=True, exist_ok=True)
        probe = (
            "import concurrent.futures as f, multiprocessing as m; "
            "p = f.ProcessPoolExecutor(1, mp_context=m.get_context('spawn')); "
            "assert p.submit(pow, 2, 10).result(timeout=60) == 1024; p.shutdown()"
        )
        dropin.write_text(f'[Service]\nExecStartPost=/opt/jaga/venv/bin/python -c "{probe}"\n')
        try:
            server.run("systemctl daemon-reload && systemctl restart jaga-collector")
        finally:
            dropin.unlink()
            server.run("systemctl daemon-reload && systemctl restart jaga-collector")
        self.results.append("server: a spawned worker process runs in the collector's sandbox")

    def check_unit(self, pi: Machine) -> None:
        if pi.unit_property("jaga-agent", "ActiveState") != "active":
            raise RehearsalFailed("jaga-agent.service is not active after the install")
        wait_for(
            "the unit's status says connected",
            lambda: "connected" in pi.unit_property("jaga-agent", "StatusText"),
            30,
        )
        self.results.append(
            f"unit: systemctl status says {pi.unit_property('jaga-agent', 'StatusText')}"
        )
        wait_for("the unit's boot event stored", lambda: self.stored("system") >= 1, 30)
        self.results.append(
            f"InfluxDB (through the server's collector): {self.stored()} events from {DEVICE}"
        )
        again = pi.run(
            f"cd ~ && sudo jaga/scripts/install-agent.sh jaga-{SITE}-{DEVICE}.tar.gz",
            as_user=True,
            check=False,
        )
        changes = re.search(r"install-agent: (\d+) changes", again.stdout)
        if changes is None or changes[1] != "0":
            raise RehearsalFailed(
                f"the unit's second run changed things:\n{again.stdout}{again.stderr}"
            )
        self.results.append("unit, install script run a second time: 0 changes")

    def check_watchdog(self, pi: Machine) -> None:
        """A hung main loop (the agent's test hook) stops the pings; systemd restarts it."""
        dropin = pi.rootfs / "etc/systemd/system/jaga-agent.service.d/rehearsal-stall.conf"
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text("[Service]\nEnvironment=JAGA_DEBUG_STALL_FILE=/run/jaga-agent/stall\n")
        pi.run("systemctl daemon-reload && systemctl restart jaga-agent")
        wait_for("restarted with the stall hook", lambda: "connected" in pi.unit_property(
            "jaga-agent", "StatusText"), 30)  # fmt: skip
        boots = self.stored("system")
        restarts = int(pi.unit_property("jaga-agent", "NRestarts"))
        pi.run("touch /run/jaga-agent/stall")
        hung_at = time.monotonic()
        wait_for("systemd restarts the hung agent", lambda: int(pi.unit_property(
            "jaga-agent", "NRestarts")) > restarts, 90)  # fmt: skip
        took = time.monotonic() - hung_at
        log = pi.run("journalctl -u jaga-agent --no-pager -o cat").stdout
        if "Watchdog timeout" not in log:
            raise RehearsalFailed("the restart was not systemd's watchdog:\n" + log[-2000:])
        dropin.unlink()
        pi.run("rm -f /run/jaga-agent/stall; systemctl daemon-reload; systemctl restart jaga-agent")
        wait_for("the restarted agent's boot event stored", lambda: self.stored(
            "system") > boots, 60)  # fmt: skip
        self.results.append(
            f"hung main loop: systemd's watchdog restarted the agent {took:.0f} s later"
        )

    def check_kill(self, pi: Machine) -> None:
        """Power-cut-like death (SIGKILL): Restart=on-failure brings it back, the outbox intact."""
        boots = self.stored("system")
        restarts = int(pi.unit_property("jaga-agent", "NRestarts"))
        pi.run("systemctl kill --signal=SIGKILL jaga-agent")
        wait_for("restart after SIGKILL", lambda: int(pi.unit_property(
            "jaga-agent", "NRestarts")) > restarts, 30)  # fmt: skip
        wait_for("its boot event stored", lambda: self.stored("system") > boots, 60)
        ok = pi.run(
            "python3 -c \"import sqlite3; print(sqlite3.connect('file:/var/lib/jaga/outbox.sqlite3"
            "?mode=ro', uri=True).execute('PRAGMA integrity_check').fetchone()[0])\""
        ).stdout.strip()
        if ok != "ok":
            raise RehearsalFailed(f"outbox integrity_check after SIGKILL: {ok}")
        self.results.append("SIGKILL: restarted by systemd, outbox integrity_check ok")

    def check_journal(self, pi: Machine) -> None:
        log = pi.run("journalctl -u jaga-agent --no-pager -o verbose").stdout
        if "PRIVATE KEY" in log:
            raise RehearsalFailed("the journal holds a private key")
        errors = pi.run("journalctl -u jaga-agent -p err --no-pager -o cat").stdout
        if "ERROR jaga.service.watchdog: UNHEALTHY" not in errors:
            raise RehearsalFailed(
                "the agent's ERROR line is not an error in the journal:\n" + errors
            )
        self.results.append("journal: `journalctl -p err` finds the agent's UNHEALTHY line; no key")

    def close(self) -> None:
        for name, machine in self.machines.items():
            if machine.leader:
                units = "jaga-agent" if name == "pi" else "jaga-collector -u mosquitto"
                journal = machine.run(f"journalctl -u {units} --no-pager", check=False).stdout
                with self.transcript.open("a") as fh:
                    fh.write(f"\n$ [{name}] journalctl -u {units}\n{journal}")
            machine.shutdown()
        if self.forwarder is not None:
            self.forwarder.stop()
        if self.influx is not None:
            self.influx.stop()


def main() -> int:
    if os.geteuid() != 0:
        print("rehearse: needs root (debootstrap, systemd-nspawn)", file=sys.stderr)
        return 2
    missing = [tool for tool in ("debootstrap", "systemd-nspawn") if not shutil.which(tool)]
    if missing:
        packages = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container"}
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *(packages[t] for t in missing)], check=True
        )
    root = Path(os.environ.get("REHEARSAL_DIR", "run/rehearse")).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.monotonic()
    rehearsal = Rehearsal(root)
    try:
        results = rehearsal.run()
    except RehearsalUnavailable as exc:
        print(f"rehearse: could not rehearse on this machine: {exc}", file=sys.stderr)
        return 3
    except (RehearsalFailed, StartError, subprocess.CalledProcessError) as exc:
        print(f"rehearse: FAILED: {exc}\n(transcript: {root}/transcript.txt)", file=sys.stderr)
        return 1
    finally:
        rehearsal.close()
    for machine in rehearsal.machines.values():  # 600 MB each; kept when a step failed
        shutil.rmtree(machine.rootfs, ignore_errors=True)
    for line in results:
        say(line)
    say(f"the README's Pi and server sections work as written ({time.monotonic() - started:.0f} s; "
        f"transcript: {root}/transcript.txt)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
