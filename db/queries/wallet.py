"""What a member sees of their own account: balance, tier progress, expiry, history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Label,
    Select,
    String,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.visitors import replacement_traverse

from db.ledger.models import Entry, Member, Partner, PointLot, Transaction, TxKind
from db.ledger.writer import unit_of_work
from db.rules.points import points_money
from db.rules.program import Program
from db.usecases.members import MemberInfo
from db.usecases.purchases import TRAILING_SPEND


@dataclass(frozen=True, slots=True)
class Summary:
    balance: int
    money: Decimal
    tier: str
    multiplier: Decimal
    spend: Decimal
    next_tier: str | None
    to_next_tier: Decimal | None
    expiring_points: int
    expiring_at: datetime | None
    held: int = 0  # of the balance, held for open vouchers, gifts and requests


@dataclass(frozen=True, slots=True)
class HistoryItem:
    transaction_id: int
    kind: str
    partner: str | None  # the partner's slug
    amount: Decimal | None
    points_in: int
    points_out: int
    reason: str | None
    created_at: datetime
    own: bool = True  # the member's own transaction (False: a reward for a friend's)


@dataclass(frozen=True, slots=True)
class ReferralStats:
    invited: int
    rewarded: int


@dataclass(frozen=True, slots=True)
class WalletFigures:
    """What /balance shows beyond the balance, read along with who sent the update
    (db.queries.identity): /balance, the most used command, then needs no query of its own."""

    spend: Decimal  # in the trailing year (the tier rule)
    soonest_expiry: datetime | None
    expiring: int  # points expiring on that same day (the program's local day)
    stamps: dict[str, int]  # on each stamp card being collected, by card (db.queries.stamps)
    # The club membership, current or past (None: never in the club); its Stars
    # subscription's renewal and Telegram's end of it (db/rules/club.py `renewing`).
    club_ends_at: datetime | None = None
    club_renews: bool = False
    club_subscription_until: datetime | None = None


def _for_member(statement: Select[Any], member_id: ColumnElement[int]) -> Select[Any]:
    """`statement` with `member_id` in place of its `member_id` parameter."""

    def swap(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and element.key == "member_id":
            return member_id
        return None

    options: dict[str, Any] = {}
    return cast(Select[Any], replacement_traverse(statement, options, swap))


def figures_columns(member_id: ColumnElement[int]) -> list[Label[Any]]:
    """WalletFigures' columns for the member `member_id` (a column of the enclosing query):
    the money spent in the trailing year (the tier rule's own statement, with its `since`
    parameter), the soonest expiry and what expires that same day in the time zone of the
    `tz` parameter (the program's: /balance shows the local day)."""
    lots = PointLot.__table__.c
    open_lots = (lots.member_id == member_id) & (lots.remaining > 0)
    # Its own point_lots even inside the `expiring` subquery below, which reads them too.
    soonest = (
        select(func.min(lots.expires_at))
        .where(open_lots)
        .correlate_except(PointLot.__table__)
        .scalar_subquery()
    )
    tz = bindparam("tz", type_=String)
    soonest_day_end = func.timezone(
        tz, func.date_trunc("day", func.timezone(tz, soonest)) + text("interval '1 day'")
    )
    return [
        _for_member(TRAILING_SPEND, member_id).scalar_subquery().label("spend"),
        soonest.label("soonest_expiry"),
        select(func.coalesce(func.sum(lots.remaining), 0))
        .where(open_lots, lots.expires_at < soonest_day_end)
        .scalar_subquery()
        .label("expiring"),
    ]


def summary(program: Program, member: MemberInfo, figures: WalletFigures) -> Summary:
    tier = program.tier(member.tier)
    nxt = program.next_tier(tier.name)
    return Summary(
        balance=member.balance,
        money=points_money(member.balance, program.program.point_value),
        tier=tier.name,
        multiplier=tier.multiplier,
        spend=figures.spend,
        next_tier=nxt.name if nxt else None,
        to_next_tier=max(nxt.min_spend - figures.spend, Decimal(0)) if nxt else None,
        expiring_points=figures.expiring,
        expiring_at=figures.soonest_expiry,
        held=member.held,
    )


async def history(
    session: AsyncSession, member: MemberInfo, *, offset: int = 0, limit: int = 10
) -> tuple[list[HistoryItem], int]:
    """The member's transactions, newest first, with the points each moved in their wallet;
    and how many there are in all. Includes rewards paid to them for a friend's purchase."""
    mine = or_(
        Transaction.member_id == member.id,
        Transaction.id.in_(
            select(Entry.transaction_id).where(Entry.account_id == member.wallet_id)
        ),
    )
    total = (await session.execute(select(func.count()).where(mine))).scalar_one()
    wallet = and_(Entry.transaction_id == Transaction.id, Entry.account_id == member.wallet_id)
    rows = (
        await session.execute(
            select(
                Transaction.id,
                Transaction.kind,
                Partner.slug,
                Transaction.amount,
                func.coalesce(func.sum(Entry.amount).filter(Entry.amount > 0), 0),
                func.coalesce(-func.sum(Entry.amount).filter(Entry.amount < 0), 0),
                Transaction.reason,
                Transaction.created_at,
                Transaction.member_id == member.id,
            )
            .outerjoin(Entry, wallet)
            .outerjoin(Partner, Partner.id == Transaction.partner_id)
            .where(mine)
            .group_by(Transaction.id, Partner.slug)
            .order_by(Transaction.created_at.desc(), Transaction.id.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    # sum() of bigint is numeric in PostgreSQL: points go back to int here.
    items = [
        HistoryItem(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], r[7], bool(r[8]))
        for r in rows
    ]
    return items, int(total)


async def referral_stats(session: AsyncSession, member_id: int) -> ReferralStats:
    invited = select(Member.id).where(Member.referred_by_id == member_id).scalar_subquery()
    row = (
        await session.execute(
            select(
                select(func.count()).where(Member.referred_by_id == member_id).scalar_subquery(),
                select(func.count())
                .select_from(Transaction)
                .where(Transaction.kind == TxKind.REFERRAL, Transaction.member_id.in_(invited))
                .scalar_subquery(),
            )
        )
    ).one()
    return ReferralStats(int(row[0]), int(row[1]))


async def set_language(session: AsyncSession, member_id: int, language: str) -> None:
    async with unit_of_work(session):
        await session.execute(
            update(Member).where(Member.id == member_id).values(language=language)
        )


async def set_marketing_consent(session: AsyncSession, member_id: int, consent: bool) -> None:
    async with unit_of_work(session):
        await session.execute(
            update(Member).where(Member.id == member_id).values(marketing_consent=consent)
        )


async def set_reachable(session: AsyncSession, telegram_id: int, reachable: bool) -> None:
    """A member who blocked the bot is not messaged until they unblock it."""
    async with unit_of_work(session):
        await session.execute(
            update(Member).where(Member.telegram_id == telegram_id).values(reachable=reachable)
        )


async def mark_unreachable(session: AsyncSession, telegram_id: int) -> None:
    """set_reachable(False) inside the caller's transaction."""
    await session.execute(
        update(Member).where(Member.telegram_id == telegram_id).values(reachable=False)
    )
