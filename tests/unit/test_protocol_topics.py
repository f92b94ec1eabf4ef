"""Topic builders produce the documented names; the parser accepts exactly the contract."""

from __future__ import annotations

import pytest

from protocol import topics
from protocol.ids import RESERVED_IDS, InvalidIdentifier, check_id
from protocol.topics import Channel, DeviceTopics, ParsedTopic, TopicError, parse_device_topic

UNIT = DeviceTopics("gudang-3", "pintu-1")


def test_device_topics_follow_the_documented_layout() -> None:
    assert UNIT.prefix == "jaga/v1/gudang-3/pintu-1"
    assert UNIT.status == "jaga/v1/gudang-3/pintu-1/status"
    assert UNIT.event == "jaga/v1/gudang-3/pintu-1/event"
    assert UNIT.heartbeat == "jaga/v1/gudang-3/pintu-1/heartbeat"
    assert UNIT.cmd_result == "jaga/v1/gudang-3/pintu-1/cmd-result"
    assert UNIT.cmd_filter == "jaga/v1/gudang-3/pintu-1/cmd/+"
    assert UNIT.snapshot("e1f2") == "jaga/v1/gudang-3/pintu-1/snapshot/e1f2"
    assert UNIT.cmd("resend") == "jaga/v1/gudang-3/pintu-1/cmd/resend"


def test_site_wide_topics_follow_the_documented_layout() -> None:
    assert topics.arming("gudang-3") == "jaga/v1/gudang-3/arming"
    assert topics.alert("gudang-3", "a-17") == "jaga/v1/gudang-3/alert/a-17"
    assert topics.site_cmd("gudang-3", "arm") == "jaga/v1/gudang-3/cmd/arm"
    assert topics.DEADLETTER == "jaga/v1/deadletter"


@pytest.mark.parametrize(
    ("site", "device"),
    [
        ("Gudang", "d1"),
        ("s1", "Pintu"),
        ("s1", "arming"),
        ("alert", "d1"),
        ("s1", "a/b"),
        ("", "d"),
    ],
)
def test_device_topics_refuse_ids_that_cannot_be_topic_levels(site: str, device: str) -> None:
    with pytest.raises(InvalidIdentifier):
        DeviceTopics(site, device)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a+", "#", "x\x00y", "x" * 65])
def test_builders_refuse_levels_that_would_break_the_topic(bad: str) -> None:
    with pytest.raises(TopicError):
        UNIT.snapshot(bad)
    with pytest.raises(TopicError):
        UNIT.cmd(bad)
    with pytest.raises(TopicError):
        topics.alert("s1", bad)
    with pytest.raises(TopicError):
        topics.site_cmd("s1", bad)


def test_site_wide_builders_refuse_a_bad_site() -> None:
    for build in (lambda: topics.arming("S1"), lambda: topics.alert("cmd", "a1")):
        with pytest.raises(InvalidIdentifier):
            build()


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (UNIT.status, ParsedTopic("gudang-3", "pintu-1", Channel.STATUS)),
        (UNIT.event, ParsedTopic("gudang-3", "pintu-1", Channel.EVENT)),
        (UNIT.heartbeat, ParsedTopic("gudang-3", "pintu-1", Channel.HEARTBEAT)),
        (UNIT.cmd_result, ParsedTopic("gudang-3", "pintu-1", Channel.CMD_RESULT)),
        (UNIT.snapshot("ab12"), ParsedTopic("gudang-3", "pintu-1", Channel.SNAPSHOT, "ab12")),
        (UNIT.cmd("arm"), ParsedTopic("gudang-3", "pintu-1", Channel.CMD, "arm")),
    ],
)
def test_parse_device_topic_round_trips_every_channel(topic: str, expected: ParsedTopic) -> None:
    assert parse_device_topic(topic) == expected


