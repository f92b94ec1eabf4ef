"""Grafana's substitution of $timeFilter, $__interval and template variables in InfluxQL."""

from __future__ import annotations

import pytest

from broker.grafana.interpolate import (
    TimeRange,
    escape_regex,
    interpolate,
    interval_text,
    render_link,
)

RANGE = TimeRange(1_700_000_000_000, 1_700_000_600_000)  # ten minutes


def test_time_filter_becomes_the_ranges_bounds_in_milliseconds() -> None:
    q = interpolate('SELECT "active" FROM "event" WHERE $timeFilter', RANGE)
    assert q == (
        'SELECT "active" FROM "event" WHERE time >= 1700000000000ms and time <= 1700000600000ms'
    )


@pytest.mark.parametrize(
    ("span_ms", "points", "expected"),
    [
        (600_000, 1000, "500ms"),  # 600 ms raw
        (3_600_000, 1000, "5s"),  # 3.6 s raw
        (6 * 3_600_000, 1000, "20s"),  # 21.6 s raw
        (7 * 86_400_000, 1000, "10m"),  # 604.8 s raw
        (60_000, 1000, "50ms"),
    ],
)
def test_interval_is_the_range_over_the_panels_points_rounded_as_grafana_rounds(
    span_ms: int, points: int, expected: str
) -> None:
    r = TimeRange(0, span_ms)
    assert interval_text(r.interval_ms(points)) == expected
    q = interpolate("GROUP BY time($__interval), time($interval) -- $__interval_ms", r)
    step = r.interval_ms()
    assert q == f"GROUP BY time({expected}), time({expected}) -- {step}"


def test_interval_text_uses_the_largest_unit_that_divides_it() -> None:
    assert [interval_text(ms) for ms in (10, 1_000, 1_500, 60_000, 3_600_000, 86_400_000)] == [
        "10ms",
        "1s",
        "1500ms",
        "1m",
        "1h",
        "1d",
    ]


def test_a_single_value_is_used_as_it_is_in_a_string_and_escaped_in_a_regex() -> None:
    q = interpolate(
        'WHERE "site" = \'$site\' AND "device" =~ /^${device}$/ AND x = [[site]]',
        RANGE,
        {"site": "bangka-barat", "device": "gudang.01"},
    )
    assert (
        q == 'WHERE "site" = \'bangka-barat\' AND "device" =~ /^gudang\\.01$/ AND x = bangka-barat'
    )


def test_several_values_become_an_alternation_in_a_regex() -> None:
    q = interpolate('WHERE "site" =~ /^$site$/', RANGE, {"site": ("bangka-barat", "a.b")})
    assert q == 'WHERE "site" =~ /^(bangka-barat|a\\.b)$/'
    one = interpolate('WHERE "site" =~ /^$site$/', RANGE, {"site": ("bangka-barat",)})
    assert one == 'WHERE "site" =~ /^bangka-barat$/', "one value of a multi variable: no group"


def test_several_values_outside_a_regex_are_refused() -> None:
    with pytest.raises(ValueError, match="several values"):
        interpolate("WHERE \"site\" = '$site'", RANGE, {"site": ("a", "b")})


def test_a_variable_without_a_value_is_refused_not_sent() -> None:
    with pytest.raises(ValueError, match=r"\$site"):
        interpolate("WHERE \"site\" = '$site'", RANGE, {})


def test_a_longer_variable_name_is_not_mistaken_for_a_shorter_one() -> None:
    q = interpolate("$site $sites ${site}x", RANGE, {"site": "a", "sites": "b"})
    assert q == "a b ax"


def test_escape_regex_escapes_what_grafana_escapes() -> None:
    assert escape_regex("a/b.c*(d)|[e]{f}^$+?\\") == (
        "a\\/b\\.c\\*\\(d\\)\\|\\[e\\]\\{f\\}\\^\\$\\+\\?\\\\"
    )
    assert escape_regex("bangka-barat") == "bangka-barat"


def test_a_data_link_gets_the_dashboard_variable_and_the_cells_value() -> None:
    url = render_link(
        "${evidence_url}/events/${__value.raw}", {"evidence_url": "http://pos:8080"}, "abc123"
    )
    assert url == "http://pos:8080/events/abc123"
