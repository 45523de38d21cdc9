"""The partner API's use cases on real PostgreSQL (db/usecases/api/), no HTTP: a till's
software quotes a sale (writing nothing), posts it by document number (with itemised lines,
promotions naming categories), with points the member confirms in Telegram while the till
polls, without a member card (recorded, not in the ledger), reads it, finishes it without
points, refunds it by document number and claims vouchers, always at its own partner. The
ledger's invariants are checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import ApiSale, AuditLog, Member, Notice, RedemptionRequest, Transaction
from db.rules.errors import (
    AlreadyReversed,
    DiscountChanged,
    InvalidPoints,
    LinesDontAddUp,
    NotReversible,
    NotStaff,
    ReceiptTaken,
    RedeemLimitExceeded,
    RequestClosed,
    UnknownMember,
    UnknownSale,
)
from db.rules.gifts import CharityTakesNoSales
from db.rules.lines import Line
from db.rules.program import Program, parse_program
from db.rules.vouchers import UnknownVoucher, VoucherClaimed, VoucherWrongPartner, display_code
from db.usecases.adjust import adjust
from db.usecases.api import quote as quotes
from db.usecases.api import requests, sales, state
from db.usecases.api.actor import ApiActor
from db.usecases.api.refunds import refund_sale
from db.usecases.api.vouchers import claim, lookup
from db.usecases.members import register_member
from db.usecases.purchases import Sale, record_sale
from db.usecases.stamps import ADDED, BELOW_MIN, FILLED
from db.usecases.till import (
    close_request,
    confirm_redemption,
    expire_requests,
    request_undeliverable,
)
from tests.apiharness import key_actor
from tests.conftest import TEST_PROGRAM

D = Decimal
Sessions = async_sessionmaker[AsyncSession]
# Saturday 6 March 2027, 09:00 in Warsaw.
T0 = datetime(2027, 3, 6, 8, 0, tzinfo=UTC)
BEANS = (Line(D("30.00"), D("1"), "coffee-beans", "B-250"), Line(D("70.00"), D("2"), "cups"))


def api_program() -> Program:
    """The test program in Warsaw with a 3 % Silver discount, a ×2 on coffee beans at the
    café, a 5-stamp card there, and a free coffee for a book of 40.00 (a voucher to claim)."""
    data: dict[str, Any] = {
        **TEST_PROGRAM,
        "program": {**TEST_PROGRAM["program"], "timezone": "Europe/Warsaw"},
        "tiers": [
            {"name": "Bronze", "min_spend": "0", "multiplier": "1.0"},
            {
                "name": "Silver",
                "min_spend": "1000.00",
                "multiplier": "1.5",
                "discount_percent": "3",
            },
            {"name": "Gold", "min_spend": "3000.00", "multiplier": "2.0"},
        ],
        "partners": [
            *TEST_PROGRAM["partners"],
            {"slug": "shelter", "name": "Paws Shelter", "kind": "charity"},
        ],
        "rewards": [
            {
                "slug": "free-coffee",
                "title": "A coffee of your choice",
                "partner": "coffee",
                "points": 300,
                "valid_days": 30,
            }
        ],
        "stamp_cards": [
            {
                "slug": "coffee-5",
                "name": "Fifth coffee free",
                "partners": ["coffee"],
                "stamps": 5,
                "per_day": 0,
                "min_purchase": "5.00",
                "reward_points": 250,
            }
        ],
        "promotions": [
            {
                "slug": "beans",
                "title": "Double points on coffee beans",
                "partners": ["coffee"],
                "when": {"categories": ["coffee-beans"]},
                "min_purchase": "20.00",
                "effect": {"multiplier": "2"},
            },
            {
                "slug": "coffee-with-a-book",
                "title": "Coffee with a book",
                "partners": ["books"],
                "min_purchase": "40.00",
                "effect": {"reward": "free-coffee"},
                "funded_by": {"books": 100},
            },
        ],
    }
    return parse_program(data)


@pytest.fixture
def program() -> Program:
    return api_program()


async def partner_id(sessions: Sessions, slug: str) -> int:
    async with sessions() as s:
        found = await s.scalar(text("SELECT id FROM partners WHERE slug = :s"), {"s": slug})
    assert found is not None
    return int(found)


async def till(sessions: Sessions, slug: str = "coffee") -> ApiActor:
    """A till of `slug`: a key of its own, with the `sales` scope."""
    async with sessions() as s:
        return await key_actor(s, slug, ("sales",))


async def member(
    sessions: Sessions, program: Program, tg: int = 1, *, tier: str = "Bronze", points: int = 0
) -> int:
    async with sessions() as s:
        member_id = (await register_member(s, program, telegram_id=tg, now=T0)).id
        await s.execute(update(Member).where(Member.id == member_id).values(tier=tier))
        await s.commit()
        if points:
            await adjust(s, program, member_id=member_id, points=points, reason="t", key=f"a{tg}")
    return member_id


async def counts(sessions: Sessions) -> dict[str, int]:
    async with sessions() as s:
        return {
            table: int(await s.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
            for table in (
                "transactions",
                "api_sales",
                "notices",
                "audit_log",
                "redemption_requests",
                "holds",
            )
        }


async def notices(sessions: Sessions, kind: str) -> list[Notice]:
    async with sessions() as s:
        return list((await s.execute(select(Notice).where(Notice.kind == kind))).scalars())


# ------------------------------------------------------------------------------ quote


async def test_a_quote_says_what_the_sale_would_give_and_writes_nothing(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tier="Silver", points=5_000)  # +50 welcome
    coffee = await till(sessions)
    before = await counts(sessions)
    async with sessions() as s:
        q = await quotes.quote(
            s, program, coffee, member_id=ann, amount=D("100.00"), lines=BEANS, now=T0
        )
        paying = await quotes.quote(
            s, program, coffee, member_id=ann, amount=D("100.00"), points=1_000, now=T0
        )
        nobody = await quotes.quote(s, program, coffee, member_id=None, amount=D("8.50"), now=T0)
    # Silver: 3 % off 100.00 leaves 97.00; 5 % of it at ×1.5 is 727 points (97 × 7.5).
    assert (q.tier, q.discount, q.discount_percent, q.to_pay) == (
        "Silver",
        D("3.00"),
        D("3"),
        D("97.00"),
    )
    assert q.points_earned == 727 and q.paid == D("97.00")
    # Half of what is to pay: 48.50, 4850 points, of 5050 available.
    assert (q.max_points, q.max_points_money, q.available) == (4_850, D("48.50"), 5_050)
    # ×2 on the beans' 30 % (29.10 charged, over its 20.00): 218 more.
    assert [(p.promotion, p.points, p.multiplier) for p in q.promotions] == [
        ("beans", 218, D("2"))
    ]
    assert [(c.card, c.status, c.stamps) for c in q.stamps] == [("coffee-5", ADDED, 1)]
    # Paying 1000 points (10.00): 87.00 paid earns 652; without lines, no beans.
    assert (paying.points_money, paying.paid, paying.points_earned) == (
        D("10.00"),
        D("87.00"),
        652,
    )
    assert paying.promotions == ()
    assert (nobody.member_id, nobody.to_pay, nobody.points_earned, nobody.stamps) == (
        None,
        D("8.50"),
        0,
        (),
    )
    assert await counts(sessions) == before
    async with sessions() as s:
        with pytest.raises(RedeemLimitExceeded):
            await quotes.quote(
                s, program, coffee, member_id=ann, amount=D("10.00"), points=600, now=T0
            )
        with pytest.raises(LinesDontAddUp):
            await quotes.quote(
                s, program, coffee, member_id=ann, amount=D("99.00"), lines=BEANS, now=T0
            )
        with pytest.raises(UnknownMember):
            await quotes.quote(s, program, coffee, member_id=999, amount=D("1.00"), now=T0)
        with pytest.raises(CharityTakesNoSales):
            shelter = await till(sessions, "shelter")
            await quotes.quote(s, program, shelter, member_id=ann, amount=D("1.00"), now=T0)


async def test_a_quote_of_the_stamp_that_fills_the_card_and_of_a_small_sale(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    coffee = await till(sessions)
    for n in range(4):
        async with sessions() as s:
            await sales.post_sale(
                s,
                program,
                coffee,
                document=f"F-{n}",
                member_id=ann,
                amount=D("6.00"),
                now=T0 + timedelta(minutes=n),
            )
    async with sessions() as s:
        q = await quotes.quote(s, program, coffee, member_id=ann, amount=D("6.00"), now=T0)
        small = await quotes.quote(s, program, coffee, member_id=ann, amount=D("4.00"), now=T0)
    (card,) = q.stamps
    assert (card.status, card.stamps, card.of, card.reward_points) == (FILLED, 5, 5, 250)
    assert [c.status for c in small.stamps] == [BELOW_MIN]


# ------------------------------------------------------------------------------ sales


async def test_a_sale_without_points_is_posted_at_once_and_a_document_is_one_sale(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    coffee = await till(sessions)
    async with sessions() as s:
        done = await sales.post_sale(
            s,
            program,
            coffee,
            document="a-1001",
            member_id=ann,
            amount=D("100.00"),
            lines=BEANS,
            now=T0,
        )
    assert done.state == state.POSTED and done.document == "A-1001"  # read in capitals
    assert done.result is not None and done.result.points_earned == 500
    assert [(p.promotion, p.points) for p in done.result.promotions] == [("beans", 150)]
    assert done.lines == BEANS
    before = await counts(sessions)
    async with sessions() as s:
        again = await sales.post_sale(
            s,
            program,
            coffee,
            document="A-1001",
            member_id=ann,
            amount=D("100.00"),
            lines=BEANS,
            now=T0 + timedelta(minutes=5),
        )
    assert again.replayed and again.state == state.POSTED
    assert again.result is not None and again.result.transaction_id == done.result.transaction_id
    assert [(p.promotion, p.points) for p in again.result.promotions] == [("beans", 150)]
    assert await counts(sessions) == before
    async with sessions() as s:
        with pytest.raises(ReceiptTaken):  # the same number, another sale
            await sales.post_sale(
                s, program, coffee, document="A-1001", member_id=ann, amount=D("99.00"), now=T0
            )
        # The next business day the number is free again.
        tomorrow = await sales.post_sale(
            s,
            program,
            coffee,
            document="A-1001",
            member_id=ann,
            amount=D("99.00"),
            now=T0 + timedelta(days=1),
        )
    assert tomorrow.state == state.POSTED and not tomorrow.replayed
    # The member is told; no staff chat is; the audit names the key.
    purchases = await notices(sessions, "purchase")
    assert [n.member_id for n in purchases] == [ann, ann]
    async with sessions() as s:
        assert await s.scalar(select(func.count()).where(Notice.chat_id.is_not(None))) == 0
        audited = (
            await s.execute(
                select(AuditLog).where(AuditLog.action == "sale").order_by(AuditLog.id)
            )
        ).scalars()
        assert [(a.staff_id, a.details["api_key"], a.details["receipt"]) for a in audited] == [
            (None, str(coffee.key_id), "A-1001"),
            (None, str(coffee.key_id), "A-1001"),
        ]
        stored = await s.scalar(
            select(Transaction.receipt).where(Transaction.id == done.result.transaction_id)
        )
    assert stored == "A-1001"


async def test_a_sale_with_points_waits_for_the_member_and_the_till_polls(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tg=11, points=2_000)
    coffee = await till(sessions)
    async with sessions() as s:
        asked = await sales.post_sale(
            s,
            program,
            coffee,
            document="P-1",
            member_id=ann,
            amount=D("100.00"),
            lines=BEANS,
            points=1_000,
            now=T0,
        )
    assert (asked.state, asked.points, asked.result) == (state.PENDING, 1_000, None)
    assert asked.expires_at is not None and asked.expires_at > T0
    # The member is asked in Telegram, with the buttons; no cashier chat is owed anything.
    (request,) = await notices(sessions, "redeem_request")
    assert request.member_id == ann and request.params["points"] == 1_000
    async with sessions() as s:
        polled = await state.sale_state(s, program, coffee, document="P-1", now=T0)
        assert polled.state == state.PENDING
        with pytest.raises(RequestClosed):  # the member may still answer
            await requests.finish_without_points(s, program, coffee, document="P-1", now=T0)
        await confirm_redemption(s, program, str(request.params["request"]), 11, now=T0)
        posted = await state.sale_state(
            s, program, coffee, document="P-1", now=T0 + timedelta(minutes=1)
        )
    assert posted.state == state.POSTED and posted.expires_at is None
    result = posted.result
    assert result is not None and result.points_redeemed == 1_000
    # 90.00 paid earns 450; ×2 on the beans' 30 % (lines kept for the confirmation): 135.
    assert result.points_earned == 450
    assert [(p.promotion, p.points) for p in result.promotions] == [("beans", 135)]
    async with sessions() as s:
        assert await s.scalar(select(func.count()).where(Notice.chat_id.is_not(None))) == 0
        # Finishing a posted sale posts nothing more.
        same = await requests.finish_without_points(s, program, coffee, document="P-1", now=T0)
    assert same.replayed and same.result is not None
    assert same.result.transaction_id == result.transaction_id


async def test_declined_expired_and_withdrawn_requests_finish_without_points(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tg=12, points=2_000)
    coffee = await till(sessions)

    async def ask(document: str, points: int | Literal["max"] = sales.MAX) -> state.SaleState:
        async with sessions() as s:
            return await sales.post_sale(
                s,
                program,
                coffee,
                document=document,
                member_id=ann,
                amount=D("20.00"),
                points=points,
                now=T0,
            )

    declined = await ask("D-1")
    assert declined.points == 1_000  # as many as allowed: half of 20.00
    (request,) = await notices(sessions, "redeem_request")
    async with sessions() as s:
        await close_request(
            s, program, str(request.params["request"]), status="declined", telegram_id=12
        )
        read = await state.sale_state(s, program, coffee, document="D-1", now=T0)
        assert (read.state, read.can_finish) == ("declined", True)
        done = await requests.finish_without_points(s, program, coffee, document="D-1", now=T0)
    assert done.state == state.POSTED and done.result is not None
    assert (done.result.points_redeemed, done.result.points_earned) == (0, 100)
    # Past its time, before the job closed it: read as expired, finished after closing it.
    await ask("E-1", 500)
    later = T0 + timedelta(minutes=10)
    async with sessions() as s:
        assert (await state.sale_state(s, program, coffee, document="E-1", now=later)).state == (
            "expired"
        )
        finished = await requests.finish_without_points(
            s, program, coffee, document="E-1", now=later
        )
        status = await s.scalar(
            select(RedemptionRequest.status).where(RedemptionRequest.receipt == "E-1")
        )
    assert finished.state == state.POSTED and status == "expired"
    # The expiry job closes the API's requests too, owing nothing to a staff chat.
    await ask("J-1", 100)
    async with sessions() as s:
        closed = await expire_requests(s, program, now=later)
        assert [r.receipt for r in closed] == ["J-1"]
        assert (await state.sale_state(s, program, coffee, document="J-1", now=later)).state == (
            "expired"
        )
    # Withdrawn by the till while pending: the member can no longer confirm it.
    await ask("W-1", 100)
    async with sessions() as s:
        withdrawn = await requests.withdraw(s, program, coffee, document="W-1", now=T0)
        assert withdrawn.state == "cancelled"
        with pytest.raises(RequestClosed):
            await requests.withdraw(s, program, coffee, document="W-1", now=T0)
        public_id = await s.scalar(
            select(RedemptionRequest.public_id).where(RedemptionRequest.receipt == "W-1")
        )
        assert public_id is not None
        with pytest.raises(RequestClosed):
            await confirm_redemption(s, program, public_id, 12, now=T0)
        assert await s.scalar(select(func.count()).where(Notice.chat_id.is_not(None))) == 0


async def test_a_member_who_blocked_the_bot_cannot_be_asked(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tg=13, points=1_000)
    coffee = await till(sessions)
    async with sessions() as s:
        await s.execute(update(Member).where(Member.id == ann).values(reachable=False))
        await s.commit()
        asked = await sales.post_sale(
            s,
            program,
            coffee,
            document="U-1",
            member_id=ann,
            amount=D("20.00"),
            points=500,
            now=T0,
        )
        assert (asked.state, asked.can_finish) == ("unreachable", True)
        done = await requests.finish_without_points(s, program, coffee, document="U-1", now=T0)
    assert done.result is not None and done.result.points_earned == 100


async def test_a_request_the_member_turns_out_unable_to_get_is_closed_at_once(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tg=18, points=1_000)
    coffee = await till(sessions)
    async with sessions() as s:
        await sales.post_sale(
            s,
            program,
            coffee,
            document="B-1",
            member_id=ann,
            amount=D("20.00"),
            points=500,
            now=T0,
        )
    (request,) = await notices(sessions, "redeem_request")
    async with sessions() as s:
        # As the outbox worker does when Telegram says the member blocked the bot.
        await request_undeliverable(s, str(request.params["request"]))
        await s.commit()
        read = await state.sale_state(s, program, coffee, document="B-1", now=T0)
        assert (read.state, read.can_finish) == ("unreachable", True)
        assert await s.scalar(select(func.count()).where(Notice.chat_id.is_not(None))) == 0


async def test_the_discount_the_till_charged_is_checked(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tier="Silver")
    coffee = await till(sessions)
    async with sessions() as s:
        with pytest.raises(DiscountChanged):
            await sales.post_sale(
                s,
                program,
                coffee,
                document="X-1",
                member_id=ann,
                amount=D("10.00"),
                discount_percent=D(0),
                now=T0,
            )
        for nonsense in (D(-3), D(100), D("NaN")):
            with pytest.raises(DiscountChanged):
                await sales.post_sale(
                    s,
                    program,
                    coffee,
                    document="X-1",
                    member_id=ann,
                    amount=D("10.00"),
                    discount_percent=nonsense,
                    now=T0,
                )
        done = await sales.post_sale(
            s,
            program,
            coffee,
            document="X-1",
            member_id=ann,
            amount=D("10.00"),
            discount_percent=D(3),
            now=T0,
        )
    assert done.result is not None and done.result.discount == D("0.30")


async def test_a_sale_without_a_member_card_is_recorded_not_posted(
    sessions: Sessions, program: Program
) -> None:
    coffee = await till(sessions)
    before = await counts(sessions)
    async with sessions() as s:
        walk_in = await sales.post_sale(
            s,
            program,
            coffee,
            document="N-1",
            member_id=None,
            amount=D("12.00"),
            lines=(Line(D("12.00"), category="cups"),),
            now=T0,
        )
        again = await sales.post_sale(
            s,
            program,
            coffee,
            document="N-1",
            member_id=None,
            amount=D("12.00"),
            lines=(Line(D("12.00"), category="cups"),),
            now=T0,
        )
        read = await state.sale_state(s, program, coffee, document="n-1", now=T0)
        with pytest.raises(ReceiptTaken):
            await sales.post_sale(
                s, program, coffee, document="N-1", member_id=None, amount=D("13.00"), now=T0
            )
        with pytest.raises(InvalidPoints):
            await sales.post_sale(
                s,
                program,
                coffee,
                document="N-2",
                member_id=None,
                amount=D("13.00"),
                points=10,
                now=T0,
            )
        with pytest.raises(RequestClosed):
            await requests.finish_without_points(s, program, coffee, document="N-1", now=T0)
    assert (walk_in.state, walk_in.member_id, walk_in.result) == (state.RECORDED, None, None)
    assert again.replayed and read.state == state.RECORDED and read.lines == walk_in.lines
    after = await counts(sessions)
    # One row of its own and its audit; nothing in the ledger, nobody told.
    assert {k: after[k] - before[k] for k in after} == {
        "transactions": 0,
        "api_sales": 1,
        "notices": 0,
        "audit_log": 1,
        "redemption_requests": 0,
        "holds": 0,
    }


async def test_the_same_document_posted_at_once_by_two_tills_is_one_sale(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program)
    coffee = await till(sessions)

    async def post() -> state.SaleState:
        async with sessions() as s:
            return await sales.post_sale(
                s, program, coffee, document="C-1", member_id=ann, amount=D("30.00"), now=T0
            )

    first, second = await asyncio.gather(post(), post())
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert first.result is not None and second.result is not None
    assert first.result.transaction_id == second.result.transaction_id
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ApiSale)) == 1


async def test_another_partners_sale_is_never_found(sessions: Sessions, program: Program) -> None:
    ann = await member(sessions, program)
    coffee, books = await till(sessions), await till(sessions, "books")
    async with sessions() as s:
        await sales.post_sale(
            s, program, coffee, document="Z-1", member_id=ann, amount=D("30.00"), now=T0
        )
        with pytest.raises(UnknownSale):
            await state.sale_state(s, program, books, document="Z-1", now=T0)
        with pytest.raises(UnknownSale):
            await refund_sale(
                s,
                program,
                books,
                document="Z-1",
                amount=None,
                reason="r",
                key="k",
                now=T0,
            )
        # Books may use the same number for a sale of its own.
        own = await sales.post_sale(
            s, program, books, document="Z-1", member_id=ann, amount=D("30.00"), now=T0
        )
    assert own.state == state.POSTED and not own.replayed


async def test_a_sale_for_nobody_writes_nothing(sessions: Sessions, program: Program) -> None:
    gone = await member(sessions, program, tg=19)
    coffee = await till(sessions)
    async with sessions() as s:
        await s.execute(update(Member).where(Member.id == gone).values(deleted_at=T0))
        await s.commit()
    before = await counts(sessions)
    for member_id, points in ((999, 0), (gone, 0), (999, 10), (gone, 10)):
        async with sessions() as s:
            with pytest.raises(UnknownMember):
                await sales.post_sale(
                    s,
                    program,
                    coffee,
                    document="G-1",
                    member_id=member_id,
                    amount=D("10.00"),
                    points=points,
                    now=T0,
                )
    assert await counts(sessions) == before


async def test_an_api_key_acts_in_its_scopes_roles() -> None:
    reader = ApiActor(key_id=1, partner_id=1, partner_slug="coffee", scopes=frozenset({"read"}))
    for action in ("sale", "redeem", "refund", "claim_voucher"):
        with pytest.raises(NotStaff):
            reader.require(action)
    reader.require("sale_read")
    ApiActor(key_id=1, partner_id=1, partner_slug="coffee").require("refund")


# ------------------------------------------------------------------------------ refunds


async def test_refund_by_document_partly_then_fully(sessions: Sessions, program: Program) -> None:
    ann = await member(sessions, program, tg=14, points=2_000)
    coffee = await till(sessions)
    async with sessions() as s:
        await sales.post_sale(
            s,
            program,
            coffee,
            document="R-1",
            member_id=ann,
            amount=D("100.00"),
            lines=BEANS,
            now=T0,
        )
        part = await refund_sale(
            s,
            program,
            coffee,
            document="R-1",
            amount=D("40.00"),
            reason="two cups back",
            key="idem-1",
            now=T0,
        )
        replay = await refund_sale(
            s,
            program,
            coffee,
            document="R-1",
            amount=D("40.00"),
            reason="two cups back",
            key="idem-1",
            now=T0,
        )
        rest = await refund_sale(
            s,
            program,
            coffee,
            document="R-1",
            amount=None,
            reason="all back",
            key="idem-2",
            now=T0,
        )
        read = await state.sale_state(s, program, coffee, document="R-1", now=T0)
        with pytest.raises(AlreadyReversed):
            await refund_sale(
                s,
                program,
                coffee,
                document="R-1",
                amount=None,
                reason="again",
                key="idem-3",
                now=T0,
            )
    # 40 % of the money: 40 % of the 500 points and of the beans' 150.
    assert (part.amount, part.points_clawed_back) == (D("40.00"), 200)
    assert [(p.promotion, p.points) for p in part.promotions] == [("beans", 60)]
    assert replay.replayed and replay.transaction_id == part.transaction_id
    assert rest.amount == D("60.00") and read.refunded == D("100.00")
    refunds = await notices(sessions, "reversal")
    assert [n.member_id for n in refunds] == [ann, ann]


async def test_what_was_not_posted_cannot_be_refunded(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tg=15, points=2_000)
    coffee = await till(sessions)
    async with sessions() as s:
        await sales.post_sale(
            s, program, coffee, document="Q-1", member_id=None, amount=D("5.00"), now=T0
        )
        await sales.post_sale(
            s,
            program,
            coffee,
            document="Q-2",
            member_id=ann,
            amount=D("5.00"),
            points=100,
            now=T0,
        )
        for document in ("Q-1", "Q-2"):
            with pytest.raises(NotReversible):
                await refund_sale(
                    s,
                    program,
                    coffee,
                    document=document,
                    amount=None,
                    reason="r",
                    key=document,
                    now=T0,
                )
        with pytest.raises(UnknownSale):
            await refund_sale(
                s, program, coffee, document="Q-3", amount=None, reason="r", key="q3", now=T0
            )


# ------------------------------------------------------------------------------ vouchers


async def test_a_till_claims_a_voucher_at_its_own_partner_once(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tg=16)
    async with sessions() as s:
        sold = await record_sale(
            s,
            program,
            Sale(member_id=ann, partner="books", amount=D("40.00"), key="b1", now=T0),
        )
    code = sold.promotions[0].voucher
    assert code is not None
    coffee, books = await till(sessions), await till(sessions, "books")
    async with sessions() as s:
        with pytest.raises(VoucherWrongPartner):
            await claim(s, program, books, code=code, now=T0)
        with pytest.raises(UnknownVoucher):
            await claim(s, program, coffee, code="not a code", now=T0)
        claimed = await claim(s, program, coffee, code=display_code(code).lower(), now=T0)
        with pytest.raises(VoucherClaimed):
            await claim(s, program, coffee, code=code, now=T0)
        audited = await s.scalar(
            select(AuditLog.details).where(AuditLog.action == "voucher_claim")
        )
    assert claimed.voucher.code == code and claimed.transaction_id is not None
    assert audited is not None and audited["api_key"] == str(coffee.key_id)
    (news,) = await notices(sessions, "voucher_claimed")
    assert news.member_id == ann


async def test_a_till_looks_a_member_up_by_card_number(
    sessions: Sessions, program: Program
) -> None:
    ann = await member(sessions, program, tg=17)
    coffee = await till(sessions)
    async with sessions() as s:
        card = await s.scalar(select(Member.card_number).where(Member.id == ann))
        assert card is not None
        found = await lookup(s, coffee, secret=b"s" * 32, card_number=card)
        with pytest.raises(UnknownMember):
            await lookup(s, coffee, secret=b"s" * 32, card_number="0000000000000000")
        actions = (
            await s.execute(select(AuditLog.action, AuditLog.details).order_by(AuditLog.id))
        ).all()
    assert found.id == ann
    assert [(a, d["api_key"]) for a, d in actions if a.startswith("lookup")] == [
        ("lookup", str(coffee.key_id)),
        ("lookup_failed", str(coffee.key_id)),
    ]
