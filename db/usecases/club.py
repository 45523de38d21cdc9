"""The club's write paths: a payment recorded exactly once and the membership it buys
(db/rules/club.py says how long), the welcome points once per person ever, renewal
switched off and on.

Every way of paying (a Telegram Stars subscription, a card through a payment provider in
Telegram, money at a till) comes here as a Payment with its own charge id: Telegram's
`telegram_payment_charge_id`, or the till's key. The same charge id again changes nothing
and returns what it bought (a redelivered `successful_payment`, a button pressed twice)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import (
    ClubMembership,
    ClubPayment,
    RewardedIdentity,
    TxKind,
)
from db.ledger.writer import (
    lock_members,
    unit_of_work,
    wallet_of,
)
from db.rules import club as rules
from db.rules.errors import NoClub, UnknownMember
from db.rules.program import Program
from db.usecases.members import program_gift
from db.usecases.outbox import Owed, owe
from db.usecases.staff import audit


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment for membership. `amount` is in `currency` (Stars: currency "XTR", a
    whole number). `until`: a Stars subscription's `subscription_expiration_date`;
    `renews`: Telegram will charge again (a Stars subscription). A till sale names the
    `partner_id` that collected the money and its `staff_id`."""

    member_id: int
    charge_id: str
    method: str
    currency: str
    amount: Decimal
    now: datetime
    until: datetime | None = None
    renews: bool = False
    recurring: bool = False
    provider_charge_id: str | None = None
    partner_id: int | None = None
    staff_id: int | None = None


@dataclass(frozen=True, slots=True)
class ClubPaid:
    """What a payment bought. `new` False: this charge was recorded before and nothing
    changed now (the rest describes the first time). `joined`: the member was not in the
    club when it was paid (a first membership, or back after a lapse); else it extended
    one. `welcome_points`: paid with it (0 when none or already paid once). `renews`: a
    Stars subscription renews the membership, Telegram charging it next at
    `subscription_until` (a Stars payment's own; None for other ways of paying)."""

    payment_id: int
    new: bool
    joined: bool
    period_from: datetime
    ends_at: datetime
    renews: bool
    welcome_points: int
    subscription_until: datetime | None = None


