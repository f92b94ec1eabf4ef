"""The sd_notify protocol: newline-separated NAME=value lines in one datagram to $NOTIFY_SOCKET.

See sd_notify(3). The socket is an AF_UNIX datagram socket named by a path, or by ``@name`` in
the abstract namespace. Without $NOTIFY_SOCKET (not started by systemd, or Type= is not notify)
every call is a no-op that returns False, so the services run the same way in a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger("jaga.service.notify")


def socket_address(value: str) -> str | None:
    """The address to send to, or None for a value we cannot use (e.g. systemd's vsock: form)."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def one_line(text: str) -> str:
    """A STATUS= value: the protocol ends an assignment at a newline."""
    return " ".join(text.split())


class Notifier:
    """Tells the service manager how the service is; safe to call from any thread."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
        address = socket_address(value) if value else None
        if value and address is None:
            log.warning("NOTIFY_SOCKET=%s is not a unix socket; not notifying systemd", value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send NAME=value lines as one datagram; False when not under systemd or on failure."""
        if self.address is None:
            return False
        data = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(data, self.address)
            except OSError as exc:
                if not self._warned:
                    log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete: systemd starts the units ordered after us and arms the watchdog."""
        return self.send("READY=1", *([f"STATUS={one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """One line shown by `systemctl status`."""
        return self.send(f"STATUS={one_line(text)}")

    def watchdog(self) -> bool:
        """The keep-alive ping that WatchdogSec= waits for."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun; systemd no longer expects pings."""
        return self.send("STOPPING=1", *([f"STATUS={one_line(status)}"] if status else []))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
