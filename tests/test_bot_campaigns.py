"""Marketers see their results: local schedule times, past campaigns with their figures, a
scheduled campaign's report to its creator, empty audiences refused, each marketer acting on
their own campaigns, all of it audited. The program runs at +05:45, so UTC would show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import CampaignCb
from bot.views.when import parse_when
from bot.workers.delivery import DeliveryWorker, start_due_campaigns
from db.ledger.models import AuditLog
from db.queries.wallet import set_marketing_consent
from db.rules.program import Program
from db.usecases.campaigns import Segment, create_campaign, get_campaign, schedule_campaign
from db.usecases.members import find_by_telegram, register_member
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BotHarness
from tests.conftest import make_program
from tests.fakegram import UserClient, inline_buttons, text_of

Sessions = async_sessionmaker[AsyncSession]
ZONE = "Asia/Kathmandu"


@pytest.fixture
def program() -> Program:
    return make_program(program={"timezone": ZONE})


def test_schedule_forms_in_every_language() -> None:
    zone = ZoneInfo(ZONE)
    now = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # 2 Dec 01:45 in Kathmandu
    at_18 = datetime(2026, 12, 2, 18, 0, tzinfo=zone).astimezone(UTC)
    tomorrow_10 = datetime(2026, 12, 3, 10, 0, tzinfo=zone).astimezone(UTC)
    for text in ("2026-12-02 18:00", "02.12.2026 18:00", "2.12.2026 18.00", " today  18:00 "):
        assert parse_when(text, now, zone) == at_18, text
    for word in ("сегодня", "сьогодні", "dziś", "Dzisiaj"):
        assert parse_when(f"{word} 18:00", now, zone) == at_18, word
    for word in ("tomorrow", "Завтра", "jutro"):
        assert parse_when(f"{word} 10:00", now, zone) == tomorrow_10, word
    for bad in ("yesterday 10:00", "2026-13-01 10:00", "31.02.2026 10:00", "18:00", "24:00 today"):
        assert parse_when(bad, now, zone) is None, bad


async def marketer(harness: BotHarness, name: str) -> UserClient:
    owner, person = harness.owner(), harness.user(name)
    await owner.send("/staff_invite marketer")
    link = text_of(await owner.wait_message("one-time invite")).split()[-1]
    await person.send("/start " + link.split("start=")[1])
    await person.wait_message("You are now")
    return person


async def consenting(sessions: Sessions, program: Program, *tgs: int) -> list[int]:
    async with sessions() as s:
        return [
            (await register_member(s, program, telegram_id=tg, marketing_consent=True)).id
            for tg in tgs
        ]


async def compose(user: UserClient, text: str, *, partner: str | None = None) -> str:
    await user.send("/campaign")
    await user.wait_message("New campaign")
    if partner:
        await user.click("Partner")
        await user.wait_for(lambda: partner in str(user.messages[-1].get("reply_markup")))
        await user.click(partner)
        await user.wait_for(lambda: partner in text_of(user.messages[-1]))
    await user.click("Next: write the message ▶")
    await user.wait_message("Send the message")
    await user.send(text)
    await user.wait_message("link button")
    await user.send("/skip")
    return text_of(await user.wait_message(lambda m: "Campaign #" in text_of(m)))


async def test_schedule_in_local_time_by_text_or_button(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    zone = program.program.zone
    ids = await consenting(sessions, program, 50_001, 50_002)
    async with sessions() as s:
        await record_sale(
            s, program, Sale(member_id=ids[0], partner="books", amount=Decimal(10), key="k")
        )
    mia = await marketer(harness, "Mia")
    offer = await compose(mia, "Books week", partner="Chapter One Books")
    assert "to customers of Chapter One Books: 1 member. Send it?" in offer
    assert "books" not in offer
    await mia.click("🕒 Schedule")
    prompt = text_of(await mia.wait_message("When?"))
    assert f"in {ZONE} time" in prompt and "tomorrow 10:00" in prompt
    example = prompt.split("like ")[1].split(",")[0]
    shown = datetime.strptime(example, "%Y-%m-%d %H:%M").replace(tzinfo=zone)
    assert shown > datetime.now(UTC)
    await mia.send("01.01.2020 10:00")
    await mia.wait_message("has passed")
    await mia.send("next week")
    await mia.wait_message("cannot read")
    await mia.send("завтра 10:00")
    tomorrow = (datetime.now(UTC).astimezone(zone) + timedelta(days=1)).date()
    said = text_of(await mia.wait_message("will be sent on"))
    assert f"will be sent on {tomorrow.isoformat()} 10:00 ({ZONE} time)" in said
    campaign_id = int(offer.split("#")[1].split()[0])
    async with sessions() as s:
        info = await get_campaign(s, campaign_id)
    assert info is not None and info.scheduled_at is not None
    assert info.scheduled_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") == f"{tomorrow} 10:00"

    second = await compose(mia, "Flash sale")
    await mia.click("🕒 Schedule")
    await mia.wait_message("When?")
    before = datetime.now(UTC)
    await mia.click("In 1 hour")
    await mia.wait_message("will be sent on")
    async with sessions() as s:
        info = await get_campaign(s, int(second.split("#")[1].split()[0]))
    assert info is not None and info.scheduled_at is not None
    assert timedelta(minutes=59) < info.scheduled_at - before < timedelta(minutes=62)


async def test_scheduled_campaign_reports_and_campaigns_lists_results(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    ids = await consenting(sessions, program, 50_011, 50_012, 50_013)
    mia = await marketer(harness, "Mia")
    now = datetime.now(UTC)
    async with sessions() as s:
        campaign = await create_campaign(
            s, created_by=mia.user_id, segment=Segment(), text="<b>Big</b> sale &amp; more"
        )
        assert await schedule_campaign(s, campaign, now + timedelta(minutes=5))
    later = now + timedelta(minutes=6)
    assert await start_due_campaigns(sessions, later) == [campaign]
    async with sessions() as s:
        await set_marketing_consent(s, ids[2], False)  # after it was queued: skipped
    worker = DeliveryWorker(
        harness.bot, harness.runtime.engine, sessions, harness.dp["i18n_core"], rate=1000
    )
    await worker.run_until_idle(now=lambda: later)
    report = text_of(await mia.wait_message(f"Campaign #{campaign} finished"))
    assert "Sent 2 of 3; failed 0; blocked the bot 0." in report
    assert "Not sent: 1 opted out" in report
    await worker.run_until_idle(now=lambda: later)  # said once
    await harness.dp["outbox"].run_until_idle()  # the report is owed: let it all go out
    assert sum("finished" in text_of(m) for m in mia.messages) == 1

    await mia.send("/campaigns")
    listed = text_of(await mia.wait_message("Last campaigns sent"))
    assert f"#{campaign}, finished" in listed and "to everyone: Big sale & more" in listed
    assert "Sent 2 of 3" in listed and "&lt;" not in listed and "<b>" not in listed
    async with sessions() as s:
        started = (
            await s.execute(select(AuditLog).where(AuditLog.action == "campaign_start"))
        ).scalar_one()
    assert started.actor_telegram_id is None and started.details["by"] == "schedule"
    assert started.details["campaign"] == str(campaign)


async def test_empty_audiences_refused_and_marketers_act_on_their_own(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    await consenting(sessions, program, 50_021)
    mia, leo = await marketer(harness, "Mia"), await marketer(harness, "Leo")
    owner = harness.owner()
    # Nobody has bought at the gym: the preview says so and offers no way to send it.
    nobody = await compose(mia, "Gym news", partner="Iron Temple Gym")
    assert "cannot be sent: nobody in its audience" in nobody
    empty_id = int(nobody.split("#")[1].split()[0])
    assert [b["text"] for b in inline_buttons(mia.messages[-1])] == ["✖ Cancel"]
    forged = await mia.click(
        mia.messages[-1], CampaignCb(action="now", id=empty_id).pack(), check=False
    )
    await mia.wait_callback_answer(forged)
    await mia.wait_message("cannot be sent: nobody")
    async with sessions() as s:
        info = await get_campaign(s, empty_id)
    assert info is not None and info.status == "draft"

    leos = await compose(leo, "Leo's offer")
    leo_id = int(leos.split("#")[1].split()[0])
    await leo.click("🕒 Schedule")
    await leo.wait_message("When?")
    await leo.click("Tomorrow 10:00")
    await leo.wait_message("will be sent on")
    await mia.send("/campaigns")
    seen = await mia.wait_message("Leo's offer")
    assert inline_buttons(seen) == []  # not hers to cancel
    for action in ("cancel", "now"):
        pressed = await mia.click(seen, CampaignCb(action=action, id=leo_id).pack(), check=False)
        await mia.wait_callback_answer(pressed)
        await mia.wait_message("another marketer's")
    async with sessions() as s:
        info = await get_campaign(s, leo_id)
    assert info is not None and info.status == "scheduled"
    await owner.send("/campaigns")
    theirs = await owner.wait_message("Leo's offer")
    await owner.click(theirs, inline_buttons(theirs)[0]["callback_data"])
    await owner.wait_for(lambda: "is cancelled" in text_of(owner.messages[-1]))

    async with sessions() as s:
        leo_staff = await find_by_telegram(s, leo.user_id)
        rows = (
            await s.execute(
                select(AuditLog.action, AuditLog.actor_telegram_id, AuditLog.staff_id)
                .where(AuditLog.action.like("campaign%"))
                .order_by(AuditLog.id)
            )
        ).all()
    assert leo_staff is None  # a marketer, not a member
    assert [(a, actor) for a, actor, _staff in rows] == [
        ("campaign_create", mia.user_id),
        ("campaign_create", leo.user_id),
        ("campaign_schedule", leo.user_id),
        ("campaign_cancel", 1),
    ]
    assert rows[0][2] is not None  # the marketer's staff seat
