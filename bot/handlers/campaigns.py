"""/campaign for marketers and owners: choose the audience (the size updates as filters
change), write the message, see a preview in one's own chat, then send now or schedule.
/campaigns lists scheduled ones, to cancel."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

from aiogram import Bot, Router
from aiogram.filters import Command, or_f
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import formatting as fmt
from bot.callbacks import CampaignCb, SegmentCb
from bot.delivery import send_campaign_message
from bot.editing import edit_markup, edit_text
from bot.filters import HasText, IsCommand, IsOwner, IsStaff, PrivateChat
from bot.keyboards import LANGUAGE_NAMES
from db.campaigns import (
    Segment,
    audience_size,
    cancel_campaign,
    create_campaign,
    get_campaign,
    schedule_campaign,
    scheduled_campaigns,
    start_campaign,
)
from db.program import Program

INACTIVE_CHOICES = ("30", "60", "90")
SINCE_CHOICES = ("7", "30", "90")


class Compose(StatesGroup):
    segment = State()
    content = State()
    button = State()
    when = State()


def _button(text: str, data: Any) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _segment(data: dict[str, Any]) -> Segment:
    return Segment.from_json(data.get("segment", {}))


def _describe(segment: Segment) -> str:
    parts = []
    if segment.tier:
        parts.append(_("tier {tier}").format(tier=escape(segment.tier)))
    if segment.partner:
        parts.append(_("customers of {partner}").format(partner=escape(segment.partner)))
    if segment.language:
        parts.append(LANGUAGE_NAMES.get(segment.language, segment.language))
    if segment.inactive_days:
        parts.append(_("no purchase in {days} days").format(days=segment.inactive_days))
    if segment.joined_since:
        parts.append(
            _("joined since {date}").format(
                date=fmt.day(
                    datetime.combine(segment.joined_since, datetime.min.time(), tzinfo=UTC)
                )
            )
        )
    return ", ".join(parts) or _("everyone")


def _segment_menu() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(_("Tier"), SegmentCb(field="menu", value="tier")),
                _button(_("Partner"), SegmentCb(field="menu", value="partner")),
            ],
            [
                _button(_("Language"), SegmentCb(field="menu", value="language")),
                _button(_("Inactive"), SegmentCb(field="menu", value="inactive")),
            ],
            [
                _button(_("Joined since"), SegmentCb(field="menu", value="since")),
                _button(_("Everyone"), SegmentCb(field="reset")),
            ],
            [_button(_("Next: write the message ▶"), SegmentCb(field="next"))],
        ]
    )


def _choices(field: str, program: Program) -> list[tuple[str, str]]:
    """(label, callback value) of each choice of a filter. Tiers go by their index in the
    program: a tier's name is free text and may not fit in callback data."""
    if field == "tier":
        return [(t.name, str(i)) for i, t in enumerate(program.tiers)]
    if field == "partner":
        return [(p.name, p.slug) for p in program.partners]
    if field == "language":
        return list((name, code) for code, name in LANGUAGE_NAMES.items())
    if field == "inactive":
        return [(_("{days} days").format(days=d), d) for d in INACTIVE_CHOICES]
    if field == "since":
        return [(_("the last {days} days").format(days=d), d) for d in SINCE_CHOICES]
    return []


FILTERS = ("tier", "partner", "language", "inactive", "since")


async def _show_segment(
    target: Message, session: AsyncSession, segment: Segment, *, edit: bool
) -> None:
    size = await audience_size(session, segment)
    text = "\n".join(
        [
            _("📣 <b>New campaign</b>"),
            _("Audience: {who}.").format(who=_describe(segment)),
            _("Members who accept offers in it: {count}.").format(count=fmt.number(size)),
        ]
    )
    if edit:
        await edit_text(target, text, reply_markup=_segment_menu())
    else:
        await target.answer(text, reply_markup=_segment_menu())


async def new_campaign(message: Message, state: FSMContext, session: AsyncSession) -> None:
    await state.set_state(Compose.segment)
    await state.set_data({"segment": {}})
    await _show_segment(message, session, Segment(), edit=False)


async def segment_step(
    query: CallbackQuery,
    callback_data: SegmentCb,
    state: FSMContext,
    session: AsyncSession,
    program: Program,
) -> None:
    await query.answer()
    if not isinstance(query.message, Message):
        return
    data = await state.get_data()
    if await state.get_state() != Compose.segment.state:
        await edit_text(query.message, _("This draft is closed. Start again with /campaign."))
        return
    segment = dict(data.get("segment", {}))
    field, value = callback_data.field, callback_data.value
    if field == "menu":
        if value not in FILTERS:
            return
        rows = [
            [_button(label, SegmentCb(field=value, value=v))]
            for label, v in _choices(value, program)
        ]
        rows.append([_button(_("Any"), SegmentCb(field=value, value=""))])
        await edit_markup(query.message, InlineKeyboardMarkup(inline_keyboard=rows))
        return
    if field == "next":
        await state.set_state(Compose.content)
        await edit_markup(query.message, None)
        await query.message.answer(
            _("Send the message: text, or a photo with a caption. Formatting is kept.")
        )
        return
    # Only a value the menu offered: callback data can be forged, and the program may have
    # changed since the menu was drawn.
    if value and value not in {v for _label, v in _choices(field, program)}:
        await query.message.answer(_("That choice is no longer available. Choose again."))
        await _show_segment(query.message, session, _segment(data), edit=False)
        return
    if field == "reset":
        segment = {}
    elif field == "inactive":
        segment["inactive_days"] = int(value) if value else None
    elif field == "since":
        since = date.today() - timedelta(days=int(value)) if value else None
        segment["joined_since"] = since.isoformat() if since else None
    elif field == "tier":
        segment["tier"] = program.tiers[int(value)].name if value else None
    else:
        segment[field] = value or None
    segment = {k: v for k, v in segment.items() if v}
    await state.update_data(segment=segment)
    await _show_segment(query.message, session, Segment.from_json(segment), edit=True)


