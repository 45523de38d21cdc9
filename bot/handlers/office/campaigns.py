"""/campaign for marketers and owners: choose the audience (the size updates as filters
change), write the message, see a preview in one's own chat, then send now or schedule (in
the program's local time). /campaigns lists scheduled ones, to cancel, and the last ones sent
with their results. A marketer acts on their own campaigns, an owner on all."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html import escape, unescape
from typing import Any

from aiogram import Bot, Router
from aiogram.filters import Command, StateFilter, or_f
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import CampaignCb, SegmentCb
from bot.config import Settings
from bot.filters import HasText, IsCommand, IsOwner, IsStaff, PrivateChat
from bot.views import formatting as fmt
from bot.views.editing import edit_markup, edit_text
from bot.views.keyboards import LANGUAGE_NAMES
from bot.views.notices import campaign_results
from bot.views.when import in_an_hour, local_text, parse_when, tomorrow_at
from bot.workers.delivery import send_campaign_message
from db.rules.program import Program
from db.usecases.campaigns import (
    Actor,
    CampaignInfo,
    CampaignRefused,
    Segment,
    audience_size,
    cancel_campaign,
    create_campaign,
    get_campaign,
    past_campaigns,
    schedule_campaign,
    scheduled_campaigns,
    start_campaign,
)
from db.usecases.staff import StaffInfo

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


def _actor(user_id: int, settings: Settings, staff: StaffInfo | None) -> Actor:
    return Actor(user_id, owner=user_id in settings.admin_ids, staff=staff)


def _refused(campaign_id: int, reason: str) -> str:
    """Why nothing was done to a campaign (CampaignRefused's reason)."""
    if reason == "not_yours":
        text = _("Campaign #{id} is another marketer's: only they or an owner can act on it.")
    elif reason == "empty":
        text = _(
            "Campaign #{id} cannot be sent: nobody in its audience accepts offers. Start a "
            "new one with another audience: /campaign."
        )
    else:
        text = _("Campaign #{id} was already started or cancelled.")
    return text.format(id=campaign_id)


def _preview(html_text: str, limit: int = 80) -> str:
    """A plain-text preview of a campaign's (HTML) text: tags stripped, cut whole, escaped,
    so a cut never leaves half a tag or an entity."""
    plain = " ".join(unescape(re.sub(r"<[^>]*>", "", html_text)).split())
    if len(plain) > limit:
        plain = plain[: limit - 1].rstrip() + "…"
    return escape(plain)


def _describe(segment: Segment, program: Program) -> str:
    parts = []
    if segment.tier:
        parts.append(
            _("tier {tier}").format(tier=escape(fmt.text(program.tier(segment.tier).name)))
        )
    if segment.partner:
        name = fmt.partner_html(program, segment.partner)
        parts.append(_("customers of {partner}").format(partner=name))
    if segment.language:
        parts.append(LANGUAGE_NAMES.get(segment.language, segment.language))
    if segment.inactive_days:
        parts.append(_("no purchase in {days} days").format(days=segment.inactive_days))
    if segment.club:
        parts.append(_("club members"))
    if segment.joined_since:
        parts.append(
            _("joined since {date}").format(
                date=fmt.day(
                    datetime.combine(segment.joined_since, datetime.min.time(), tzinfo=UTC)
                )
            )
        )
    return ", ".join(parts) or _("everyone")


def _segment_menu(program: Program, segment: Segment) -> InlineKeyboardMarkup:
    rows = [
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
    ]
    if program.club is not None:  # a switch: club members only, or in the club or not
        rows.append(
            [
                _button(_("✖ Club members only"), SegmentCb(field="club"))
                if segment.club
                else _button(_("👑 Club members only"), SegmentCb(field="club", value="1"))
            ]
        )
    rows.append([_button(_("Next: write the message ▶"), SegmentCb(field="next"))])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _choices(field: str, program: Program) -> list[tuple[str, str]]:
    """(label, callback value) of each choice of a filter. Tiers go by their index in the
    program: a tier's name is free text and may not fit in callback data."""
    if field == "tier":
        return [(fmt.text(t.name), str(i)) for i, t in enumerate(program.tiers)]
    if field == "partner":
        return [(fmt.text(p.name), p.slug) for p in program.partners]
    if field == "language":
        return list((name, code) for code, name in LANGUAGE_NAMES.items())
    if field == "inactive":
        return [(_("{days} days").format(days=d), d) for d in INACTIVE_CHOICES]
    if field == "since":
        return [(_("the last {days} days").format(days=d), d) for d in SINCE_CHOICES]
    if field == "club" and program.club is not None:
        return [(_("club members"), "1")]
    return []


FILTERS = ("tier", "partner", "language", "inactive", "since")


async def _show_segment(
    target: Message, session: AsyncSession, segment: Segment, program: Program, *, edit: bool
) -> None:
    size = await audience_size(session, segment)
    text = "\n".join(
        [
            _("📣 <b>New campaign</b>"),
            _("Audience: {who}.").format(who=_describe(segment, program)),
            _("Members who accept offers in it: {count}.").format(count=fmt.number(size)),
        ]
    )
    if edit:
        await edit_text(target, text, reply_markup=_segment_menu(program, segment))
    else:
        await target.answer(text, reply_markup=_segment_menu(program, segment))


async def new_campaign(
    message: Message, state: FSMContext, session: AsyncSession, program: Program
) -> None:
    await state.set_state(Compose.segment)
    await state.set_data({"segment": {}})
    await _show_segment(message, session, Segment(), program, edit=False)


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
        await _show_segment(query.message, session, _segment(data), program, edit=False)
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
    elif field == "club":
        segment["club"] = bool(value)
    else:
        segment[field] = value or None
    segment = {k: v for k, v in segment.items() if v}
    await state.update_data(segment=segment)
    await _show_segment(query.message, session, Segment.from_json(segment), program, edit=True)


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
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    bot: Bot,
    i18n: I18n,
    program: Program,
    staff: StaffInfo | None = None,
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
        staff=staff,
    )
    await state.set_state(None)
    info = await get_campaign(session, campaign_id)
    assert info is not None
    await message.answer(
        _(
            "Preview: this is what members will see, each in their language for the "
            "“Stop offers” button under it (pressing it here turns your own offers off)."
        )
    )
    await send_campaign_message(bot, message.chat.id, info, _("🔕 Stop offers"))
    size = await audience_size(session, segment)
    drop = [_button(_("✖ Cancel"), CampaignCb(action="drop", id=campaign_id))]
    if not size:
        await message.answer(
            _refused(campaign_id, "empty"),
            reply_markup=InlineKeyboardMarkup(inline_keyboard=[drop]),
        )
        return
    await message.answer(
        _n(
            "Campaign #{id} to {who}: {n} member. Send it?",
            "Campaign #{id} to {who}: {n} members. Send it?",
            size,
        ).format(id=campaign_id, who=_describe(segment, program), n=fmt.number(size)),
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[
                [_button(_("🚀 Send now"), CampaignCb(action="now", id=campaign_id))],
                [_button(_("🕒 Schedule"), CampaignCb(action="schedule", id=campaign_id))],
                drop,
            ]
        ),
    )


