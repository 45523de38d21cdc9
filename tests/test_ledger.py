"""Ledger use cases on real PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.ledger.models import AccountKind, Entry, PointLot, Transaction
from db.ledger.writer import constraint_name, hold, unit_of_work, void_holds
from db.migrate import earlier_migration
from db.rules import errors
from db.rules.points import check_points
from db.rules.program import Program
from db.usecases.adjust import adjust
from db.usecases.expiry import expire_due
from db.usecases.members import get_member, register_member
from db.usecases.purchases import (
    Refund,
    Sale,
    post_purchase,
    purchase_result,
    record_refund,
    record_sale,
    reversal_result,
)

D = Decimal


async def join(session: AsyncSession, program: Program, tg: int = 1, **kw: object) -> int:
    member = await register_member(session, program, telegram_id=tg, first_name=f"M{tg}", **kw)
    return member.id


async def count(session: AsyncSession, model: type) -> int:
    value = (await session.execute(select(func.count()).select_from(model))).scalar_one()
    await session.rollback()
    return int(value)


async def test_register_gives_welcome_points_once(session: AsyncSession, program: Program) -> None:
    first = await register_member(session, program, telegram_id=10, first_name="Ann")
    again = await register_member(session, program, telegram_id=10, first_name="Ann")
    assert first.created and not again.created
    assert first.id == again.id
    assert again.balance == 50
    assert len(first.card_number) == 12
    assert await count(session, Transaction) == 1


async def test_earn_uses_percent_tier_and_floor(session: AsyncSession, program: Program) -> None:
    m = await join(session, program)
    # 12.39 × 5 % = 0.6195 money = 61.95 points -> 61
    result = await record_sale(
        session, program, Sale(member_id=m, partner="coffee", amount=D("12.39"), key="k1")
    )
    assert result.points_earned == 61
    assert result.balance == 50 + 61
    assert result.kind == "earn"


async def test_bad_amounts_write_nothing(session: AsyncSession, program: Program) -> None:
    m = await join(session, program)
    before = await count(session, Transaction)
    for bad in (D("0"), D("-5"), D("5000.01"), D("1.234"), D("NaN"), D("Infinity"), 12.5, "12"):
        with pytest.raises((errors.InvalidAmount, errors.AmountTooLarge)):
            await record_sale(
                session, program, Sale(member_id=m, partner="coffee", amount=bad, key=f"bad{bad}")
            )  # type: ignore[arg-type]
    with pytest.raises(errors.UnknownPartner):
        await record_sale(
            session, program, Sale(member_id=m, partner="nope", amount=D("10"), key="p")
        )
    with pytest.raises(errors.UnknownMember):
        await record_sale(
            session, program, Sale(member_id=999, partner="coffee", amount=D("10"), key="m")
        )
    assert await count(session, Transaction) == before


async def test_redeem_spends_oldest_lots_and_earns_on_paid(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)  # 50 welcome points, the oldest lot
    t0 = datetime.now(UTC)
    await record_sale(
        session, program, Sale(member_id=m, partner="coffee", amount=D("100"), key="e1", now=t0)
    )
    # 100 × 5 % = 500 points; wallet 550
    result = await record_sale(
        session,
        program,
        Sale(member_id=m, partner="books", amount=D("10.00"), redeem_points=500, key="r1"),
    )
    assert result.points_redeemed == 500
    assert result.paid == D("5.00")
    assert result.points_earned == 15  # 5.00 × 3 % = 15 points
    assert result.balance == 550 - 500 + 15
    lots = (
        await session.execute(select(PointLot.points, PointLot.remaining).order_by(PointLot.id))
    ).all()
    assert [tuple(r) for r in lots] == [(50, 0), (500, 50), (15, 15)]


async def test_redeem_limits(session: AsyncSession, program: Program) -> None:
    m = await join(session, program)
    with pytest.raises(errors.RedeemLimitExceeded) as info:
        await record_sale(
            session,
            program,
            Sale(member_id=m, partner="coffee", amount=D("0.80"), redeem_points=41, key="x"),
        )
    assert info.value.params["max"] == 40
    with pytest.raises(errors.NotEnoughPoints):
        await record_sale(
            session,
            program,
            Sale(member_id=m, partner="coffee", amount=D("10"), redeem_points=51, key="y"),
        )
    for bad in (-1, 10**13, True):
        with pytest.raises(errors.InvalidPoints):
            await record_sale(
                session,
                program,
                Sale(member_id=m, partner="coffee", amount=D("10"), redeem_points=bad, key="z"),
            )
    # No points to redeem is a sale without redemption; where points are asked for (a
    # redemption request, an adjustment), zero is refused by the check they both use.
    with pytest.raises(errors.InvalidPoints):
        check_points(0)
    assert (await get_member(session, m)).balance == 50


async def test_replay_returns_original_and_conflict_raises(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)
    first = await record_sale(
        session, program, Sale(member_id=m, partner="coffee", amount=D("20"), key="same")
    )
    again = await record_sale(
        session, program, Sale(member_id=m, partner="coffee", amount=D("20"), key="same")
    )
    assert again.replayed and not first.replayed
    assert again.transaction_id == first.transaction_id
    assert again.points_earned == first.points_earned == 100
    with pytest.raises(errors.IdempotencyConflict):
        await record_sale(
            session, program, Sale(member_id=m, partner="coffee", amount=D("21"), key="same")
        )
    assert (await get_member(session, m)).balance == 150


async def test_full_refund_claws_back_earned_points(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)
    sale = await record_sale(
        session, program, Sale(member_id=m, partner="coffee", amount=D("40"), key="s")
    )
    assert sale.points_earned == 200
    back = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r", reason="returned")
    )
    assert back.points_clawed_back == 200 and back.shortfall == 0
    assert back.money_refund == D("40.00")
    assert back.balance == 50
    with pytest.raises(errors.AlreadyReversed):
        await record_refund(
            session, program, Refund(transaction_id=sale.transaction_id, key="r2", reason="again")
        )


async def test_partial_refunds_add_up_to_full(session: AsyncSession, program: Program) -> None:
    m = await join(session, program)
    sale = await record_sale(
        session, program, Sale(member_id=m, partner="coffee", amount=D("33.33"), key="s")
    )
    assert sale.points_earned == 166
    clawed = 0
    for i, part in enumerate((D("10.00"), D("10.00"), D("13.33"))):
        r = await record_refund(
            session,
            program,
            Refund(transaction_id=sale.transaction_id, amount=part, key=f"r{i}", reason="r"),
        )
        clawed += r.points_clawed_back
    assert clawed == 166
    assert (await get_member(session, m)).balance == 50
    with pytest.raises(errors.AlreadyReversed):
        await record_refund(
            session, program, Refund(transaction_id=sale.transaction_id, key="r9", reason="r")
        )


async def test_a_partial_refund_of_a_points_sale_gives_back_exactly_its_sum(
    session: AsyncSession, program: Program
) -> None:
    """40.00 paid with 50 points (0.50) and 39.50 in money: a 10.00 refund returns 13 points
    (the member's side of 12.5) and 9.87 in money, 10.00 in all; the rest returns the other
    37 points and 29.63, so the two add up to the sale."""
    m = await join(session, program)
    sale = await record_sale(
        session,
        program,
        Sale(member_id=m, partner="coffee", amount=D("40.00"), redeem_points=50, key="s"),
    )
    first = await record_refund(
        session,
        program,
        Refund(transaction_id=sale.transaction_id, amount=D("10.00"), key="a", reason="cup"),
    )
    assert (first.points_returned, first.money_refund) == (13, D("9.87"))
    rest = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="b", reason="cup")
    )
    assert (rest.points_returned, rest.money_refund) == (37, D("29.63"))
    assert first.money_refund + rest.money_refund == sale.paid


async def test_refund_too_large_and_bad_targets(session: AsyncSession, program: Program) -> None:
    m = await join(session, program)
    sale = await record_sale(
        session, program, Sale(member_id=m, partner="coffee", amount=D("10"), key="s")
    )
    with pytest.raises(errors.RefundTooLarge):
        await record_refund(
            session,
            program,
            Refund(transaction_id=sale.transaction_id, amount=D("10.01"), key="a", reason="r"),
        )
    with pytest.raises(errors.ReasonRequired):
        await record_refund(
            session, program, Refund(transaction_id=sale.transaction_id, key="b", reason="  ")
        )
    with pytest.raises(errors.UnknownTransaction):
        await record_refund(session, program, Refund(transaction_id=424242, key="c", reason="r"))
    with pytest.raises(errors.WrongPartner):
        await record_refund(
            session,
            program,
            Refund(transaction_id=sale.transaction_id, key="d", reason="r", partner="books"),
        )
    welcome = (
        await session.execute(select(Transaction.id).where(Transaction.kind == "welcome"))
    ).scalar_one()
    await session.rollback()
    with pytest.raises(errors.NotReversible):
        await record_refund(session, program, Refund(transaction_id=welcome, key="e", reason="r"))
    assert (await get_member(session, m)).balance == 100


async def test_reversing_a_redemption_returns_points(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)
    sale = await record_sale(
        session,
        program,
        Sale(member_id=m, partner="books", amount=D("1.00"), redeem_points=50, key="s"),
    )
    assert sale.balance == 1 and sale.paid == D("0.50") and sale.points_earned == 1
    back = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r", reason="r")
    )
    assert back.points_returned == 50 and back.points_clawed_back == 1
    assert back.money_refund == D("0.50")
    assert back.balance == 50


async def test_refund_of_spent_points_reports_shortfall(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)
    sale = await record_sale(
        session, program, Sale(member_id=m, partner="coffee", amount=D("20"), key="s")
    )
    assert sale.points_earned == 100  # wallet 150
    await record_sale(
        session,
        program,
        Sale(member_id=m, partner="books", amount=D("3.00"), redeem_points=140, key="spend"),
    )
    # wallet: 150 - 140 + 0 (1.60 × 3 % = 4.8 -> 4) = 14
    back = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r", reason="r")
    )
    assert back.points_clawed_back == 14
    assert back.shortfall == 86
    assert back.balance == 0
    replay = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r", reason="r")
    )
    assert replay.replayed and replay.shortfall == 86 and replay.points_clawed_back == 14


async def test_expiry_moves_old_lots_to_breakage(session: AsyncSession, program: Program) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    m = (await register_member(session, program, telegram_id=5, now=t0)).id
    await record_sale(
        session,
        program,
        Sale(member_id=m, partner="coffee", amount=D("10"), key="e", now=t0 + timedelta(days=100)),
    )
    expired = await expire_due(session, now=t0 + timedelta(days=366))
    assert [(e.member_id, e.points) for e in expired] == [(m, 50)]
    assert await expire_due(session, now=t0 + timedelta(days=366)) == []
    assert (await get_member(session, m)).balance == 50
    later = await expire_due(session, now=t0 + timedelta(days=500))
    assert [e.points for e in later] == [50]
    assert (await get_member(session, m)).balance == 0


async def test_referral_paid_once_on_first_qualifying_purchase(
    session: AsyncSession, program: Program
) -> None:
    inviter = await join(session, program, 1)
    friend = await join(session, program, 2, inviter_id=inviter)
    small = await record_sale(
        session, program, Sale(member_id=friend, partner="coffee", amount=D("19.99"), key="a")
    )
    assert small.referral is None
    big = await record_sale(
        session, program, Sale(member_id=friend, partner="coffee", amount=D("20.00"), key="b")
    )
    assert big.referral is not None
    assert (big.referral.inviter_points, big.referral.invitee_points) == (200, 100)
    again = await record_sale(
        session, program, Sale(member_id=friend, partner="coffee", amount=D("50"), key="c")
    )
    assert again.referral is None
    replay = await record_sale(
        session, program, Sale(member_id=friend, partner="coffee", amount=D("20.00"), key="b")
    )
    assert replay.referral == big.referral
    assert (await get_member(session, inviter)).balance == 250
    assert (await get_member(session, friend)).balance == 50 + 99 + 100 + 100 + 250


async def test_self_referral_is_impossible(session: AsyncSession, program: Program) -> None:
    m = await join(session, program)
    with pytest.raises(DBAPIError):
        await session.execute(
            text("UPDATE members SET referred_by_id = id WHERE id = :m"), {"m": m}
        )
    await session.rollback()


async def test_tier_upgrade_multiplies_next_earnings(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)
    first = await record_sale(
        session, program, Sale(member_id=m, partner="gym", amount=D("1000"), key="a")
    )
    assert first.points_earned == 2000 and first.tier == "Silver"
    second = await record_sale(
        session, program, Sale(member_id=m, partner="gym", amount=D("100"), key="b")
    )
    assert second.points_earned == 300  # 100 × 2 % × 1.5
    assert first.tier_reached and not second.tier_reached
    assert (await get_member(session, m)).tier == "Silver"


async def test_tier_upgrade_on_the_sale_that_pays_an_invitation_reward(
    session: AsyncSession, program: Program
) -> None:
    """That sale is posted by the use case with the reward's legs, not by ledger_sale: the
    member moves up all the same, and a sale at the top tier moves nobody."""
    inviter = await join(session, program, 1)
    friend = await join(session, program, 2, inviter_id=inviter)
    sale = await record_sale(
        session, program, Sale(member_id=friend, partner="gym", amount=D("3000"), key="q")
    )
    assert sale.referral is not None
    assert sale.tier == "Gold" and sale.tier_reached
    assert (await get_member(session, friend)).tier == "Gold"
    top = await record_sale(
        session, program, Sale(member_id=friend, partner="gym", amount=D("10"), key="t")
    )
    assert top.tier == "Gold" and not top.tier_reached


async def test_a_sale_that_needs_only_its_posting_is_its_own_transaction(
    session: AsyncSession, program: Program
) -> None:
    """record_sale sends such a sale alone (no BEGIN, no COMMIT: one round trip); a sale
    that reaches the tier above or may pay an invitation reward writes nothing so, and is
    sent again in a transaction, with the same results as ever."""
    inviter = await join(session, program, 1)
    member = await join(session, program, 2)
    friend = await join(session, program, 3, inviter_id=inviter)
    sent: list[str] = []

    async def logged() -> list[str]:  # asyncpg calls the logger soon after, not at once
        await asyncio.sleep(0)
        return sent

    def log(record: Any) -> None:  # (asyncpg logs its own statements, not prepared ones)
        word = record.query.strip().rstrip(";").upper()
        if word.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            sent.append(word.split()[0])

    def checkout(dbapi_connection: Any, *_: object) -> None:
        dbapi_connection.driver_connection.add_query_logger(log)

    def checkin(dbapi_connection: Any, *_: object) -> None:
        dbapi_connection.driver_connection.remove_query_logger(log)

    sync_engine = session.bind.sync_engine  # type: ignore[union-attr]
    event.listen(sync_engine, "checkout", checkout)
    event.listen(sync_engine, "checkin", checkin)
    try:
        small = await record_sale(
            session, program, Sale(member_id=member, partner="gym", amount=D("10"), key="a")
        )
        assert await logged() == [] and (small.balance, small.tier) == (50 + 20, "Bronze")
        assert session.info.pop("committed")  # what the bot's error reports go by
        shown = Sale(
            member_id=member, partner="gym", amount=D("10"), key="x", discount_percent=D(5)
        )
        with pytest.raises(errors.DiscountChanged):  # refused alone: nothing written or told
            await record_sale(session, program, shown)
        assert "committed" not in session.info and "wrote" not in session.info
        up = await record_sale(
            session, program, Sale(member_id=member, partner="gym", amount=D("990"), key="b")
        )
        assert await logged() == ["BEGIN", "COMMIT"]
        assert (up.tier, up.tier_reached, up.points_earned) == ("Silver", True, 1980)
        sent.clear()
        rewarded = await record_sale(
            session, program, Sale(member_id=friend, partner="gym", amount=D("20"), key="c")
        )
        assert await logged() == ["BEGIN", "COMMIT"] and rewarded.referral is not None
        sent.clear()
        again = await record_sale(
            session, program, Sale(member_id=member, partner="gym", amount=D("10"), key="a")
        )
        assert await logged() == ["BEGIN", "COMMIT"]  # the replay's reads
        assert again.replayed and again.transaction_id == small.transaction_id
    finally:
        event.remove(sync_engine, "checkout", checkout)
        event.remove(sync_engine, "checkin", checkin)
    assert (await get_member(session, member)).tier == "Silver"
    keys = select(Transaction.idempotency_key).where(Transaction.member_id == member)
    assert sorted((await session.scalars(keys)).all()) == ["a", "b", "welcome:2"]


async def test_adjust_needs_reason_and_respects_balance(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)
    with pytest.raises(errors.ReasonRequired):
        await adjust(session, program, member_id=m, points=10, reason="", key="a")
    added = await adjust(session, program, member_id=m, points=25, reason="goodwill", key="b")
    assert added.balance == 75
    with pytest.raises(errors.NotEnoughPoints):
        await adjust(session, program, member_id=m, points=-76, reason="fix", key="c")
    taken = await adjust(session, program, member_id=m, points=-75, reason="fix", key="d")
    assert taken.balance == 0


async def test_postings_are_immutable(session: AsyncSession, program: Program) -> None:
    await join(session, program)
    for sql in (
        "UPDATE entries SET amount = amount + 1",
        "DELETE FROM transactions",
        "UPDATE accounts SET balance = balance + 1",
    ):
        with pytest.raises(DBAPIError):
            await session.execute(text(sql))
        await session.rollback()
    assert await count(session, Entry) == 2


async def test_balance_summary(
    session: AsyncSession, engine: AsyncEngine, program: Program
) -> None:
    from db.queries.identity import identify_all
    from db.queries.wallet import summary

    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    m = (await register_member(session, program, telegram_id=7, now=t0)).id  # 50, expire t0+365
    await record_sale(
        session,
        program,
        Sale(member_id=m, partner="gym", amount=D("600"), key="a", now=t0 + timedelta(hours=5)),
    )  # 1,200 points expiring the same day, later
    sale = await record_sale(
        session,
        program,
        Sale(member_id=m, partner="gym", amount=D("500"), key="b", now=t0 + timedelta(days=3)),
    )  # 1,000 points three days later
    await record_refund(
        session,
        program,
        Refund(
            transaction_id=sale.transaction_id,
            amount=D("100"),
            key="r",
            reason="returned",
            now=t0 + timedelta(days=4),
        ),
    )
    sender = (await identify_all(engine, [7], now=t0 + timedelta(days=5)))[7]
    assert sender.member == await get_member(session, m) and sender.wallet is not None
    await session.rollback()
    info = summary(program, sender.member, sender.wallet)
    assert info.spend == D("1000.00")  # 600 + 500 - 100 refunded
    # Silver since the second sale (1,100 spent then); a refund lowers no tier until the
    # daily recalculation.
    assert (info.tier, info.next_tier, info.to_next_tier) == ("Silver", "Gold", D("2000.00"))
    assert info.expiring_at == t0 + timedelta(days=365)
    assert info.expiring_points == 50 + 1200  # the same day; the later lot is not counted
    later = (await identify_all(engine, [7], now=t0 + timedelta(days=400)))[7]
    assert later.wallet is not None and later.wallet.spend == 0  # outside the trailing year


async def test_refund_of_a_sale_paid_with_points_after_its_points_were_spent(
    session: AsyncSession, program: Program
) -> None:
    """The points returned may cover the claw-back; what they cannot is the shortfall, and
    the cash handed back is the money part less its value (one figure)."""
    m = await join(session, program)
    sale = await record_sale(
        session,
        program,
        Sale(member_id=m, partner="coffee", amount=D("40.00"), redeem_points=10, key="s"),
    )
    assert sale.paid == D("39.90") and sale.points_earned == 199 and sale.balance == 239
    spent = await record_sale(
        session,
        program,
        Sale(member_id=m, partner="books", amount=D("4.78"), redeem_points=239, key="x"),
    )
    assert spent.balance == 7  # 2.39 paid earns 7
    back = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r", reason="r")
    )
    # 10 returned + 7 left cover 17 of the 199 earned: 182 were spent.
    assert (back.points_returned, back.points_clawed_back, back.shortfall) == (10, 17, 182)
    assert back.money_refund == D("39.90") and back.cash_back == D("38.08")
    assert back.balance == 0 and back.referral is None
    replay = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r", reason="r")
    )
    assert replay.replayed and (replay.shortfall, replay.cash_back) == (182, D("38.08"))
    assert (await get_member(session, m)).balance == 0


async def test_full_refund_of_the_qualifying_purchase_takes_both_rewards_back(
    session: AsyncSession, program: Program
) -> None:
    inviter = await join(session, program, 1)
    friend = await join(session, program, 2, inviter_id=inviter)
    sale = await record_sale(
        session, program, Sale(member_id=friend, partner="coffee", amount=D("20.00"), key="q")
    )
    assert sale.referral is not None and sale.balance == 250
    # Both spend most of what they have.
    await record_sale(
        session,
        program,
        Sale(member_id=inviter, partner="books", amount=D("5.00"), redeem_points=250, key="a"),
    )
    await record_sale(
        session,
        program,
        Sale(member_id=friend, partner="gym", amount=D("3.00"), redeem_points=150, key="b"),
    )
    assert (await get_member(session, inviter)).balance == 7
    assert (await get_member(session, friend)).balance == 103
    part = await record_refund(
        session,
        program,
        Refund(transaction_id=sale.transaction_id, amount=D("5.00"), key="r1", reason="r"),
    )
    assert part.referral is None and part.points_clawed_back == 25 and part.shortfall == 0
    rest = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r2", reason="r")
    )
    # 75 earned points come back first, then 3 of the friend's 100-point reward.
    assert rest.points_clawed_back == 78 and rest.shortfall == 97
    assert rest.cash_back == D("14.03")  # 15.00 less 97 points' worth
    assert rest.referral is not None
    assert (rest.referral.invitee_points, rest.referral.inviter_id) == (3, inviter)
    assert (rest.referral.inviter_points, rest.referral.inviter_shortfall) == (7, 193)
    assert (await get_member(session, inviter)).balance == 0
    assert (await get_member(session, friend)).balance == 0
    replay = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r2", reason="r")
    )
    assert replay.replayed and replay.referral == rest.referral
    assert (replay.points_clawed_back, replay.shortfall) == (78, 97)


def test_one_writer_inserts_entries_and_lots() -> None:
    """Every posting goes through db.ledger.writer.post (the SQL function ledger_post): no module
    builds an insert into entries or point lots (the database side: test_one_sql_writer)."""
    root = Path(__file__).resolve().parent.parent
    writers = re.compile(
        r"insert\s+into\s+(entries|point_lots)\b"  # SQL
        r"|insert\(\s*(cast\(Table,\s*|_table\()?(Entry|PointLot)\b"  # Core
        r"|(?<!class )\b(Entry|PointLot)\(",  # ORM objects
        re.IGNORECASE,
    )
    # The pattern finds each kind of writer it is for (else the scan could never fail).
    for writer in (
        "INSERT INTO entries (transaction_id)",
        "insert(cast(Table, Entry.__table__))",
        "session.add(PointLot(member_id=1))",
    ):
        assert writers.search(writer), writer
    found = [
        str(path.relative_to(root))
        for folder in ("db", "bot")
        for path in (root / folder).rglob("*.py")
        if "migrations" not in path.parts and writers.search(path.read_text())
    ]
    assert found == []


async def test_one_sql_writer(session: AsyncSession) -> None:
    functions = (
        await session.execute(
            text(
                "SELECT proname FROM pg_proc"
                " WHERE prosrc ~* 'insert\\s+into\\s+(entries|point_lots)'"
            )
        )
    ).scalars()
    assert list(functions) == ["ledger_post"]


async def _hand_made(session: AsyncSession, legs: list[tuple[str, int]]) -> None:
    """Post entries by hand (as a psql session could) on the named accounts, in one
    statement as a transaction's entries are written (a second one is refused)."""
    tx = (
        await session.execute(
            text(
                "INSERT INTO transactions (kind, idempotency_key, fingerprint)"
                " VALUES ('adjust', :key, '') RETURNING id"
            ),
            {"key": f"hand:{legs}"},
        )
    ).scalar_one()
    await session.execute(
        text(
            "INSERT INTO entries (transaction_id, account_id, amount)"
            " SELECT :tx, a.id, leg.amount"
            " FROM unnest(CAST(:kinds AS text[]), CAST(:units AS text[]),"
            "             CAST(:amounts AS bigint[])) AS leg(kind, unit, amount)"
            " JOIN accounts AS a ON a.kind = leg.kind AND a.unit = leg.unit"
            " AND a.partner_id IS NULL"
        ),
        {
            "tx": tx,
            "kinds": [name.split("/")[0] for name, _ in legs],
            "units": [name.split("/")[1] for name, _ in legs],
            "amounts": [amount for _, amount in legs],
        },
    )
    await session.commit()


async def test_a_transaction_sums_to_zero_per_unit(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)
    await session.execute(
        text(
            "INSERT INTO accounts (kind, member_id, unit) VALUES ('stamps', :m, 'stamps:coffee')"
        ),
        {"m": m},
    )
    await session.execute(
        text("INSERT INTO accounts (kind, unit) VALUES ('stamp_pool', 'stamps:coffee')")
    )
    await session.commit()
    issued, redeemed = "stamp_pool/stamps:coffee", "stamps/stamps:coffee"
    # 3 points out, 3 stamps in: zero in all, but neither unit balances.
    with pytest.raises(DBAPIError, match="sum to"):
        await _hand_made(session, [("program/points", -3), (redeemed, 3)])
    await session.rollback()
    with pytest.raises(DBAPIError, match="sum to"):
        await _hand_made(
            session,
            [("program/points", -5), ("breakage/points", 2), (issued, -4), (redeemed, 4)],
        )
    await session.rollback()
    await _hand_made(
        session, [("program/points", -5), ("breakage/points", 5), (issued, -2), (redeemed, 2)]
    )
    units = (
        await session.execute(
            text("SELECT unit, sum(balance) FROM account_balances GROUP BY unit ORDER BY unit")
        )
    ).all()
    assert [tuple(row) for row in units] == [("points", 0), ("stamps:coffee", 0)]
    # A member's stamps never go below zero, as their points.
    with pytest.raises(DBAPIError, match="wallet_not_negative"):
        await _hand_made(session, [(issued, 3), (redeemed, -3)])
    await session.rollback()


async def test_what_an_account_is_is_checked_when_it_is_written(
    session: AsyncSession, program: Program
) -> None:
    """Its kind, owner and unit (a trigger since migration 0020, not CHECKs run on every
    balance change): a row that breaks them is refused when inserted or updated, with the
    constraint's name, as before."""
    m = await join(session, program)
    refused = [
        ("INSERT INTO accounts (kind) VALUES ('nonsense')", "ck_accounts_kind"),
        ("INSERT INTO accounts (kind, member_id) VALUES ('program', :m)", "ck_accounts_owner"),
        (
            "INSERT INTO accounts (kind, member_id, unit) VALUES ('stamps', :m, 'stamps:')",
            "ck_accounts_unit",
        ),
        ("INSERT INTO accounts (kind, unit) VALUES ('breakage', 'stamps:x')", "ck_accounts_owner"),
        ("UPDATE accounts SET member_id = NULL WHERE member_id = :m", "ck_accounts_owner"),
        ("UPDATE accounts SET kind = 'program' WHERE member_id = :m", "ck_accounts_owner"),
        ("UPDATE accounts SET kind = 'wallet' WHERE member_id = :m", "ck_accounts_kind"),
        ("UPDATE accounts SET unit = 'stamps:x' WHERE member_id = :m", "ck_accounts_owner"),
    ]
    for sql, name in refused:
        with pytest.raises(DBAPIError) as error:
            await session.execute(text(sql), {"m": m})
        assert constraint_name(error.value) == name, sql
        await session.rollback()
    stamps = text("INSERT INTO accounts (kind, member_id, unit) VALUES ('stamps', :m, 'stamps:x')")
    await session.execute(stamps, {"m": m})  # a well-formed one goes in
    await session.rollback()


async def test_a_sale_is_undone_with_its_unit_of_work(
    session: AsyncSession, program: Program
) -> None:
    # The sale's statement runs in the use case's transaction, not on its own: a failure
    # after it (here, before the commit) leaves nothing of the sale.
    m = await join(session, program)
    with pytest.raises(RuntimeError):
        async with unit_of_work(session):
            sale = await post_purchase(
                session, program, Sale(member_id=m, partner="coffee", amount=D("40"), key="s")
            )
            assert sale.balance == 50 + 200
            raise RuntimeError("after the sale")
    assert (await get_member(session, m)).balance == 50
    assert await count(session, Transaction) == 1  # the welcome


async def test_a_posting_is_written_by_one_statement(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)  # the welcome posting: program -50, wallet +50
    welcome = (
        await session.execute(select(Transaction.id).where(Transaction.member_id == m))
    ).scalar_one()
    # Entries that sum to zero are refused too when their transaction has entries already.
    add = text(
        "INSERT INTO entries (transaction_id, account_id, amount)"
        " SELECT :tx, id, CASE kind WHEN 'program' THEN -1 ELSE 1 END FROM accounts"
        " WHERE kind = 'breakage' OR kind = 'program'"
    )
    with pytest.raises(DBAPIError, match="entries already"):
        await session.execute(add, {"tx": welcome})
    await session.rollback()
    # Two transactions in one statement: the statement sums to zero, neither of them does.
    opened = [
        (
            await session.execute(
                text(
                    "INSERT INTO transactions (kind, idempotency_key, fingerprint)"
                    " VALUES ('adjust', :key, '') RETURNING id"
                ),
                {"key": key},
            )
        ).scalar_one()
        for key in ("one", "two")
    ]
    with pytest.raises(DBAPIError, match="sum to"):
        await session.execute(
            text(
                "INSERT INTO entries (transaction_id, account_id, amount)"
                " SELECT t.id, a.id, t.amount FROM accounts AS a,"
                " (VALUES (CAST(:one AS bigint), -3), (CAST(:two AS bigint), 3)) AS t(id, amount)"
                " WHERE a.kind = 'breakage'"
            ),
            {"one": opened[0], "two": opened[1]},
        )
    await session.rollback()
    assert await count(session, Entry) == 2


async def test_held_points_cannot_be_spent_and_a_hold_resolves_once(
    session: AsyncSession, program: Program
) -> None:
    m = await join(session, program)  # 50 points
    now = datetime.now(UTC)
    assert await hold(session, key="h1", member_id=m, points=30, now=now)
    assert not await hold(session, key="h1", member_id=m, points=30, now=now)  # a replay
    with pytest.raises(errors.NotEnoughPoints):
        await hold(session, key="h2", member_id=m, points=21, now=now)
    await session.rollback()
    assert await hold(session, key="h1", member_id=m, points=30, now=now)
    await session.commit()
    member = await get_member(session, m)
    assert (member.balance, member.held, member.available) == (50, 30, 20)
    # A sale can spend what is not held, not a point more, even with what it earns.
    with pytest.raises(errors.NotEnoughPoints):
        await record_sale(
            session,
            program,
            Sale(member_id=m, partner="coffee", amount=D("10"), redeem_points=21, key="s1"),
        )
    with pytest.raises(errors.NotEnoughPoints):
        await adjust(session, program, member_id=m, points=-21, reason="fix", key="a1")
    # The points the member owns stay theirs while held.
    assert (await get_member(session, m)).balance == 50
    assert await void_holds(session, keys=["h1"], now=now) == ["h1"]
    assert await void_holds(session, keys=["h1"], now=now) == []  # once
    await session.commit()
    with pytest.raises(DBAPIError, match="resolved once"):
        await session.execute(text("UPDATE holds SET status = 'open', resolved_at = NULL"))
    await session.rollback()
    with pytest.raises(DBAPIError, match="changes only through holds"):
        await session.execute(text("UPDATE accounts SET held = 1 WHERE kind = 'member'"))
    await session.rollback()
    sale = await record_sale(
        session,
        program,
        Sale(member_id=m, partner="coffee", amount=D("10"), redeem_points=50, key="s2"),
    )
    assert sale.points_redeemed == 50


async def test_a_replay_rebuilds_its_result_in_one_query(
    session: AsyncSession, program: Program
) -> None:
    """The results of a sale that paid an invitation reward and of the refunds of it, rebuilt
    for a replay from one query each, are the results the postings returned."""
    inviter = await join(session, program, 1)
    friend = await join(session, program, 2, inviter_id=inviter)
    sale = await record_sale(
        session, program, Sale(member_id=friend, partner="coffee", amount=D("20.00"), key="q")
    )
    await record_sale(
        session,
        program,
        Sale(member_id=friend, partner="gym", amount=D("3.00"), redeem_points=150, key="b"),
    )
    part = await record_refund(
        session,
        program,
        Refund(transaction_id=sale.transaction_id, amount=D("5.00"), key="r1", reason="r"),
    )
    rest = await record_refund(
        session, program, Refund(transaction_id=sale.transaction_id, key="r2", reason="r")
    )
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sync_engine = session.bind.sync_engine  # type: ignore[union-attr]
    event.listen(sync_engine, "before_cursor_execute", count)
    try:
        for result, key in ((part, "r1"), (rest, "r2")):
            tx = await session.scalar(
                select(Transaction).where(Transaction.idempotency_key == key)
            )
            assert tx is not None
            statements.clear()
            again = await reversal_result(session, program, tx, replayed=True)
            assert len(statements) == 1, statements
            assert again == replace(result, replayed=True, balance=again.balance)
        tx = await session.get_one(Transaction, sale.transaction_id)
        statements.clear()
        again_sale = await purchase_result(session, tx, replayed=True)
        assert len(statements) == 1, statements
    finally:
        event.remove(sync_engine, "before_cursor_execute", count)
    await session.rollback()
    # Not kept by the ledger: whether the sale moved the member up, and the tier it earned at.
    assert again_sale == replace(
        sale, replayed=True, balance=again_sale.balance, tier_reached=False, earned_tier=None
    )
    assert rest.referral is not None and again_sale.referral == sale.referral


async def test_sales_at_one_partner_do_not_wait_for_each_other(
    sessions: async_sessionmaker[AsyncSession], program: Program
) -> None:
    """A sale does not lock its partner's account (its balance is the sum of its entries):
    a second sale at the same partner posts while the first is not yet committed, where it
    used to wait for it. Each wallet's balance is still kept and returned, and the partner's
    is read from its entries."""
    async with sessions() as s:
        ann, bob = await join(s, program, 1), await join(s, program, 2)
    async with sessions() as first, sessions() as second:
        async with first.begin():
            mine = await post_purchase(
                first, program, Sale(member_id=ann, partner="coffee", amount=D("20"), key="a")
            )
            # Waiting for any lock the first sale holds would fail the second at once.
            # (LOCAL: the setting ends with this transaction, not with the pooled connection)
            await second.execute(text("SET LOCAL lock_timeout = '50ms'"))
            theirs = await record_sale(
                second, program, Sale(member_id=bob, partner="coffee", amount=D("40"), key="b")
            )
        assert (mine.balance, theirs.balance) == (50 + 100, 50 + 200)
    async with sessions() as s:
        row = (
            await s.execute(
                text(
                    "SELECT a.balance AS total, r.balance AS on_row FROM account_balances AS a"
                    " JOIN accounts AS r ON r.id = a.id JOIN partners AS p ON p.id = a.partner_id"
                    " WHERE p.slug = 'coffee' AND a.kind = 'partner_issued'"
                )
            )
        ).one()
        assert (row.total, row.on_row) == (-300, 0)


def test_the_kept_accounts_are_the_migrations() -> None:
    """AccountKind.KEPT names the kinds whose balance migration 0022 keeps on the row."""
    kept = earlier_migration("0022_hot_accounts").KEPT
    assert kept == "(" + ", ".join(f"'{kind}'" for kind in AccountKind.KEPT) + ")"