async def record_payment(
    session: AsyncSession,
    program: Program,
    payment: Payment,
    *,
    identity: str | None = None,
    actor: int | None = None,
    also: Sequence[Owed] | Callable[[ClubPaid], Sequence[Owed]] = (),
) -> ClubPaid:
    """Record the payment once and extend the membership; pay the welcome points the first
    time ever (not again to an `identity` that had them in a deleted account); owe the
    member the news ("club_paid") and the caller's `also` messages (or those `also` makes
    of what the payment bought: a till's receipt says the new end), in one transaction.
    A charge recorded before returns what it bought (`new` False), even once its member
    is gone. UnknownMember if the member is gone and the charge is new (nothing recorded:
    the caller gives the money back); NoClub if the program has no club."""
    club = program.club
    if club is None:
        raise NoClub()
    assert payment.method in rules.METHODS
    stars = payment.method == "stars"
    now = payment.now
    async with unit_of_work(session):
        # A charge recorded before is replayed, whoever paid it: a redelivered update
        # after its payer deleted their account is not a payment that bought nothing.
        found = await _paid_before(session, payment.charge_id)
        if found is not None:
            return found
        if not await lock_members(session, [payment.member_id]):
            raise UnknownMember()
        # The membership row exists before it is locked, so that two first payments for
        # one member (a till month and a Stars payment at once) queue on it instead of
        # both inserting it: the second waits for the first and extends what it bought.
        await session.execute(
            pg_insert(ClubMembership)
            .values(
                member_id=payment.member_id,
                joined_at=now,
                started_at=now,
                ends_at=now,
                renews=False,
                welcomed=False,
            )
            .on_conflict_do_nothing(index_elements=[ClubMembership.member_id])
        )
        membership = (
            await session.execute(
                select(ClubMembership)
                .where(ClubMembership.member_id == payment.member_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        ends_at = membership.ends_at
        joined = rules.joins(ends_at, now, recurring=payment.recurring)
        start, end = rules.period(ends_at, now, payment.until)
        welcome = 0
        if (
            club.welcome_points
            and not membership.welcomed
            and not await _welcomed_before(session, identity)
        ):
            welcome = club.welcome_points
        payment_id = (
            await session.execute(
                pg_insert(ClubPayment)
                .values(
                    charge_id=payment.charge_id,
                    provider_charge_id=payment.provider_charge_id,
                    member_id=payment.member_id,
                    method=payment.method,
                    currency=payment.currency,
                    amount=payment.amount,
                    partner_id=payment.partner_id,
                    staff_id=payment.staff_id,
                    recurring=payment.recurring,
                    joined=joined,
                    welcome_points=welcome,
                    period_from=start,
                    period_until=end,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=[ClubPayment.charge_id])
                .returning(ClubPayment.id)
            )
        ).scalar_one_or_none()
        if payment_id is None:  # recorded by a concurrent delivery of the same charge
            found = await _paid_before(session, payment.charge_id)
            assert found is not None
            return found
        membership.ends_at = end
        if joined:
            membership.started_at = now
        if stars:
            membership.renews = payment.renews
            membership.subscription_charge_id = payment.charge_id
            membership.subscription_until = payment.until
        elif joined:
            # A new membership paid another way: a subscription of the one before is over
            # (its renewal never came), so nothing of it renews this one.
            membership.renews = False
            membership.subscription_charge_id = None
            membership.subscription_until = None
        if club.welcome_points:
            membership.welcomed = True
        await session.flush()
        if welcome:
            await _pay_welcome(session, program, payment.member_id, welcome, now)
        await audit(
            session,
            "club_payment",
            actor=actor,
            member_id=payment.member_id,
            partner_id=payment.partner_id,
            charge_id=payment.charge_id,
            method=payment.method,
            amount=payment.amount,
            currency=payment.currency,
            until=end.isoformat(),
        )
        paid = ClubPaid(
            payment_id,
            True,
            joined,
            start,
            end,
            rules.renewing(membership.renews, membership.subscription_until, now),
            welcome,
            membership.subscription_until if stars else None,
        )
        await owe(
            session,
            Owed("club_paid", club_paid_params(paid, payment), member_id=payment.member_id),
            *(also(paid) if callable(also) else also),
        )
        return paid


def club_paid_params(paid: ClubPaid, payment: Payment) -> dict[str, object]:
    """The member's news of a payment (bot/views/notices.py renders "club_paid")."""
    return {
        "joined": paid.joined,
        "ends_at": paid.ends_at,
        "renews": paid.renews,
        "subscription_until": paid.subscription_until,
        "welcome_points": paid.welcome_points,
        "method": payment.method,
        "amount": payment.amount,
        "currency": payment.currency,
    }


async def _paid_before(session: AsyncSession, charge_id: str) -> ClubPaid | None:
    row = (
        await session.execute(
            select(
                ClubPayment,
                ClubMembership.renews,
                ClubMembership.subscription_charge_id,
                ClubMembership.subscription_until,
            )
            .join(ClubMembership, ClubMembership.member_id == ClubPayment.member_id)
            .where(ClubPayment.charge_id == charge_id)
        )
    ).one_or_none()
    if row is None:
        return None
    paid, renews, subscription, until = row
    # What it bought, as the first time said it; whether its subscription renews, as it
    # stands now (only the latest charge of a subscription is kept to name it).
    ours = subscription == charge_id
    return ClubPaid(
        paid.id,
        False,
        paid.joined,
        paid.period_from,
        paid.period_until,
        renews and ours,
        paid.welcome_points,
        until if ours else None,
    )


async def _welcomed_before(session: AsyncSession, identity: str | None) -> bool:
    """Whether this person had the club's welcome points in an account they deleted."""
    if identity is None:
        return False
    return bool(
        await session.scalar(
            select(RewardedIdentity.club).where(RewardedIdentity.identity_hash == identity)
        )
    )


async def _pay_welcome(
    session: AsyncSession, program: Program, member_id: int, points: int, now: datetime
) -> None:
    """The club's welcome points, from the program's account, once per member (the key)."""
    wallet = await wallet_of(session, member_id)
    posted = await program_gift(session, program, member_id, wallet, points, TxKind.CLUB, now=now)
    assert posted  # `welcomed` was false under the membership's lock


async def set_renewal(
    session: AsyncSession, member_id: int, renews: bool, *, actor: int | None = None
) -> bool:
    """Record that the member switched their Stars subscription's renewal off (or back on),
    after Telegram accepted it (editUserStarSubscription). Returns whether anything
    changed (False: no subscription, or already so)."""
    async with unit_of_work(session):
        changed = (
            await session.execute(
                update(ClubMembership)
                .where(
                    ClubMembership.member_id == member_id,
                    ClubMembership.subscription_charge_id.is_not(None),
                    ClubMembership.renews.is_not(renews),
                )
                .values(renews=renews)
                .returning(ClubMembership.member_id)
            )
        ).scalar_one_or_none()
        if changed is not None:
            await audit(
                session,
                "club_renewal_on" if renews else "club_renewal_off",
                actor=actor,
                member_id=member_id,
            )
        return changed is not None
