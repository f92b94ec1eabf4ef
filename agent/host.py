"""Facts about the machine the unit runs on: boot id, clock sync, temperature, disk, power."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import time
from pathlib import Path

TIME_ERROR = 5  # adjtimex(2): clock not synchronised


class _Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_long * 64)]


def boot_id() -> str:
    """The kernel's id of this boot, so events can be ordered by (boot, seq) without an RTC."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    except OSError:
        return f"t{time.time_ns():x}"


def clock_synced() -> bool:
    """True when the kernel says NTP (systemd-timesyncd, chrony) has disciplined the clock."""
    if Path("/run/systemd/timesync/synchronized").exists():
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        state = int(libc.adjtimex(ctypes.byref(_Timex())))
    except (OSError, AttributeError):
        return False
    return state not in (-1, TIME_ERROR)


def cpu_temp_c() -> float | None:
    try:
        return int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000.0
    except (OSError, ValueError):
        return None


def undervoltage() -> bool | None:
    """Raspberry Pi firmware's under-voltage flag (hwmon rpi_volt), None off a Pi."""
    for hwmon in Path("/sys/class/hwmon").glob("hwmon*"):
        try:
            if (hwmon / "name").read_text().strip() == "rpi_volt":
                return (hwmon / "in0_lcrit_alarm").read_text().strip() == "1"
        except OSError:
            continue
    return None


def disk_free_mb(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free // (1024 * 1024)
    except OSError:
        return None


def uptime_s() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME)) if hasattr(time, "CLOCK_BOOTTIME") else 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