def test_every_channel_is_covered_by_the_round_trip() -> None:
    built = {
        parse_device_topic(t).channel
        for t in (UNIT.status, UNIT.event, UNIT.heartbeat, UNIT.cmd_result, UNIT.live)
    } | {parse_device_topic(UNIT.snapshot("x")).channel, parse_device_topic(UNIT.cmd("x")).channel}
    assert built == set(Channel)


@pytest.mark.parametrize(
    "topic",
    [
        "jaga/v1/+/pintu-1/event",
        "jaga/v1/s1/#",
        "jaga/v1/s1/d1/snapshot/+",
        "jaga/v1/s1/d1/snapshot/#",
        "jaga/v1/s1/d1/event\x00",
        "jaga/v1/s1/d1/snapshot/a\x00b",
    ],
)
def test_parse_rejects_wildcards_and_nul(topic: str) -> None:
    with pytest.raises(TopicError, match="wildcard or NUL"):
        parse_device_topic(topic)


@pytest.mark.parametrize(
    "topic",
    [
        "jaga/v1/s1/d1",  # too few levels
        "jaga/v1/s1",
        "jaga/v2/s1/d1/event",  # wrong version
        "other/v1/s1/d1/event",
        "/jaga/v1/s1/d1/event",
        "jaga/v1/s1/d1/event/extra",  # too many levels for a channel without argument
        "jaga/v1/s1/d1/status/x",
        "jaga/v1/s1/d1/event/a/b",
        "jaga/v1/s1/d1/heartbeat/a/b/c",
        "jaga/v1/s1/d1/event/",  # trailing slash is an extra, empty level
        "jaga/v1/s1/d1/snapshot",  # snapshot needs its event id
        "jaga/v1/s1/d1/cmd",
        "jaga/v1/s1/d1/snapshot/a/b",
        "jaga/v1/s1/d1/cmd/arm/now",
    ],
)
def test_parse_rejects_wrong_level_counts(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_device_topic(topic)


@pytest.mark.parametrize("arg", ["", ".", ".."])
def test_parse_rejects_empty_and_dot_arguments(arg: str) -> None:
    with pytest.raises(TopicError):
        parse_device_topic(f"jaga/v1/s1/d1/snapshot/{arg}")


@pytest.mark.parametrize("channel", ["events", "EVENT", "Status", "alarm", "", "cmd_result"])
def test_parse_rejects_unknown_channels(channel: str) -> None:
    with pytest.raises(TopicError, match="unknown channel"):
        parse_device_topic(f"jaga/v1/s1/d1/{channel}")


@pytest.mark.parametrize("reserved", sorted(RESERVED_IDS))
def test_parse_rejects_reserved_names_as_site_or_device(reserved: str) -> None:
    with pytest.raises(TopicError, match="reserved"):
        parse_device_topic(f"jaga/v1/s1/{reserved}/event")
    with pytest.raises(TopicError, match="reserved"):
        parse_device_topic(f"jaga/v1/{reserved}/d1/event")


def test_site_wide_topics_are_not_mistaken_for_device_topics() -> None:
    for topic in (
        topics.arming("s1"),
        topics.alert("s1", "a1"),
        topics.site_cmd("s1", "arm"),
        topics.DEADLETTER,
    ):
        with pytest.raises(TopicError):
            parse_device_topic(topic)


@pytest.mark.parametrize(
    "name",
    [
        "Pintu",  # uppercase
        "pintu_1",  # underscore
        "-pintu",  # leading dash
        "pintu-",  # trailing dash
        "pïntu",  # non-ASCII letter
        "\uff50intu",  # fullwidth letter p
        "pintu 1",
        "x" * 49,  # too long
        "",
        "..",
    ],
)
def test_parse_rejects_bad_ids(name: str) -> None:
    with pytest.raises(TopicError):
        parse_device_topic(f"jaga/v1/s1/{name}/event")
    with pytest.raises(TopicError):
        parse_device_topic(f"jaga/v1/{name}/d1/event")


@pytest.mark.parametrize("name", ["a", "0", "a-b", "x" * 48, "pintu-utama-2"])
def test_ids_at_the_edges_of_the_rule_are_accepted(name: str) -> None:
    assert check_id(name) == name
    assert parse_device_topic(f"jaga/v1/{name}/{name}/event").device == name


def test_reserved_names_are_allowed_only_when_asked() -> None:
    assert check_id("alert", allow_reserved=True) == "alert"
    with pytest.raises(InvalidIdentifier, match="reserved"):
        check_id("alert", "device")


def test_invalid_id_error_names_what_was_checked() -> None:
    with pytest.raises(InvalidIdentifier, match=r"^device 'Pintu' is not valid"):
        check_id("Pintu", "device")


def test_an_id_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(InvalidIdentifier):
        check_id("pintu\n", "device")


def test_parse_rejects_a_device_level_with_a_trailing_newline() -> None:
    with pytest.raises(TopicError):
        parse_device_topic("jaga/v1/s1/pintu\n/event")


def test_collector_filters_without_share_match_every_unit() -> None:
    filters = topics.collector_filters(
        (Channel.EVENT, Channel.HEARTBEAT, Channel.STATUS, Channel.SNAPSHOT), shared=False
    )
    assert filters == [
        "jaga/v1/+/+/event",
        "jaga/v1/+/+/heartbeat",
        "jaga/v1/+/+/status",
        "jaga/v1/+/+/snapshot/#",
    ]


def test_collector_filters_with_share_use_the_collector_group() -> None:
    filters = topics.collector_filters((Channel.EVENT, Channel.SNAPSHOT))
    assert filters == [
        "$share/jaga-collectors/jaga/v1/+/+/event",
        "$share/jaga-collectors/jaga/v1/+/+/snapshot/#",
    ]


def test_collector_filters_for_a_share_of_the_sites_name_each_site() -> None:
    filters = topics.collector_filters(
        (Channel.EVENT, Channel.SNAPSHOT), shared=False, sites=("bangka-barat", "belitung")
    )
    assert filters == [
        "jaga/v1/bangka-barat/+/event",
        "jaga/v1/bangka-barat/+/snapshot/#",
        "jaga/v1/belitung/+/event",
        "jaga/v1/belitung/+/snapshot/#",
    ]
    assert topics.site_command_filters(("belitung",)) == ["jaga/v1/belitung/cmd/+"]
    assert topics.site_command_filters() == [topics.SITE_COMMANDS]


@pytest.mark.parametrize("site", ["+", "#", "a/b", ""])
def test_a_site_that_would_widen_a_filter_is_refused(site: str) -> None:
    with pytest.raises(TopicError):
        topics.collector_filters((Channel.EVENT,), sites=("ok", site))
    with pytest.raises(TopicError):
        topics.site_command_filters((site,))


def test_filters_for_a_channel_and_for_alerts_are_built_by_the_contract() -> None:
    assert topics.device_filter(topics.Channel.EVENT, site="gudang-3") == "jaga/v1/gudang-3/+/event"
    assert topics.device_filter(topics.Channel.STATUS) == "jaga/v1/+/+/status"
    assert topics.device_filter(topics.Channel.CMD, device="pintu-1").endswith("/pintu-1/cmd/+")
    assert topics.alert_filter("gudang-3") == "jaga/v1/gudang-3/alert/+"
    with pytest.raises(topics.TopicError):
        topics.device_filter(topics.Channel.EVENT, site="a/#")


def test_alert_and_device_topics_are_told_apart_without_splitting_by_hand() -> None:
    assert topics.parse_alert_topic(topics.alert("gudang-3", "a1")) == ("gudang-3", "a1")
    assert topics.parse_alert_topic("jaga/v1/gudang-3/pintu-1/event") is None
    assert topics.device_topic_of(topics.alert("gudang-3", "a1")) is None
    parsed = topics.device_topic_of("jaga/v1/gudang-3/pintu-1/status")
    assert parsed is not None and (parsed.device, parsed.channel) == ("pintu-1", "status")
