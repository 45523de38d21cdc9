"""Keyboards. Button texts are translated; the main menu's are matched by lazy translations,
so each member's buttons work in their own language."""

from __future__ import annotations

from urllib.parse import quote

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from bot import roles
from bot.callbacks import CardCb, ConsentCb, HistoryCb, JoinCb, LanguageCb, PrivacyCb

LANGUAGE_NAMES = {"en": "English", "ru": "Русский", "uk": "Українська", "pl": "Polski"}

CARD = __("💳 Card")
BALANCE = __("💰 Balance")
STAMPS = __("🎟 Stamps")
HISTORY = __("📜 History")
REWARDS = __("🛍 Rewards")
VOUCHERS = __("🎟 Vouchers")
INVITE = __("🎁 Invite friends")
GIFT = __("🎀 Give points")
DONATE = __("🤍 Donate")
PARTNERS = __("🏪 Partners")
OFFERS = __("🎉 Offers")
CLUB = __("👑 Club")
LANGUAGE = __("🌐 Language")
PRIVACY = __("🔒 Privacy")
HELP = __("❓ Help")

# The member's menu keyboard: a button for each member command of the roles table (but
# /paysupport, which Telegram wants answered, not offered).
BUTTONS = {
    "card": CARD,
    "balance": BALANCE,
    "stamps": STAMPS,
    "history": HISTORY,
    "rewards": REWARDS,
    "vouchers": VOUCHERS,
    "invite": INVITE,
    "gift": GIFT,
    "donate": DONATE,
    "partners": PARTNERS,
    "offers": OFFERS,
    "club": CLUB,
    "language": LANGUAGE,
    "privacy": PRIVACY,
    "help": HELP,
}


def main_menu() -> ReplyKeyboardMarkup:
    labels = [BUTTONS[cmd.name] for cmd in roles.COMMANDS[roles.MEMBER] if cmd.name in BUTTONS]
    rows = [labels[i : i + 2] for i in range(0, len(labels), 2)]
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=str(label)) for label in row] for row in rows],
        resize_keyboard=True,
        is_persistent=True,
    )


def _inline(*rows: list[InlineKeyboardButton]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=list(rows))


def _button(text: str, data: object) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())  # type: ignore[attr-defined]


def join_keyboard(rules_url: str | None) -> InlineKeyboardMarkup:
    rows = [[_button(_("✅ I accept the rules, join"), JoinCb(action="accept"))]]
    if rules_url:
        rows.append([InlineKeyboardButton(text=_("📄 Full rules"), url=rules_url)])
    rows.append([_button("🌐 " + _("Language"), LanguageCb(code="menu"))])
    return _inline(*rows)


def languages_keyboard() -> InlineKeyboardMarkup:
    return _inline([_button(name, LanguageCb(code=code)) for code, name in LANGUAGE_NAMES.items()])


def consent_keyboard() -> InlineKeyboardMarkup:
    return _inline(
        [_button(_("Yes, send me offers"), ConsentCb(marketing=True))],
        [_button(_("No, thanks"), ConsentCb(marketing=False))],
    )


def card_keyboard() -> InlineKeyboardMarkup:
    return _inline([_button(_("🔄 New code"), CardCb(action="refresh"))])


def history_keyboard(offset: int, page: int, total: int) -> InlineKeyboardMarkup | None:
    buttons = []
    if offset > 0:
        buttons.append(_button(_("◀ Newer"), HistoryCb(offset=max(offset - page, 0))))
    if offset + page < total:
        buttons.append(_button(_("Older ▶"), HistoryCb(offset=offset + page)))
    return _inline(buttons) if buttons else None


def share_keyboard(link: str, text: str) -> InlineKeyboardMarkup:
    url = f"https://t.me/share/url?url={quote(link, safe='')}&text={quote(text, safe='')}"
    return _inline([InlineKeyboardButton(text=_("📤 Share"), url=url)])


def privacy_keyboard(marketing: bool, birthday: bool = False) -> InlineKeyboardMarkup:
    """/privacy's buttons; `birthday`: the member gave theirs (change or remove it)."""
    toggle = _("🔕 Stop offers") if marketing else _("🔔 Send me offers")
    rows = [
        [_button(_("📦 Export my data"), PrivacyCb(action="export"))],
        [_button(toggle, PrivacyCb(action="offers_off" if marketing else "offers_on"))],
    ]
    if birthday:
        rows.append(
            [
                _button(_("🎂 Change my birthday"), PrivacyCb(action="birthday")),
                _button(_("Remove it"), PrivacyCb(action="no_birthday")),
            ]
        )
    else:
        rows.append([_button(_("🎂 Give my birthday"), PrivacyCb(action="birthday"))])
    rows.append([_button(_("🗑 Delete my account"), PrivacyCb(action="delete"))])
    return _inline(*rows)


def delete_keyboard() -> InlineKeyboardMarkup:
    return _inline(
        [_button(_("Yes, delete everything"), PrivacyCb(action="confirm"))],
        [_button(_("Cancel"), PrivacyCb(action="cancel"))],
    )
