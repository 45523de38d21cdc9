"""Figures for the till: a cashier's shift and a partner's day or week."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Account, AccountKind, Entry, Member, Transaction, TxKind
from db.rules.program import Program
from db.usecases.purchases import reversal_result


def day_start(now: datetime, timezone: str) -> datetime:
    """Midnight of `now`'s day in the program's time zone (a shift is a local day)."""
    local = now.astimezone(ZoneInfo(timezone))
    return datetime.combine(local.date(), time(), tzinfo=local.tzinfo)


@dataclass(frozen=True, slots=True)
class Operation:
    transaction_id: int
    kind: str
    member_name: str
    amount: Decimal | None
    points_in: int
    points_out: int
    created_at: datetime
    receipt: str | None = None  # as the cashier typed it after "#"
    paid: Decimal | None = None  # the money part of a sale (the rest was paid with points)
    discount: Decimal | None = None  # money off the amount by the member's tier discount
    reason: str | None = None  # a voucher's claim: the reward's slug


async def shift(
    session: AsyncSession, staff_id: int, *, start: datetime, end: datetime
) -> list[Operation]:
    """A staff member's postings in [start, end), oldest first, with the points each moved
    in the member's wallet."""
    wallet = and_(
        Entry.transaction_id == Transaction.id,
        Entry.account_id.in_(select(Account.id).where(Account.kind == AccountKind.MEMBER)),
    )
    rows = (
        await session.execute(
            select(
                Transaction.id,
                Transaction.kind,
                Member.first_name,
                Transaction.amount,
                func.coalesce(func.sum(Entry.amount).filter(Entry.amount > 0), 0),
                func.coalesce(-func.sum(Entry.amount).filter(Entry.amount < 0), 0),
                Transaction.created_at,
                Transaction.receipt,
                Transaction.paid,
                Transaction.discount,
                Transaction.reason,
            )
            .join(Member, Member.id == Transaction.member_id)
            .outerjoin(Entry, wallet)
            .where(
                Transaction.staff_id == staff_id,
                Transaction.created_at >= start,
                Transaction.created_at < end,
            )
            .group_by(Transaction.id, Member.first_name)
            .order_by(Transaction.created_at, Transaction.id)
        )
    ).all()
    return [
        Operation(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], r[7], r[8], r[9], r[10])
        for r in rows
    ]


_discount = func.coalesce(Transaction.discount, 0)


@dataclass(frozen=True, slots=True)
class PartnerFigures:
    sales: int
    members: int
    revenue: Decimal  # the money the sales charged: their amounts less their discounts
    paid_with_points: Decimal
    refunds: Decimal
    points_issued: int
    points_redeemed: int
    # Money the partner took off its sales by tier discounts (at its own cost: settlement
    # does not move it).
    discounts: Decimal = Decimal(0)


async def partner_figures(
    session: AsyncSession, partner_id: int, *, start: datetime, end: datetime
) -> PartnerFigures:
    period = and_(
        Transaction.partner_id == partner_id,
        Transaction.created_at >= start,
        Transaction.created_at < end,
    )
    sales = (
        await session.execute(
            select(
                func.count(),
                func.count(func.distinct(Transaction.member_id)),
                func.coalesce(func.sum(Transaction.amount - _discount), 0),
                func.coalesce(func.sum(Transaction.amount - _discount - Transaction.paid), 0),
                func.coalesce(func.sum(Transaction.discount), 0),
            ).where(period, Transaction.kind.in_(TxKind.SALES))
        )
    ).one()
    # Refunds are of the money a sale charged (its discount is never refunded): as revenue.
    refunds = await session.scalar(
        select(func.coalesce(func.sum(Transaction.amount), 0)).where(
            period, Transaction.kind == TxKind.REVERSE
        )
    )
    moved = dict(
        (
            await session.execute(
                select(Account.kind, func.coalesce(func.sum(Entry.amount), 0))
                .join(Entry, Entry.account_id == Account.id)
                .join(Transaction, Transaction.id == Entry.transaction_id)
                .where(period, Account.partner_id == partner_id)
                .group_by(Account.kind)
            )
        ).all()
    )
    return PartnerFigures(
        sales=int(sales[0]),
        members=int(sales[1]),
        revenue=Decimal(sales[2] or 0),
        paid_with_points=Decimal(sales[3] or 0),
        refunds=Decimal(refunds or 0),
        points_issued=-int(moved.get(AccountKind.PARTNER_ISSUED, 0)),
        points_redeemed=int(moved.get(AccountKind.PARTNER_REDEEMED, 0)),
        discounts=Decimal(sales[4] or 0),
    )


async def cash_handed_back(
    session: AsyncSession,
    program: Program,
    *,
    start: datetime,
    end: datetime,
    staff_id: int | None = None,
    partner_id: int | None = None,
) -> dict[int, Decimal]:
    """The money each refund in [start, end) handed back from the till, by its transaction
    id: its money part less the value of points the member had spent (what /refund said to
    give back; the rest went back as points). A staff member's refunds, or a partner's."""
    refunds = (
        await session.execute(
            select(Transaction).where(
                Transaction.kind == TxKind.REVERSE,
                # a refund of a sale (not a stamp's or a promotion's reversal, which it made)
                Transaction.amount.is_not(None),
                Transaction.created_at >= start,
                Transaction.created_at < end,
                *([Transaction.staff_id == staff_id] if staff_id is not None else []),
                *([Transaction.partner_id == partner_id] if partner_id is not None else []),
            )
        )
    ).scalars()
    return {tx.id: (await reversal_result(session, program, tx)).cash_back for tx in list(refunds)}


def week_start(now: datetime, timezone: str) -> datetime:
    start = day_start(now, timezone)
    return start - timedelta(days=start.weekday())
