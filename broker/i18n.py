"""Indonesian first, English second: every word a person reads goes through gettext catalogs.

The msgids are English (the source language); `broker/locale/id/LC_MESSAGES/jaga.po` holds
the Indonesian. `en` needs no catalog. The .po is compiled in memory by Babel the first time
a language is asked for, so an editable install and `pip install .[collector]` read the same
file and no stale .mo can exist. `make i18n` extracts new strings and updates the .po;
tests/unit/test_i18n.py fails while any msgid lacks an Indonesian msgstr.

How to mark a string (`make i18n` finds all of these):
- Python, the reader's language known now: `t = translator(lang)`, then
  `t.gettext("Log out")` or `t.ngettext("{n} alarm", "{n} alarms", n).format(n=n)`.
- Python, rendered later for each reader (alert titles, stored messages): `N_("Unit offline:
  {where}")` marks it and returns it unchanged; keep it with its parameters and call
  `render(msgid, params, lang)` where the reader is known. Parameters are strings; by the
  end of their name: `*_at` is ns since the epoch shown as `02:29 WIB` in `params["tz"]`
  (an IANA zone, default Asia/Jakarta), `*_for` a span of ns (`2 jam 5 menit`), `*_msg` a
  msgid translated in turn; any other is shown as it is.
- Jinja2 templates (environments from `environment(loader, lang)`): `{{ _("Log out") }}`,
  `{{ _("Alarms (%(n)s)", n=count) }}`, `{% trans %}...{% endtrans %}`, or
  `{{ ngettext("%(num)d picture", "%(num)d pictures", n) }}` (newstyle gettext: autoescaped,
  %-placeholders by name).
- JavaScript (broker/web/static): mark the English in broker/web/page_strings.py with `N_`;
  the page gets them translated as JSON and `t("...")` looks them up.
Write Indonesian as people at a police post say it ("Pintu dibuka paksa", "Akui"), not
word for word.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from jinja2 import BaseLoader, Environment

Language = Literal["id", "en"]
LANGUAGES: tuple[Language, ...] = get_args(Language)
DEFAULT: Language = "id"
SOURCE: Language = "en"
DOMAIN = "jaga"
LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_TZ = "Asia/Jakarta"
NS_PER_S = 1_000_000_000


def N_(msgid: str) -> str:
    """Marks a msgid for extraction; it is translated later, in each reader's language."""
    return msgid


def language(value: str | None) -> Language:
    """A known language, or the default for anything else (a stale cookie, a typo)."""
    for known in LANGUAGES:
        if value == known:
            return known
    return DEFAULT


def catalog_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translator(lang: str) -> gettext.NullTranslations:
    """The translations of a language; English (the msgids) and unknown ones translate nothing."""
    if lang == SOURCE or lang not in LANGUAGES:
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with catalog_path(lang).open("rb") as f:
        catalog = read_po(f, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)  # fuzzy entries are guesses: English instead
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def gettext_(lang: str, msgid: str) -> str:
    return translator(lang).gettext(msgid)


# rendering stored messages --------------------------------------------------------------------

_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def placeholders(text: str) -> set[str]:
    """The `{name}` fields of a message (a translation must use the same ones)."""
    return set(_FIELD.findall(text))


def render(msgid: str, params: Mapping[str, str], lang: str) -> str:
    """A stored message in the reader's language; English when the translation cannot be used."""
    values = {k: _param(k, v, params, lang) for k, v in params.items()}
    for text in (translator(lang).gettext(msgid), msgid):
        try:
            return _FIELD.sub(lambda m: values[m.group(1)], text)
        except KeyError:
            continue
    return msgid


def _param(name: str, value: str, params: Mapping[str, str], lang: str) -> str:
    try:
        if name.endswith("_at"):
            return clock(int(value), params.get("tz", DEFAULT_TZ))
        if name.endswith("_for"):
            return duration(int(value), lang)
    except ValueError:
        return value
    if name.endswith("_msg"):
        return translator(lang).gettext(value)
    return value


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TZ)


def clock(ns: int, tz: str = DEFAULT_TZ) -> str:
    """`02:29 WIB`: the hour in the site's zone and the zone's name (WIB, WITA, WIT)."""
    return dt.datetime.fromtimestamp(ns // NS_PER_S, zone(tz)).strftime("%H:%M %Z")


def when(ns: int, tz: str = DEFAULT_TZ) -> str:
    """`2026-12-06 02:29:05 WIB`: date and time in the site's zone with its name."""
    return dt.datetime.fromtimestamp(ns // NS_PER_S, zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(ns: int, lang: str) -> str:
    """A span for people: `2 jam 5 menit`, `3 menit 4 detik`, `9 detik` (en: `2 h 5 min`)."""
    t = translator(lang)
    s = max(ns, 0) // NS_PER_S
    if s >= 3600:
        return t.gettext(N_("{h} h {m} min")).format(h=s // 3600, m=s % 3600 // 60)
    if s >= 60:
        return t.gettext(N_("{m} min {s} s")).format(m=s // 60, s=s % 60)
    return t.gettext(N_("{s} s")).format(s=s)


# Jinja2 ---------------------------------------------------------------------------------------


def environment(loader: BaseLoader, lang: str) -> Environment:
    """A Jinja2 environment speaking one language (one per language: no shared mutable state
    between requests in different languages)."""
    from jinja2 import Environment, select_autoescape

    env = Environment(
        loader=loader,
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translator(lang), newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = language(lang)
    return env
