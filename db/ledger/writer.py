"""The posting primitives every use case is built from.

A posting is one `transactions` row plus its `entries` and point lots, written by one
function, `post` (the SQL function ledger_post, one round trip): nothing else inserts
entries. The database applies entries to the balances it keeps (members' wallets and stamp
cards: AccountKind.KEPT; the other accounts' balance is the sum of their entries) and
refuses unbalanced transactions (one trigger per INSERT statement), refuses an overdraft
(CHECK on wallets); the use cases only choose the legs and the lots. Nothing here commits:
the use case that called it commits once, at its end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Text,
    bindparam,
    cast,
    column,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import note_committed_alone
from db.ledger.models import Account, AccountKind, Member, Transaction
from db.rules.errors import IdempotencyConflict, NotEnoughPoints, RequestClosed


class HoldClosed(RequestClosed):
    """The hold a posting was to spend was already posted or voided (the request it holds
    for is closed: the member is told so, as for any closed request)."""


@dataclass(frozen=True, slots=True)
class Leg:
    account_id: int
    amount: int
    tx_id: int = 0  # 0: the transaction being posted; else another of the same batch


@dataclass(frozen=True, slots=True)
class Lot:
    """A change to a member's point lots: `points` > 0 adds a lot, < 0 spends that many,
    oldest first (`prefer_tx`'s lots first; with `lot_id`, only that lot)."""

    member_id: int
    points: int
    tx_id: int = 0  # 0: the transaction being posted
    prefer_tx: int = 0
    lot_id: int = 0
    earned_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Posted:
    transaction_id: int
    # Every kept account the legs touched (AccountKind.KEPT), after the posting.
    balances: dict[int, int]
    extra: tuple[Any, ...] = ()  # the caller's extra columns, read in the same statement


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


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _lot(lot: Lot) -> dict[str, Any]:
    row: dict[str, Any] = {"member": lot.member_id, "points": lot.points}
    for name, value in (
        ("tx", lot.tx_id),
        ("prefer", lot.prefer_tx),
        ("lot", lot.lot_id),
        ("earned_at", lot.earned_at),
        ("expires_at", lot.expires_at),
    ):
        if value:
            row[name] = value
    return row


_LEDGER_POST = func.ledger_post(
    cast(bindparam("tx", type_=Text), JSONB),
    cast(bindparam("legs", type_=Text), JSONB),
    cast(bindparam("lots", type_=Text), JSONB),
).table_valued(
    column("posted_tx", BigInteger),
    column("posted_accounts", ARRAY(BigInteger)),
    column("posted_balances", ARRAY(BigInteger)),
)
_POST: dict[tuple[ColumnElement[Any], ...], Select[Any]] = {}


async def post(
    session: AsyncSession,
    legs: Sequence[Leg],
    lots: Sequence[Lot] = (),
    *,
    tx_id: int | None = None,
    kind: str | None = None,
    key: str | None = None,
    digest: str | None = None,
    post_hold: str | None = None,
    extra: tuple[ColumnElement[Any], ...] = (),
    params: dict[str, Any] | None = None,
    **columns: Any,
) -> Posted | None:
    """Post one transaction (or a batch: legs may name another transaction of it): the one
    writer of entries and point lots, one round trip to the database (ledger_post: migration
    0009 says what it does and in which order, 0011 how it does it now, 0022 which accounts
    it locks: the kept ones, AccountKind.KEPT).

    Either `tx_id`, a transaction the caller opened earlier in this database transaction, or
    `kind`, `key`, `digest` and the transaction's other `columns`, to open it here: then None
    means the key was already posted and nothing was written. Legs are signed amounts; the
    credits of an account go before its debits, and what a wallet may spend is said by the
    `lots`, applied in the order given. `extra` adds columns (bound by `params`) to the same
    statement, read after the posting (Posted.extra). `post_hold`, the key of an open hold
    (see `hold`), is resolved as posted by this posting, which spends its points; HoldClosed
    when it is not open. A wallet that cannot pay raises NotEnoughPoints (held points cannot
    pay), and the whole posting is refused.
    """
    if tx_id is not None:
        head: dict[str, Any] = {"id": tx_id}
    else:
        head = {"kind": kind, "idempotency_key": key, "fingerprint": digest, **columns}
    if post_hold is not None:
        head["post_hold"] = post_hold
    values = {
        "tx": json.dumps(head, default=_json),
        "legs": json.dumps(
            [
                {"account": leg.account_id, "amount": leg.amount, "tx": leg.tx_id or None}
                for leg in legs
            ]
        ),
        "lots": json.dumps([_lot(lot) for lot in lots if lot.points], default=_json),
        **(params or {}),
    }
    stmt = _POST.get(extra)
    if stmt is None:  # built once per caller's extra columns (module-level constants)
        fn = _LEDGER_POST.c
        stmt = _POST[extra] = select(fn.posted_tx, fn.posted_accounts, fn.posted_balances, *extra)
    with refusals(post_hold):
        session.info["wrote"] = True  # a SELECT of ledger_post writes (db/engine.py)
        row = (await session.execute(stmt, values)).one()
    if row[0] is None:
        return None
    return Posted(row[0], dict(zip(row[1] or (), row[2] or (), strict=True)), tuple(row[3:]))


_NOT_ENOUGH = ("ck_accounts_wallet_not_negative", "ck_accounts_hold_covered", "point_lots_cover")


@contextmanager
def refusals(post_hold: str | None = None) -> Iterator[None]:
    """What the database refuses in a posting, as the use cases' errors: a wallet that cannot
    pay is NotEnoughPoints, a hold no longer open is HoldClosed."""
    try:
        yield
    except DBAPIError as exc:
        if constraint_name(exc) in _NOT_ENOUGH:
            raise NotEnoughPoints() from None
        if constraint_name(exc) == "hold_open":
            raise HoldClosed(key=post_hold) from None
        raise


# Holds are TigerBeetle's two-phase transfers, kept on the wallet rather than as a posting:
# a hold reserves points (accounts.held, kept by the holds trigger) and moves nothing, so the
# wallet's balance and history stay what the member owns and has done, every posting sees
# `balance - held` as what may be spent (the database refuses the rest), and the redemption
# that spends a hold is an ordinary posting (its entries, lots and replays unchanged). A
# hold is resolved exactly once: posted by that posting (post(post_hold=key)) or voided
# (void_holds); the holds row's status moves once from open, under its row lock, so a
# confirmation, a decline and a timeout racing for it find one winner.
_HOLD = text(
    """
    INSERT INTO holds (key, member_id, account_id, points, created_at)
    SELECT :key, a.member_id, a.id, :points, :now FROM accounts AS a
    WHERE a.member_id = :member AND a.kind = 'member'
    ON CONFLICT (key) DO NOTHING
    RETURNING id
    """
)
_VOID = text(
    """
    UPDATE holds SET status = 'voided', resolved_at = :now
    WHERE status = 'open' AND (key = ANY(:keys) OR member_id = :member)
    RETURNING key
    """
)


async def hold(
    session: AsyncSession, *, key: str, member_id: int, points: int, now: datetime
) -> bool:
    """Reserve `points` of the member's wallet under `key`; False when the key already holds
    (a replay). NotEnoughPoints when the wallet cannot cover it beside its other holds."""
    try:
        created = await session.execute(
            _HOLD, {"key": key, "member": member_id, "points": points, "now": now}
        )
    except DBAPIError as exc:
        if constraint_name(exc) in _NOT_ENOUGH:
            raise NotEnoughPoints() from None
        raise
    return created.scalar_one_or_none() is not None


async def void_holds(
    session: AsyncSession,
    *,
    keys: Sequence[str] = (),
    member_id: int | None = None,
    now: datetime,
) -> list[str]:
    """Void the open holds under `keys` (or all of a member's): their points may be spent
    again. Returns the keys voided by this call (a hold already resolved is left alone)."""
    rows = await session.execute(_VOID, {"keys": list(keys), "member": member_id, "now": now})
    return list(rows.scalars())


async def lock_accounts(session: AsyncSession, ids: list[int]) -> dict[int, int]:
    """Lock the kept accounts (AccountKind.KEPT) among `ids` in id order (the order
    ledger_post locks them in) and return what each may spend (its balance less its held
    points), for a use case that must read it before it chooses its legs. The others are
    neither locked nor returned: no posting locks them."""
    rows = await session.execute(
        select(Account.id, (Account.balance - Account.held).label("balance"))
        .where(Account.id.in_(ids), Account.kind.in_(AccountKind.KEPT))
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


async def system_account(session: AsyncSession, kind: str, unit: str = "points") -> int:
    return (
        await session.execute(
            select(Account.id).where(
                Account.kind == kind,
                Account.unit == unit,
                Account.member_id.is_(None),
                Account.partner_id.is_(None),
            )
        )
    ).scalar_one()


async def wallet_of(session: AsyncSession, member_id: int) -> int:
    """The id of the member's wallet: their account of kind `member` (not their stamp
    cards')."""
    return (
        await session.execute(
            select(Account.id).where(
                Account.member_id == member_id, Account.kind == AccountKind.MEMBER
            )
        )
    ).scalar_one()


async def wallet_balance(session: AsyncSession, account_id: int) -> int:
    return (
        await session.execute(select(Account.balance).where(Account.id == account_id))
    ).scalar_one()


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
        if session.in_transaction():
            await session.commit()
        else:  # nothing under way: all it wrote was sent alone, committed already
            note_committed_alone(session)
    except BaseException:
        await session.rollback()
        raise
