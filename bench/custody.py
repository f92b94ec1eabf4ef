"""Custody lookups: an evidence page's or a picture's custody lines, read from the index.

    .venv/bin/python -m bench.custody [--quick]

The guard-post page asks for the custody lines of an event (its evidence page) and of a
picture (who may see it). The custody log is an append-only JSON-lines file; reading it
whole per request cost 0.86 s at 300,000 lines (#14, finding 12). The collector now keeps an
SQLite index beside it (broker/custody.py). Measured on a log of 300,000 lines (one picture
arrival each): a lookup by event and by picture through the index, against the same lookup
by reading the log whole (the reference, same run), and the index's rebuild from the log
at a first start.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass

from bench.report import Report, Row, parse_args, workdir
from broker.custody import Custody, CustodyLog

TARGET_MS = 10.0


@dataclass(frozen=True)
class Sizes:
    lines: int
    lookups: int


FULL = Sizes(lines=300_000, lookups=200)
QUICK = Sizes(lines=30_000, lookups=50)


def main() -> None:
    args = parse_args(__doc__ or "")
    sizes = QUICK if args.quick else FULL
    report = Report("custody", args.quick, {"lines": sizes.lines, "lookups": sizes.lookups})
    root = workdir("custody")
    log_path = root / "custody.jsonl"
    entries = [
        Custody(
            i,
            f"{i:064x}",
            "bangka-barat",
            f"gudang-{i % 50:02d}",
            f"ev{i // 20}",
            40_000,
            "received",
        )
        for i in range(sizes.lines)
    ]
    log_path.write_text("".join(e.to_json() + "\n" for e in entries))
    started = time.perf_counter()
    log = CustodyLog(log_path, root / "custody.sqlite3")
    rebuild_s = time.perf_counter() - started
    rng = random.Random(7)
    picks = [rng.randrange(sizes.lines) for _ in range(sizes.lookups)]

    def timed(lookup: object) -> float:
        times = []
        for i in picks:
            t = time.perf_counter()
            lookup(i)  # type: ignore[operator]
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1000

    by_event = timed(lambda i: log.lines(event_id=f"ev{i // 20}"))
    by_picture = timed(lambda i: log.lines(sha256=f"{i:064x}"))
    whole = []
    for i in picks[:5]:
        t = time.perf_counter()
        lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
        _ = [c for c in lines if c["event_id"] == f"ev{i // 20}"]
        whole.append(time.perf_counter() - t)
    whole_ms = statistics.median(whole) * 1000
    log.close()
    report.figure("lookup_by_event_ms_p50", round(by_event, 3))
    report.figure("lookup_by_picture_ms_p50", round(by_picture, 3))
    report.figure("whole_log_read_ms_p50", round(whole_ms, 1))
    report.figure("index_rebuild_s", round(rebuild_s, 2))
    ok = by_event <= TARGET_MS and by_picture <= TARGET_MS
    report.row(
        Row(
            f"custody lines of an event, {sizes.lines:,} lines",
            by_event,
            "ms",
            "log read whole",
            whole_ms,
            f"<= {TARGET_MS:.0f} ms",
            by_event <= TARGET_MS,
            key=True,
        )
    )
    report.row(
        Row(
            "custody lines of a picture",
            by_picture,
            "ms",
            target=f"<= {TARGET_MS:.0f} ms",
            met=by_picture <= TARGET_MS,
        )
    )
    report.row(Row("index rebuilt from the log (first start)", rebuild_s, "s"))
    report.finish()
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
