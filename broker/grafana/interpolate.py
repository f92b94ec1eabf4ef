"""Grafana's variable substitution for InfluxQL, so a panel's query can run outside Grafana.

What Grafana (10.x, InfluxDB datasource, raw InfluxQL) does before sending a query:

- ``$timeFilter``      -> ``time >= <from>ms and time <= <to>ms``
- ``$__interval``      -> the bucket width chosen from the range and the panel's width
  (``$interval`` is the old name), ``$__interval_ms`` the same in milliseconds
- ``$var``, ``${var}``, ``[[var]]`` -> the variable's value; inside a regex literal
  (``=~ /.../`` or ``!~ /.../``) each value is regex-escaped, and several values (a
  multi-value variable, or All) become ``(a|b)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_REGEX_LITERAL = re.compile(r"(?P<op>[=!]~\s*)/(?P<body>(?:[^/\\\n]|\\.)*)/")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")

# kbn.roundInterval: a raw interval (ms) rounded to one people read easily.
_ROUNDING: tuple[tuple[int, int], ...] = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (27_000_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_YEAR_MS = 31_536_000_000
_UNITS = (
    ("y", _YEAR_MS),
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
)


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time picker, in ms since the epoch."""

    from_ms: int
    to_ms: int

    def interval_ms(self, max_data_points: int = 1000, min_interval_ms: int = 1) -> int:
        """Grafana's $__interval: range / data points (the panel's width), rounded."""
        raw = max((self.to_ms - self.from_ms) / max(max_data_points, 1), min_interval_ms)
        for below, rounded in _ROUNDING:
            if raw < below:
                return rounded
        return _YEAR_MS


def interval_text(ms: int) -> str:
    """``1500`` -> ``1500ms``, ``60000`` -> ``1m``: the largest unit that divides it."""
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def escape_regex(value: str) -> str:
    """Escape what a regex would read as syntax (Grafana's escapeRegex)."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


Value = str | tuple[str, ...]


def _regex_value(value: Value) -> str:
    if isinstance(value, str):
        return escape_regex(value)
    escaped = [escape_regex(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _plain_value(name: str, value: Value) -> str:
    if isinstance(value, str):
        return value
    if len(value) == 1:
        return value[0]
    raise ValueError(f"${name} has several values; use it inside a regex (=~ /^${name}$/)")


def _replace_variables(text: str, variables: Mapping[str, Value], in_regex: bool) -> str:
    """One pass, longest name first ($sites before $site), so no value is substituted twice."""
    if not variables:
        return text
    names = "|".join(re.escape(n) for n in sorted(variables, key=len, reverse=True))
    pattern = re.compile(
        r"\$\{(?P<a>"
        + names
        + r")\}|\[\[(?P<b>"
        + names
        + r")\]\]|\$(?P<c>"
        + names
        + r")(?![A-Za-z0-9_])"
    )

    def value(m: re.Match[str]) -> str:
        name = m.group("a") or m.group("b") or m.group("c")
        v = variables[name]
        return _regex_value(v) if in_regex else _plain_value(name, v)

    return pattern.sub(value, text)


def interpolate(
    query: str,
    time_range: TimeRange,
    variables: Mapping[str, Value] | None = None,
    *,
    interval_ms: int | None = None,
) -> str:
    """The query as Grafana would send it to InfluxDB."""
    step = interval_ms if interval_ms is not None else time_range.interval_ms()
    text = query.replace(
        "$timeFilter", f"time >= {time_range.from_ms}ms and time <= {time_range.to_ms}ms"
    )
    text = text.replace("$__interval_ms", str(step))
    text = text.replace("$__interval", interval_text(step)).replace(
        "$interval", interval_text(step)
    )
    values = dict(variables or {})
    out: list[str] = []
    pos = 0
    for m in _REGEX_LITERAL.finditer(text):
        out.append(_replace_variables(text[pos : m.start()], values, in_regex=False))
        body = _replace_variables(m.group("body"), values, in_regex=True)
        out.append(f"{m.group('op')}/{body}/")
        pos = m.end()
    out.append(_replace_variables(text[pos:], values, in_regex=False))
    unresolved = re.search(r"\$\{?[A-Za-z_]\w*|\[\[\w+\]\]", "".join(out))
    if unresolved:
        raise ValueError(f"no value for {unresolved.group(0)} in {query!r}")
    return "".join(out)


def render_link(url: str, variables: Mapping[str, str], raw_value: str) -> str:
    """A data link as Grafana opens it: dashboard variables and the cell's ``${__value.raw}``."""
    text = url.replace("${__value.raw}", raw_value)
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    return text
