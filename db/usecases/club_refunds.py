"""The owner's refund of a club payment, as the database records it.

The money goes back first, outside this module: Telegram gives Stars back
(`refundStarPayment`, called by bot/handlers/office/club_refunds.py, which records the refund
only once Telegram accepted it or said it was already refunded); a card payment is given back
in the payment provider's dashboard, a till payment in cash by that partner (settlement takes
it off the partner's club money from `refunded_at`). Then this records it, once, and takes
back what that payment bought, and only that:

- the membership loses the part of the payment's period still ahead (none once it is over:
  db/rules/club.py `after_refund`), so time bought by other payments stays; the periods of
  the payments after it move back with it, so each still says what it bought;
- a Stars payment of the subscription the membership has now ends that subscription
  (renewal off; the caller cancels it with Telegram while it still renews);
- the welcome points paid with it go back from the member's wallet to the program, as many
  as the wallet holds;
- the member is owed the news, and the audit log says who did it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import AccountKind, ClubMembership, ClubPayment, Transaction, TxKind
from db.ledger.writer import (
    Leg,
    Lot,
    fingerprint,
    lock_accounts,
    lock_members,
    post,
    system_account,
    unit_of_work,
    wallet_of,
)
from db.queries.club_payments import PaymentLine, of_subscription, refund_target
from db.rules import access
from db.rules import club as rules
from db.rules.errors import UnknownTransaction
from db.usecases.outbox import Owed, owe
from db.usecases.staff import active_staff, audit

ACTION = "club_refund"


@dataclass(frozen=True, slots=True)
class ClubRefund:
    """A refund recorded. `new` False: the payment was refunded before and nothing changed
    now (`payment.refunded_at` says when). `ends_at`: the membership's end now, `was` its
    end before (equal when the payment's time was over); `ended`: it is over now.
    `cancel_subscription`: the charge id of the Stars subscription this payment was of,
    which still renews, for the caller to cancel with Telegram (editUserStarSubscription).
    `points_back`: the welcome points taken back (of `payment.welcome_points`)."""

    payment: PaymentLine
    new: bool
    ends_at: datetime | None = None
    was: datetime | None = None
    ended: bool = False
    cancel_subscription: str | None = None
    points_back: int = 0
    told: bool = False  # the member was owed the news (not when they deleted their account)

    @property
    def shortened(self) -> bool:
        return self.was is not None and self.ends_at is not None and self.ends_at < self.was


async def authorise(session: AsyncSession, actor: int, owners: Collection[int]) -> None:
    """Only an owner refunds (db/rules/access.py: no staff role may): checked before
    anything is given back (Telegram is asked before the refund is recorded) and again as
    it is recorded. `owners`: ADMIN_IDS."""
    staff = None if actor in owners else await active_staff(session, actor)
    access.require_actor(actor, owners, staff.role if staff is not None else None, ACTION)


async def record_refund(
    session: AsyncSession,
    payment_id: int,
    *,
    actor: int,
    owners: Collection[int],
    now: datetime,
    telegram: str | None = None,
) -> ClubRefund:
    """Record that the payment was given back and take back what it bought (only an
    owner may: NotStaff otherwise; UnknownTransaction for no such payment). `telegram`
    says how Telegram answered the refund of a Stars payment ("refunded",
    "already_refunded"), for the audit log."""
    async with unit_of_work(session):
        await authorise(session, actor, owners)
        member_id = await session.scalar(
            select(ClubPayment.member_id).where(ClubPayment.id == payment_id)
        )
        if member_id is None:
            raise UnknownTransaction()
        # The member row, then the membership, then the payments and the wallet: the
        # order a payment takes them in (db/usecases/club.py), so two refunds, or a refund
        # and a payment, of one member queue on the membership.
        alive = member_id in await lock_members(session, [member_id])
        membership = (
            await session.execute(
                select(ClubMembership)
                .where(ClubMembership.member_id == member_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        paid = (
            await session.execute(
                select(ClubPayment)
                .where(ClubPayment.id == payment_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        if paid.refunded_at is not None:
            target = await refund_target(session, payment_id, now=now)
            assert target is not None
            return ClubRefund(target.payment, False)
        paid.refunded_at = now
        was = membership.ends_at
        ends_at = rules.after_refund(was, paid.period_from, paid.period_until, now)
        if ends_at < was:
            # The payments after it (in time bought) follow the membership's end back.
            cut = was - ends_at
            await session.execute(
                update(ClubPayment)
                .where(
                    ClubPayment.member_id == member_id,
                    ClubPayment.id != payment_id,
                    ClubPayment.period_from >= paid.period_until,
                )
                .values(
                    period_from=ClubPayment.period_from - cut,
                    period_until=ClubPayment.period_until - cut,
                )
            )
        membership.ends_at = ends_at
        ended = not rules.active(ends_at, now)
        if ended:
            # The member is told here that it ended: the daily job says no more.
            membership.lapse_told_for = ends_at
        cancel = None
        if await of_subscription(session, payment_id):
            if rules.renewing(membership.renews, membership.subscription_until, now):
                cancel = membership.subscription_charge_id
            membership.renews = False
            membership.subscription_charge_id = None
            membership.subscription_until = None
        await session.flush()
        points = 0
        if paid.welcome_points:
            points = await _welcome_back(session, member_id, paid, now)
        target = await refund_target(session, payment_id, now=now)
        assert target is not None
        line = target.payment
        await audit(
            session,
            ACTION,
            actor=actor,
            member_id=member_id,
            partner_id=line.partner_id,
            payment=line.id,
            charge_id=line.charge_id,
            method=line.method,
            amount=line.amount,
            currency=line.currency,
            telegram=telegram,
            ends_at=ends_at.isoformat(),
            points_back=points,
            subscription=cancel,
        )
        if alive:
            await owe(
                session,
                Owed(
                    "club_refunded",
                    {
                        "method": line.method,
                        "amount": line.amount,
                        "currency": line.currency,
                        "ends_at": ends_at,
                        "shortened": ends_at < was,
                        "ended": ended,
                        "points_back": points,
                    },
                    member_id=member_id,
                ),
            )
        return ClubRefund(line, True, ends_at, was, ended, cancel, points, alive)


async def _welcome_back(
    session: AsyncSession, member_id: int, paid: ClubPayment, now: datetime
) -> int:
    """Take the welcome points paid with `paid` back to the program, as many as the
    wallet may spend (points spent are not taken: the wallet never goes below zero; a
    deleted account's wallet holds none). Returns how many were taken."""
    welcome = await session.scalar(
        select(Transaction.id).where(Transaction.idempotency_key == f"club-welcome:{member_id}")
    )
    if welcome is None:
        return 0
    program_acc = await system_account(session, AccountKind.PROGRAM)
    wallet = await wallet_of(session, member_id)
    spendable = (await lock_accounts(session, sorted([program_acc, wallet])))[wallet]
    points = min(paid.welcome_points, max(spendable, 0))
    if not points:
        return 0
    posted = await post(
        session,
        [Leg(wallet, -points), Leg(program_acc, points)],
        [Lot(member_id, -points, prefer_tx=welcome)],
        kind=TxKind.REVERSE,
        key=f"club-refund:{paid.id}:welcome",
        digest=fingerprint("club-welcome-back", paid.id, points),
        member_id=member_id,
        reverses_id=welcome,
        reason=ACTION,
        created_at=now,
    )
    assert posted is not None  # keyed by this payment's refund, recorded once under its lock
    return points
