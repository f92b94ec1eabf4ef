#!/usr/bin/env python3
"""Install the Debian packages Jaga's demo and tests need, or say the one line that does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

BINARIES = {
    "mosquitto": "/usr/sbin/mosquitto",
    "mosquitto-clients": "/usr/bin/mosquitto_sub",
    "influxdb": "/usr/bin/influxd",
    "victoria-metrics": "/usr/bin/victoria-metrics",
    "chromium": "/usr/bin/chromium",
    "systemd": "/usr/bin/systemd-analyze",
}


def missing(packages: list[str]) -> list[str]:
    return [p for p in packages if not os.path.exists(BINARIES.get(p, f"/usr/bin/{p}"))]


def main(packages: list[str]) -> int:
    todo = missing(packages)
    if not todo:
        return 0
    if shutil.which("apt-get") is None:
        print(
            f"jaga: needs Debian packages {' '.join(todo)}; install them with your package manager"
        )
        return 1
    if os.geteuid() != 0:
        print("jaga: some Debian packages are missing. Install them with:")
        print(f"    sudo apt-get install -y {' '.join(todo)}")
        return 1
    print(f"jaga: installing Debian packages: {' '.join(todo)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *todo], check=True, env=env, stdout=subprocess.DEVNULL
    )
    # Debian starts the packaged services; Jaga runs its own on loopback ports instead.
    for service in ("mosquitto", "influxdb"):
        subprocess.run(
            ["service", service, "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    still = missing(packages)
    if still:
        print(f"jaga: still missing after install: {' '.join(still)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
