"""Indonesian first: every string marked for people has an Indonesian translation, and a
stored message reads right in each reader's language."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from broker import i18n
from broker.alerts import lifecycle
from broker.alerts.config import NotifyConfig, Route
from broker.alerts.delivery import Notifier
from broker.alerts.localized import alert_text
from broker.alerts.notifications import NoteWatch, Notification, decide
from broker.alerts.rules import AlertKey, Raise, Rule, time_params
from broker.i18n import N_
from kernel.units import S
from protocol.alerting import Alert

REPO = Path(__file__).resolve().parents[2]


def marked() -> dict[str, str]:
    """Every msgid babel.cfg's extraction finds (as `make i18n` does), with where it is."""
    with (REPO / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)  # type: ignore[no-untyped-call]
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found: dict[str, str] = {}
    for path, line, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options_map, keywords=keywords
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        found.setdefault(msgid, f"{path}:{line}")
    return found


def indonesian() -> Catalog:
    with i18n.catalog_path("id").open("rb") as f:
        return read_po(f, locale="id")


def test_every_marked_string_has_an_indonesian_translation() -> None:
    catalog = indonesian()
    missing = []
    for msgid, where in sorted(marked().items()):
        entry = catalog.get(msgid)
        strings = entry.string if entry is not None else ""
        texts = strings if isinstance(strings, tuple) else (strings,)
        if entry is None or entry.fuzzy or not all(texts):
            missing.append(f"{where}: {msgid!r}")
    assert not missing, "no Indonesian for (run `make i18n`, translate):\n" + "\n".join(missing)


def test_translations_keep_the_placeholders_of_their_msgid() -> None:
    wrong = []
    for entry in indonesian():
        if not entry.id or not entry.string:
            continue
        ids = [entry.id] if isinstance(entry.id, str) else list(entry.id)
        strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        want = set().union(*(i18n.placeholders(i) for i in ids))
        for s in strings:
            if i18n.placeholders(s) != want:
                wrong.append(f"{ids[0]!r} -> {s!r}")
    assert not wrong, "\n".join(wrong)


def test_spans_read_in_the_readers_language() -> None:
    span = (2 * 3600 + 5 * 60) * i18n.NS_PER_S
    assert i18n.duration(span, "id") == "2 jam 5 menit"
    assert i18n.duration(span, "en") == "2 h 5 min"
    assert i18n.duration(9 * i18n.NS_PER_S, "id") == "9 detik"


def test_times_carry_the_sites_zone_name() -> None:
    ns = 1_780_000_000 * i18n.NS_PER_S  # 2026-05-28 20:26:40 UTC
    assert i18n.clock(ns, "Asia/Jakarta") == "03:26 WIB"
    assert i18n.clock(ns, "Asia/Makassar") == "04:26 WITA"
    assert i18n.clock(ns, "Asia/Jayapura") == "05:26 WIT"


def test_an_unknown_language_falls_back_to_indonesian() -> None:
    assert i18n.language("fr") == "id"
    assert i18n.language(None) == "id"
    assert i18n.language("en") == "en"


def stored_forced_door() -> Alert:
    """A forced-door alert as the engine stores it (raised at 02:29:30 WIB), read back."""
    zone = ZoneInfo("Asia/Jakarta")
    at = int(dt.datetime(2026, 12, 7, 2, 29, 30, tzinfo=zone).timestamp()) * S
    key = AlertKey(Rule.FORCED_DOOR, "bangka-barat", "gudang-01", "pintu-belakang")
    params = time_params(zone, opened=at) | {"mode_msg": "armed", "where": key.where}
    signal = Raise.said(
        key,
        N_("Forced door: {where} opened while armed"),
        N_("opened at {opened_at} while {mode_msg}"),
        params,
        at,
        latched=True,
    )
    alert = lifecycle.on_raise(None, signal).alert
    return Alert.model_validate_json(alert.to_json())


def test_a_stored_alert_reads_in_indonesian_for_an_id_reader_and_in_english_for_an_en_one() -> None:
    alert = stored_forced_door()
    indonesian = alert_text(alert, "id")
    assert (
        indonesian.title == "Pintu dibuka paksa di bangka-barat/gudang-01/pintu-belakang saat siaga"
    )
    assert indonesian.detail == "dibuka pukul 02:29 WIB saat siaga"
    english = alert_text(alert, "en")
    assert english.title == "Forced door: bangka-barat/gudang-01/pintu-belakang opened while armed"
    assert english.detail == "opened at 02:29 WIB while armed"
    assert (alert.title, alert.detail) == (english.title, english.detail)  # for older readers


def test_an_alert_stored_before_it_had_a_message_id_reads_as_stored() -> None:
    old = stored_forced_door().model_copy(
        update={"msg": None, "detail_msg": None, "params": {}, "title": "Forced door: x"}
    )
    assert alert_text(old, "id").title == "Forced door: x"


def test_each_notification_route_gets_its_own_language(tmp_path: Path) -> None:
    config = NotifyConfig(
        routes=[
            Route(urls=["json://localhost/polisi"]),
            Route(urls=["json://localhost/auditor"], language="en"),
        ]
    )
    alert = stored_forced_door()
    change = lifecycle.Change(alert=alert, kind=lifecycle.ChangeKind.RAISED)
    _, note = decide(NoteWatch(), change, config, ZoneInfo("Asia/Jakarta"), "k", alert.raised_at)
    assert note is not None
    sent: dict[str, str] = {}

    def sender(url: str, n: Notification) -> bool:
        sent[url.rsplit("/", 1)[1]] = f"{n.title}\n{n.body}"
        return True

    notifier = Notifier(config, tmp_path / "notify.sqlite", sender=sender)
    notifier.start()
    try:
        notifier.submit([note])
        assert notifier.wait_idle(10)
    finally:
        notifier.stop()
    assert sent["polisi"].startswith("[KRITIS] Pintu dibuka paksa di bangka-barat/gudang-01")
    assert "muncul pukul 02:29 WIB, terjadi 1 kali" in sent["polisi"]
    assert sent["auditor"].startswith("[CRITICAL] Forced door: bangka-barat/gudang-01")
    assert "raised 02:29 WIB, seen 1 time(s)" in sent["auditor"]