def _when_prompt(program: Program, campaign_id: int) -> tuple[str, InlineKeyboardMarkup]:
    zone = program.program.zone
    now = datetime.now(UTC)
    example = local_text(tomorrow_at(now, zone, 18), zone)
    text = _(
        "When? Send the date and time in {zone} time, like {example}, {tomorrow} or "
        "{today}; or tap a button."
    ).format(
        zone=escape(program.program.timezone),
        example=example,
        tomorrow=_("tomorrow 10:00"),
        today=_("today 18:00"),
    )
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                _button(_("In 1 hour"), CampaignCb(action="in1h", id=campaign_id)),
                _button(_("Tomorrow 10:00"), CampaignCb(action="tomorrow", id=campaign_id)),
            ]
        ]
    )
    return text, markup


async def _schedule(
    message: Message,
    session: AsyncSession,
    program: Program,
    campaign_id: int,
    at: datetime,
    actor: Actor,
) -> bool:
    """Schedule and say so; False (after saying why) if the time has passed."""
    if at <= datetime.now(UTC):
        await message.answer(
            _("That time has passed ({when} now). Send a time in the future.").format(
                when=local_text(datetime.now(UTC), program.program.zone)
            )
        )
        return False
    try:
        scheduled = await schedule_campaign(session, campaign_id, at, actor=actor)
    except CampaignRefused as refused:
        await message.answer(_refused(campaign_id, refused.reason))
        return True
    if scheduled:
        await message.answer(
            _(
                "Campaign #{id} will be sent on {when} ({zone} time). /campaigns lists what "
                "is scheduled."
            ).format(
                id=campaign_id,
                when=local_text(at, program.program.zone),
                zone=escape(program.program.timezone),
            )
        )
    else:
        await message.answer(_refused(campaign_id, "closed"))
    return True


