"""Indonesian first: every string marked for people has an Indonesian translation, and a
stored message reads right in each reader's language."""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from broker import i18n

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
