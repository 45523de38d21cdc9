"""Translations from the gettext catalogs under `locales/`, compiled in memory at start, so
no build step stands between a catalog edit and the running bot."""

from __future__ import annotations

import gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
LANGUAGES = ("en", "ru", "uk", "pl")
DEFAULT_LANGUAGE = "en"


class CatalogI18n(I18n):
    @contextmanager
    def context(self) -> Iterator[I18n]:
        # aiogram keeps the current instance in a context variable per class; gettext() reads
        # the base class's, so register there, not under this subclass.
        token = I18n.set_current(self)
        try:
            yield self
        finally:
            I18n.reset_current(token)

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        translations: dict[str, gettext.GNUTranslations] = {}
        for po_path in sorted(self.path.glob(f"*/LC_MESSAGES/{self.domain}.po")):
            mo_path = po_path.with_suffix(".mo")
            if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
                data = mo_path.read_bytes()  # compiled at build time (the Docker image)
            else:
                with po_path.open("rb") as fp:
                    catalog = read_po(fp, locale=po_path.parent.parent.name)
                buffer = io.BytesIO()
                write_mo(buffer, catalog, use_fuzzy=False)
                data = buffer.getvalue()
            translations[po_path.parent.parent.name] = gettext.GNUTranslations(io.BytesIO(data))
        return translations


def build_i18n(path: Path = LOCALES_DIR) -> CatalogI18n:
    return CatalogI18n(path=path, default_locale=DEFAULT_LANGUAGE, domain="messages")


def pick_language(telegram_code: str | None) -> str:
    """The member's language from Telegram's `language_code` (`pt-br`, `uk`, …)."""
    code = (telegram_code or "").split("-")[0].lower()
    return code if code in LANGUAGES else DEFAULT_LANGUAGE
