"""Sampling profiles of a running service with py-spy, summarised into what dominates.

`py-spy record --nonblocking` reads the target's memory without stopping it, so the profile
barely slows what is being measured (py-spy itself takes a few % of one core). `--gil` keeps
only the thread holding the GIL: a CPU-bound Python service runs one thread at a time, and a
thread waiting for the GIL would otherwise show up as busy in whatever C call it returned from.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

PY_SPY = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"

# What the collector spends its time on: (label, substrings of a frame "func (file:line)").
COLLECTOR_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # First match wins: the more specific parts come first.
    ("canonical bytes for verify/hash", ("canonical_bytes (protocol/signing.py",)),
    (
        "signature verification (ECDSA)",
        ("verify (protocol/signing.py", "verify_bytes (protocol/signing.py", "SignaturePool."),
    ),
    (
        "alert engine (rules, alert store, publish)",
        ("Collector._judge", "Collector._guarded", "Collector._emit", "AlertEngine."),
    ),
    ("live state for the guard post (broker/web)", ("LiveState.",)),
    ("JSON -> pydantic parse", ("parse (protocol/models.py",)),
    ("chain book (SQLite check+commit)", ("ChainBook.check", "ChainBook.commit")),
    (
        "Point / line building",
        ("event_point (broker/points.py", "event_line (broker/points.py", "_points (broker/"),
    ),
    ("InfluxDB write: line protocol + HTTP", ("InfluxWriter.write",)),
    ("'stored' log line per event", ("Collector._count",)),
    ("MQTT acks (paho, main thread)", ("Client.ack", "ack_many")),
    ("per-unit budget (ratelimit)", ("Collector._admit",)),
    ("paho network thread (TLS read, parse, queue)", ("Client.loop_forever",)),
)


def available() -> bool:
    return PY_SPY.exists() or shutil.which("py-spy") is not None


def start(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Begin sampling `pid` for `seconds` into a collapsed-stack file."""
    exe = str(PY_SPY) if PY_SPY.exists() else "py-spy"
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--nonblocking",
        "--threads",
        "--gil",
        "--rate",
        str(rate),
        "--duration",
        str(max(1, int(seconds))),
        "--format",
        "raw",
        "-o",
        str(out),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frames(stack: str) -> list[str]:
    return [f.strip() for f in stack.split(";")]


def summarize(folded: Path, parts: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, Any]:
    """Share of busy samples per part, per thread, and the top functions (self and inclusive)."""
    total = 0
    per_thread: Counter[str] = Counter()
    per_part: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    own_by_thread: defaultdict[str, Counter[str]] = defaultdict(Counter)
    other: Counter[str] = Counter()
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        frames = _frames(stack)
        total += n
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"
        per_thread[thread] += n
        code = frames[1:]
        leaf = _short(code[-1]) if code else "?"
        for label, needles in parts:
            if any(any(needle in f for needle in needles) for f in code):
                per_part[label] += n
                break
        else:
            per_part["other"] += n
            other[leaf] += n
        for f in {_short(f) for f in code if not any(b in f for b in _BOILERPLATE)}:
            inclusive[f] += n
        own[leaf] += n
        own_by_thread[thread][leaf] += n
    if total == 0:
        return {"samples": 0}

    def pct(c: Counter[str], k: int) -> list[dict[str, Any]]:
        return [{"what": w, "pct": round(100 * v / total, 1)} for w, v in c.most_common(k)]

    threads: defaultdict[str, float] = defaultdict(float)
    for t, v in per_thread.items():
        threads[t] = round(100 * v / total, 1)
    return {
        "samples": total,
        "parts_pct": {k: round(100 * v / total, 1) for k, v in per_part.most_common()},
        "threads_pct": dict(threads),
        "top_inclusive": pct(inclusive, 25),
        "top_self": pct(own, 15),
        "top_self_by_thread": {t: pct(c, 8) for t, c in own_by_thread.items()},
        "other_top_self": pct(other, 10),
    }


_BOILERPLATE = (
    "typer/",
    "click/",
    "threading.py",
    "<module>",
    "runpy.py",
    "broker/cli/",
    "broker/entry.py",
)


def _short(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`: lines apart, one function."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 2)
    return f"{name} ({'/'.join(file[-2:])})" if where else name
