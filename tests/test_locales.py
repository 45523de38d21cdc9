"""The gettext catalogs under `locales/`: complete, consistent with the code and with each
other, and served by the bot's own i18n with each language's plural rules.

When a test here fails after a change to a message in `bot/`, run `locales/update.sh` and
translate what it marks (empty or `#, fuzzy` entries) in every language."""

from __future__ import annotations

import gettext
import re
import string
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES, build_i18n
from bot.views import formatting as fmt

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "locales"
POT = LOCALES / "messages.pot"

# The same keywords as `pybabel extract -k _ -k __ -k _n:1,2` in locales/update.sh.
KEYWORDS = {**DEFAULT_KEYWORDS, "_": None, "__": None, "_n": (1, 2)}

# Every entry must be translated, except in English, where gettext shows the msgid itself.
TRANSLATED = tuple(language for language in LANGUAGES if language != DEFAULT_LANGUAGE)


def _slavic(n: int) -> int:
    if n % 10 == 1 and n % 100 != 11:
        return 0
    return 1 if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14 else 2


def _polish(n: int) -> int:
    if n == 1:
        return 0
    return 1 if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14 else 2


# nplurals and the plural form index for n, per language (CLDR / GNU gettext rules).
PLURAL_RULES: dict[str, tuple[int, Callable[[int], int]]] = {
    "en": (2, lambda n: 0 if n == 1 else 1),
    "ru": (3, _slavic),
    "uk": (3, _slavic),
    "pl": (3, _polish),
}

# Telegram's HTML tags (parse_mode=HTML). Other `<...>`, like `<card number>` in a usage
# line, are text a translator may translate.
TAG = re.compile(
    r"</?(b|strong|i|em|u|ins|s|strike|del|code|pre|a|span|tg-spoiler|tg-emoji|blockquote)"
    r"(?=[\s>])[^>]*>"
)


def _key(message_id: str | tuple[str, ...]) -> str | tuple[str, ...]:
    return tuple(message_id) if isinstance(message_id, list | tuple) else message_id


def _show(message_id: str | tuple[str, ...]) -> str:
    return " / ".join(message_id) if isinstance(message_id, tuple) else message_id


@cache
def pot() -> Catalog:
    with POT.open("rb") as fp:
        return read_po(fp)


@cache
def catalog(language: str) -> Catalog:
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as fp:
        return read_po(fp, locale=language)


def entries(cat: Catalog) -> list[Message]:
    return [m for m in cat if m.id]


