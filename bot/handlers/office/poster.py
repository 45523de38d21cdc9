"""/poster: a printable A4 poster with the join QR code; /link: a join link with a source.

Both links carry a source (db/rules/tokens.py: `src-<source>`), so every join through them is
counted by source in /stats. Owners make posters for the program or any partner; a
partner's manager for their own partner only. Owners and marketers make links."""

from __future__ import annotations

import asyncio
from html import escape

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject, or_f
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.filters import IsOwner, IsStaff, PrivateChat
from bot.views import formatting as fmt
from bot.views.keyboards import LANGUAGE_NAMES
from bot.views.links import start_link
from bot.views.poster import PosterText, render_poster
from db.ledger.writer import unit_of_work
from db.rules.program import Program
from db.rules.tokens import REFERRAL_SOURCE, InvalidToken, clean_source, source_param
from db.usecases.staff import StaffInfo, audit

POSTER = "poster"


def poster_source(partner: str | None) -> str:
    return f"{POSTER}-{partner}" if partner else POSTER


def _poster_text(program: Program, partner: str | None, link: str) -> PosterText:
    """The poster's words in the current locale (the caller picks it)."""
    invitation = _("Earn points at every partner of {program} and spend them at any of them.")
    invitation = invitation.format(program=fmt.text(program.program.name))
    if program.program.welcome_points:
        invitation += " " + _("Join now and get a welcome gift of {points}.").format(
            points=fmt.points(program.program.welcome_points)
        )
    invitation += " " + _("All you need is Telegram: nothing to install, no plastic card.")
    rules = program.partner(partner) if partner else None
    return PosterText(
        title=fmt.text(program.program.name),
        partner=fmt.text(rules.name) if rules else None,
        invitation=invitation,
        scan=_("Scan the code with your phone's camera to join"),
        link=link,
    )


async def _audit(
    session: AsyncSession,
    action: str,
    message: Message,
    staff: StaffInfo | None,
    source: str,
    language: str | None = None,
) -> None:
    assert message.from_user is not None
    async with unit_of_work(session):
        await audit(
            session,
            action,
            actor=message.from_user.id,
            staff=staff,
            source=source,
            language=language,
        )


async def poster(
    message: Message,
    command: CommandObject,
    bot: Bot,
    session: AsyncSession,
    program: Program,
    i18n: I18n,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    assert message.from_user is not None
    owner = message.from_user.id in settings.admin_ids
    partner: str | None = None
    language: str | None = None
    for word in (command.args or "").lower().split():
        if program.partner(word) and partner is None:
            partner = word
        elif word in LANGUAGE_NAMES and language is None:
            language = word
        else:
            await message.answer(
                _(
                    "Use /poster [partner] [language], for example /poster {example} en. "
                    "Partners: {partners}. Languages: {languages}."
                ).format(
                    example=program.partners[0].slug,
                    partners=", ".join(p.slug for p in program.partners),
                    languages=", ".join(LANGUAGE_NAMES),
                )
            )
            return
    language = language or i18n.current_locale
    if not owner:
        # A manager's poster is their own partner's, whatever the command names.
        assert staff is not None
        staff.require("partner_poster")
        if partner not in (None, staff.partner_slug):
            await message.answer(
                _("You can make posters for {partner} only: send /poster.").format(
                    partner=escape(staff.partner_name or "")
                )
            )
            return
        partner = staff.partner_slug
    source = poster_source(partner)
    link = await start_link(bot, source_param(source))
    with i18n.use_locale(language):
        text = _poster_text(program, partner, link)
    await _audit(session, "poster", message, staff, source=source, language=language)
    # Drawing takes a few hundred milliseconds of CPU: not on the event loop.
    pdf, png = await asyncio.to_thread(render_poster, text)
    await message.answer_document(
        BufferedInputFile(pdf, filename=f"{source}.pdf"),
        caption=_(
            "An A4 poster to print ({language}). Joins through its code count as "
            "“{source}” in /stats."
        ).format(language=LANGUAGE_NAMES[language], source=source),
    )
    await message.answer_photo(BufferedInputFile(png, filename=f"{source}.png"), caption=link)


async def source_link(
    message: Message,
    command: CommandObject,
    bot: Bot,
    session: AsyncSession,
    staff: StaffInfo | None = None,
) -> None:
    """A join link for an ad, a campaign, a flyer: joins through it count under its source."""
    try:
        source = clean_source(command.args or "")
        if source == REFERRAL_SOURCE:  # that one means a friend's invitation
            raise InvalidToken()
    except InvalidToken:
        await message.answer(
            _(
                "Name the link's source: 1 to 60 letters a–z, digits, “-” or “_”, for example "
                "/link autumn-flyer."
            )
        )
        return
    link = await start_link(bot, source_param(source))
    await _audit(session, "link", message, staff, source=source)
    await message.answer(
        _(
            "Join link for “{source}”: {link}\nUse it in an ad, a campaign or a flyer; joins "
            "through it count as “{source}” in /stats."
        ).format(source=escape(source), link=link)
    )


def build() -> Router:
    router = Router(name="poster")
    # Members skip the whole router: each command below is for owners or staff.
    router.message.filter(PrivateChat(), or_f(IsOwner(), IsStaff()))
    router.message.register(poster, Command("poster"), or_f(IsOwner(), IsStaff("partner_poster")))
    router.message.register(source_link, Command("link"), or_f(IsOwner(), IsStaff("source_link")))
    return router
