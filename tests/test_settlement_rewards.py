"""Settlement with every mechanic that moves points between partners: a catalogue voucher
honoured, a stamp card's voucher funded by one partner and honoured at another, a full tour
card's points, a donation. Each partner's parts (vouchers honoured and funded, donations,
stamp-card rewards) are checked against the literal story and, to the point, against the
ledger's entries; the CSV carries them in its last four columns."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.views.settlement_csv import write_settlement
from db.ledger.models import Voucher, VoucherSource
from db.queries.settlement import settlement
from db.rules.program import Program, parse_program
from db.rules.tokens import derive_secret
from db.usecases.adjust import adjust
from db.usecases.donations import donate
from db.usecases.members import register_member
from db.usecases.partners import sync_partners
from db.usecases.purchases import Sale, record_sale
from db.usecases.staff import StaffInfo, accept_invite, create_invite
from db.usecases.voucher_claims import claim_voucher
from db.usecases.vouchers import take_reward
from tests.conftest import TEST_PROGRAM

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)

PROGRAM: dict[str, Any] = {
    **TEST_PROGRAM,
    "partners": [
        *TEST_PROGRAM["partners"],
        {"slug": "shelter", "name": "Happy Paws", "kind": "charity"},
    ],
    "rewards": [
        {"slug": "cake", "title": "A slice of cake", "partner": "bakery", "points": 200},
        {"slug": "bag", "title": "A tote bag", "partner": "books", "points": 100},
    ],
    "stamp_cards": [
        # The café's card gives a bookshop voucher: the café funds it where it fills.
        {
            "slug": "c2",
            "name": "Two coffees",
            "partners": ["coffee"],
            "stamps": 2,
            "reward": "bag",
        },
        # A tour of the café and the gym: the partner where it fills pays its points.
        {
            "slug": "tour",
            "name": "Tour",
            "partners": ["coffee", "gym"],
            "stamps": 2,
            "distinct_partners": True,
            "reward_points": 300,
        },
    ],
}


async def staff_at(s: AsyncSession, partner: str, telegram_id: int) -> StaffInfo:
    token = await create_invite(s, created_by=1, role="cashier", partner_slug=partner)
    return await accept_invite(s, token, telegram_id=telegram_id, first_name="Staff")


async def test_settlement_splits_vouchers_stamp_rewards_and_donations(
    session: AsyncSession,
) -> None:
    program: Program = parse_program(PROGRAM)
    await sync_partners(session, program)  # the charity, the cards' pools, the rewards
    ann = (await register_member(session, program, telegram_id=1, now=NOW)).id
    await adjust(session, program, member_id=ann, points=1000, reason="seed", key="seed", now=NOW)
    # Coffee (c2 1/2, tour 1/2), then the gym fills the tour (+300 from the gym), then
    # coffee the next day fills c2 (a bag voucher the café funds).
    for key, partner, when in (
        ("s1", "coffee", NOW),
        ("s2", "gym", NOW),
        ("s3", "coffee", NOW + DAY),
    ):
        await record_sale(
            session,
            program,
            Sale(member_id=ann, partner=partner, amount=D("20.00"), key=key, now=when),
        )
    bag = (
        await session.execute(
            select(Voucher.code).where(Voucher.source == VoucherSource.STAMP_CARD)
        )
    ).scalar_one()
    cake = await take_reward(
        session,
        program,
        member_id=ann,
        reward="cake",
        points=200,
        operation="op-cake",
        secret=derive_secret("4242:TEST-token"),
        now=NOW + DAY,
    )
    baker, bookseller = (
        await staff_at(session, "bakery", 100),
        await staff_at(session, "books", 101),
    )
    await claim_voucher(session, program, baker, code=cake.voucher.code, now=NOW + 2 * DAY)
    await claim_voucher(session, program, bookseller, code=bag, now=NOW + 2 * DAY)
    await donate(
        session, program, member_id=ann, charity="shelter", points=150, key="d1", now=NOW + 2 * DAY
    )

    report = await settlement(session, program, start=NOW - DAY, end=NOW + 3 * DAY)
    by = {p.slug: p for p in report.partners}
    parts = {
        slug: (p.vouchers_honoured, p.donations, p.vouchers_funded, p.stamp_rewards)
        for slug, p in by.items()
    }
    assert parts == {
        "coffee": (0, 0, 100, 0),
        "books": (100, 0, 0, 0),
        "gym": (0, 0, 0, 300),
        "bakery": (200, 0, 0, 0),
        "shelter": (0, 150, 0, 0),
    }
    # The same parts straight from the ledger: entries on each partner's accounts by the
    # kind of their transaction.
    rows = await session.execute(
        text(
            """
            SELECT p.slug, a.kind AS account, t.kind, sum(e.amount) AS points
            FROM entries AS e JOIN accounts AS a ON a.id = e.account_id
            JOIN partners AS p ON p.id = a.partner_id
            JOIN transactions AS t ON t.id = e.transaction_id
            WHERE t.kind IN ('voucher', 'donation', 'card_filled')
            GROUP BY p.slug, a.kind, t.kind
            """
        )
    )
    ledger = {(r.slug, r.account, r.kind): int(r.points) for r in rows}
    for slug, (honoured, donations, funded, stamp_rewards) in parts.items():
        assert honoured == ledger.get((slug, "partner_redeemed", "voucher"), 0), slug
        assert donations == ledger.get((slug, "partner_redeemed", "donation"), 0), slug
        assert funded == -ledger.get((slug, "partner_issued", "voucher"), 0), slug
        assert stamp_rewards == -ledger.get((slug, "partner_issued", "card_filled"), 0), slug
    # The parts are inside each partner's figures: what it redeemed and what it issued.
    assert by["bakery"].points_redeemed == 200 and by["books"].points_redeemed == 100
    assert by["gym"].points_issued >= 300 and by["coffee"].points_issued >= 100

    out = io.StringIO()
    write_settlement(report, "PLN", out)
    lines = {
        row["Partner code"] or row["Line"]: row
        for row in csv.DictReader(io.StringIO(out.getvalue()))
    }
    columns = ("Vouchers honoured", "Donations received", "Vouchers funded", "Stamp-card rewards")
    assert [lines["shelter"][c] for c in columns] == ["0", "150", "0", "0"]
    assert [lines["coffee"][c] for c in columns] == ["0", "0", "100", "0"]
    assert [lines["total"][c] for c in columns] == ["300", "150", "100", "300"]
