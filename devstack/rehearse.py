"""`make rehearse-pi`: the README's "A unit on a Raspberry Pi" section, run as written.

The unit is a Debian bookworm (what Raspberry Pi OS bookworm is built on) made by debootstrap
and booted with systemd as PID 1 under systemd-nspawn, sharing this machine's network. The
provisioning laptop is this checkout (a fresh `git clone` of HEAD, this venv on PATH); the
server is this machine's Mosquitto, InfluxDB and collector, started from the laptop's registry
as "The central server" would run them.

The README's command blocks are read from README.md and run unchanged, in order, each where
its paragraph says (laptop or Pi). What differs from a real Pi, and how:

- `ssh` and `scp` to pi@gudang-01.local are shell functions that enter the container;
- the container has no GPIO, so `jaga-provision device add` gets `--pin-factory mock`
  (gpiozero's MockFactory; the only fake, at the hardware boundary);
- python3-lgpio and python3-picamera2 come from Raspberry Pi's archive, which this machine
  cannot reach: the install script says it skips them;
- the site's broker host is 127.0.0.1 (the container shares this machine's loopback) and
  this machine's clock is not NTP-synchronised, so the selftest's clock row fails (expected).

After the README's steps it checks what a technician would: the service is active and says
`connected`, the collector stored the unit's events, a third run changes nothing, and real
systemd restarts the agent when its main loop hangs (watchdog) and when it is killed.
Needs root, debootstrap and systemd-container (installed when missing), and the Debian
mirror. About 4 minutes; the first run also builds the bookworm image (~1 minute).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.ports import free_port
from devstack.process import StartError
from devstack.stack import DATABASE, Stack, jaga

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SECTION = ("### A unit on a Raspberry Pi", "### The central server")
PI_HOST = "pi@gudang-01.local"
MACHINE = "gudang-01"
SITE = "bangka-barat"
DEVICE = "gudang-01"
PI_UID = 1000
CACHE = Path(os.environ.get("JAGA_REHEARSAL_CACHE", "/var/tmp/jaga-rehearsal"))
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What Raspberry Pi OS Lite has before anyone touches it, near enough.
BASE_PACKAGES = (
    "systemd,systemd-sysv,systemd-timesyncd,dbus,sudo,ca-certificates,python3,iproute2,procps,less"
)


class RehearsalFailed(RuntimeError):
    """A step of the README did not do what the README says."""


class RehearsalUnavailable(RuntimeError):
    """This machine cannot host the rehearsal (no mirror, no container): nothing was judged."""


@dataclass(frozen=True)
class Block:
    where: str  # "laptop" or "pi"
    text: str


def pi_section_blocks(readme: str) -> list[Block]:
    """The section's ```sh blocks, each placed by the last paragraph before it."""
    start = readme.index(SECTION[0])
    section = readme[start : readme.index(SECTION[1], start)]
    parts = section.split("```")
    blocks = []
    for i in range(1, len(parts), 2):
        code = parts[i]
        if not code.startswith("sh\n"):
            continue
        paragraph = parts[i - 1].strip().split("\n\n")[-1]
        if "laptop" in paragraph:
            where = "laptop"
        elif "On the Pi" in paragraph:
            where = "pi"
        else:
            raise RehearsalFailed(f"README: cannot tell where this block runs: {paragraph!r}")
        blocks.append(Block(where, code.removeprefix("sh\n")))
    return blocks


def say(text: str) -> None:
    print(f"rehearse-pi: {text}", flush=True)


# the unit: a booted bookworm ------------------------------------------------------------------


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


def prepare_rootfs(rootfs: Path) -> None:
    """A first boot of Raspberry Pi OS: user pi with sudo, the mirror's CA, a hostname."""
    rootfs.mkdir(parents=True)
    with tarfile.open(base_image()) as tar:
        tar.extractall(rootfs, filter="fully_trusted")
    (rootfs / "etc/hostname").write_text(f"{MACHINE}\n")
    with (rootfs / "etc/hosts").open("a") as hosts:  # as Raspberry Pi OS has it (sudo needs it)
        hosts.write(f"127.0.1.1\t{MACHINE}\n")
    # This machine may reach the package mirrors through its own CA: the unit trusts it too.
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/")
    for name in ("pip.conf",):  # the same package index settings as this machine, if any
        if Path("/etc", name).exists():
            shutil.copy(Path("/etc", name), rootfs / "etc" / name)
    chroot = ["chroot", str(rootfs)]
    subprocess.run(
        [*chroot, "useradd", "--create-home", "--uid", str(PI_UID), "--shell", "/bin/bash",
         "--groups", "sudo,video", "pi"],
        check=True,
    )  # fmt: skip
    (rootfs / "etc/sudoers.d/010_pi-nopasswd").write_text("pi ALL=(ALL) NOPASSWD: ALL\n")
    (rootfs / "etc/sudoers.d/010_pi-nopasswd").chmod(0o440)