async def content_step(message: Message, state: FSMContext) -> None:
    text = message.html_text if (message.text or message.caption) else ""
    photo = message.photo[-1].file_id if message.photo else None
    if not text and not photo:
        await message.answer(_("Send text, or a photo with a caption."))
        return
    await state.update_data(text=text, photo=photo)
    await state.set_state(Compose.button)
    await message.answer(
        _("Add a link button? Send it as: Label | https://example.org — or send /skip.")
    )


async def button_step(
    message: Message, state: FSMContext, session: AsyncSession, bot: Bot, i18n: I18n
) -> None:
    raw = (message.text or "").strip()
    label = url = None
    if raw != "/skip":
        label, _sep, url = (part.strip() for part in raw.partition("|"))
        if not label or not url.startswith(("https://", "http://")) or len(label) > 64:
            await message.answer(_("Send it as: Label | https://example.org — or send /skip."))
            return
    data = await state.get_data()
    assert message.from_user is not None
    segment = _segment(data)
    campaign_id = await create_campaign(
        session,
        created_by=message.from_user.id,
        segment=segment,
        text=data["text"] or "",
        photo_file_id=data.get("photo"),
        button_text=label,
        button_url=url,
        language=i18n.current_locale,
    )
    await state.set_state(None)
    info = await get_campaign(session, campaign_id)
    assert info is not None
    await message.answer(_("Preview: this is what members will see."))
    await send_campaign_message(bot, message.chat.id, info)
    size = await audience_size(session, segment)
    await message.answer(
        _("Campaign #{id} to {who}: {count} members. Send it?").format(
            id=campaign_id, who=_describe(segment), count=fmt.number(size)
        ),
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[
                [_button(_("🚀 Send now"), CampaignCb(action="now", id=campaign_id))],
                [_button(_("🕒 Schedule"), CampaignCb(action="schedule", id=campaign_id))],
                [_button(_("✖ Cancel"), CampaignCb(action="drop", id=campaign_id))],
            ]
        ),
    )


async def decide(
    query: CallbackQuery, callback_data: CampaignCb, state: FSMContext, session: AsyncSession
) -> None:
    await query.answer()
    if not isinstance(query.message, Message):
        return
    campaign_id = callback_data.id
    if callback_data.action == "now":
        progress = await query.message.answer(
            _("📣 Campaign #{id} is being sent.").format(id=campaign_id)
        )
        size = await start_campaign(
            session,
            campaign_id,
            progress_chat_id=progress.chat.id,
            progress_message_id=progress.message_id,
        )
        if size is None:
            await edit_text(
                progress,
                _("Campaign #{id} was already started or cancelled.").format(id=campaign_id),
            )
        await edit_markup(query.message, None)
    elif callback_data.action == "schedule":
        await state.set_state(Compose.when)
        await state.update_data(campaign=campaign_id)
        await query.message.answer(
            _("When? Send the date and time in UTC, like 2026-12-01 10:00.")
        )
    elif callback_data.action in ("drop", "cancel"):
        if await cancel_campaign(session, campaign_id):
            await edit_text(
                query.message, _("Campaign #{id} is cancelled.").format(id=campaign_id)
            )
        else:
            await query.message.answer(
                _("Campaign #{id} was already started or cancelled.").format(id=campaign_id)
            )


async def when_step(message: Message, state: FSMContext, session: AsyncSession) -> None:
    try:
        at = datetime.strptime((message.text or "").strip(), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    except ValueError:
        await message.answer(_("Send the date and time in UTC, like 2026-12-01 10:00."))
        return
    if at <= datetime.now(UTC):
        await message.answer(_("That time has passed. Send a time in the future."))
        return
    campaign_id = (await state.get_data())["campaign"]
    await state.clear()
    if await schedule_campaign(session, campaign_id, at):
        await message.answer(
            _(
                "Campaign #{id} will be sent on {when} UTC. /campaigns lists what is scheduled."
            ).format(id=campaign_id, when=at.strftime("%Y-%m-%d %H:%M"))
        )
    else:
        await message.answer(
            _("Campaign #{id} was already started or cancelled.").format(id=campaign_id)
        )


async def list_scheduled(message: Message, session: AsyncSession) -> None:
    campaigns = await scheduled_campaigns(session)
    if not campaigns:
        await message.answer(_("No campaigns are scheduled."))
        return
    for c in campaigns:
        assert c.scheduled_at is not None
        await message.answer(
            _("#{id}, {when} UTC, to {who}: {text}").format(
                id=c.id,
                when=c.scheduled_at.strftime("%Y-%m-%d %H:%M"),
                who=_describe(c.segment),
                text=escape(c.text[:80]),
            ),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[_button(_("✖ Cancel"), CampaignCb(action="cancel", id=c.id))]]
            ),
        )


def build() -> Router:
    router = Router(name="campaigns")
    allowed = or_f(IsStaff("marketer"), IsOwner())
    router.message.filter(PrivateChat(), allowed)
    router.callback_query.filter(allowed)
    router.message.register(new_campaign, Command("campaign"))
    router.message.register(list_scheduled, Command("campaigns"))
    router.message.register(content_step, Compose.content, ~IsCommand())
    router.message.register(button_step, Compose.button, HasText(), ~IsCommand())
    router.message.register(button_step, Compose.button, Command("skip"))
    router.message.register(when_step, Compose.when, HasText(), ~IsCommand())
    router.callback_query.register(segment_step, SegmentCb.filter())
    router.callback_query.register(decide, CampaignCb.filter())
    return router
