"""Run Debian's Mosquitto on loopback with a given config, for tests, the demo and benchmarks.

Quirk (Mosquitto 2.0.11): started as root, mosquitto switches to the ``mosquitto`` user
unless the config has a ``user`` line. That user cannot write a persistence directory
owned by root (it fails only at shutdown: "Error saving in-memory database ...
Permission denied") nor read files under pytest's 0700 tmp dirs. So when we run as root,
``Mosquitto.start()`` refuses a config without a ``user`` line; ``plain_config`` writes
``user <current user>`` (the option has no effect for a non-root user).

Quirk: ``log_dest stdout`` into a file is block-buffered, so log lines appear only when
mosquitto exits (never after SIGKILL). The launcher runs it under ``stdbuf -oL``;
``log_dest stderr`` is unbuffered anyway. Startup to accepting connections: ~10-20 ms.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
from pathlib import Path

from devstack.process import ManagedProcess, StartError

MOSQUITTO = "/usr/sbin/mosquitto"
STDBUF = "/usr/bin/stdbuf"
_USER_LINE = re.compile(r"^\s*user\s+\S", re.MULTILINE)


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def plain_config(
    port: int,
    workdir: Path,
    *,
    max_queued_messages: int = 1_000_000,
    max_inflight_messages: int | None = None,
) -> str:
    """A minimal plaintext, anonymous mosquitto.conf with persistence in ``workdir``.

    ``max_inflight_messages=None`` keeps the broker default (20); 0 means no limit.
    """
    lines = [
        "per_listener_settings false",
        f"user {current_user()}",
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {workdir.resolve()}/",
        "log_dest stdout",
        f"max_queued_messages {max_queued_messages}",
    ]
    if max_inflight_messages is not None:
        lines.append(f"max_inflight_messages {max_inflight_messages}")
    return "\n".join(lines) + "\n"


class Mosquitto(ManagedProcess):
    """``mosquitto -c config_path``; ready when (host, port) accepts a TCP connection."""

    def __init__(
        self, config_path: Path, port: int, workdir: Path, host: str = "127.0.0.1"
    ) -> None:
        super().__init__("mosquitto", workdir / "mosquitto.log", cwd=workdir)
        self.config_path = config_path
        self.port = port
        self.host = host
        self.workdir = workdir

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and not _USER_LINE.search(self.config_path.read_text()):
            raise StartError(
                f"{self.config_path} has no 'user' line: run as root, mosquitto would "
                "switch to user 'mosquitto' and fail to write its persistence or read "
                "test files; add 'user root' to the test config"
            )

    def command(self) -> list[str]:
        # stdbuf: with stdout a file, mosquitto's "log_dest stdout" is block-buffered and
        # the lines would show up only at exit (or never, after a SIGKILL).
        return [STDBUF, "-oL", MOSQUITTO, "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=0.5):
            return True

    def reload(self) -> None:
        """SIGHUP: re-read the config (ACLs, certificates, ...) without restarting."""
        self.send_signal(signal.SIGHUP)
