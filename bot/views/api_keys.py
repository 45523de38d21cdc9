"""/api_key's screens: a partner's keys to the partner API with buttons to make one (by
scopes) or revoke one, the new key (shown once), and what revoking did."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ApiKeyCb
from bot.views import formatting as fmt
from db.rules.program import Program
from db.usecases.api_keys import KeyInfo

# The buttons' scope choices, as ApiKeyCb carries them.
CHOICES = {"both": ("sales", "read"), "read": ("read",), "sales": ("sales",)}


def scopes_text(scopes: Sequence[str]) -> str:
    if set(scopes) == {"sales", "read"}:
        return _("sales and read")
    return _("sales") if "sales" in scopes else _("read only")


def _when(moment: datetime) -> str:
    """A day as "made" shows it, and the time: one date format in the list."""
    return f"{fmt.day(moment)}, {fmt.clock(moment)}"


def _key(info: KeyInfo) -> str:
    return f"<code>{escape(info.shown)}…</code>"


def listing(
    program: Program, partner: str, keys: Sequence[KeyInfo], op: str
) -> tuple[str, InlineKeyboardMarkup]:
    zone = program.program.zone
    title = _("🔑 <b>API keys of {partner}</b>, for tills and shop software (the partner API).")
    lines = [title.format(partner=fmt.partner_html(program, partner))]
    for info in keys:
        used = (
            _("last used {moment}").format(moment=_when(info.last_used_at.astimezone(zone)))
            if info.last_used_at is not None
            else _("never used")
        )
        made = _("made {day}").format(day=fmt.day(info.created_at.astimezone(zone)))
        lines.append(" · ".join([_key(info), scopes_text(info.scopes), made, used]))
    if not keys:
        lines.append(_("No keys yet."))
    lines.append(
        _(
            "A new key is shown once: give it to whoever sets up the till. Scopes: sales "
            "(post and refund sales) and read (members, sales, settlement)."
        )
    )
    rows = [
        [
            InlineKeyboardButton(
                text=_("➕ New key: {scopes}").format(scopes=scopes_text(CHOICES[choice])),
                callback_data=ApiKeyCb(
                    action="new",
                    partner=partner,
                    scopes=choice,
                    op=op,  # type: ignore[arg-type]
                ).pack(),
            )
        ]
        for choice in CHOICES
    ]
    rows += [
        [
            InlineKeyboardButton(
                text=_("🗑 Revoke {key}…").format(key=info.shown),
                callback_data=ApiKeyCb(action="revoke", partner=partner, key=info.id).pack(),
            )
        ]
        for info in keys
    ]
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def created(program: Program, info: KeyInfo, key: str) -> str:
    return "\n\n".join(
        [
            _("🔑 A new API key of {partner}, scopes: {scopes}.").format(
                partner=fmt.partner_html(program, info.partner_slug),
                scopes=scopes_text(info.scopes),
            ),
            f"<code>{escape(key)}</code>",
            _(
                "Copy it now: it is shown only this once, and the program keeps no copy it "
                "could show again. A till sends it in the header Authorization: Bearer "
                "followed by the key."
            ),
        ]
    )


def made_already() -> str:
    return _("That key was made already: it is in the message after that button.")


def ask_revoke(info: KeyInfo) -> tuple[str, InlineKeyboardMarkup]:
    text = _(
        "Revoke {key}? Tills and software that use it are refused from their next request."
    ).format(key=_key(info))
    data = {"partner": info.partner_slug, "key": info.id}
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("🗑 Revoke"), callback_data=ApiKeyCb(action="sure", **data).pack()
                ),
                InlineKeyboardButton(
                    text=_("Keep it"), callback_data=ApiKeyCb(action="keep", **data).pack()
                ),
            ]
        ]
    )
    return text, markup


def revoked(info: KeyInfo, now: bool) -> str:
    if now:
        return _("Key {key} revoked: it no longer opens the API.").format(key=_key(info))
    return _("Key {key} was revoked already. Nothing changed.").format(key=_key(info))


def kept() -> str:
    return _("The key was kept.")


def usage(program: Program) -> str:
    partners = ", ".join(p.slug for p in program.partners)
    return _("/api_key PARTNER: a partner's API keys. Partners: {partners}").format(
        partners=escape(partners)
    )


def gone() -> str:
    return _("That key is no longer in use: send /api_key for the keys as they are now.")
