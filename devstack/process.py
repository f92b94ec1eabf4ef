"""A server subprocess that tests can start, wait for, pause, kill and always reap."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


class StartError(RuntimeError):
    """The process exited, or was not ready in time; the message holds its log's tail."""


class ManagedProcess:
    """One server process: log file, readiness check, signals, and guaranteed cleanup.

    Subclasses provide ``command()`` and ``is_ready()``, and may override ``prepare()``
    (called before every start, e.g. to write a config file). The child runs in its own
    session (``start_new_session=True``) so a Ctrl-C in the terminal reaches only the
    parent, which then stops the children from an atexit hook. Signals go to the whole
    process group. Nothing stops the children if the parent itself is SIGKILLed.
    """

    stop_grace: float = 10.0
    poll_interval: float = 0.02

    def __init__(self, name: str, log_path: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.cwd = cwd
        self.env: dict[str, str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._lock = threading.RLock()

    # -- for subclasses -------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Hook run before each start."""

    # -- state ----------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the process wrote since its latest start."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Self:
        """Start the process and wait until ``is_ready()``; raise ``StartError`` if not."""
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
            self.prepare()
            cmd = self.command()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            self._log_offset = self._log.tell()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
            with _live_lock:
                _live.add(self)
            self._wait_ready(cmd, timeout)
            return self

    def _wait_ready(self, cmd: list[str], timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._finish()
                raise StartError(self._failure(f"exited with code {code} before it was ready"))
            try:
                ready = self.is_ready()
            except OSError:
                ready = False
            if ready and self._proc.poll() is None:
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise StartError(self._failure(f"was not ready after {timeout:.1f}s: {cmd}"))
            time.sleep(self.poll_interval)

    def _failure(self, what: str) -> str:
        return f"{self.name} {what}; log {self.log_path}:\n{self.log_tail()}"

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM (and SIGCONT, in case it is paused), SIGKILL after ``grace``; reap."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return None
            if proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                self._signal_group(signal.SIGCONT)
                try:
                    proc.wait(self.stop_grace if grace is None else grace)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    proc.wait()
            self._finish()
            return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL and reap: a crash, as far as the server can tell."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return None
            if proc.poll() is None:
                self._signal_group(signal.SIGKILL)
                proc.wait()
            self._finish()
            return proc.returncode

    def pause(self) -> None:
        """SIGSTOP: the process hangs, its sockets stay open."""
        self._require_running()
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._require_running()
        self._signal_group(signal.SIGCONT)

    def restart(self, timeout: float = 30.0) -> Self:
        self.stop()
        return self.start(timeout)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the main process only."""
        self._require_running()
        os.kill(self.pid, sig)

    def _require_running(self) -> None:
        if not self.running:
            raise RuntimeError(f"{self.name} is not running")

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def _finish(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self.running and self._proc else "stopped"
        return f"<{type(self).__name__} {self.name} {state}>"


def _stop_all() -> None:
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            proc.stop(grace=5.0)


atexit.register(_stop_all)
