"""Reads about club payments for the owner's refunds (bot/handlers/office/club_refunds.py):
a member's payments, newest first, and one payment with what refunding it needs and would
do (db/usecases/club_refunds.py does it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Account, AccountKind, ClubMembership, ClubPayment, Member, Partner
from db.rules import club as rules

SHOWN = 10  # payments the owner's screen lists


@dataclass(frozen=True, slots=True)
class PaymentLine:
    """One club payment. `amount` is in `currency` (Stars: "XTR"); `partner`: the slug of
    the partner whose till took it (method "till")."""

    id: int
    member_id: int
    method: str
    currency: str
    amount: Decimal
    created_at: datetime
    period_until: datetime
    refunded_at: datetime | None
    charge_id: str
    provider_charge_id: str | None
    partner: str | None
    partner_id: int | None = None
    period_from: datetime | None = None
    welcome_points: int = 0  # the club's welcome points paid with it

    @property
    def refunded(self) -> bool:
        return self.refunded_at is not None


@dataclass(frozen=True, slots=True)
class RefundTarget:
    """A payment with its member as refunding it needs them: their Telegram id (None once
    they deleted their account: Telegram can no longer be asked); their membership's end
    and the points their wallet may give back now; whether the payment is a Stars payment
    of the subscription their membership has now (`subscription`), and that
    subscription's charge id while Telegram still renews it (`renewing_subscription`)."""

    payment: PaymentLine
    telegram_id: int | None
    first_name: str
    ends_at: datetime | None = None
    wallet_points: int = 0
    subscription: bool = False
    renewing_subscription: str | None = None

    def ends_after(self, now: datetime) -> datetime | None:
        """The membership's end once this payment is refunded at `now` (the rule the
        refund applies: db/rules/club.py `after_refund`)."""
        line = self.payment
        if self.ends_at is None or line.period_from is None:
            return self.ends_at
        return rules.after_refund(self.ends_at, line.period_from, line.period_until, now)

    def points_back(self) -> int:
        """The welcome points refunding it would take back now (what the wallet holds)."""
        return min(self.payment.welcome_points, max(self.wallet_points, 0))


def _lines() -> Any:  # a Select of (ClubPayment, the till partner's slug)
    return select(ClubPayment, Partner.slug).outerjoin(
        Partner, Partner.id == ClubPayment.partner_id
    )


def _line(paid: ClubPayment, partner: str | None) -> PaymentLine:
    return PaymentLine(
        paid.id,
        paid.member_id,
        paid.method,
        paid.currency,
        paid.amount,
        paid.created_at,
        paid.period_until,
        paid.refunded_at,
        paid.charge_id,
        paid.provider_charge_id,
        partner,
        paid.partner_id,
        paid.period_from,
        paid.welcome_points,
    )


async def member_payments(
    session: AsyncSession, member_id: int, *, limit: int = SHOWN
) -> list[PaymentLine]:
    """The member's club payments, newest first."""
    rows = await session.execute(
        _lines()
        .where(ClubPayment.member_id == member_id)
        .order_by(ClubPayment.created_at.desc(), ClubPayment.id.desc())
        .limit(limit)
    )
    return [_line(row[0], row[1]) for row in rows]


def later_subscription() -> Any:
    """Whether the member took another Stars subscription after this payment (a first
    charge after it): then the payment is not of the subscription they have now."""
    later = ClubPayment.__table__.alias("later")
    return exists().where(
        later.c.member_id == ClubPayment.member_id,
        later.c.method == "stars",
        later.c.recurring.is_(False),
        or_(
            later.c.created_at > ClubPayment.created_at,
            and_(later.c.created_at == ClubPayment.created_at, later.c.id > ClubPayment.id),
        ),
    )


async def of_subscription(session: AsyncSession, payment_id: int) -> bool:
    """Whether the payment is a Stars payment of the subscription the member's membership
    has now (its first charge or a renewal of it, no other subscription taken since)."""
    return bool(
        await session.scalar(
            select(
                (ClubPayment.method == "stars")
                & ClubMembership.subscription_charge_id.is_not(None)
                & ~later_subscription()
            )
            .join(ClubMembership, ClubMembership.member_id == ClubPayment.member_id)
            .where(ClubPayment.id == payment_id)
        )
    )


async def refund_target(
    session: AsyncSession, payment_id: int, *, now: datetime
) -> RefundTarget | None:
    """The payment and what refunding it at `now` needs and would do (None: no such
    payment)."""
    row = (
        await session.execute(
            _lines()
            .add_columns(
                Member.telegram_id,
                Member.first_name,
                ClubMembership.ends_at,
                ClubMembership.renews,
                ClubMembership.subscription_charge_id,
                ClubMembership.subscription_until,
                Account.balance - Account.held,
            )
            .join(Member, Member.id == ClubPayment.member_id)
            .outerjoin(ClubMembership, ClubMembership.member_id == ClubPayment.member_id)
            .outerjoin(
                Account,
                and_(
                    Account.member_id == ClubPayment.member_id, Account.kind == AccountKind.MEMBER
                ),
            )
            .where(ClubPayment.id == payment_id)
        )
    ).one_or_none()
    if row is None:
        return None
    paid, partner, telegram_id, first_name, ends_at, renews, charge, until, wallet = row
    ours = charge is not None and await of_subscription(session, payment_id)
    renewing = ours and rules.renewing(bool(renews), until, now)
    return RefundTarget(
        _line(paid, partner),
        telegram_id,
        first_name,
        ends_at,
        int(wallet or 0),
        ours,
        charge if renewing else None,
    )


async def payment_by_charge(session: AsyncSession, charge_id: str) -> PaymentLine | None:
    """The club payment recorded for this charge id (Telegram's, or a till panel's), if any."""
    row = (await session.execute(_lines().where(ClubPayment.charge_id == charge_id))).one_or_none()
    return _line(row[0], row[1]) if row is not None else None