class Unit:
    """The booted container and a way into it."""

    def __init__(self, rootfs: Path, log: Path) -> None:
        self.rootfs = rootfs
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def boot(self) -> None:
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--register=no", "--keep-unit", "--boot", "-D", self.rootfs,
             f"--machine={MACHINE}", "--console=pipe"],
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
        raise RehearsalUnavailable(f"the container did not boot; see {self.log}")

    def _find_leader(self) -> int:
        """The container's PID 1: nspawn's child."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            return 0
        return int(pids[0]) if pids else 0

    def enter(self, user: str | None = None) -> list[str]:
        """A command prefix that runs inside the container (as `user`, in a login shell)."""
        prefix = [
            "nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net",
            "--pid", "--root", "--wd", "--", "/usr/bin/env", "-i", f"PATH={PATH}", "TERM=dumb",
        ]  # fmt: skip
        if user is None:
            return prefix
        return [*prefix, "runuser", "--login", user, "--command"]

    def run(
        self, command: str, *, user: str | None = None, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.enter(user), command] if user else [*self.enter(), "bash", "-c", command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RehearsalFailed(
                f"in the unit: {command}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
            )
        return done

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


def laptop_prelude(home: Path, unit: Unit) -> str:
    """The technician's shell: the README's export, and ssh/scp that reach the container."""
    enter = shlex.join(unit.enter())
    pi_home = shlex.quote(str(unit.rootfs / "home/pi"))
    return f"""
