"""The lifecycle audit: enrolment/log.jsonl, one JSON line per token issued, enrolment, renewal,
certificate issued by hand, revocation and refusal, naming who and when.

Who: ``by`` is the technician (JAGA_TECHNICIAN, else the login name of whoever ran
jaga-provision), ``"token"`` for an enrolment (with ``technician``: who issued that token) or
``"unit"`` for a renewal the unit asked for. When: ``at``, UTC, whole seconds.

Written by the enrolment server and by jaga-provision on the machine holding the registry;
read by `jaga-provision device list` and by the collector (broker/lifecycle_feed.py), which
writes each line to InfluxDB (measurement ``lifecycle``) and raises an alert for a refusal.
"""

from __future__ import annotations

import getpass
import json
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioning.registry import Registry

REFUSALS = frozenset({"enrol-refused", "renew-refused"})
"""Events the collector turns into an alert."""


def log_path(root: Path) -> Path:
    """enrolment/log.jsonl of the registry at root."""
    return root / "enrolment" / "log.jsonl"


def technician() -> str:
    """Who runs jaga-provision: JAGA_TECHNICIAN if set, else the login name."""
    named = os.environ.get("JAGA_TECHNICIAN", "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record_event(registry: Registry, event: str, **fields: Any) -> None:
    """Append one line (fsynced): the lifecycle's record of what happened, to whom, by whom."""
    path = log_path(registry.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"at": _now().isoformat(), "event": event, **fields}
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line, default=str, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())


def read_log(root: Path) -> list[dict[str, Any]]:
    """Every whole line of the log (a torn last line, from a power cut, is skipped)."""
    path = log_path(root)
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and "event" in item and "at" in item:
            found.append(item)
    return found


def by_unit(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Records that name a unit, grouped by (site, device), oldest first."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for item in records:
        site, device = item.get("site"), item.get("device")
        if isinstance(site, str) and isinstance(device, str):
            grouped[(site, device)].append(item)
    return grouped


def describe(item: dict[str, Any]) -> str:
    """One line a technician reads: when, what, by whom, the detail that matters."""
    at = str(item.get("at", ""))[:16].replace("T", " ")
    parts = [at, str(item["event"])]
    if item.get("serial") is not None:
        parts.append(f"serial {item['serial']}")
    if item.get("by"):
        parts.append(f"by {item['by']}")
    if item.get("technician"):
        parts.append(f"(token from {item['technician']})")
    if item.get("grace"):
        parts.append("(within the grace after expiry)")
    if item.get("reason"):
        parts.append(f"reason {item['reason']}")
    if item["event"] in REFUSALS and item.get("message"):
        parts.append(f": {item['message']}")
    return " ".join(parts)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
