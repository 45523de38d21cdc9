"""Points expire per lot, oldest first; a daily job posts what is left as `expire`
transactions into the breakage account."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Account, AccountKind, PointLot, TxKind
from db.ledger.writer import (
    Leg,
    Lot,
    fingerprint,
    lock_accounts,
    lock_members,
    post,
    system_account,
    unit_of_work,
)
from db.usecases.outbox import owe_expired

log = logging.getLogger(__name__)
# This many failures in a row is not one bad member but the database: stop the run.
MAX_FAILURES_IN_A_ROW = 20


@dataclass(frozen=True, slots=True)
class ExpiredLot:
    member_id: int
    transaction_id: int
    points: int
    expired_at: datetime


# A lot's member's wallet (not their stamp cards).
_wallet_of_lot = (Account.member_id == PointLot.member_id) & (Account.kind == AccountKind.MEMBER)


async def expire_due(
    session: AsyncSession, *, now: datetime | None = None, batch: int = 500
) -> list[ExpiredLot]:
    """Expire every lot whose time has come, one small transaction per lot (the key is the
    lot's, so a job run twice, or by two instances, expires each lot once).

    A lot that fails (a wallet that no longer adds up, say) is rolled back and logged, its
    member's other lots are left for the next run, and everyone else's expire as usual."""
    now = now or datetime.now(UTC)
    breakage = await system_account(session, AccountKind.BREAKAGE)
    expired: list[ExpiredLot] = []
    failed: set[int] = set()
    in_a_row = 0
    last_id = 0
    while True:
        due = (
            await session.execute(
                select(PointLot.id, PointLot.member_id, Account.id)
                .join(Account, _wallet_of_lot)
                .where(PointLot.remaining > 0, PointLot.expires_at <= now, PointLot.id > last_id)
                .order_by(PointLot.id)
                .limit(batch)
            )
        ).all()
        if not due:
            return expired
        for lot_id, member_id, wallet in due:
            last_id = lot_id
            if member_id in failed:
                continue
            try:
                done = await _expire_lot(session, lot_id, member_id, wallet, breakage, now)
            except Exception:
                in_a_row += 1
                if in_a_row >= MAX_FAILURES_IN_A_ROW:
                    raise
                failed.add(member_id)
                log.exception("expiry of lot %s of member %s failed; skipped", lot_id, member_id)
                continue
            in_a_row = 0
            if done is not None:
                expired.append(done)


async def _expire_lot(
    session: AsyncSession, lot_id: int, member_id: int, wallet: int, breakage: int, now: datetime
) -> ExpiredLot | None:
    async with unit_of_work(session):
        await lock_members(session, [member_id])  # before accounts, as a deletion locks them
        available = (await lock_accounts(session, [breakage, wallet]))[wallet]
        # Re-read under the wallet lock: a sale may have spent the lot since we listed it.
        remaining, held = (
            await session.execute(
                select(PointLot.remaining, Account.held)
                .join(Account, _wallet_of_lot)
                .where(PointLot.id == lot_id)
            )
        ).one()
        # Points an open request holds were promised before they expired: they stay until
        # the request is answered (a confirmation spends them, oldest first); the next run
        # expires what is left.
        points = min(remaining, available) if held else remaining
        if points <= 0:
            return None
        posted = await post(
            session,
            [Leg(wallet, -points), Leg(breakage, points)],
            [Lot(member_id, -points, lot_id=lot_id)],
            kind=TxKind.EXPIRE,
            key=f"expire:{lot_id}" if points == remaining else f"expire:{lot_id}:{remaining}",
            digest=fingerprint(TxKind.EXPIRE, lot_id, points),
            member_id=member_id,
            created_at=now,
        )
        if posted is None:
            return None
        tx_id = posted.transaction_id
        await owe_expired(session, member_id, points)
        return ExpiredLot(member_id, tx_id, points, now)