async def decide(
    query: CallbackQuery,
    callback_data: CampaignCb,
    state: FSMContext,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    await query.answer()
    if not isinstance(query.message, Message):
        return
    campaign_id = callback_data.id
    actor = _actor(query.from_user.id, settings, staff)
    if callback_data.action == "now":
        progress = await query.message.answer(
            _("📣 Campaign #{id} is being sent.").format(id=campaign_id)
        )
        try:
            size = await start_campaign(
                session,
                campaign_id,
                progress_chat_id=progress.chat.id,
                progress_message_id=progress.message_id,
                actor=actor,
            )
        except CampaignRefused as refused:
            await edit_text(progress, _refused(campaign_id, refused.reason))
            return
        if size is None:
            await edit_text(progress, _refused(campaign_id, "closed"))
        await edit_markup(query.message, None)
    elif callback_data.action == "schedule":
        await state.set_state(Compose.when)
        await state.update_data(campaign=campaign_id)
        text, markup = _when_prompt(program, campaign_id)
        await query.message.answer(text, reply_markup=markup)
    elif callback_data.action in ("in1h", "tomorrow"):
        now = datetime.now(UTC)
        at = (
            in_an_hour(now)
            if callback_data.action == "in1h"
            else tomorrow_at(now, program.program.zone)
        )
        if await _schedule(query.message, session, program, campaign_id, at, actor):
            await state.clear()
            await edit_markup(query.message, None)
    elif callback_data.action in ("drop", "cancel"):
        try:
            cancelled = await cancel_campaign(session, campaign_id, actor=actor)
        except CampaignRefused as refused:
            await query.message.answer(_refused(campaign_id, refused.reason))
            return
        if cancelled:
            await edit_text(
                query.message, _("Campaign #{id} is cancelled.").format(id=campaign_id)
            )
        else:
            await query.message.answer(_refused(campaign_id, "closed"))


async def when_step(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    zone = program.program.zone
    campaign_id = (await state.get_data())["campaign"]
    at = parse_when(message.text or "", datetime.now(UTC), zone)
    if at is None:
        text, markup = _when_prompt(program, campaign_id)
        await message.answer(
            _("I cannot read “{text}” as a date and time.").format(
                text=escape((message.text or "").strip()[:40])
            )
            + "\n"
            + text,
            reply_markup=markup,
        )
        return
    assert message.from_user is not None
    actor = _actor(message.from_user.id, settings, staff)
    if await _schedule(message, session, program, campaign_id, at, actor):
        await state.clear()


def _status_line(c: CampaignInfo, program: Program) -> str:
    when = c.finished_at if c.status == "done" else None
    head = (
        _("#{id}, finished {when}, to {who}: {text}").format(
            id=c.id,
            when=local_text(when, program.program.zone),
            who=_describe(c.segment, program),
            text=_preview(c.text),
        )
        if when
        else _("#{id}, being sent, to {who}: {text}").format(
            id=c.id, who=_describe(c.segment, program), text=_preview(c.text)
        )
    )
    results = campaign_results(
        {
            "sent": c.sent,
            "audience": c.audience,
            "failed": c.failed,
            "blocked": c.blocked,
            "skipped": c.skipped,
        }
    )
    return f"{head}\n{results}"


async def list_campaigns(
    message: Message,
    session: AsyncSession,
    program: Program,
    settings: Settings,
    staff: StaffInfo | None = None,
) -> None:
    """What is scheduled (each with Cancel for whoever may cancel it), then the last
    campaigns sent, newest first, with their results."""
    assert message.from_user is not None
    actor = _actor(message.from_user.id, settings, staff)
    zone = program.program.zone
    scheduled = await scheduled_campaigns(session)
    past = await past_campaigns(session, 10)
    if not scheduled and not past:
        await message.answer(_("No campaigns are scheduled or sent yet."))
        return
    for c in scheduled:
        assert c.scheduled_at is not None
        mine = actor.may_act_on(c.created_by)
        await message.answer(
            _("#{id}, {when} ({zone} time), to {who}: {text}").format(
                id=c.id,
                when=local_text(c.scheduled_at, zone),
                zone=escape(program.program.timezone),
                who=_describe(c.segment, program),
                text=_preview(c.text),
            ),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[_button(_("✖ Cancel"), CampaignCb(action="cancel", id=c.id))]]
            )
            if mine
            else None,
        )
    if past:
        lines = [_("📣 <b>Last campaigns sent</b>")]
        lines += [_status_line(c, program) for c in past]
        await message.answer("\n\n".join(lines))


def build() -> Router:
    router = Router(name="campaigns")
    allowed = or_f(IsStaff("campaigns"), IsOwner())
    router.message.filter(PrivateChat(), allowed)
    router.callback_query.filter(allowed)
    router.message.register(new_campaign, Command("campaign"))
    router.message.register(list_campaigns, Command("campaigns"))
    router.message.register(content_step, StateFilter(Compose.content), ~IsCommand())
    router.message.register(button_step, StateFilter(Compose.button), HasText(), ~IsCommand())
    router.message.register(button_step, StateFilter(Compose.button), Command("skip"))
    router.message.register(when_step, StateFilter(Compose.when), HasText(), ~IsCommand())
    router.callback_query.register(segment_step, SegmentCb.filter())
    router.callback_query.register(decide, CampaignCb.filter())
    return router
