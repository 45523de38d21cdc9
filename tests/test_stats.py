"""The KPIs (db/queries/stats.py) against numbers computed by hand, and the settlement CSV
against the ledger.

The story, all in UTC (the test program's time zone), with the test program: welcome 50
points, referral 200 to the inviter and 100 to the invitee on a first purchase of 20.00 or
more, points = floor(paid × earn_percent) at a point value of 0.01 (coffee 5 %, books 3 %,
gym 2 %, bakery 4 %), points expire after 365 days. The period is November 2026.

    2025-11-10  Zed joins (+50 welcome)
    2025-11-12  Zed: gym 50.00                  +100
    2026-10-15  Ann joins (+50)
    2026-10-20  Ann: coffee 40.00               +200
    2026-11-02  Bob joins (+50) through the coffee shop's poster (source poster-coffee)
    2026-11-03  Cat joins, invited by Ann (+50) (source referral)
    2026-11-04  Dan joins, invited by Ann (+50) (source referral); never buys
    2026-11-05  Eve joins (+50) through a campaign link (source autumn-ad)
    2026-11-05  Ann: coffee 20.00               +100
    2026-11-06  Ann: books 30.00                +90
    2026-11-06  Eve: bakery 10.00               +40
    2026-11-07  Bob: coffee 10.00               +50
    2026-11-08  Bob: coffee 20.00, 100 points pay 1.00, paid 19.00: −100 +95
    2026-11-09  Cat: books 25.00                +75; referral: Cat +100, Ann +200
    2026-11-10  refund 5.00 of Cat's 25.00 (money 5.00): claw back 75 − floor(75 × 20/25) = 15
    2026-11-12  Ann: bakery 10.00, 200 points pay 2.00, paid 8.00: −200 +32
    2026-11-15  expiry: Zed's 50 (welcome) and 100 (gym) expire: 150 to breakage
    2026-11-20  Eve deletes her account: her 50 + 40 = 90 points are forfeited to breakage
    2026-12-02  Bob: gym 10.00                  +20 (after the period)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.views.settlement_csv import write_settlement
from db.queries.settlement import settlement, share_out
from db.queries.stats import (
    BadPeriod,
    coalition_report,
    kpis,
    kpis_by_partner,
    parse_period,
    previous_month,
)
from db.rules.program import Program, parse_program
from db.usecases.api.sales import post_sale
from db.usecases.expiry import expire_due
from db.usecases.members import get_member, register_member
from db.usecases.privacy import delete_member
from db.usecases.purchases import Refund, Sale, record_refund, record_sale
from db.usecases.staff import accept_invite, create_invite
from db.usecases.voucher_claims import claim_voucher
from tests.apiharness import key_actor
from tests.conftest import TEST_PROGRAM, make_program, reset_ledger

Sessions = async_sessionmaker[AsyncSession]
D = Decimal
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def at(y: int, m: int, d: int, hour: int = 12) -> datetime:
    return datetime(y, m, d, hour, tzinfo=UTC)


@dataclass
class Story:
    partners: dict[str, int]  # slug -> id


async def tell_story(sessions: Sessions, program: Program) -> Story:
    async with sessions() as s:

        async def join(
            tg: int,
            name: str,
            when: datetime,
            inviter: int | None = None,
            source: str | None = None,
        ) -> int:
            info = await register_member(
                s,
                program,
                telegram_id=tg,
                first_name=name,
                inviter_id=inviter,
                source=source,
                now=when,
            )
            return info.id

        async def buy(
            member: int, partner: str, amount: str, when: datetime, points: int = 0
        ) -> int:
            result = await record_sale(
                s,
                program,
                Sale(
                    member_id=member,
                    partner=partner,
                    amount=D(amount),
                    redeem_points=points,
                    key=f"sale:{member}:{when.isoformat()}",
                    now=when,
                ),
            )
            return result.transaction_id

        zed = await join(1, "Zed", at(2025, 11, 10))
        await buy(zed, "gym", "50.00", at(2025, 11, 12))
        ann = await join(2, "Ann", at(2026, 10, 15))
        await buy(ann, "coffee", "40.00", at(2026, 10, 20))
        bob = await join(3, "Bob", at(2026, 11, 2), source="poster-coffee")
        cat = await join(4, "Cat", at(2026, 11, 3), inviter=ann, source="referral")
        await join(5, "Dan", at(2026, 11, 4), inviter=ann, source="referral")
        eve = await join(6, "Eve", at(2026, 11, 5), source="autumn-ad")
        await buy(ann, "coffee", "20.00", at(2026, 11, 5, 14))
        await buy(ann, "books", "30.00", at(2026, 11, 6))
        await buy(eve, "bakery", "10.00", at(2026, 11, 6, 15))
        await buy(bob, "coffee", "10.00", at(2026, 11, 7))
        await buy(bob, "coffee", "20.00", at(2026, 11, 8), points=100)
        cat_sale = await buy(cat, "books", "25.00", at(2026, 11, 9))
        refund = await record_refund(
            s,
            program,
            Refund(
                transaction_id=cat_sale,
                amount=D("5.00"),
                reason="one book returned",
                key="refund:cat",
                now=at(2026, 11, 10),
            ),
        )
        assert refund.points_clawed_back == 15 and refund.money_refund == D("5.00")
        await buy(ann, "bakery", "10.00", at(2026, 11, 12), points=200)
        expired = await expire_due(s, now=at(2026, 11, 15))
        assert sum(e.points for e in expired) == 150
        assert await delete_member(s, await get_member(s, eve), now=at(2026, 11, 20)) == 90
        await buy(bob, "gym", "10.00", at(2026, 12, 2))
        partners = dict((await s.execute(text("SELECT slug, id FROM partners"))).all())
        await s.rollback()
    return Story(partners)


@pytest.fixture
async def story(sessions: Sessions, program: Program) -> Story:
    return await tell_story(sessions, program)


async def test_coalition_kpis_for_the_month(
    story: Story, sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        k = await kpis(s, program, start=START, end=END)
    # Members existing on Dec 1: Zed, Ann, Bob, Cat, Dan (Eve left on Nov 20).
    assert k.members == 5
    # Joined in November: Bob, Cat, Dan; Eve too, but she deleted her account in November,
    # so she is not counted as joined (nor is her campaign link's join).
    assert k.new_members == 3
    assert k.joins_by_source == (("referral", 2), ("poster-coffee", 1))
    # Advertised: Bob's poster; the referrals are not ads. 1 of 3 joins.
    assert (k.advertised_joins, k.advertised_share) == (1, D("0.3333"))
    # Sales in November: Ann ×3 (coffee, books, bakery), Eve ×1, Bob ×2, Cat ×1.
    assert k.sales == 7
    assert k.active_members == 4  # Ann, Bob, Cat, Eve
    assert k.sales_total == D("125.00")  # 20 + 30 + 10 + 10 + 20 + 25 + 10
    assert k.sales_paid == D("122.00")  # 20 + 30 + 10 + 10 + 19 + 25 + 8
    assert k.average_check == D("17.86")  # 125.00 / 7 = 17.857…
    assert k.refunds_total == D("5.00")
    assert k.repeat_members == 2  # Ann (3 sales), Bob (2)
    assert k.repeat_rate == D("0.5")  # 2 / 4
    # Customers on Dec 1: Zed, Ann, Bob, Cat (Dan never bought; Eve left). Money spent:
    # Zed 50.00; Ann 40 + 20 + 30 + 8 = 98.00; Bob 10 + 19 = 29.00 (Dec 2 is after the end);
    # Cat 25 − 5 = 20.00. Total 197.00.
    assert k.customers == 4
    assert k.lifetime_spend == D("197.00")
    assert k.lifetime_value == D("49.25")  # 197.00 / 4
    # Issued: 100 + 90 + 40 + 50 + 95 + 75 + 32 = 482, less the 15 clawed back = 467.
    # Redeemed: Bob's 100 at coffee + Ann's 200 at bakery = 300.
    assert k.points_issued == 467
    assert k.points_redeemed == 300
    assert k.redemption_rate == D("0.6424")  # 300 / 467 = 0.64239…
    # Invited and joined in November: Cat and Dan; Cat was rewarded on Nov 9.
    assert (k.invited, k.invited_rewarded) == (2, 1)
    assert k.referral_conversion == D("0.5")
    # Sales at two partners or more in November: Ann only (coffee, books, bakery).
    assert k.cross_partner_members == 1
    assert k.cross_partner_rate == D("0.25")  # 1 / 4


async def test_daily_series(story: Story, sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        k = await kpis(s, program, start=START, end=END)
    assert len(k.days) == 30
    assert k.days[0].day == date(2026, 11, 1) and k.days[-1].day == date(2026, 11, 30)
    busy = {
        d.day.day: (d.sales, d.active_members, d.points_issued, d.points_redeemed)
        for d in k.days
        if (d.sales, d.points_issued, d.points_redeemed) != (0, 0, 0)
    }
    assert busy == {
        5: (1, 1, 100, 0),  # Ann at coffee
        6: (2, 2, 130, 0),  # Ann at books (90), Eve at bakery (40)
        7: (1, 1, 50, 0),  # Bob
        8: (1, 1, 95, 100),  # Bob with points
        9: (1, 1, 75, 0),  # Cat (the referral is program-funded, not a partner's issue)
        10: (0, 0, -15, 0),  # the refund's claw-back
        12: (1, 1, 32, 200),  # Ann with points at bakery
    }
    # The money of each day's sales (their totals, points included): what the chart plots.
    money = {d.day.day: d.sales_total for d in k.days if d.sales}
    assert money == {5: D(20), 6: D(40), 7: D(10), 8: D(20), 9: D(25), 12: D(10)}


async def test_partner_view(story: Story, sessions: Sessions, program: Program) -> None:
    coffee = story.partners["coffee"]
    async with sessions() as s:
        k = await kpis(s, program, start=START, end=END, partner_id=coffee)
    assert k.partner_id == coffee
    # Coffee's customers on Dec 1: Ann (since Oct 20) and Bob; first time in November: Bob.
    assert (k.members, k.customers, k.new_members) == (2, 2, 1)
    # November at coffee: Ann 20.00; Bob 10.00 and 20.00 (19.00 paid).
    assert (k.sales, k.active_members) == (3, 2)
    assert k.sales_total == D("50.00") and k.sales_paid == D("49.00")
    assert k.average_check == D("16.67")  # 50.00 / 3
    assert k.repeat_members == 1 and k.repeat_rate == D("0.5")  # Bob; 1 / 2
    # Lifetime at coffee: Ann 40 + 20 = 60.00, Bob 10 + 19 = 29.00; 89.00 / 2.
    assert k.lifetime_spend == D("89.00") and k.lifetime_value == D("44.50")
    assert k.refunds_total == D("0")
    # Issued by coffee: 100 + 50 + 95 = 245; redeemed at coffee: 100; 100 / 245 = 0.40816…
    assert (k.points_issued, k.points_redeemed) == (245, 100)
    assert k.redemption_rate == D("0.4082")
    # Cat's reward came from a sale at books, not here: 0 of the 2 invited.
    assert (k.invited, k.invited_rewarded, k.referral_conversion) == (2, 0, D("0"))
    # Ann also bought at books and bakery in November; Bob only here.
    assert k.cross_partner_members == 1 and k.cross_partner_rate == D("0.5")
    assert [(d.day.day, d.sales, d.points_issued) for d in k.days if d.sales] == [
        (5, 1, 100),
        (7, 1, 50),
        (8, 1, 95),
    ]


async def test_every_partner(story: Story, sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        rows = await kpis_by_partner(s, program, start=START, end=END)
        coffee = await kpis(s, program, start=START, end=END, partner_id=story.partners["coffee"])
    by_slug = {r.slug: r.kpis for r in rows}
    assert [r.slug for r in rows] == ["coffee", "books", "gym", "bakery"]
    # The partner's own view is its row of the coalition's table, plus the daily series.
    assert by_slug["coffee"] == replace(coffee, days=())
    books = by_slug["books"]
    # Books: Ann (first time Nov 6) and Cat (Nov 9): both new; no repeat; Ann cross-partner.
    assert (books.members, books.new_members, books.active_members) == (2, 2, 2)
    assert (books.sales, books.sales_total, books.average_check) == (2, D("55.00"), D("27.50"))
    assert (books.repeat_members, books.cross_partner_members) == (0, 1)
    # Lifetime: Ann 30.00 + Cat 25 − 5 = 20.00 → 50.00 / 2 = 25.00; refunds 5.00.
    assert books.lifetime_value == D("25.00") and books.refunds_total == D("5.00")
    # Issued 90 + 75 − 15 = 150, redeemed 0: rate 0.
    assert (books.points_issued, books.points_redeemed, books.redemption_rate) == (150, 0, D(0))
    assert books.invited_rewarded == 1 and books.referral_conversion == D("0.5")  # 1 / 2
    bakery = by_slug["bakery"]
    # Bakery: customers on Dec 1: Ann only (Eve left); new in November: Ann (and Eve, who
    # left in November, so she is not counted).
    assert (bakery.members, bakery.new_members, bakery.active_members) == (1, 1, 2)
    assert bakery.lifetime_value == D("8.00")  # Ann's 8.00 paid / 1
    # Issued 40 + 32 = 72, redeemed 200: 200 / 72 = 2.7777…
    assert (bakery.points_issued, bakery.points_redeemed) == (72, 200)
    assert bakery.redemption_rate == D("2.7778")
    assert bakery.cross_partner_members == 1  # Ann; Eve bought only here
    gym = by_slug["gym"]
    # Gym: Zed bought in 2025 (50.00), nothing in November; Bob's Dec 2 is after the end.
    assert (gym.members, gym.new_members, gym.active_members, gym.sales) == (1, 0, 0, 0)
    assert gym.lifetime_value == D("50.00") and gym.average_check is None
    assert gym.repeat_rate is None and gym.redemption_rate is None
    # Partners' referral rewards add up to the coalition's.
    assert sum(r.kpis.invited_rewarded for r in rows) == 1


async def test_coalition_report_is_kpis_and_every_partner(
    story: Story, sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        total, rows = await coalition_report(s, program, start=START, end=END)
        assert total == await kpis(s, program, start=START, end=END)
        assert rows == await kpis_by_partner(s, program, start=START, end=END)
    # Money and points of the partners add up to the coalition's.
    assert sum(r.kpis.sales_total for r in rows) == total.sales_total == D("125.00")
    assert sum(r.kpis.points_issued for r in rows) == total.points_issued == 467
    assert sum(r.kpis.points_redeemed for r in rows) == total.points_redeemed == 300
    assert sum(r.kpis.lifetime_spend for r in rows) == total.lifetime_spend == D("197.00")


async def test_members_average_check_against_sales_without_a_member_card(
    story: Story, sessions: Sessions, program: Program
) -> None:
    """Sales a till's software recorded without a member card (the partner API) give the
    non-members' average check, next to the members' (the ledger's sales)."""
    async with sessions() as s:
        tills = {slug: await key_actor(s, slug) for slug in ("coffee", "books")}
    for slug, document, amount, when in (
        ("coffee", "W-1", "8.00", at(2026, 11, 5)),
        ("coffee", "W-2", "13.00", at(2026, 11, 20)),
        ("books", "W-1", "30.00", at(2026, 11, 6)),
        ("coffee", "W-3", "99.00", at(2026, 12, 2)),  # after the period
    ):
        async with sessions() as s:
            await post_sale(
                s,
                program,
                tills[slug],
                document=document,
                member_id=None,
                amount=D(amount),
                now=when,
            )
    async with sessions() as s:
        coffee = await kpis(s, program, start=START, end=END, partner_id=story.partners["coffee"])
        total, rows = await coalition_report(s, program, start=START, end=END)
    # Coffee's members: 50.00 in 3 sales; without a card: 8.00 and 13.00.
    assert (coffee.average_check, coffee.walk_in_sales, coffee.walk_in_total) == (
        D("16.67"),
        2,
        D("21.00"),
    )
    assert coffee.walk_in_average_check == D("10.50")
    # The members' figures are the ledger's alone, as before.
    assert (coffee.sales, coffee.sales_total) == (3, D("50.00"))
    assert (total.walk_in_sales, total.walk_in_average_check) == (3, D("17.00"))  # 51 / 3
    by_slug = {r.slug: r.kpis for r in rows}
    assert by_slug["coffee"] == replace(coffee, days=())
    assert (by_slug["books"].walk_in_sales, by_slug["gym"].walk_in_average_check) == (1, None)


async def test_postings_out_of_time_order(
    story: Story, sessions: Sessions, program: Program
) -> None:
    """Ids usually rise with time, and the points' query reads entries by the span of the
    period's transaction ids: a posting whose time is out of order must still count."""
    async with sessions() as s:
        dan = (await s.execute(text("SELECT id FROM members WHERE first_name = 'Dan'"))).scalar()
        for when, key in ((at(2026, 11, 3), "late-in"), (at(2026, 10, 30), "late-out")):
            await record_sale(
                s,
                program,
                Sale(member_id=dan, partner="coffee", amount=D("10.00"), key=key, now=when),
            )
        k = await kpis(s, program, start=START, end=END)
        coffee = await kpis(s, program, start=START, end=END, partner_id=story.partners["coffee"])
    # Dan's Nov 3 sale (+50) is in November though posted last; his Oct 30 one is not.
    assert (k.sales, k.points_issued) == (8, 467 + 50)
    assert (k.days[2].day, k.days[2].sales, k.days[2].points_issued) == (date(2026, 11, 3), 1, 50)
    assert (coffee.sales, coffee.points_issued) == (4, 245 + 50)


async def test_empty_periods(story: Story, sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        later = await kpis(
            s,
            program,
            start=datetime(2030, 1, 1, tzinfo=UTC),
            end=datetime(2030, 2, 1, tzinfo=UTC),
        )
        before = await kpis(
            s,
            program,
            start=datetime(2020, 1, 1, tzinfo=UTC),
            end=datetime(2020, 1, 2, tzinfo=UTC),
        )
        gym = await kpis(s, program, start=START, end=END, partner_id=story.partners["gym"])
    # Nothing happened in January 2030, but stocks are as of its end: the 5 members, and
    # lifetime spend now with Bob's Dec 2 gym purchase: 197.00 + 10.00 = 207.00 over 4.
    assert (later.members, later.new_members, later.active_members, later.sales) == (5, 0, 0, 0)
    assert later.lifetime_value == D("51.75")
    assert later.average_check is None and later.repeat_rate is None
    assert later.redemption_rate is None and later.referral_conversion is None
    assert later.cross_partner_rate is None
    assert len(later.days) == 31 and all(d.sales == d.points_issued == 0 for d in later.days)
    # Before anything: nothing at all.
    assert (before.members, before.customers, before.lifetime_value) == (0, 0, None)
    assert [d.day for d in before.days] == [date(2020, 1, 1)]
    assert (gym.sales, gym.points_issued, gym.redemption_rate) == (0, 0, None)


async def test_days_are_the_programs_local_days(engine: AsyncEngine, sessions: Sessions) -> None:
    program = make_program(program={"timezone": "Europe/Warsaw"})
    await reset_ledger(engine, program)
    async with sessions() as s:
        ann = await register_member(s, program, telegram_id=7, now=at(2026, 11, 1))
        # 23:30 UTC on Nov 5 is 00:30 on Nov 6 in Warsaw (UTC+1 in November).
        await record_sale(
            s,
            program,
            Sale(
                member_id=ann.id,
                partner="coffee",
                amount=D("20.00"),
                key="late",
                now=datetime(2026, 11, 5, 23, 30, tzinfo=UTC),
            ),
        )
        warsaw = ZoneInfo("Europe/Warsaw")
        k = await kpis(
            s,
            program,
            start=datetime(2026, 11, 1, tzinfo=warsaw),
            end=datetime(2026, 12, 1, tzinfo=warsaw),
        )
    assert [(d.day, d.sales, d.points_issued) for d in k.days if d.sales] == [
        (date(2026, 11, 6), 1, 100)
    ]


async def test_settlement_csv_reconciles_with_the_ledger(
    story: Story, sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        report = await settlement(s, program, start=START, end=END)
        by_partner = {
            r.slug: r.kpis for r in await kpis_by_partner(s, program, start=START, end=END)
        }
        # Independently of db.queries.settlement: the net points that entered members' wallets in
        # the period, and what the wallets held at its end.
        wallets, held = (
            await s.execute(
                text(
                    """
                    SELECT coalesce(sum(e.amount) FILTER (WHERE t.created_at >= :start), 0),
                           coalesce(sum(e.amount), 0)
                    FROM entries AS e
                    JOIN accounts AS a ON a.id = e.account_id
                    JOIN transactions AS t ON t.id = e.transaction_id
                    WHERE a.kind = 'member' AND t.created_at < :end
                    """
                ),
                {"start": START, "end": END},
            )
        ).one()
    out = io.StringIO()
    write_settlement(report, program.program.currency, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    lines = {r["Partner code"] or r["Line"]: r for r in rows}
    assert list(lines) == [
        "coffee",
        "books",
        "gym",
        "bakery",
        "program",
        "expired points",
        "forfeited points",
        "total",
    ]
    # The days of the period, both included, on every line.
    assert all((r["First day"], r["Last day"]) == ("2026-11-01", "2026-11-30") for r in rows)
    partners = [r for r in rows if r["Line"] == "partner"]
    issued = sum(int(r["Points issued"]) for r in partners)
    redeemed = sum(int(r["Points redeemed"]) for r in partners)
    funded = int(lines["program"]["Points issued"])
    expired = int(lines["expired points"]["Points expired"])
    forfeited = int(lines["forfeited points"]["Points forfeited"])
    # By hand: issued 467 (see the coalition test); program-funded: 4 welcomes of 50 in
    # November (Bob, Cat, Dan, Eve) + the referral's 200 + 100 = 500; redeemed 300;
    # Zed's 150 expired; Eve's 90 were forfeited when she deleted her account: not expired.
    assert (issued, funded, redeemed, expired, forfeited) == (467, 500, 300, 150, 90)
    assert issued + funded - redeemed - expired - forfeited == wallets == 427
    # The totals line adds up each column; its net points are what left the wallets.
    total = lines["total"]
    assert (
        int(total["Points issued"]),
        int(total["Points redeemed"]),
        int(total["Points expired"]),
        int(total["Points forfeited"]),
        int(total["Net points"]),
    ) == (967, 300, 150, 90, -427)
    assert D(total["Amount"]) == sum(D(r["Amount"]) for r in rows[:-1]) == D("-4.27")
    # Each partner's line agrees with the KPIs, and its money with its points.
    for r in partners:
        k = by_partner[r["Partner code"]]
        assert (int(r["Points issued"]), int(r["Points redeemed"])) == (
            k.points_issued,
            k.points_redeemed,
        )
        net = int(r["Points redeemed"]) - int(r["Points issued"])
        assert int(r["Net points"]) == net
        assert D(r["Amount"]) == net * D(r["Point value"]) == net * program.program.point_value
    # Coffee: redeemed 100 − issued 245 = −145 points = −1.45: the partner pays.
    assert (lines["coffee"]["Amount"], lines["coffee"]["Who pays"]) == (
        "-1.45",
        "partner pays coalition",
    )
    # Bakery: 200 − 72 = 128 points = 1.28: the coalition pays the partner.
    assert lines["bakery"]["Amount"] == "1.28"
    # Outstanding on Dec 1: 400 held on Nov 1 (Zed 150, Ann 250) + 427 = 827 (Bob's points
    # of Dec 2 are not in it). Issued up to Dec 1: coffee 200 + 245 = 445, books 150, gym
    # 100, bakery 72, the program 100 + 500 = 600: 1,367 in all. 827 × 445 / 1,367 = 269.2…;
    # books 90.7…, gym 60.5…, bakery 43.6…, program 362.98…: the floors make 824, the three
    # points left go to the largest remainders (program, books, bakery).
    assert held == 827 == report.outstanding
    outstanding = {code: int(r["Points outstanding at end"]) for code, r in lines.items()}
    assert outstanding == {
        "coffee": 269,
        "books": 91,
        "gym": 60,
        "bakery": 44,
        "program": 363,
        "expired points": 0,
        "forfeited points": 0,
        "total": 827,
    }
    assert lines["coffee"]["Liability at end"] == "2.69"  # 269 × 0.01
    assert D(total["Liability at end"]) == report.liability == D("8.27")


# A first-visit bonus paid by the four partners alike, and a coffee voucher the bookshop
# funds on a book of 40.00: points a partner issues on another partner's sale.
SHARED = parse_program(
    {
        **TEST_PROGRAM,
        "rewards": [
            {"slug": "free-coffee", "title": "A coffee", "partner": "coffee", "points": 300}
        ],
        "promotions": [
            {
                "slug": "new-partner",
                "title": "First visit to a new partner",
                "who": {"first_at_partner": True},
                "effect": {"bonus_points": 100},
                "funded_by": {"coffee": 25, "books": 25, "gym": 25, "bakery": 25},
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
)


@pytest.mark.parametrize("program", [SHARED])
async def test_a_partners_points_are_settlements_with_its_share_of_others_sales(
    sessions: Sessions, program: Program
) -> None:
    """A manager's /stats counts the points a partner funds on other partners' sales (its
    share of a promotion, a voucher it pays for honoured elsewhere), as settlement does."""
    async with sessions() as s:
        ann = (await register_member(s, program, telegram_id=1, now=at(2026, 11, 2))).id
        for key, partner, amount in (("c", "coffee", "20.00"), ("b", "books", "40.00")):
            await record_sale(
                s,
                program,
                Sale(
                    member_id=ann,
                    partner=partner,
                    amount=D(amount),
                    key=key,
                    now=at(2026, 11, 3),
                ),
            )
        code = (await s.execute(text("SELECT code FROM vouchers"))).scalar_one()
        token = await create_invite(s, created_by=1, role="cashier", partner_slug="coffee")
        barista = await accept_invite(s, token, telegram_id=900, first_name="Staff")
        await claim_voucher(s, program, barista, code=code, now=at(2026, 11, 4))
        report = await settlement(s, program, start=START, end=END)
        ids = dict((await s.execute(text("SELECT slug, id FROM partners"))).all())
        alone = {
            slug: await kpis(s, program, start=START, end=END, partner_id=ids[slug])
            for slug in ids
        }
        total, rows = await coalition_report(s, program, start=START, end=END)
    settled = {p.slug: (p.points_issued, p.points_redeemed) for p in report.partners}
    # Coffee: its sale's 100 and 25 + 25 of the two first visits; books: its 120 and its
    # shares, and the 300 of the coffee it paid for; the gym and the bakery sold nothing.
    # The coffee was honoured at the café: 300 redeemed there.
    assert settled == {
        "coffee": (150, 300),
        "books": (120 + 50 + 300, 0),
        "gym": (50, 0),
        "bakery": (50, 0),
    }
    assert {slug: (k.points_issued, k.points_redeemed) for slug, k in alone.items()} == settled
    assert {r.slug: (r.kpis.points_issued, r.kpis.points_redeemed) for r in rows} == settled
    assert alone["gym"].redemption_rate == D(0)
    assert sum(d.points_issued for d in alone["gym"].days) == 50
    assert total.points_issued == sum(issued for issued, _ in settled.values())


def test_outstanding_points_are_shared_out_exactly() -> None:
    assert share_out(827, [445, 150, 100, 72, 600]) == [269, 91, 60, 44, 363]
    assert share_out(5, [1, 1, 1]) == [2, 2, 1]  # a tie: the first issuer first
    assert share_out(10, [-5, 5]) == [0, 10]  # more clawed back than issued: no share
    assert share_out(7, [0, 0, 0]) == [0, 0, 7]  # nothing issued: all the program's


# --------------------------------------------------------------------------- periods

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)


def _days(arg: str | None) -> tuple[date, date]:
    period = parse_period(arg, now=NOW, timezone="UTC")
    return period.first_day, period.last_day


def test_periods() -> None:
    assert _days("today") == (date(2026, 11, 22), date(2026, 11, 22))
    assert _days("week") == (date(2026, 11, 16), date(2026, 11, 22))
    assert _days(None) == _days("month") == (date(2026, 10, 24), date(2026, 11, 22))
    assert _days("YEAR") == (date(2025, 11, 23), date(2026, 11, 22))
    assert _days("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert _days("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))
    assert _days("2026-11-01..2026-11-30") == (date(2026, 11, 1), date(2026, 11, 30))
    period = parse_period("2026-11-01..2026-11-30", now=NOW, timezone="Europe/Warsaw")
    assert period.start == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    assert period.end - period.start == timedelta(days=30)
    # Just after midnight in Warsaw it is already "today" there, still yesterday in UTC.
    late = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    assert parse_period("today", now=late, timezone="Europe/Warsaw").first_day == date(
        2026, 11, 23
    )
    last = previous_month(NOW, "UTC")
    assert (last.first_day, last.last_day) == (date(2026, 10, 1), date(2026, 10, 31))
    january = previous_month(datetime(2027, 1, 5, tzinfo=UTC), "UTC")
    assert (january.first_day, january.last_day) == (date(2026, 12, 1), date(2026, 12, 31))


@pytest.mark.parametrize(
    "bad",
    [
        "lastweek",
        "2026-13",
        "2026-02-30..2026-03-01",
        "2026-11-30..2026-11-01",
        "2020-01-01..2026-01-01",
        "2026-11-01",
        "2026-11-01..",
        "",
    ],
)
def test_bad_periods(bad: str) -> None:
    if bad == "":  # no argument at all is the default, not an error
        assert parse_period(bad, now=NOW, timezone="UTC") == parse_period(
            "month", now=NOW, timezone="UTC"
        )
        return
    with pytest.raises(BadPeriod):
        parse_period(bad, now=NOW, timezone="UTC")
