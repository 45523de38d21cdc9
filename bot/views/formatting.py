"""Numbers, money, dates and points in the reader's language (Babel's CLDR data)."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from html import escape

from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import ngettext as _n
from babel import Locale
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_currency, format_decimal, format_percent

from db.rules.program import Program, Text

_BABEL_LOCALES = {"en": "en_GB", "ru": "ru_RU", "uk": "uk_UA", "pl": "pl_PL"}
BABEL_LOCALES = tuple(_BABEL_LOCALES.values())  # every language the bot speaks


def locale() -> str:
    return _BABEL_LOCALES.get(get_i18n().current_locale, "en_GB")


@cache
def _parsed(tag: str) -> Locale:
    return Locale.parse(tag)


def _locale() -> Locale:
    """locale(), parsed once: Babel parses a locale given by name on every call, and a
    Locale it is given keeps the data it has looked up."""
    return _parsed(locale())


def number(value: int | Decimal) -> str:
    return format_decimal(value, locale=_locale())


# CLDR's currency spacing, which Babel leaves out: a currency written in letters is kept apart
# from the digits by a no-break space ("PLN 1,234.50", not "PLN1,234.50"); symbols stay close
# ("€0.50") and locales that already space it ("1 234,50 zł") are left as they are.
_LETTERS_TOUCH_DIGITS = re.compile(r"(?<=[^\W\d_])(?=[-\d])|(?<=\d)(?=[^\W\d_])")


def money(value: Decimal, currency: str) -> str:
    """`PLN 12.50` in English, `12,50 zł` in Polish, `12,50 PLN` in Russian."""
    text = format_currency(value, currency, locale=_locale())
    return _LETTERS_TOUCH_DIGITS.sub("\u00a0", text)


def day(value: date | datetime) -> str:
    return format_date(value, format="medium", locale=_locale())


def moment(value: datetime) -> str:
    return format_datetime(value, format="short", locale=_locale(), tzinfo=value.tzinfo)


def clock(value: datetime) -> str:
    """The time of day, in `value`'s own zone (give it the program's)."""
    return format_time(value, format="short", locale=_locale(), tzinfo=value.tzinfo)


def points(n: int) -> str:
    """`1 point`, `5 points`; `1 бал`, `2 бали`, `5 балів`: the language's own plural rule."""
    return _n("{n} point", "{n} points", abs(n)).format(n=number(n))


def percent(value: Decimal) -> str:
    """`value` is in percent (5 for 5 %): "5%" in English, "5 %" in Polish."""
    return format_percent(value / 100, locale=_locale(), decimal_quantization=False)


def text(value: str) -> str:
    """A text from the program file in the reader's language (db.rules.program.Text), else
    as is."""
    if isinstance(value, Text):
        return value.in_language(get_i18n().current_locale)
    return value


def partner_name(program: Program, slug: str) -> str:
    """The partner's name in the reader's language; its slug if it left the program."""
    partner = program.partner(slug)
    return text(partner.name) if partner else slug


def partner_html(program: Program, slug: str) -> str:
    """partner_name, escaped for a message in HTML."""
    return escape(partner_name(program, slug))


def reward_title(program: Program, slug: str) -> str:
    """A reward's title in the reader's language; its slug if the program no longer has it."""
    reward = program.reward(slug)
    return text(reward.title) if reward else slug


def reward_html(program: Program, slug: str) -> str:
    """reward_title, escaped for a message in HTML."""
    return escape(reward_title(program, slug))
