"""The [alerts] config: defaults that work, and mistakes that name the field and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from broker.alerts.config import AlertsConfig, SiteAlerts, Window
from kernel.config import describe_errors


def problems(raw: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(raw)
    return describe_errors("collector.toml [alerts]", info.value)


def test_an_empty_section_gives_working_defaults() -> None:
    config = AlertsConfig.model_validate({})
    site = config.site("anywhere")
    assert site.timezone == "Asia/Jakarta"
    assert (site.exit_delay_s, site.entry_delay_s) == (60, 30)
    assert site.thresholds.offline_after_beats == 3
    assert site.thresholds.cert_warn_days == 30
    assert config.notify.cooldown_s == 300
    assert site.held_open_s("gudang-01", "pintu-utama") == 120.0


def test_a_full_site_loads_with_its_doors_posts_and_routes() -> None:
    config = AlertsConfig.model_validate(
        {
            "sites": {
                "bangka-barat": {
                    "schedule": [
                        {
                            "days": ["mon", "tue", "wed", "thu", "fri"],
                            "start": "18:00",
                            "end": "07:00",
                        },
                        {"days": ["sun"], "start": "00:00", "end": "24:00"},
                    ],
                    "doors": [
                        {"device": "gudang-01", "sensor": "pintu-utama", "entry": True},
                        {"device": "gudang-02", "sensor": "pintu-belakang", "held_open_s": 30},
                    ],
                    "posts": [{"device": "pos-jaga-01", "sensor": "patroli", "every_min": 30}],
                }
            },
            "notify": {
                "routes": [
                    {"severities": ["critical"], "urls": ["json://127.0.0.1:8080/hook"]},
                ]
            },
        }
    )
    site = config.site("bangka-barat")
    assert site.door("gudang-01", "pintu-utama").entry
    assert not site.door("gudang-02", "pintu-belakang").entry
    assert site.held_open_s("gudang-02", "pintu-belakang") == 30
    post = site.post("pos-jaga-01", "patroli")
    assert post is not None and post.every_min == 30
    assert config.site("elsewhere") == config.default_site


def test_an_unknown_timezone_names_the_field_and_real_zones() -> None:
    text = problems({"sites": {"bangka-barat": {"timezone": "Asia/Jakata"}}})
    assert "sites.bangka-barat.timezone" in text
    assert "'Asia/Jakata' is not known" in text
    assert "Asia/Jakarta (WIB)" in text


def test_a_time_that_is_not_hh_mm_says_how_to_write_it() -> None:
    text = problems(
        {"sites": {"s1": {"schedule": [{"days": ["mon"], "start": "7pm", "end": "07:00"}]}}}
    )
    assert "sites.s1.schedule[0].start" in text
    assert "write HH:MM" in text


def test_a_window_starting_and_ending_at_the_same_time_suggests_a_whole_day() -> None:
    with pytest.raises(ValidationError) as info:
        Window(days=["sun"], start="07:00", end="07:00")
    assert 'start = "00:00", end = "24:00"' in str(info.value)


def test_an_unknown_weekday_is_refused() -> None:
    text = problems(
        {"sites": {"s1": {"schedule": [{"days": ["senin"], "start": "18:00", "end": "07:00"}]}}}
    )
    assert "sites.s1.schedule[0].days[0]" in text


def test_a_door_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="gudang-01/pintu-utama is listed twice"):
        SiteAlerts.model_validate(
            {
                "doors": [
                    {"device": "gudang-01", "sensor": "pintu-utama"},
                    {"device": "gudang-01", "sensor": "pintu-utama", "entry": True},
                ]
            }
        )


def test_a_misspelt_field_is_an_unknown_field() -> None:
    text = problems({"sites": {"s1": {"exit_delay": 30}}})
    assert "sites.s1.exit_delay: unknown field" in text


def test_a_url_apprise_cannot_use_is_refused_without_echoing_its_secret() -> None:
    text = problems({"notify": {"routes": [{"urls": ["nosuchscheme://secret-token@host"]}]}})
    assert "notify.routes[0].urls" in text
    assert "'nosuchscheme'" in text
    assert "secret-token" not in text


def test_a_site_name_that_cannot_be_a_topic_level_is_refused() -> None:
    text = problems({"sites": {"Bangka Barat": {}}})
    assert "Bangka Barat" in text


def test_a_day_listed_twice_or_a_start_at_2400_is_refused() -> None:
    with pytest.raises(ValidationError, match="listed twice"):
        Window(days=["mon", "mon"], start="18:00", end="07:00")
    with pytest.raises(ValidationError, match="next day's 00:00"):
        Window(days=["mon"], start="24:00", end="07:00")
