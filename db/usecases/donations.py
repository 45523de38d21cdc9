"""Donations: a member gives points to a charity partner (`kind = "charity"`).

One `donation` posting moves them from the member's wallet (oldest lots first; held points
cannot pay) to the charity's `partner_redeemed` account: settlement then pays the charity
their value as for points redeemed there (db/queries/settlement.py), and the charity's
figures count them. Keyed by the confirmation the member tapped, so a double tap gives once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Account, TxKind
from db.ledger.writer import (
    Leg,
    Lot,
    find_posted,
    fingerprint,
    lock_members,
    post,
    unit_of_work,
    wallet_of,
)
from db.rules.errors import UnknownMember
from db.rules.gifts import NotACharity
from db.rules.points import check_points
from db.rules.program import Program
from db.usecases.outbox import Owed, owe
from db.usecases.partners import partner_accounts
from db.usecases.staff import audit


@dataclass(frozen=True, slots=True)
class Donation:
    transaction_id: int
    member_id: int
    charity: str  # the partner's slug
    points: int
    balance: int
    replayed: bool = False


def donation_key(member_id: int, dialog: str) -> str:
    """The key of the donation confirmed on the member's confirmation `dialog`."""
    return f"donation:{member_id}:{dialog}"


async def donate(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    charity: str,
    points: int,
    key: str,
    actor: int | None = None,
    now: datetime | None = None,
) -> Donation:
    """Give `points` to the charity `charity`; the member's thanks are owed in the same
    transaction. NotACharity for a partner that sells; NotEnoughPoints beyond what the
    member may spend. The same key again replays the first donation."""
    rules = program.partner(charity)
    if rules is None or not rules.charity:
        raise NotACharity(partner=charity)
    check_points(points)
    digest = fingerprint(TxKind.DONATION, member_id, charity, points)
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        # The member row before the wallet, as every posting and the deletion lock them.
        if not await lock_members(session, [member_id]):
            raise UnknownMember()
        accounts = await partner_accounts(session, charity)
        wallet = await wallet_of(session, member_id)
        posted = await post(
            session,
            [Leg(wallet, -points), Leg(accounts.redeemed_id, points)],
            [Lot(member_id, -points)],
            kind=TxKind.DONATION,
            key=key,
            digest=digest,
            member_id=member_id,
            partner_id=accounts.id,
            created_at=now,
        )
        if posted is None:
            found = await find_posted(session, key, digest)
            balance = await session.scalar(select(Account.balance).where(Account.id == wallet))
            return Donation(found.id, member_id, charity, points, int(balance or 0), True)
        balance = posted.balances[wallet]
        await audit(
            session,
            "donation",
            actor=actor,
            member_id=member_id,
            partner_id=accounts.id,
            transaction_id=posted.transaction_id,
            points=points,
        )
        await owe(
            session,
            Owed(
                "donation",
                {
                    "partner": charity,
                    "points": points,
                    "balance": balance,
                    "transaction": posted.transaction_id,
                },
                member_id=member_id,
            ),
        )
        return Donation(posted.transaction_id, member_id, charity, points, balance)