def code_msgids() -> dict[str | tuple[str, ...], str]:
    """Every marked string in the code, extracted as locales/update.sh does, with where."""
    with (ROOT / "babel.cfg").open() as fp:
        method_map, options_map = parse_mapping_cfg(fp)
    found: dict[str | tuple[str, ...], str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        found.setdefault(_key(message), f"{filename}:{lineno}")
    return found


def placeholders(text: str) -> Counter[str]:
    """`{name}`, `{n:>3}`, … as written (escaped `{{` `}}` are text); raises on bad braces."""
    fields: Counter[str] = Counter()
    for _literal, name, spec, conversion in string.Formatter().parse(text):
        if name is not None:
            suffix = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            fields["{" + name + suffix + "}"] += 1
    return fields


def tags(text: str) -> Counter[str]:
    return Counter(match.group(0) for match in TAG.finditer(text))


def nesting_error(text: str) -> str | None:
    stack: list[str] = []
    for match in TAG.finditer(text):
        name = match.group(1)
        if not match.group(0).startswith("</"):
            stack.append(name)
        elif not stack or stack.pop() != name:
            return f"unexpected {match.group(0)}"
    return f"unclosed <{stack[-1]}>" if stack else None


def plural_header(cat: Catalog) -> str:
    headers = dict(cat.mime_headers)
    return headers.get("Plural-Forms", "")


def forms(message: Message) -> list[str]:
    strings = message.string
    return list(strings) if isinstance(strings, list | tuple) else [strings]


# The catalogs and the code


def test_pot_is_up_to_date_with_the_code() -> None:
    in_code = code_msgids()
    in_pot = {_key(m.id) for m in entries(pot())}
    missing = sorted(
        (f"{where}: {_show(mid)!r}" for mid, where in in_code.items() if mid not in in_pot)
    )
    stale = sorted(repr(_show(mid)) for mid in in_pot if mid not in in_code)
    assert not missing and not stale, (
        "locales/messages.pot is out of date; run locales/update.sh and translate.\n"
        + "".join(f"  new in the code: {line}\n" for line in missing)
        + "".join(f"  no longer in the code: {line}\n" for line in stale)
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_has_exactly_the_template_messages(language: str) -> None:
    in_pot = {_key(m.id) for m in entries(pot())}
    in_catalog = {_key(m.id) for m in entries(catalog(language))}
    missing = sorted(repr(_show(mid)) for mid in in_pot - in_catalog)
    extra = sorted(repr(_show(mid)) for mid in in_catalog - in_pot)
    assert not missing and not extra, (
        f"locales/{language}: run locales/update.sh.\n"
        + "".join(f"  missing: {m}\n" for m in missing)
        + "".join(f"  not in messages.pot: {m}\n" for m in extra)
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_fuzzy_or_obsolete_entries(language: str) -> None:
    cat = catalog(language)
    fuzzy = [repr(_show(_key(m.id))) for m in entries(cat) if m.fuzzy]
    obsolete = [repr(_show(_key(mid))) for mid in cat.obsolete]
    assert not fuzzy, f"{language}: fuzzy entries (check, then drop '#, fuzzy'): {fuzzy}"
    assert not obsolete, f"{language}: obsolete entries (#~): {obsolete}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated(language: str) -> None:
    cat = catalog(language)
    nplurals = PLURAL_RULES[language][0]
    untranslated = []
    for m in entries(cat):
        strings = forms(m)
        expected = nplurals if m.pluralizable else 1
        if len(strings) != expected or not all(s.strip() for s in strings):
            untranslated.append(repr(_show(_key(m.id))))
    assert not untranslated, f"{language}: untranslated entries:\n  " + "\n  ".join(untranslated)


@pytest.mark.parametrize("language", LANGUAGES)
def test_plural_forms_header(language: str) -> None:
    nplurals, rule = PLURAL_RULES[language]
    header = plural_header(catalog(language))
    found = re.fullmatch(r"\s*nplurals\s*=\s*(\d+)\s*;\s*plural\s*=\s*(.+?)\s*;?\s*", header)
    assert found, f"{language}: bad Plural-Forms header {header!r}"
    assert int(found.group(1)) == nplurals, f"{language}: {header!r}"
    plural = gettext.c2py(found.group(2))
    wrong = [n for n in range(1001) if plural(n) != rule(n)]
    assert not wrong, f"{language}: {header!r} picks the wrong form for n = {wrong[:10]}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_and_tags_match_the_msgid(language: str) -> None:
    problems = []
    for m in entries(catalog(language)):
        # Every plural form serves many n (21 бал, 101 punktów): compare with msgid_plural.
        compare = m.id[1] if m.pluralizable else m.id
        for index, text in enumerate(forms(m)):
            if not text:
                continue  # untranslated: gettext shows the msgid (en only, see above)
            where = f"{_show(_key(m.id))!r}" + (f" [form {index}]" if m.pluralizable else "")
            try:
                got = placeholders(text)
            except ValueError as exc:
                problems.append(f"{where}: broken braces ({exc}) in {text!r}")
                continue
            if set(got) != set(placeholders(compare)):
                problems.append(f"{where}: placeholders {sorted(got)} in {text!r}")
            if tags(text) != tags(compare):
                problems.append(f"{where}: HTML tags {dict(tags(text))} in {text!r}")
            elif error := nesting_error(text):
                problems.append(f"{where}: HTML {error} in {text!r}")
    assert not problems, f"{language}:\n  " + "\n  ".join(problems)


# The bot's own i18n


POINTS = {
    "en": {1: "1 point", 2: "2 points", 5: "5 points", 11: "11 points", 21: "21 points"},
    "ru": {
        1: "1 балл", 2: "2 балла", 5: "5 баллов", 11: "11 баллов",
        21: "21 балл", 22: "22 балла", 25: "25 баллов", 101: "101 балл",
    },
    "uk": {
        1: "1 бал", 2: "2 бали", 5: "5 балів", 11: "11 балів",
        21: "21 бал", 22: "22 бали", 25: "25 балів", 101: "101 бал",
    },
    "pl": {
        1: "1 punkt", 2: "2 punkty", 5: "5 punktów", 11: "11 punktów",
        21: "21 punktów", 22: "22 punkty", 25: "25 punktów", 101: "101 punktów",
    },
}  # fmt: skip


def test_bot_i18n_loads_every_language() -> None:
    i18n = build_i18n()
    assert set(LANGUAGES) <= set(i18n.available_locales)


@pytest.mark.parametrize("language", LANGUAGES)
def test_points_use_the_language_plural_rule(language: str) -> None:
    i18n = build_i18n()
    for n, expected in POINTS[language].items():
        assert i18n.gettext("{n} point", "{n} points", n, locale=language).format(n=n) == expected
        with i18n.context(), i18n.use_locale(language):
            assert fmt.points(n) == expected


@pytest.mark.parametrize("language", TRANSLATED)
def test_bot_serves_every_translation(language: str) -> None:
    """What the bot compiles in memory is what the catalog says, entry for entry."""
    i18n = build_i18n()
    rule = PLURAL_RULES[language][1]
    wrong = []
    for m in entries(catalog(language)):
        if m.pluralizable:
            for n in range(30):
                got = i18n.gettext(m.id[0], m.id[1], n, locale=language)
                if got != forms(m)[rule(n)]:
                    wrong.append(f"{_show(_key(m.id))!r} n={n}: {got!r}")
        elif (got := i18n.gettext(m.id, locale=language)) != m.string:
            wrong.append(f"{m.id!r}: {got!r}")
    assert not wrong, f"{language}:\n  " + "\n  ".join(wrong)
