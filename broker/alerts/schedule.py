"""A weekly schedule in a site's timezone: is it on now, and where are its edges."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from broker.alerts.config import WEEKDAYS, Window
from kernel.units import S

WEEK_NS = 7 * 24 * 3600 * S


@dataclass(frozen=True, slots=True)
class Edge:
    """The schedule turns on (True) or off (False) at `at` (ns)."""

    at: int
    on: bool


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    """Windows merged into spans of local time; DST-safe through zoneinfo."""

    windows: tuple[Window, ...]
    zone: ZoneInfo

    @classmethod
    def of(cls, windows: Sequence[Window], timezone: str) -> WeeklySchedule:
        return cls(tuple(windows), ZoneInfo(timezone))

    @property
    def empty(self) -> bool:
        return not self.windows

    def spans(self, lo_ns: int, hi_ns: int) -> list[tuple[int, int]]:
        """Merged on-spans (start, end) in ns around [lo_ns, hi_ns].

        A window lasts under two days, so local days from two before lo to one after hi cover
        every span touching the range; the first start and last end may be cut by that margin,
        which lies at least a day outside the range.
        """
        if not self.windows:
            return []
        first = self._local_date(lo_ns) - dt.timedelta(days=2)
        last = self._local_date(hi_ns) + dt.timedelta(days=1)
        return list(_spans(self, first, last))

    def _compute_spans(self, first: dt.date, last: dt.date) -> tuple[tuple[int, int], ...]:
        """The merged spans of the local days first..last (remembered by `_spans`)."""
        raw: list[tuple[int, int]] = []
        day = first
        while day <= last:
            name = WEEKDAYS[day.weekday()]
            for window in self.windows:
                if name in window.days:
                    start, end = window.minutes()
                    raw.append((self._at(day, start), self._at(day, end)))
            day += dt.timedelta(days=1)
        raw.sort()
        merged: list[tuple[int, int]] = []
        for start, end in raw:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return tuple(merged)

    def is_on(self, now_ns: int) -> bool:
        return self.on_since(now_ns) is not None

    def on_since(self, now_ns: int) -> int | None:
        """Start of the on-span holding now (cut at two days back), or None if off."""
        for start, end in self.spans(now_ns, now_ns):
            if start <= now_ns < end:
                return start
        return None

    def edges(self, after_ns: int, upto_ns: int) -> list[Edge]:
        """Every turn on or off in (after_ns, upto_ns], oldest first."""
        if upto_ns <= after_ns:
            return []
        out: list[Edge] = []
        for start, end in self.spans(after_ns, upto_ns):
            if after_ns < start <= upto_ns:
                out.append(Edge(start, True))
            if after_ns < end <= upto_ns:
                out.append(Edge(end, False))
        return out

    def next_edge(self, now_ns: int) -> Edge | None:
        found = self.edges(now_ns, now_ns + WEEK_NS + 2 * 24 * 3600 * S)
        return found[0] if found else None

    def _local_date(self, ns: int) -> dt.date:
        return dt.datetime.fromtimestamp(ns // S, self.zone).date()

    def _at(self, day: dt.date, minutes: int) -> int:
        day = day + dt.timedelta(days=minutes // 1440)
        minutes %= 1440
        local = dt.datetime(
            day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=self.zone
        )
        return int(local.timestamp()) * S


@functools.lru_cache(maxsize=256)
def _spans(schedule: WeeklySchedule, first: dt.date, last: dt.date) -> tuple[tuple[int, int], ...]:
    """The calendar arithmetic of `spans`, once per schedule and range of local days: the
    alert engine asks for the same days on every event (the answer only changes at midnight,
    local time), and each answer is some 25 zoneinfo conversions."""
    return schedule._compute_spans(first, last)