set -euo pipefail
export HOME={shlex.quote(str(home))}
export PATH={shlex.quote(str(REPO / ".venv/bin"))}:$PATH
export JAGA_PROVISION_DIR=~/jaga-provision
cd ~/jaga
# ssh/scp {PI_HOST}: the unit is a container on this machine.
ssh() {{
    [[ $1 == {PI_HOST} ]] || {{ echo "rehearsal: no host $1" >&2; return 1; }}
    shift
    {enter} runuser --login pi --command "$*"
}}
scp() {{
    local dest="${{@: -1}}" f
    [[ $dest == {PI_HOST}: ]] || {{ echo "rehearsal: cannot copy to $dest" >&2; return 1; }}
    for f in "${{@:1:$#-1}}"; do
        install -o {PI_UID} -g {PI_UID} -m 0644 "$f" {pi_home}/
    done
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


def run_block(block: Block, prelude: str, unit: Unit, transcript: Path) -> str:
    """Run one README block where it belongs; its output goes to the transcript and back."""
    say(f"{block.where}: " + " ; ".join(line for line in block.text.splitlines() if line))
    if block.where == "laptop":
        argv = ["bash", "-c", prelude + block.text]
    else:
        argv = [*unit.enter("pi"), "set -euo pipefail\n" + block.text]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    with transcript.open("a") as fh:
        fh.write(f"\n$ [{block.where}]\n{block.text}{output}[exit {done.returncode}]\n")
    for line in output.splitlines():
        print(f"    {line}", flush=True)
    if done.returncode != 0:
        raise PiBlockExit(done.returncode, output)
    return output


class PiBlockExit(RehearsalFailed):
    def __init__(self, code: int, output: str) -> None:
        super().__init__(f"exit status {code}")
        self.code = code
        self.output = output


# the server -----------------------------------------------------------------------------------


def start_server(root: Path, registry: Path, port: int) -> Stack:
    """The central server from the laptop's registry: Mosquitto, InfluxDB, the collector."""
    stack = Stack(root / "server", units=(), site=SITE, broker_port=port, registry_dir=registry)
    jaga("jaga-provision", "--dir", registry, "identity", "add", "collector", "main")
    stack.configure_broker()
    stack.start_broker()
    stack.start_influx()
    stack.start_collector()
    return stack


def stored_events(stack: Stack, kind: str = "") -> int:
    assert stack.influx is not None
    where = f"\"device\" = '{DEVICE}'" + (f" AND \"kind\" = '{kind}'" if kind else "")
    rows = stack.influx.query(f'SELECT count("seq") FROM "event" WHERE {where}', db=DATABASE)
    return int(rows[0]["count"]) if rows else 0


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.5)
    raise RehearsalFailed(f"{what}: not within {timeout:g} s")


# the rehearsal --------------------------------------------------------------------------------


def unit_property(unit: Unit, name: str) -> str:
    return unit.run(f"systemctl show -p {name} --value jaga-agent").stdout.strip()


def rehearse(root: Path) -> list[str]:
    results: list[str] = []
    blocks = pi_section_blocks(README.read_text())
    if [b.where for b in blocks] != ["laptop", "pi", "laptop", "pi"]:
        raise RehearsalFailed(f"README's Pi section changed shape: {[b.where for b in blocks]}")
    home = root / "laptop"
    home.mkdir(parents=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(home / "jaga")], check=True)
    port = free_port()
    registry = home / "jaga-provision"
    # The README's Provisioning section, before the Pi section: a CA and the site.
    jaga("jaga-provision", "--dir", registry, "ca", "init", "--name", "Jaga Bangka Barat")
    jaga(
        "jaga-provision", "--dir", registry, "site", "add", SITE, "--name",
        "Gudang logistik pemilu Bangka Barat", "--timezone", "Asia/Jakarta",
        "--broker-host", "127.0.0.1", "--broker-port", str(port),
    )  # fmt: skip

    say("booting the unit: Debian bookworm, systemd as PID 1 (systemd-nspawn)")
    unit = Unit(root / "rootfs", root / "unit-console.log")
    prepare_rootfs(unit.rootfs)
    stack: Stack | None = None
    transcript = root / "transcript.txt"
    try:
        unit.boot()
        prelude = laptop_prelude(home, unit)
        pi_runs = 0
        for block in blocks:
            if block.where == "pi":
                pi_runs += 1
            try:
                run_block(block, prelude, unit, transcript)
            except PiBlockExit as exc:
                # The second install ends with the selftest; its exit status is the selftest's.
                # This machine's clock is not NTP-synchronised: that row, and only it, may fail.
                failed = [ln for ln in exc.output.splitlines() if ln.startswith("FAIL")]
                if not (
                    block.where == "pi"
                    and pi_runs == 2
                    and failed
                    and all(ln.split()[1] == "clock" for ln in failed)
                ):
                    raise
                results.append("selftest: every row PASS but the clock (not NTP-synced here)")
            if block.where == "pi" and pi_runs == 1:
                csr = unit.rootfs / f"etc/jaga/{DEVICE}.csr"
                if not csr.exists():
                    raise RehearsalFailed(f"the first install made no {csr.name}")
                results.append(f"first install: key made on the unit, {csr.name} waiting")
            if block.where == "laptop" and "device sign" in block.text:
                say("updating the server (broker config and ACL from the registry)")
                stack = start_server(root, registry, port)
        assert stack is not None

        # What the README promises once the second run is done.
        if unit_property(unit, "ActiveState") != "active":
            raise RehearsalFailed("jaga-agent.service is not active after the second run")
        wait_for(
            "the status line says connected",
            lambda: "connected" in unit_property(unit, "StatusText"),
            30,
        )
        results.append(f"systemctl status: {unit_property(unit, 'StatusText')}")
        wait_for("the unit's boot event stored", lambda: stored_events(stack, "system") >= 1, 30)
        results.append(f"stored in InfluxDB from {DEVICE}: {stored_events(stack)} events")
        rerun = unit.run(
            "cd ~ && sudo jaga/scripts/install-agent.sh jaga-bangka-barat-gudang-01.tar.gz",
            user="pi",
            check=False,
        )
        changes = re.search(r"install-agent: (\d+) changes", rerun.stdout)
        if changes is None or changes[1] != "0":
            raise RehearsalFailed(f"a third run changed things:\n{rerun.stdout}{rerun.stderr}")
        results.append("third run of the install script: 0 changes")
        results.extend(check_watchdog(unit, stack))
        results.extend(check_kill(unit, stack))
        results.extend(check_journal_and_security(unit))
        return results
    finally:
        if unit.leader:
            journal = unit.run("journalctl -u jaga-agent --no-pager", check=False).stdout
            with transcript.open("a") as fh:
                fh.write(f"\n$ [pi] journalctl -u jaga-agent\n{journal}")
        if stack is not None:
            stack.stop_all()
        unit.shutdown()


