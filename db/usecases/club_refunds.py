"""The owner's refund of a club payment, as the database records it.

The money goes back first, outside this module: Telegram gives Stars back
(`refundStarPayment`, called by bot/handlers/office/club_refunds.py, which records the refund
only once Telegram accepted it or said it was already refunded); a card payment is given back
in the payment provider's dashboard, a till payment in cash by that partner (settlement takes
it off the partner's club money from `refunded_at`). Then this records it, once: the payment
is marked refunded, the membership ends now (it is not shortened further if it ended
already), renewal is off, the member is owed the news, and the audit log says who did it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ClubMembership, ClubPayment
from db.ledger.writer import lock_members, unit_of_work
from db.queries.club_payments import PaymentLine, refund_target
from db.rules.errors import NotStaff, UnknownTransaction
from db.usecases.outbox import Owed, owe
from db.usecases.staff import audit

ACTION = "club_refund"


@dataclass(frozen=True, slots=True)
class ClubRefund:
    """A refund recorded. `new` False: the payment was refunded before and nothing changed
    now (`payment.refunded_at` says when). `ended_at`: the membership's end now.
    `cancel_subscription`: the charge id of the Stars subscription that was renewing the
    membership, for the caller to cancel with Telegram (editUserStarSubscription)."""

    payment: PaymentLine
    new: bool
    ended_at: datetime | None = None
    cancel_subscription: str | None = None
    told: bool = False  # the member was owed the news (not when they deleted their account)


def authorise(owner: bool) -> None:
    """Only an owner refunds: checked here before anything is given back (Telegram is
    asked before the refund is recorded) and again as it is recorded."""
    if not owner:
        raise NotStaff(action=ACTION)


async def record_refund(
    session: AsyncSession,
    payment_id: int,
    *,
    actor: int,
    owner: bool,
    now: datetime,
    telegram: str | None = None,
) -> ClubRefund:
    """Record that the payment was given back (only an owner may: NotStaff otherwise;
    UnknownTransaction for no such payment). `telegram` says how Telegram answered the
    refund of a Stars payment ("refunded", "already_refunded"), for the audit log."""
    authorise(owner)
    async with unit_of_work(session):
        member_id = await session.scalar(
            select(ClubPayment.member_id).where(ClubPayment.id == payment_id)
        )
        if member_id is None:
            raise UnknownTransaction()
        # The member row before the membership, as a payment and a deletion lock them.
        alive = member_id in await lock_members(session, [member_id])
        refunded_at = await session.scalar(
            select(ClubPayment.refunded_at).where(ClubPayment.id == payment_id).with_for_update()
        )
        if refunded_at is None:
            await session.execute(
                update(ClubPayment).where(ClubPayment.id == payment_id).values(refunded_at=now)
            )
        target = await refund_target(session, payment_id)
        assert target is not None
        paid = target.payment
        if refunded_at is not None:
            return ClubRefund(paid, False)
        ended = (
            await session.execute(
                update(ClubMembership)
                .where(ClubMembership.member_id == member_id)
                .values(
                    ends_at=func.least(ClubMembership.ends_at, now),
                    renews=False,
                    # The member is told here that it ended: the daily job says no more.
                    lapse_told_for=func.least(ClubMembership.ends_at, now),
                )
                .returning(ClubMembership.ends_at)
            )
        ).scalar_one()
        await audit(
            session,
            ACTION,
            actor=actor,
            member_id=member_id,
            partner_id=paid.partner_id,
            payment=paid.id,
            charge_id=paid.charge_id,
            method=paid.method,
            amount=paid.amount,
            currency=paid.currency,
            telegram=telegram,
        )
        if alive:
            await owe(
                session,
                Owed(
                    "club_refunded",
                    {
                        "method": paid.method,
                        "amount": paid.amount,
                        "currency": paid.currency,
                        "ends_at": ended,
                    },
                    member_id=member_id,
                ),
            )
        return ClubRefund(paid, True, ended, target.renewing_subscription, alive)
