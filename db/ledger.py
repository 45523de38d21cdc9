"""The posting primitives every use case is built from.

A posting is one `transactions` row plus its `entries`. The database applies entries to
balances (trigger), refuses an overdraft (CHECK on wallets) and refuses unbalanced
transactions (deferred trigger); this module only chooses the legs and keeps the point lots.
Nothing here commits: the use case that called it commits once, at its end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import IdempotencyConflict, NotEnoughPoints
from db.models import Account, Entry, Member, PointLot, Transaction


@dataclass(frozen=True, slots=True)
class Leg:
    account_id: int
    amount: int
    tx_id: int = 0  # 0: the transaction passed to post_entries


def fingerprint(*parts: Any) -> str:
    """A digest of what a posting asks for, to tell a replay from a key reused for another."""
    blob = json.dumps(parts, default=str, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def constraint_name(exc: DBAPIError) -> str | None:
    cause = getattr(exc.orig, "__cause__", None)
    return getattr(cause, "constraint_name", None)


async def open_transaction(
    session: AsyncSession, *, kind: str, key: str, digest: str, **columns: Any
) -> int | None:
    """Insert the transaction row first: a concurrent posting with the same key waits on the
    unique index and then sees ours. Returns None when the key was already posted."""
    stmt = (
        pg_insert(Transaction)
        .values(kind=kind, idempotency_key=key, fingerprint=digest, **columns)
        .on_conflict_do_nothing(index_elements=[Transaction.idempotency_key])
        .returning(Transaction.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_posted(session: AsyncSession, key: str, digest: str) -> Transaction:
    """The earlier posting under this key; an error if it asked for something else."""
    tx = (
        await session.execute(select(Transaction).where(Transaction.idempotency_key == key))
    ).scalar_one()
    if tx.fingerprint != digest:
        raise IdempotencyConflict(key=key)
    return tx


# Core inserts built once: cheaper than building them per posting or going through the ORM's
# bulk path (the rows are plain column values either way).
_INSERT_ENTRIES = insert(cast(Table, Entry.__table__))
_INSERT_LOT = insert(cast(Table, PointLot.__table__))


async def post_entries(
    session: AsyncSession, tx_id: int, legs: list[Leg], *, credits_first: bool = False
) -> None:
    """Insert the legs of one transaction.

    Sorted by account id, so concurrent postings lock accounts in one order and cannot
    deadlock (legs of a second transaction, such as a referral reward paid with a purchase,
    go in the same sorted batch for that reason); for the same account a debit goes before a
    credit, so a wallet can never pay with points credited by the same transaction. A refund
    is the exception (`credits_first`): the points it returns may cover what it claws back.
    A wallet that would go below zero makes the database refuse the whole statement: that is
    the overdraft check, under any load.
    """
    rows = [
        {"transaction_id": leg.tx_id or tx_id, "account_id": leg.account_id, "amount": leg.amount}
        for leg in sorted(
            legs, key=lambda leg: (leg.account_id, (leg.amount < 0) == credits_first)
        )
        if leg.amount != 0
    ]
    if not rows:
        return
    try:
        await session.execute(_INSERT_ENTRIES, rows)
    except DBAPIError as exc:
        if constraint_name(exc) == "ck_accounts_wallet_not_negative":
            raise NotEnoughPoints() from None
        raise


async def lock_accounts(session: AsyncSession, ids: list[int]) -> dict[int, int]:
    """Lock accounts in id order (the order post_entries uses) and return their balances."""
    rows = await session.execute(
        select(Account.id, Account.balance)
        .where(Account.id.in_(ids))
        .order_by(Account.id)
        .with_for_update()
    )
    return {row.id: row.balance for row in rows}


async def lock_members(session: AsyncSession, ids: list[int], *, delete: bool = False) -> set[int]:
    """Lock member rows, in id order, before any of their accounts: every posting that
    touches a member and the deletion of a member take their locks in this one order (member
    rows, then accounts), so they cannot deadlock. A posting takes a shared lock (postings
    for one member do not wait for each other); a deletion takes the exclusive one, so it
    waits for postings under way, and postings that come after it see the member deleted.
    Returns the ids of members that exist and are not deleted."""
    if not ids:
        return set()
    stmt = select(Member.id, Member.deleted_at).where(Member.id.in_(ids)).order_by(Member.id)
    stmt = stmt.with_for_update() if delete else stmt.with_for_update(key_share=True, read=True)
    rows = (await session.execute(stmt)).all()
    return {row.id for row in rows if row.deleted_at is None}


async def system_account(session: AsyncSession, kind: str) -> int:
    return (
        await session.execute(
            select(Account.id).where(
                Account.kind == kind, Account.member_id.is_(None), Account.partner_id.is_(None)
            )
        )
    ).scalar_one()


async def add_lot(
    session: AsyncSession,
    *,
    member_id: int,
    tx_id: int,
    points: int,
    earned_at: datetime | None,
    expires_at: datetime | None,
) -> None:
    if points <= 0:
        return
    values: dict[str, Any] = {
        "member_id": member_id,
        "transaction_id": tx_id,
        "points": points,
        "remaining": points,
        "expires_at": expires_at,
    }
    if earned_at is not None:
        values["earned_at"] = earned_at
    await session.execute(_INSERT_LOT, values)


# Oldest first: soonest expiry, never-expiring last; the preferred transaction's own lot
# (a refund taking back what that purchase earned) before all others.
_CONSUME = text(
    """
    WITH open AS (
        SELECT id, remaining,
               sum(remaining) OVER (
                   ORDER BY (transaction_id = :prefer) DESC, expires_at NULLS LAST, id
               ) AS running
        FROM point_lots
        WHERE member_id = :member AND remaining > 0
    )
    UPDATE point_lots AS lot
    SET remaining = lot.remaining - LEAST(open.remaining, :points - open.before)
    FROM (SELECT id, remaining, running - remaining AS before FROM open) AS open
    WHERE lot.id = open.id AND open.before < :points
    RETURNING lot.id
    """
)


async def consume_lots(
    session: AsyncSession, member_id: int, points: int, prefer_tx: int = 0
) -> None:
    """Take `points` from the member's lots, oldest first.

    Call only after the wallet's debit entry is in: that entry locks the wallet row, so no
    other posting for this member touches the lots until we commit, and the database has
    already refused the debit if the wallet cannot cover it.
    """
    if points <= 0:
        return
    await session.execute(_CONSUME, {"member": member_id, "points": points, "prefer": prefer_tx})


async def wallet_balance(session: AsyncSession, account_id: int) -> int:
    return (
        await session.execute(select(Account.balance).where(Account.id == account_id))
    ).scalar_one()


async def set_lot_remaining(session: AsyncSession, lot_id: int, remaining: int) -> None:
    await session.execute(
        update(PointLot).where(PointLot.id == lot_id).values(remaining=remaining)
    )


@asynccontextmanager
async def unit_of_work(session: AsyncSession) -> AsyncIterator[None]:
    """One database transaction per use case: commit at the end, roll back on any error, so
    a refused request writes nothing and the caller never reports what was not stored.

    This is the only place in the bot and db/ that commits or rolls back (a test scans the
    source for others). A use case that writes runs in one unit of work; a query (a read)
    neither commits nor rolls back, and handlers do neither: the database middleware closes
    the update's session when the update is handled, which ends any read left open.

    A read before a use case in the same session (the identity middleware's, or a handler's
    look-up) is not ended first: it simply becomes the start of the use case's transaction,
    and this commit ends both. Under READ COMMITTED each statement sees what was committed
    when it began, so the use case's own reads and the ledger's locks are as fresh as in a
    new transaction; what the use case decides on, it reads again inside its unit of work
    (under the lock where it matters). A read whose transaction-local settings (SET LOCAL)
    must not reach a later posting runs in a short session of its own (db/engine.py
    `own_session`). Jobs and workers open a session per unit (a batch, a lot, a claim) and
    run each in its own unit of work; their advisory locks live on autocommit connections."""
    try:
        yield
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
