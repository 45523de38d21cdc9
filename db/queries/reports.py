"""Figures for the till: a cashier's shift and a partner's day or week."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Account, AccountKind, Entry, Member, Transaction, TxKind
from db.rules.discounts import charged
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


# The transactions that moved a shift's operation's points for its member, posted with it
# and keyed to it: a sale's promotions' points and its cards' fills (the sale's own stamp's,
# and those its promotions' stamps made, keyed to their posting), a refund's take-backs of
# the sale's promotions. Not an invitation reward (its own news, not the till's).
_WITH_IT = text(
    """
    WITH near AS (  -- posted with the shift's operations: in the same window
        SELECT id, kind, related_id, staff_id FROM transactions
        WHERE created_at >= :start AND created_at < :end
    )
    SELECT o.id,
           coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) AS points_in,
           coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0), 0) AS points_out
    FROM transactions AS o
    JOIN near AS t
      ON t.id = o.id
      OR t.related_id = o.id AND t.staff_id IS NULL
         AND t.kind IN ('promotion', 'card_filled', 'reverse')
      OR t.kind = 'card_filled' AND t.related_id IN (
             SELECT p.id FROM near AS p WHERE p.related_id = o.id AND p.kind = 'promotion')
    JOIN entries AS e ON e.transaction_id = t.id
    JOIN accounts AS a ON a.id = e.account_id AND a.kind = 'member' AND a.member_id = o.member_id
    WHERE o.id = ANY(:ops)
    GROUP BY o.id
    """
)


async def shift(
    session: AsyncSession, staff_id: int, *, start: datetime, end: datetime
) -> list[Operation]:
    """A staff member's postings in [start, end), oldest first, with the points each moved
    in the member's wallet: with those posted with it (_WITH_IT), so a sale's line says all
    its receipt said the member got, and a refund's what it took back."""
    rows = (
        await session.execute(
            select(
                Transaction.id,
                Transaction.kind,
                Member.first_name,
                Transaction.amount,
                Transaction.created_at,
                Transaction.receipt,
                Transaction.paid,
                Transaction.discount,
                Transaction.reason,
            )
            .join(Member, Member.id == Transaction.member_id)
            .where(
                Transaction.staff_id == staff_id,
                Transaction.created_at >= start,
                Transaction.created_at < end,
            )
            .order_by(Transaction.created_at, Transaction.id)
        )
    ).all()
    if not rows:
        return []
    moved = {
        r.id: (int(r.points_in), int(r.points_out))
        for r in (
            await session.execute(
                _WITH_IT, {"ops": [r[0] for r in rows], "start": start, "end": end}
            )
        ).all()
    }
    return [
        Operation(r[0], r[1], r[2], r[3], *moved.get(r[0], (0, 0)), r[4], r[5], r[6], r[7], r[8])
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
    # Points the partner's own sales gave members from its account (their points, its stamp
    # cards' fills), and what refunds in the period took back of such points (of sales of
    # any day): each a count, never a negative.
    points_issued: int
    points_redeemed: int
    # Money the partner took off its sales by tier discounts (at its own cost: settlement
    # does not move it).
    discounts: Decimal = Decimal(0)
    points_taken_back: int = 0
    # Points the partner funded through promotions (its share, at whichever partner the
    # sale was) and vouchers it funds when claimed (anywhere); and what refunds took back
    # of its promotions' shares.
    points_funded: int = 0
    funded_taken_back: int = 0


# The partner's issued account's movements in [start, end): by its own sales (postings at
# the partner), and funded (promotions' shares and funded vouchers' claims, wherever they
# were posted, and the refunds' take-backs of those shares).
_ISSUED = text(
    """
    SELECT (t.kind IN ('promotion', 'voucher')
            OR r.kind IS NOT DISTINCT FROM 'promotion') AS funded,
           coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0), 0) AS given,
           coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) AS back
    FROM accounts AS a
    JOIN entries AS e ON e.account_id = a.id
    JOIN transactions AS t ON t.id = e.transaction_id
    LEFT JOIN transactions AS r ON r.id = t.reverses_id
    WHERE a.partner_id = :partner AND a.kind = 'partner_issued'
      AND t.created_at >= :start AND t.created_at < :end
      AND (t.partner_id = :partner OR t.kind IN ('promotion', 'voucher') OR r.kind = 'promotion')
    GROUP BY 1
    """
)


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
    redeemed = await session.scalar(
        select(func.coalesce(func.sum(Entry.amount), 0))
        .join(Account, Account.id == Entry.account_id)
        .join(Transaction, Transaction.id == Entry.transaction_id)
        .where(period, Account.partner_id == partner_id)
        .where(Account.kind == AccountKind.PARTNER_REDEEMED)
    )
    issued = {
        bool(r.funded): (int(r.given), int(r.back))
        for r in (
            await session.execute(_ISSUED, {"partner": partner_id, "start": start, "end": end})
        ).all()
    }
    own, funded = issued.get(False, (0, 0)), issued.get(True, (0, 0))
    return PartnerFigures(
        sales=int(sales[0]),
        members=int(sales[1]),
        revenue=Decimal(sales[2] or 0),
        paid_with_points=Decimal(sales[3] or 0),
        refunds=Decimal(refunds or 0),
        points_issued=own[0],
        points_redeemed=int(redeemed or 0),
        discounts=Decimal(sales[4] or 0),
        points_taken_back=own[1],
        points_funded=funded[0],
        funded_taken_back=funded[1],
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


@dataclass(frozen=True, slots=True)
class SaleRefunds:
    """A sale's money and what refunds gave back of it so far (what /cancel says of the
    last sale when it was refunded since)."""

    charged: Decimal  # the money it charged: its amount less its discount
    refunded: Decimal  # of that, given back by its refunds

    @property
    def left(self) -> Decimal:
        """What a refund can still give back."""
        return self.charged - self.refunded


async def sale_refunds(session: AsyncSession, sale_id: int) -> SaleRefunds | None:
    """The sale's refunds so far (None: no such sale)."""
    refunds = (
        select(func.coalesce(func.sum(Transaction.amount), 0))
        .where(Transaction.reverses_id == sale_id)
        .scalar_subquery()
    )
    row = (
        await session.execute(
            select(Transaction.amount, Transaction.discount, refunds).where(
                Transaction.id == sale_id, Transaction.kind.in_(TxKind.SALES)
            )
        )
    ).one_or_none()
    if row is None or row[0] is None:
        return None
    return SaleRefunds(charged(row[0], row[1]), Decimal(row[2] or 0))


def week_start(now: datetime, timezone: str) -> datetime:
    start = day_start(now, timezone)
    return start - timedelta(days=start.weekday())


@dataclass(frozen=True, slots=True)
class ClubTakings:
    """Months of the club sold at the till in a period and the money taken for them (the
    partner owes it to the coalition: settlement), and the money of such months refunded in
    the period. Apart from sales: a membership is no purchase."""

    months: int = 0
    money: Decimal = Decimal("0.00")
    refunded: Decimal = Decimal("0.00")
    refunds: int = 0  # the months refunded in the period (their money: `refunded`)


_CLUB_TAKINGS = text(
    """
    SELECT count(*) FILTER (WHERE created_at >= :start AND created_at < :end) AS months,
           coalesce(sum(amount) FILTER (WHERE created_at >= :start AND created_at < :end), 0)
               AS money,
           coalesce(sum(amount) FILTER (WHERE refunded_at >= :start AND refunded_at < :end), 0)
               AS refunded,
           count(*) FILTER (WHERE refunded_at >= :start AND refunded_at < :end) AS refunds
    FROM club_payments
    WHERE method = 'till'
      AND (CAST(:staff AS bigint) IS NULL OR staff_id = :staff)
      AND (CAST(:partner AS bigint) IS NULL OR partner_id = :partner)
      AND (created_at >= :start AND created_at < :end
           OR refunded_at >= :start AND refunded_at < :end)
    """
)


async def club_takings(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    staff_id: int | None = None,
    partner_id: int | None = None,
) -> ClubTakings:
    """The club's months sold at the till in [start, end): by a staff member, or at a
    partner."""
    row = (
        await session.execute(
            _CLUB_TAKINGS,
            {"start": start, "end": end, "staff": staff_id, "partner": partner_id},
        )
    ).one()
    return ClubTakings(
        int(row.months), Decimal(row.money), Decimal(row.refunded), int(row.refunds)
    )
