"""Campaign delivery through the fake Bot API: rate limits with 429, blocked members, no
consent, a crash in the middle and a restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.workers.delivery import DeliveryWorker, start_due_campaigns
from db.ledger.models import Member, Outbox
from db.rules.program import Program
from db.usecases.campaigns import (
    Segment,
    audience_size,
    cancel_campaign,
    create_campaign,
    get_campaign,
    schedule_campaign,
    start_campaign,
)
from db.usecases.members import register_member
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BotHarness

Sessions = async_sessionmaker[AsyncSession]
TEXT = "Autumn offer: double points at Bean There Coffee this week."


async def members(
    sessions: Sessions, program: Program, count: int, *, consent: bool, first: int
) -> list[int]:
    """Telegram ids of `count` new members."""
    async with sessions() as s:
        for tg in range(first, first + count):
            await register_member(s, program, telegram_id=tg, marketing_consent=consent)
    return list(range(first, first + count))


def received(harness: BotHarness, text: str = TEXT) -> Counter[int]:
    return Counter(
        r.chat_id
        for r in harness.server.calls("sendMessage")
        if r.status == 200 and r.params.get("text") == text
    )


def worker(harness: BotHarness, **options: object) -> DeliveryWorker:
    return DeliveryWorker(
        harness.bot,
        harness.runtime.engine,
        harness.runtime.sessions,
        harness.dp["i18n_core"],
        **options,  # type: ignore[arg-type]
    )


async def test_campaign_to_500_with_429s_and_blocked_members(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    consenting = await members(sessions, program, 500, consent=True, first=10_000)
    silent = await members(sessions, program, 40, consent=False, first=20_000)
    blocked = consenting[::25]  # 20 members who blocked the bot
    for tg in blocked:
        harness.server.block(tg)
    harness.server.rate_limit(100)  # the fake answers 429 above 100 messages/s
    async with sessions() as s:
        assert await audience_size(s, Segment()) == 500
        campaign = await create_campaign(s, created_by=1, segment=Segment(), text=TEXT)
        assert await start_campaign(s, campaign) == 500
        assert await start_campaign(s, campaign) is None  # starting twice enqueues nobody twice

    await worker(harness, rate=1000, concurrency=16).run_until_idle()

    got = received(harness)
    reachable = set(consenting) - set(blocked)
    assert set(got) == reachable and set(got.values()) == {1}
    assert not set(got) & set(silent)
    assert harness.server.rate_limited_count > 0  # the 429s really happened
    async with sessions() as s:
        info = await get_campaign(s, campaign)
        assert info is not None
        assert (info.status, info.sent, info.blocked, info.failed) == ("done", 480, 20, 0)
        unreachable = await s.scalar(select(func.count()).where(Member.reachable.is_(False)))
        assert unreachable == 20
        # The blocked are not messaged again.
        assert await audience_size(s, Segment()) == 480


async def test_crash_in_the_middle_then_restart(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    targets = await members(sessions, program, 300, consent=True, first=30_000)
    async with sessions() as s:
        campaign = await create_campaign(s, created_by=1, segment=Segment(), text=TEXT)
        await start_campaign(s, campaign)

    first = worker(harness, rate=200, concurrency=8)
    task = asyncio.create_task(first.run_until_idle())
    await harness.server.wait_for(lambda: sum(received(harness).values()) >= 100, timeout=20)
    task.cancel()  # the process dies mid-batch
    await asyncio.gather(task, return_exceptions=True)
    in_flight = 8 * 4  # at most one claimed batch was unsettled

    restarted = worker(harness, rate=1000, concurrency=8, stale_after=timedelta(0))
    await restarted.run_until_idle()

    got = received(harness)
    assert set(got) == set(targets)  # nobody skipped
    duplicates = sum(n - 1 for n in got.values())
    assert duplicates <= in_flight
    async with sessions() as s:
        info = await get_campaign(s, campaign)
        assert info is not None and info.status == "done" and info.sent == 300
        left = await s.scalar(select(func.count()).where(Outbox.status != "sent"))
        assert left == 0


async def test_segments_schedule_and_cancel(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    now = datetime.now(UTC)
    async with sessions() as s:
        ids = []
        for tg, lang in ((1, "pl"), (2, "pl"), (3, "en"), (4, "uk")):
            ids.append(
                (
                    await register_member(
                        s, program, telegram_id=100 + tg, language=lang, marketing_consent=True
                    )
                ).id
            )
        await record_sale(
            s,
            program,
            Sale(member_id=ids[0], partner="books", amount=Decimal("1500"), key="a"),
        )
        await record_sale(
            s,
            program,
            Sale(member_id=ids[2], partner="coffee", amount=Decimal("5"), key="b"),
        )
        await s.execute(
            update(Member).where(Member.id == ids[3]).values(joined_at=now - timedelta(days=90))
        )
        await s.commit()
        assert await audience_size(s, Segment(language="pl")) == 2
        assert await audience_size(s, Segment(tier="Silver")) == 1
        assert await audience_size(s, Segment(partner="books")) == 1
        assert await audience_size(s, Segment(partner="books", language="en")) == 0
        assert await audience_size(s, Segment(inactive_days=30)) == 2  # no sale in 30 days
        assert await audience_size(s, Segment(joined_since=(now - timedelta(days=7)).date())) == 3

        later = await create_campaign(s, created_by=1, segment=Segment(language="pl"), text=TEXT)
        assert await schedule_campaign(s, later, now + timedelta(hours=1))
        dropped = await create_campaign(s, created_by=1, segment=Segment(), text="never")
        assert await schedule_campaign(s, dropped, now + timedelta(minutes=30))
        assert await cancel_campaign(s, dropped)
    assert await start_due_campaigns(sessions, now) == []
    in_two_hours = now + timedelta(hours=2)
    assert await start_due_campaigns(sessions, in_two_hours) == [later]
    await worker(harness, rate=1000).run_until_idle(now=lambda: in_two_hours)
    assert set(received(harness)) == {101, 102}
    assert not received(harness, "never")


async def test_marketer_composes_previews_and_sends(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    from tests.fakegram import inline_buttons, text_of

    await members(sessions, program, 3, consent=True, first=40_000)
    async with sessions() as s:
        await register_member(
            s, program, telegram_id=40_010, language="pl", marketing_consent=True
        )
    owner = harness.owner()
    marketer = harness.user("Mia")
    await owner.send("/staff_invite marketer")
    link = text_of(await owner.wait_message("one-time invite")).split()[-1]
    await marketer.send("/start " + link.split("start=")[1])
    await marketer.wait_message("You are now")

    stranger = harness.user("Eve")
    await stranger.send("/campaign")
    await stranger.wait_message("/campaign is for: owner, marketer")

    await marketer.send("/campaign")
    first = text_of(await marketer.wait_message("New campaign"))
    assert "Members who accept offers in it: 4." in first
    await marketer.click("Language")
    await harness.server.wait_for(
        lambda: "Polski" in str(harness.server.chat(marketer.user_id)[-1].get("reply_markup"))
    )
    await marketer.click("Polski")
    await harness.server.wait_for(
        lambda: "in it: 1." in text_of(harness.server.chat(marketer.user_id)[-1])
    )
    await marketer.click("Next: write the message ▶")
    await marketer.wait_message("Send the message")
    await marketer.send("Dzień dobry! Double points today.")
    await marketer.wait_message("link button")
    await marketer.send("Our offers | https://example.org/offers")
    await marketer.wait_message("what members will see")
    preview = await marketer.wait_message("Dzień dobry")
    assert preview["reply_markup"]["inline_keyboard"][0][0]["url"] == "https://example.org/offers"
    await marketer.wait_message("Send it?")
    await marketer.click("🚀 Send now")
    progress = await marketer.wait_message("is being sent")
    for _attempt in range(100):  # the handler fills the outbox right after that message
        async with sessions() as s:
            if await s.scalar(select(func.count()).select_from(Outbox)):
                break
        await asyncio.sleep(0.02)

    await worker(harness, rate=1000).run_until_idle()
    got = received(harness, "Dzień dobry! Double points today.")
    assert got == {40_010: 1, marketer.user_id: 1}  # the member, and the marketer's preview
    final = harness.server.message(marketer.user_id, progress["message_id"])
    assert "finished" in text_of(final) and "Sent 1 of 1" in text_of(final)

    await marketer.send("/campaign")
    await marketer.wait_message("New campaign")
    await marketer.click("Next: write the message ▶")
    await marketer.wait_message("Send the message")
    await marketer.send("Later news")
    await marketer.wait_message("link button")
    await marketer.send("/skip")
    await marketer.wait_message("Send it?")
    await marketer.click("🕒 Schedule")
    await marketer.wait_message("When?")
    await marketer.send("2020-01-01 10:00")
    await marketer.wait_message("has passed")
    await marketer.send("2099-01-01 10:00")
    await marketer.wait_message("will be sent on 2099-01-01 10:00")
    await marketer.send("/campaigns")
    listed = await marketer.wait_message("(UTC time), to everyone: Later news")
    await marketer.click(listed, inline_buttons(listed)[0]["callback_data"])
    await harness.server.wait_for(
        lambda: any("is cancelled" in text_of(m) for m in harness.server.chat(marketer.user_id))
    )
    async with sessions() as s:
        assert await audience_size(s, Segment()) == 4
        from db.usecases.campaigns import scheduled_campaigns

        assert await scheduled_campaigns(s) == []


async def test_send_time_checks_and_the_stop_offers_button(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    """Consent, deletion and reachability are checked again when each message is sent; each
    message has a "stop offers" button that turns offers off, once and for all."""
    from bot.callbacks import OffersCb
    from db.queries.wallet import set_marketing_consent, set_reachable
    from db.usecases.members import find_by_telegram
    from db.usecases.privacy import delete_member
    from tests.fakegram import UserClient, inline_buttons

    ids = await members(sessions, program, 5, consent=True, first=40_001)
    stays, opts_out, leaves, blocks, also_stays = ids
    clients = {tg: UserClient(harness.server, tg) for tg in ids}
    async with sessions() as s:
        campaign = await create_campaign(s, created_by=1, segment=Segment(), text=TEXT)
        assert await start_campaign(s, campaign) == 5
        # After the campaign was queued:
        member = await find_by_telegram(s, opts_out)
        assert member is not None
        await set_marketing_consent(s, member.id, False)
        member = await find_by_telegram(s, leaves)
        assert member is not None
        await delete_member(s, member)
        await set_reachable(s, blocks, False)

    await worker(harness, rate=1000).run_until_idle()

    assert set(received(harness)) == {stays, also_stays}
    async with sessions() as s:
        statuses = Counter((await s.execute(select(Outbox.status))).scalars())
        assert statuses == Counter(sent=2, skipped=3)
        info = await get_campaign(s, campaign)
        assert info is not None and info.status == "done" and info.sent == 2

    client = clients[stays]
    message = await client.wait_message(TEXT)
    stop = OffersCb().pack()
    assert [b["text"] for b in inline_buttons(message)] == ["🔕 Stop offers"]
    for _ in range(2):  # the second press changes nothing and gets the same answer
        pressed = await client.click(message, stop)
        answer = await client.wait_callback_answer(pressed)
        assert "Offers are off" in answer["text"]
        async with sessions() as s:
            member = await find_by_telegram(s, stays)
            assert member is not None and member.marketing_consent is False
    # The member who left presses the button of an earlier message: answered, nothing else.
    pressed = await clients[leaves].click(message, stop, check=False)
    assert "Offers are off" in (await clients[leaves].wait_callback_answer(pressed))["text"]

    async with sessions() as s:
        second = await create_campaign(s, created_by=1, segment=Segment(), text="Second")
        assert await start_campaign(s, second) == 1
    await worker(harness, rate=1000).run_until_idle()
    assert set(received(harness, "Second")) == {also_stays}


async def test_the_use_cases_check_the_role_again(sessions: Sessions) -> None:
    """Buttons can be forged and roles revoked: acting on a campaign needs, in the use case
    itself, an owner, or staff whose role runs campaigns acting on their own."""
    from db.usecases.campaigns import Actor, CampaignRefused
    from db.usecases.staff import StaffInfo, accept_invite, create_invite

    async def hired(role: str, telegram_id: int) -> StaffInfo:
        partner = "coffee" if role == "cashier" else None
        async with sessions() as s:
            token = await create_invite(s, created_by=1, role=role, partner_slug=partner)
            return await accept_invite(s, token, telegram_id=telegram_id)

    cashier7, marketer8 = await hired("cashier", 7), await hired("marketer", 8)
    async with sessions() as s:
        mine = await create_campaign(s, created_by=7, segment=Segment(), text=TEXT)
        for someone in (
            Actor(7),  # the creator, no longer staff
            Actor(7, staff=cashier7),  # the creator, now a cashier
            Actor(8, staff=marketer8),  # another marketer
        ):
            with pytest.raises(CampaignRefused):
                await cancel_campaign(s, mine, actor=someone)
        marketer7 = await hired("marketer", 7)  # the creator, a marketer again
        assert await cancel_campaign(s, mine, actor=Actor(7, staff=marketer7))
        theirs = await create_campaign(s, created_by=8, segment=Segment(), text=TEXT)
        assert await cancel_campaign(s, theirs, actor=Actor(1, owner=True))