def check_watchdog(unit: Unit, stack: Stack) -> list[str]:
    """A hung main loop (the agent's test hook) stops the pings; systemd restarts the agent."""
    dropin = unit.rootfs / "etc/systemd/system/jaga-agent.service.d/rehearsal-stall.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nEnvironment=JAGA_DEBUG_STALL_FILE=/run/jaga-agent/stall\n")
    unit.run("systemctl daemon-reload && systemctl restart jaga-agent")
    wait_for("restarted with the stall hook", lambda: "connected" in unit_property(
        unit, "StatusText"), 30)  # fmt: skip
    boots = stored_events(stack, "system")
    restarts = int(unit_property(unit, "NRestarts"))
    unit.run("touch /run/jaga-agent/stall")
    hung_at = time.monotonic()
    wait_for("systemd restarts the hung agent", lambda: int(
        unit_property(unit, "NRestarts")) > restarts, 90)  # fmt: skip
    took = time.monotonic() - hung_at
    log = unit.run("journalctl -u jaga-agent --no-pager -o cat").stdout
    if "Watchdog timeout" not in log:
        raise RehearsalFailed("the restart was not systemd's watchdog:\n" + log[-2000:])
    dropin.unlink()
    unit.run("rm -f /run/jaga-agent/stall; systemctl daemon-reload; systemctl restart jaga-agent")
    wait_for("the restarted agent's boot event stored", lambda: stored_events(
        stack, "system") > boots, 60)  # fmt: skip
    return [f"hung main loop: systemd's watchdog restarted the agent {took:.0f} s later"]


def check_kill(unit: Unit, stack: Stack) -> list[str]:
    """Power-cut-like death (SIGKILL): Restart=on-failure brings it back, the outbox intact."""
    boots = stored_events(stack, "system")
    restarts = int(unit_property(unit, "NRestarts"))
    unit.run("systemctl kill --signal=SIGKILL jaga-agent")
    wait_for("restart after SIGKILL", lambda: int(
        unit_property(unit, "NRestarts")) > restarts, 30)  # fmt: skip
    wait_for("its boot event stored", lambda: stored_events(stack, "system") > boots, 60)
    ok = unit.run(
        "python3 -c \"import sqlite3; print(sqlite3.connect('file:/var/lib/jaga/outbox.sqlite3"
        "?mode=ro', uri=True).execute('PRAGMA integrity_check').fetchone()[0])\""
    ).stdout.strip()
    if ok != "ok":
        raise RehearsalFailed(f"outbox integrity_check after SIGKILL: {ok}")
    return ["SIGKILL: restarted by systemd, outbox integrity_check ok"]


def check_journal_and_security(unit: Unit) -> list[str]:
    log = unit.run("journalctl -u jaga-agent --no-pager -o verbose").stdout
    if "PRIVATE KEY" in log:
        raise RehearsalFailed("the journal holds a private key")
    levels = sorted(set(re.findall(r"PRIORITY=(\d)", log)))
    errors = unit.run("journalctl -u jaga-agent -p err --no-pager -o cat").stdout
    if "ERROR jaga.service.watchdog: UNHEALTHY" not in errors:
        raise RehearsalFailed("the agent's ERROR line is not an error in the journal:\n" + errors)
    score = unit.run("systemd-analyze security jaga-agent.service --no-pager", check=False)
    overall = re.search(r"Overall exposure level for jaga-agent.service: (\S+ \S+)", score.stdout)
    return [
        f"journal: priorities {','.join(levels)}; `-p err` finds the agent's UNHEALTHY line; "
        "no private key",
        f"systemd-analyze security (booted): {overall[1] if overall else score.stdout[-300:]}",
    ]


def main() -> int:
    if os.geteuid() != 0:
        print("rehearse-pi: needs root (debootstrap, systemd-nspawn)", file=sys.stderr)
        return 2
    missing = [tool for tool in ("debootstrap", "systemd-nspawn") if not shutil.which(tool)]
    if missing:
        packages = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container"}
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *(packages[t] for t in missing)], check=True
        )
    root = Path(os.environ.get("REHEARSAL_DIR", "run/rehearse-pi")).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.monotonic()
    try:
        results = rehearse(root)
    except RehearsalUnavailable as exc:
        print(f"rehearse-pi: could not rehearse on this machine: {exc}", file=sys.stderr)
        return 3
    except (RehearsalFailed, StartError, subprocess.CalledProcessError) as exc:
        print(f"rehearse-pi: FAILED: {exc}\n(transcript: {root}/transcript.txt)", file=sys.stderr)
        return 1
    for line in results:
        say(line)
    say(f"the README's Pi section works as written ({time.monotonic() - started:.0f} s; "
        f"transcript: {root}/transcript.txt)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
