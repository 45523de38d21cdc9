"""Reads about club payments for the owner's refunds (bot/handlers/office/club_refunds.py):
a member's payments, newest first, and one payment with what refunding it needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ClubMembership, ClubPayment, Member, Partner

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
    recurring: bool
    partner_id: int | None = None

    @property
    def refunded(self) -> bool:
        return self.refunded_at is not None


@dataclass(frozen=True, slots=True)
class RefundTarget:
    """A payment with its member as refunding it needs them: their Telegram id (None once
    they deleted their account: Telegram can no longer be asked), and the Stars
    subscription that renews their membership, if one does."""

    payment: PaymentLine
    telegram_id: int | None
    first_name: str
    card_number: str
    renewing_subscription: str | None


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
        paid.recurring,
        paid.partner_id,
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


async def refund_target(session: AsyncSession, payment_id: int) -> RefundTarget | None:
    row = (
        await session.execute(
            _lines()
            .add_columns(
                Member.telegram_id,
                Member.first_name,
                Member.card_number,
                ClubMembership.renews,
                ClubMembership.subscription_charge_id,
            )
            .join(Member, Member.id == ClubPayment.member_id)
            .outerjoin(ClubMembership, ClubMembership.member_id == ClubPayment.member_id)
            .where(ClubPayment.id == payment_id)
        )
    ).one_or_none()
    if row is None:
        return None
    paid, partner, telegram_id, first_name, card, renews, subscription = row
    return RefundTarget(
        _line(paid, partner),
        telegram_id,
        first_name,
        card,
        subscription if renews else None,
    )


async def payment_by_charge(session: AsyncSession, charge_id: str) -> PaymentLine | None:
    """The club payment recorded for this charge id (Telegram's, or a till panel's), if any."""
    row = (await session.execute(_lines().where(ClubPayment.charge_id == charge_id))).one_or_none()
    return _line(row[0], row[1]) if row is not None else None
