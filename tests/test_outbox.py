"""The transactional outbox end to end: what a posting owes arrives whatever Telegram does
after the commit, and nobody is told "nothing was changed" about committed work."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.workers.jobs import prune_notices
from bot.workers.outbox import NoticeWorker
from db.ledger.models import Member, Notice, RedemptionRequest, Transaction
from db.usecases.members import find_by_telegram
from db.usecases.outbox import Owed, owe
from tests.botharness import BotHarness
from tests.fakegram import UserClient, text_of
from tests.till import EARN, REDEEM, card_link_payload, hire, join, start_sale

Sessions = async_sessionmaker[AsyncSession]
NOTHING_CHANGED = "nothing was changed"


async def sales(sessions: Sessions) -> int:
    async with sessions() as s:
        return int(
            await s.scalar(select(func.count()).where(Transaction.kind.in_(("earn", "redeem"))))
            or 0
        )


async def sale_opened(harness: BotHarness, mode: str = "earn") -> tuple[UserClient, UserClient]:
    """A cashier of the coffee shop with Ann's panel open, at the amount prompt."""
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    await start_sale(cashier, ann, EARN if mode == "earn" else REDEEM, by_link=True)
    return cashier, ann


def said(user: UserClient, words: str) -> bool:
    return any(words in text_of(m) for m in user.messages)


