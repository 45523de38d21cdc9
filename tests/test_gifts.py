"""Gifts between members and donations to charities, on a real PostgreSQL: holds, the one
posting, the daily allowance, expiry, taking back, deletion, races; and donations through
settlement, figures and history. The ledger's invariants are checked after each test."""

from __future__ import annotations

import asyncio
import copy
import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.views.settlement_csv import write_settlement
from db.ledger.models import Gift, Hold, Notice, Partner, PointLot, Transaction
from db.queries.donations import donation_figures
from db.queries.gifts import allowance, open_gifts
from db.queries.settlement import settlement
from db.queries.wallet import history
from db.rules import errors
from db.rules.gifts import (
    CharityTakesNoSales,
    GiftClosed,
    GiftingOff,
    GiftLimit,
    NotACharity,
    OwnGift,
    gift_code,
    gift_param,
    hold_key,
    parse_points,
    read_gift_param,
)
from db.rules.program import Program, parse_program
from db.usecases.donations import donate
from db.usecases.expiry import expire_due
from db.usecases.gifts import accept_gift, cancel_gift, create_gift, return_expired_gifts
from db.usecases.members import get_member, register_member
from db.usecases.privacy import delete_member
from db.usecases.purchases import Sale, record_sale
from db.usecases.staff import accept_invite, create_invite
from db.usecases.till import request_redemption, till_sale
from tests.conftest import TEST_PROGRAM

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
SECRET = b"test-secret"
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # 14:00 in Warsaw


def gifts_program(per_day: int = 1000, **program: Any) -> Program:
    """The test program with a charity and gifts (and Warsaw's days, to test the day)."""
    data = copy.deepcopy(TEST_PROGRAM)
    data["program"].update({"timezone": "Europe/Warsaw", **program})
    data["partners"].append(
        {
            "slug": "shelter",
            "name": "Happy Paws Shelter",
            "kind": "charity",
            "category": "animal shelter",
            "address": "1 Kennel Road",
        }
    )
    data["gifts"] = {"max_points_per_day": per_day}
    return parse_program(data)


@pytest.fixture
def program() -> Program:
    return gifts_program()


async def funded(s: AsyncSession, program: Program, telegram_id: int, amount: str = "200") -> int:
    """A member with 50 welcome points and 5 % of `amount` (1000 points for 200)."""
    member = await register_member(s, program, telegram_id=telegram_id, now=NOW - timedelta(1))
    await record_sale(
        s,
        program,
        Sale(
            member_id=member.id,
            partner="coffee",
            amount=D(amount),
            key=f"fund-{telegram_id}",
            now=NOW - timedelta(hours=1),
        ),
    )
    return member.id


def code(n: int | str) -> str:
    return gift_code(SECRET, 0, f"dialog-{n}")


async def wallet(s: AsyncSession, member_id: int) -> tuple[int, int]:
    """(balance, held) of the member's wallet."""
    m = await get_member(s, member_id)
    await s.rollback()
    return m.balance, m.held


async def gift_row(s: AsyncSession, gift_code_: str) -> Any:
    """The gift's row as it is now (its columns, not an ORM object)."""
    row = (await s.execute(select(*Gift.__table__.c).where(Gift.code == gift_code_))).one()
    await s.rollback()
    return row


async def notices(s: AsyncSession) -> list[tuple[str, int | None, dict[str, Any]]]:
    rows = (
        await s.execute(select(Notice.kind, Notice.member_id, Notice.params).order_by(Notice.id))
    ).all()
    await s.rollback()
    return [(kind, who, params) for kind, who, params in rows]


# ----------------------------------------------------------------------------- rules