async def test_429_on_the_cashiers_receipt_loses_nothing(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = await sale_opened(harness)
    harness.server.fail_next("sendMessage", code=429, retry_after=1, chat_id=cashier.user_id)
    harness.server.fail_next("sendMessage", code=429, retry_after=1, chat_id=ann.user_id)
    await cashier.send("40")
    done = text_of(await cashier.wait_message("✅", timeout=10))
    assert "+200 points" in done
    assert "+200 points" in text_of(await ann.wait_message("Bean There Coffee", timeout=10))
    assert await sales(sessions) == 1
    assert not said(cashier, NOTHING_CHANGED) and not said(cashier, "went wrong")
    refused = [r for r in harness.server.calls("sendMessage") if r.status == 429]
    assert len(refused) == 2


async def test_5xx_burst_on_the_receipt_is_retried(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = await sale_opened(harness)
    # More failures than one request's own retries: the notice goes back in line.
    harness.server.fail_next("sendMessage", code=502, count=6, chat_id=cashier.user_id)
    await cashier.send("12.50")
    assert "+62 points" in text_of(await cashier.wait_message("✅", timeout=20))
    await ann.wait_message("Bean There Coffee")
    assert await sales(sessions) == 1
    assert not said(cashier, NOTHING_CHANGED)


async def test_a_process_killed_between_commit_and_send(
    harness: BotHarness, sessions: Sessions
) -> None:
    """The worker dies while the messages are on their way; another (the restarted
    process) finds them unsettled and delivers them."""
    cashier, ann = await sale_opened(harness)
    worker: NoticeWorker = harness.dp["outbox"]
    harness.server.delay("sendMessage", 30, count=2)
    await cashier.send("40")
    for _attempt in range(100):  # the sale is committed and its messages are claimed
        async with sessions() as s:
            claimed = await s.scalar(
                select(func.count()).where(Notice.status == "sending")  # type: ignore[arg-type]
            )
        if claimed == 2:
            break
        await asyncio.sleep(0.05)
    assert claimed == 2
    await worker.stop()  # killed mid-send
    assert await sales(sessions) == 1
    harness.server.clear_faults()
    restarted = NoticeWorker(
        harness.bot,
        harness.runtime.sessions,
        harness.dp["i18n_core"],
        harness.runtime.program,
        stale_after=timedelta(seconds=0.2),
    )
    await asyncio.sleep(0.3)
    await restarted.run_until_idle()
    assert "+200 points" in text_of(await cashier.wait_message("✅"))
    assert "+200 points" in text_of(await ann.wait_message("Bean There Coffee"))


async def test_a_confirm_whose_answer_fails(harness: BotHarness, sessions: Sessions) -> None:
    cashier, ann = await sale_opened(harness, "redeem")
    await cashier.send("10")
    await cashier.wait_message("How many points?")
    await cashier.send("20")
    await cashier.wait_message("Waiting for the member")
    await ann.wait_message("Confirm?")
    harness.server.fail_next("answerCallbackQuery", code=429, retry_after=1)
    await ann.click("✅ Confirm", check=False)
    told = text_of(await cashier.wait_message("The member confirmed", timeout=10))
    assert "The customer pays PLN\u00a09.80" in told
    await ann.wait_message("20 points paid")
    # Whatever the member is shown about their press, it is not that nothing happened.
    answers = list(harness.server.callback_answers.values())
    assert answers and all(NOTHING_CHANGED not in str(a.get("text")) for a in answers)
    assert "saved" in str(answers[-1].get("text"))
    assert not said(ann, NOTHING_CHANGED)
    assert await sales(sessions) == 1


async def test_an_error_after_the_press_was_answered_is_told_in_the_chat(
    harness: BotHarness, sessions: Sessions
) -> None:
    """The confirm handler answers the press, then editing the member's message fails:
    Telegram refuses a second answer, so the report goes to the chat."""
    cashier, ann = await sale_opened(harness, "redeem")
    await cashier.send("10")
    await cashier.wait_message("How many points?")
    await cashier.send("20")
    await ann.wait_message("Confirm?")
    # More 5xx than the request's own retries: editing the member's message fails.
    harness.server.fail_next("editMessageText", code=500, count=4, chat_id=ann.user_id)
    await ann.click("✅ Confirm", check=False)
    report = text_of(await ann.wait_message("saved", timeout=10))
    assert NOTHING_CHANGED not in report
    await cashier.wait_message("The member confirmed")
    assert await sales(sessions) == 1


async def test_a_member_who_blocked_the_bot_cannot_be_asked(
    harness: BotHarness, sessions: Sessions
) -> None:
    cashier, ann = await sale_opened(harness, "redeem")
    harness.server.block(ann.user_id)  # the bot does not know yet
    await cashier.send("10")
    await cashier.wait_message("How many points?")
    await cashier.send("20")
    told = text_of(await cashier.wait_message("cannot confirm in Telegram", timeout=5))
    assert "Nothing was charged" in told
    async with sessions() as s:
        status = await s.scalar(select(RedemptionRequest.status))
        reachable = await s.scalar(
            select(Member.reachable).where(Member.telegram_id == ann.user_id)
        )
    assert status == "unreachable" and reachable is False
    assert await sales(sessions) == 0


async def test_joining_is_not_reported_undone_when_the_welcome_fails(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    await ann.send("/start")
    await ann.wait_message("one card for")
    # More 5xx than one request's own retries, on the first call to Ann's chat after joining.
    harness.server.fail_next("*", code=500, chat_id=ann.user_id, count=4)
    await ann.click("✅ I accept the rules, join", check=False)

    def shown() -> list[str]:
        return [text_of(m) for m in ann.messages] + [
            str(a.get("text")) for a in harness.server.callback_answers.values()
        ]

    await harness.server.wait_for(lambda: any("saved" in t for t in shown()), timeout=15)
    assert not any(NOTHING_CHANGED in t for t in shown()), shown()
    async with sessions() as s:
        assert await find_by_telegram(s, ann.user_id) is not None


async def test_messages_to_one_person_keep_their_order(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
        assert member is not None
        for n in range(1, 6):
            await owe(s, Owed("expired", {"points": n}, member_id=member.id))
        await s.commit()
    ann.mark_all_seen()
    harness.server.fail_next("sendMessage", code=429, retry_after=1, chat_id=ann.user_id)
    harness.dp["outbox"].kick()
    for n in range(1, 6):
        assert f"{n} point" in text_of(await ann.wait_message("expired today", timeout=10))


async def test_delivered_notices_are_forgotten_after_a_month(
    harness: BotHarness, sessions: Sessions
) -> None:
    ann = harness.user("Ann")
    await join(ann)
    async with sessions() as s:
        member = await find_by_telegram(s, ann.user_id)
        assert member is not None
        await owe(s, Owed("expired", {"points": 7}, member_id=member.id))
        await s.commit()
    harness.dp["outbox"].kick()
    await ann.wait_message("expired today")
    for _attempt in range(100):  # the delivery is recorded just after the send
        async with sessions() as s:
            if await s.scalar(select(Notice.status)) == "sent":
                break
        await asyncio.sleep(0.02)
    await harness.dp["outbox"].stop()  # nothing else is claimed while we look
    async with sessions() as s:
        await owe(s, Owed("expired", {"points": 8}, member_id=member.id))
        await s.commit()
    now = datetime.now(UTC)
    assert await prune_notices(harness.runtime, now=now) == 0  # too recent
    assert await prune_notices(harness.runtime, now=now + timedelta(days=31)) == 1
    async with sessions() as s:
        left = (await s.execute(select(Notice.status, Notice.params))).all()
    assert left == [("pending", {"points": 8})]  # what is still owed stays


async def test_a_failed_lookup_is_not_reported_as_saved_work(
    harness: BotHarness, sessions: Sessions
) -> None:
    """Opening a member's card writes only its audit row: if showing the panel then fails,
    nothing was done for anyone, and the cashier may simply scan again."""
    cashier, ann = harness.user("Carl"), harness.user("Ann")
    await hire(harness, cashier, "coffee", "cashier")
    await join(ann)
    link = await card_link_payload(ann)
    harness.server.fail_next("sendMessage", code=500, count=4, chat_id=cashier.user_id)
    await cashier.send("/start " + link)
    told = text_of(await cashier.wait_message("went wrong", timeout=15))
    assert "nothing was changed" in told and "saved" not in told