def test_codes_links_and_typed_points() -> None:
    first = gift_code(SECRET, 7, "abc")
    assert len(first) == 16 and first == gift_code(SECRET, 7, "abc")
    assert first != gift_code(SECRET, 8, "abc") != gift_code(b"other", 7, "abc")
    assert first != gift_code(SECRET, 7, "abd")
    param = gift_param(first)
    assert len(param) <= 64 and read_gift_param(param) == first
    assert read_gift_param("g" + first[:-1]) is None and read_gift_param("c" + first) is None
    assert parse_points(" 200 ") == 200
    for bad in ("0", "-5", "2.5", "1e3", "200 points", "", "½", "٣"):
        with pytest.raises(errors.InvalidPoints):
            parse_points(bad)


# ----------------------------------------------------------------------------- gifts


async def test_a_gift_is_held_then_accepted_into_the_friends_wallet(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann, bob = await funded(s, program, 1), await funded(s, program, 2, "20")
        assert await wallet(s, ann) == (1050, 0)
        gift = await create_gift(s, program, member_id=ann, points=300, code=code(1), now=NOW)
        assert gift.status == "open" and gift.expires_at == NOW + timedelta(days=7)
        # Held, not moved: the balance is the giver's until a friend accepts.
        assert await wallet(s, ann) == (1050, 300)
        assert (await allowance(s, program, ann, NOW)).spendable == 750
        assert [g.code for g in await open_gifts(s, ann)] == [code(1)]

        done = await accept_gift(
            s, program, code=code(1), member_id=bob, now=NOW + timedelta(hours=2)
        )
        assert done.balance == 150 + 300
        assert await wallet(s, ann) == (750, 0) and await wallet(s, bob) == (450, 0)
        row = await gift_row(s, code(1))
        assert (row.status, row.receiver_id, row.transaction_id) == (
            "accepted",
            bob,
            done.transaction_id,
        )
        tx = await s.get_one(Transaction, done.transaction_id)
        assert (tx.kind, tx.idempotency_key, tx.member_id) == ("gift", hold_key(code(1)), ann)
        hold = (await s.execute(select(Hold).where(Hold.key == hold_key(code(1))))).scalar_one()
        assert (hold.status, hold.transaction_id) == ("posted", done.transaction_id)
        # The giver's oldest lot (the welcome points) went first; the friend's lots keep the
        # expiry of the giver's lots they come from.
        lots = (
            await s.execute(
                select(
                    PointLot.member_id, PointLot.points, PointLot.remaining, PointLot.expires_at
                ).order_by(PointLot.id)
            )
        ).all()
        await s.rollback()
        accepted_at = NOW + timedelta(hours=2)
        assert [(m, p, r) for m, p, r, _ in lots if m == ann] == [(ann, 50, 0), (ann, 1000, 750)]
        year = timedelta(days=365)
        assert (bob, 50, 50, NOW - timedelta(1) + year) in lots  # the welcome lot's expiry
        assert (bob, 250, 250, NOW - timedelta(hours=1) + year) in lots  # the sale's
        told = [(kind, who, p["points"], p.get("friend")) for kind, who, p in await notices(s)]
        assert told[-2:] == [("gift_received", bob, 300, ann), ("gift_accepted", ann, 300, bob)]
        # Accepting again, by anyone, changes nothing.
        with pytest.raises(GiftClosed) as again:
            await accept_gift(s, program, code=code(1), member_id=bob, now=accepted_at)
        assert again.value.params["status"] == "accepted_by_you"
        carl = await funded(s, program, 3)
        with pytest.raises(GiftClosed) as late:
            await accept_gift(s, program, code=code(1), member_id=carl, now=accepted_at)
        assert late.value.params["status"] == "accepted"
        assert await wallet(s, bob) == (450, 0)
        items, _ = await history(s, await get_member(s, bob))
        assert (items[0].kind, items[0].points_in, items[0].own) == ("gift", 300, False)
        items, _ = await history(s, await get_member(s, ann))
        assert (items[0].kind, items[0].points_out) == ("gift", 300)


async def test_a_gift_keeps_the_expiry_of_the_points_given(sessions: Sessions) -> None:
    """Passing points back and forth does not keep them alive: each gift's lots expire when
    the giver's would have, and never later than points earned at the acceptance."""
    program = gifts_program(welcome_points=0, expire_days=30)
    async with sessions() as s:
        ann = await funded(s, program, 1)  # 1000 points earned an hour before NOW
        bob = (await register_member(s, program, telegram_id=2, now=NOW)).id
        due = NOW - timedelta(hours=1) + timedelta(days=30)
        for day, giver, receiver in ((20, ann, bob), (25, bob, ann)):
            at = NOW + timedelta(days=day)
            await create_gift(s, program, member_id=giver, points=1000, code=code(day), now=at)
            await accept_gift(s, program, code=code(day), member_id=receiver, now=at)
        lots = await s.execute(
            select(PointLot.points, PointLot.remaining, PointLot.expires_at)
            .where(PointLot.member_id == ann)
            .order_by(PointLot.id)
        )
        assert lots.all() == [(1000, 0, due), (1000, 1000, due)]
        await s.rollback()
        # When the points first earned expire, so do the points that went round.
        expired = await expire_due(s, now=due + timedelta(seconds=1))
        assert [(e.member_id, e.points) for e in expired] == [(ann, 1000)]
        assert await wallet(s, ann) == (0, 0) and await wallet(s, bob) == (0, 0)

        # Points that would outlive points earned now (the program shortened its expiry)
        # are given with the expiry of points earned now.
        carl = await funded(s, program, 3)
        shorter = gifts_program(welcome_points=0, expire_days=10)
        await create_gift(s, shorter, member_id=carl, points=400, code=code(3), now=NOW)
        await accept_gift(s, shorter, code=code(3), member_id=bob, now=NOW)
        lots = await s.execute(
            select(PointLot.points, PointLot.expires_at).where(PointLot.member_id == bob)
        )
        assert (400, NOW + timedelta(days=10)) in lots.all()
        await s.rollback()


async def test_nobody_accepts_their_own_gift(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        ann = await funded(s, program, 1)
        await create_gift(s, program, member_id=ann, points=100, code=code(1), now=NOW)
        with pytest.raises(OwnGift):
            await accept_gift(s, program, code=code(1), member_id=ann, now=NOW)
        assert await wallet(s, ann) == (1050, 100)
        assert (await gift_row(s, code(1))).status == "open"
        with pytest.raises(GiftClosed) as unknown:
            await accept_gift(s, program, code=code(99), member_id=ann, now=NOW)
        assert unknown.value.params["status"] == "unknown"


async def test_two_friends_accepting_at_once_one_wins(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann = await funded(s, program, 1)
        friends = [(await register_member(s, program, telegram_id=10 + i)).id for i in range(6)]
        await create_gift(s, program, member_id=ann, points=400, code=code(1), now=NOW)

    async def attempt(member_id: int) -> str:
        async with sessions() as s:
            try:
                await accept_gift(s, program, code=code(1), member_id=member_id, now=NOW)
            except GiftClosed as closed:
                return str(closed.params["status"])
            return "won"

    # Each friend twice: one acceptance of all twelve posts.
    outcomes = await asyncio.gather(*(attempt(m) for m in friends + friends))
    assert Counter(outcomes)["won"] == 1
    assert set(outcomes) <= {"won", "accepted", "accepted_by_you"}
    async with sessions() as s:
        row = await gift_row(s, code(1))
        winner = row.receiver_id
        assert outcomes.count("accepted_by_you") == 1 and winner in friends
        assert await wallet(s, winner) == (50 + 400, 0) and await wallet(s, ann) == (650, 0)
        posted = await s.scalar(select(func.count()).where(Transaction.kind == "gift"))
        assert posted == 1


async def test_a_double_tap_makes_one_gift(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        ann = await funded(s, program, 1)

    async def tap() -> bool:
        async with sessions() as s:
            gift = await create_gift(s, program, member_id=ann, points=250, code=code(1), now=NOW)
            return gift.replayed

    replays = await asyncio.gather(*(tap() for _ in range(8)))
    assert sorted(replays) == [False] + [True] * 7
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Gift)) == 1
        assert await wallet(s, ann) == (1050, 250)
        with pytest.raises(errors.IdempotencyConflict):  # the same code for other points
            await create_gift(s, program, member_id=ann, points=251, code=code(1), now=NOW)


async def test_the_daily_allowance_counts_todays_gifts_not_returned(sessions: Sessions) -> None:
    program = gifts_program(per_day=1000)
    async with sessions() as s:
        ann = await funded(s, program, 1, "1000")  # 5050 points
        late = datetime(2026, 6, 10, 21, 30, tzinfo=UTC)  # 23:30 in Warsaw
        await create_gift(s, program, member_id=ann, points=600, code=code(1), now=late)
        with pytest.raises(GiftLimit) as over:
            await create_gift(s, program, member_id=ann, points=500, code=code(2), now=late)
        assert over.value.params == {"max": 1000, "left": 400}
        await create_gift(s, program, member_id=ann, points=400, code=code(3), now=late)
        assert (await allowance(s, program, ann, late)).most == 0
        # Taken back: no longer counted.
        await cancel_gift(s, code=code(1), member_id=ann, now=late)
        await create_gift(s, program, member_id=ann, points=600, code=code(4), now=late)
        # Half an hour later it is another day in Warsaw (still the same day in UTC).
        tomorrow = late + timedelta(minutes=31)
        await create_gift(s, program, member_id=ann, points=1000, code=code(5), now=tomorrow)
        with pytest.raises(GiftLimit):
            await create_gift(s, program, member_id=ann, points=1, code=code(6), now=tomorrow)
        assert await wallet(s, ann) == (5050, 2000)


async def test_no_gifting_when_the_program_allows_none(sessions: Sessions) -> None:
    program = gifts_program(per_day=0)
    async with sessions() as s:
        ann = await funded(s, program, 1)
        with pytest.raises(GiftingOff):
            await create_gift(s, program, member_id=ann, points=10, code=code(1), now=NOW)
        assert await s.scalar(select(func.count()).select_from(Hold)) == 0


async def test_held_points_cannot_be_given(sessions: Sessions) -> None:
    program = gifts_program(per_day=100_000)
    async with sessions() as s:
        ann = await funded(s, program, 1)  # 1050
        cashier = await accept_invite(
            s,
            await create_invite(s, created_by=1, role="cashier", partner_slug="books"),
            telegram_id=100,
        )
        # A redemption waiting for Ann's yes holds 500 of her points.
        await request_redemption(
            s,
            program,
            cashier,
            member_id=ann,
            amount=D("20.00"),
            points=500,
            dialog="req",
            staff_chat_id=100,
            now=NOW,
        )
        await create_gift(s, program, member_id=ann, points=300, code=code(1), now=NOW)
        with pytest.raises(errors.NotEnoughPoints) as refused:
            await create_gift(s, program, member_id=ann, points=251, code=code(2), now=NOW)
        assert refused.value.params == {"balance": 250}
        with pytest.raises(errors.InvalidPoints):
            await create_gift(s, program, member_id=ann, points=0, code=code(3), now=NOW)
        assert await wallet(s, ann) == (1050, 800)


async def test_unaccepted_gifts_return_after_seven_days(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann, bob = await funded(s, program, 1), await funded(s, program, 2)
        await create_gift(s, program, member_id=ann, points=300, code=code(1), now=NOW)
        await create_gift(s, program, member_id=ann, points=200, code=code(2), now=NOW)
        await accept_gift(s, program, code=code(2), member_id=bob, now=NOW + timedelta(days=1))
        almost = NOW + timedelta(days=7) - timedelta(seconds=1)
        assert await return_expired_gifts(s, now=almost) == []
        # Past its time and not yet returned: no longer accepted.
        with pytest.raises(GiftClosed) as expired:
            await accept_gift(s, program, code=code(1), member_id=bob, now=NOW + timedelta(days=7))
        assert expired.value.params["status"] == "expired"
        returned = await return_expired_gifts(s, now=NOW + timedelta(days=7))
        assert [g.code for g in returned] == [code(1)]
        assert await return_expired_gifts(s, now=NOW + timedelta(days=8)) == []  # once
        assert (await gift_row(s, code(1))).status == "returned"
        assert await wallet(s, ann) == (850, 0)
        kind, who, params = (await notices(s))[-1]
        assert (kind, who, params) == ("gift_returned", ann, {"points": 300})
        with pytest.raises(GiftClosed) as closed:
            await accept_gift(s, program, code=code(1), member_id=bob, now=NOW + timedelta(days=8))
        assert closed.value.params["status"] == "returned"


async def test_the_giver_takes_an_open_gift_back(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        ann, bob = await funded(s, program, 1), await funded(s, program, 2)
        await create_gift(s, program, member_id=ann, points=300, code=code(1), now=NOW)
        with pytest.raises(GiftClosed):  # not Bob's to take back
            await cancel_gift(s, code=code(1), member_id=bob, now=NOW)
        gift = await cancel_gift(s, code=code(1), member_id=ann, now=NOW)
        assert gift.points == 300 and await wallet(s, ann) == (1050, 0)
        assert await open_gifts(s, ann) == []
        with pytest.raises(GiftClosed) as twice:
            await cancel_gift(s, code=code(1), member_id=ann, now=NOW)
        assert twice.value.params["status"] == "returned"
        with pytest.raises(GiftClosed):
            await accept_gift(s, program, code=code(1), member_id=bob, now=NOW)
        assert await wallet(s, bob) == (1050, 0)


async def test_cancel_and_accept_racing_find_one_winner(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann, bob = await funded(s, program, 1), await funded(s, program, 2)
    for n in range(6):
        async with sessions() as s:
            await create_gift(s, program, member_id=ann, points=100, code=code(n), now=NOW)

        async def take_back(n: int = n) -> str:
            async with sessions() as s:
                try:
                    await cancel_gift(s, code=code(n), member_id=ann, now=NOW)
                except GiftClosed:
                    return "lost"
                return "returned"

        async def take(n: int = n) -> str:
            async with sessions() as s:
                try:
                    await accept_gift(s, program, code=code(n), member_id=bob, now=NOW)
                except GiftClosed:
                    return "lost"
                return "accepted"

        outcomes = set(await asyncio.gather(take_back(), take()))
        async with sessions() as s:
            status = (await gift_row(s, code(n))).status
        assert outcomes == {status, "lost"}
    async with sessions() as s:
        accepted = await s.scalar(select(func.count()).where(Gift.status == "accepted"))
        assert await wallet(s, bob) == (1050 + 100 * accepted, 0)


async def test_deleting_the_giver_returns_their_open_gifts(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann, bob = await funded(s, program, 1), await funded(s, program, 2)
        await create_gift(s, program, member_id=ann, points=300, code=code(1), now=NOW)
        forfeited = await delete_member(s, await get_member(s, ann), now=NOW)
        assert forfeited == 1050  # the held points too: the gift went back first
        row = await gift_row(s, code(1))
        assert (row.status, row.resolved_at) == ("returned", NOW)
        hold = (await s.execute(select(Hold).where(Hold.key == hold_key(code(1))))).scalar_one()
        assert hold.status == "voided"
        with pytest.raises(GiftClosed) as closed:
            await accept_gift(s, program, code=code(1), member_id=bob, now=NOW)
        assert closed.value.params["status"] == "returned"
        assert await wallet(s, bob) == (1050, 0)


# ----------------------------------------------------------------------------- donations


async def test_a_donation_is_redeemed_at_the_charity_and_settled_to_it(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann = await funded(s, program, 1)
        done = await donate(
            s, program, member_id=ann, charity="shelter", points=200, key="don-1", now=NOW
        )
        assert (done.points, done.balance, done.replayed) == (200, 850, False)
        again = await donate(
            s, program, member_id=ann, charity="shelter", points=200, key="don-1", now=NOW
        )
        assert (again.transaction_id, again.replayed) == (done.transaction_id, True)
        assert await wallet(s, ann) == (850, 0)
        shelter_id = await s.scalar(select(Partner.id).where(Partner.slug == "shelter"))
        shelter = await s.scalar(
            text(
                "SELECT balance FROM account_balances"
                " WHERE kind = 'partner_redeemed' AND partner_id = :p"
            ),
            {"p": shelter_id},
        )
        assert shelter == 200
        kind, who, params = (await notices(s))[-1]
        assert (kind, who, params["points"], params["partner"]) == (
            "donation",
            ann,
            200,
            "shelter",
        )
        items, _ = await history(s, await get_member(s, ann))
        assert (items[0].kind, items[0].partner, items[0].points_out) == (
            "donation",
            "shelter",
            200,
        )

        report = await settlement(
            s, program, start=NOW - timedelta(days=2), end=NOW + timedelta(1)
        )
        line = next(p for p in report.partners if p.slug == "shelter")
        assert (line.kind, line.points_redeemed, line.points_issued) == ("charity", 200, 0)
        assert report.money(line.net_points) == D("2.00")
        # Every point that left a wallet is on a line: the report reconciles to the ledger.
        assert report.wallets_change == 50 + 1000 - 200
        out = io.StringIO()
        write_settlement(report, "PLN", out)
        row = next(r for r in out.getvalue().splitlines() if ",shelter," in r)
        assert row.split(",")[2] == "charity" and "2.00,PLN,coalition pays charity" in row

        figures = await donation_figures(
            s, start=NOW - timedelta(1), end=NOW + timedelta(1), partner_id=shelter_id
        )
        assert (figures.donations, figures.points, figures.donors) == (1, 200, 1)
        assert (await donation_figures(s, start=NOW + timedelta(1), end=NOW + timedelta(2))) == (
            type(figures)(0, 0, 0)
        )


async def test_donations_refused(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        ann = await funded(s, program, 1)
        with pytest.raises(NotACharity):
            await donate(s, program, member_id=ann, charity="coffee", points=10, key="k1")
        with pytest.raises(NotACharity):
            await donate(s, program, member_id=ann, charity="nope", points=10, key="k2")
        await create_gift(s, program, member_id=ann, points=1000, code=code(1), now=NOW)
        with pytest.raises(errors.NotEnoughPoints):  # 50 may be spent: 1000 are held
            await donate(s, program, member_id=ann, charity="shelter", points=51, key="k3")
        await donate(s, program, member_id=ann, charity="shelter", points=50, key="k4")
        assert await wallet(s, ann) == (1000, 1000)


async def test_a_double_tap_donates_once(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        ann = await funded(s, program, 1)

    async def tap() -> int:
        async with sessions() as s:
            done = await donate(
                s, program, member_id=ann, charity="shelter", points=300, key="don-tap"
            )
            return done.transaction_id

    assert len(set(await asyncio.gather(*(tap() for _ in range(8))))) == 1
    async with sessions() as s:
        assert await wallet(s, ann) == (750, 0)


async def test_a_charity_takes_no_sales(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        ann = await funded(s, program, 1)
        with pytest.raises(CharityTakesNoSales):
            await record_sale(
                s, program, Sale(member_id=ann, partner="shelter", amount=D("10"), key="sale")
            )
        cashier = await accept_invite(
            s,
            await create_invite(s, created_by=1, role="cashier", partner_slug="shelter"),
            telegram_id=100,
        )
        with pytest.raises(CharityTakesNoSales):
            await till_sale(s, program, cashier, member_id=ann, amount=D("10"), dialog="d")
        with pytest.raises(CharityTakesNoSales):
            await request_redemption(
                s,
                program,
                cashier,
                member_id=ann,
                amount=D("10"),
                points=100,
                dialog="r",
                staff_chat_id=100,
            )
        sales = await s.scalar(select(func.count()).where(Transaction.partner_id.is_not(None)))
        assert sales == 1  # the funding sale at the café, nothing at the shelter
        assert await wallet(s, ann) == (1050, 0)
