"""Vouchers: rewards to claim once at their partner.

A voucher bought from the catalogue holds the member's points (db.ledger.writer.hold, key
`voucher:<code>`): claiming it posts the hold to the honouring partner, expiry voids it. A
voucher that a stamp card or a promotion gives is funded by a partner and moves nothing
until it is honoured: then the funder's points go to the honouring partner (settlement
moves the money); unclaimed, it costs nobody anything. Claiming is the till's part
(db/usecases/voucher_claims.py).

Limits. A reward's `stock` and `per_member` count the catalogue vouchers that stand: open
or claimed. An expired or voided voucher gave nothing (its points came back), so it counts
for neither: its unit goes back to the stock and the member may take the reward again.
Vouchers given by stamp cards and promotions count for neither either: a full card's
reward never fails because the catalogue ran out. `rewards.issued` is the count of standing
catalogue vouchers of the reward, kept under the reward row's lock.

Locks, in the one order every voucher path takes them: the member row (lock_members), the
voucher rows, the reward rows (by slug), then wallets and holds (as every posting).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import (
    Account,
    AccountKind,
    RewardStock,
    Voucher,
    VoucherSource,
)
from db.ledger.writer import hold, lock_members, unit_of_work, void_holds
from db.rules.errors import UnknownMember
from db.rules.program import Program
from db.rules.vouchers import (
    STANDING,
    CodeTaken,
    OutOfStock,
    PriceChanged,
    RewardLimit,
    RewardUnavailable,
    derived_code,
    new_code,
)
from db.usecases.outbox import Owed, owe
from db.usecases.partners import partner_accounts
from db.usecases.staff import audit

__all__ = [
    "ClosedVoucher",
    "IssuedVoucher",
    "Taken",
    "expire_vouchers",
    "hold_key",
    "issue_voucher",
    "new_code",
    "take_reward",
    "void_member_vouchers",
]


def hold_key(code: str) -> str:
    return f"voucher:{code}"


@dataclass(frozen=True, slots=True)
class IssuedVoucher:
    id: int
    code: str
    reward: str
    partner: str
    points: int
    expires_at: datetime


async def issue_voucher(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    reward: str,
    source: str,
    now: datetime,
    funder: str | None = None,
    source_tx_id: int | None = None,
    code: str | None = None,
) -> IssuedVoucher:
    """Write the voucher row (inside the caller's transaction). A catalogue voucher's caller
    holds the points under hold_key(code) first; a funded one names its `funder`.

    Without `code` a random one is drawn (again on the rare collision); an explicit `code`
    that already names a voucher raises CodeTaken: the caller's hold is under that code, so
    the voucher must be too."""
    rules = program.reward(reward)
    if rules is None:
        raise ValueError(f"no reward {reward!r} in the program")
    explicit = code is not None
    code = code or new_code()
    partner_id = (await partner_accounts(session, rules.partner)).id
    funder_id = (await partner_accounts(session, funder)).id if funder is not None else None
    expires_at = now + timedelta(days=rules.valid_days)
    while True:
        row = (
            await session.execute(
                pg_insert(Voucher)
                .values(
                    code=code,
                    reward=reward,
                    member_id=member_id,
                    partner_id=partner_id,
                    points=rules.points,
                    funder_id=funder_id,
                    hold_key=hold_key(code) if source == VoucherSource.CATALOGUE else None,
                    source=source,
                    source_tx_id=source_tx_id,
                    created_at=now,
                    expires_at=expires_at,
                )
                .on_conflict_do_nothing(index_elements=[Voucher.code])
                .returning(Voucher.id)
            )
        ).scalar_one_or_none()
        if row is not None:
            return IssuedVoucher(row, code, reward, rules.partner, rules.points, expires_at)
        if explicit:
            raise CodeTaken(code=code)
        code = new_code()  # a collision of random codes: draw again


@dataclass(frozen=True, slots=True)
class Taken:
    voucher: IssuedVoucher
    replayed: bool = False  # this confirmation had taken it already (a double tap)


async def take_reward(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    reward: str,
    points: int,
    operation: str,
    secret: bytes,
    now: datetime,
    actor: int | None = None,
) -> Taken:
    """The member takes a catalogue reward for `points` (the price they confirmed): in one
    transaction, hold the points and issue the voucher, within the reward's stock and
    per-member limit. `operation`, the confirmation's random id, names the voucher (its code
    is derived from it): confirming twice returns the first voucher. Refusals change
    nothing: RewardUnavailable, PriceChanged, OutOfStock, RewardLimit, NotEnoughPoints (the
    points other vouchers and requests hold cannot pay)."""
    rules = program.reward(reward)
    if rules is None or rules.points == 0:
        raise RewardUnavailable(reward=reward)
    if points != rules.points:
        raise PriceChanged(points=rules.points)
    code = derived_code(secret, member_id, operation)
    async with unit_of_work(session):
        if not await lock_members(session, [member_id]):
            raise UnknownMember()
        # The reward's row serialises its takers: the stock, the member's count and a double
        # tap are all decided under it.
        await session.execute(
            pg_insert(RewardStock)
            .values(slug=reward)
            .on_conflict_do_nothing(index_elements=[RewardStock.slug])
        )
        issued = (
            await session.execute(
                select(RewardStock.issued).where(RewardStock.slug == reward).with_for_update()
            )
        ).scalar_one()
        earlier = (
            await session.execute(select(Voucher).where(Voucher.code == code))
        ).scalar_one_or_none()
        if earlier is not None:
            if earlier.member_id != member_id or earlier.reward != reward:
                raise CodeTaken(code=code)
            return Taken(
                IssuedVoucher(
                    earlier.id, code, reward, rules.partner, earlier.points, earlier.expires_at
                ),
                replayed=True,
            )
        if rules.stock and issued >= rules.stock:
            raise OutOfStock(stock=rules.stock)
        if rules.per_member:
            mine = await session.scalar(
                select(func.count()).where(
                    Voucher.reward == reward,
                    Voucher.member_id == member_id,
                    Voucher.source == VoucherSource.CATALOGUE,
                    Voucher.status.in_(STANDING),
                )
            )
            if (mine or 0) >= rules.per_member:
                raise RewardLimit(limit=rules.per_member)
        # NotEnoughPoints from the database when the free points cannot cover it.
        await hold(session, key=hold_key(code), member_id=member_id, points=rules.points, now=now)
        voucher = await issue_voucher(
            session,
            program,
            member_id=member_id,
            reward=reward,
            source=VoucherSource.CATALOGUE,
            now=now,
            code=code,
        )
        await session.execute(
            update(RewardStock)
            .where(RewardStock.slug == reward)
            .values(issued=RewardStock.issued + 1)
        )
        await audit(
            session,
            "voucher_take",
            actor=actor,
            member_id=member_id,
            partner_id=(await partner_accounts(session, rules.partner)).id,
            reward=reward,
            code=code,
            points=rules.points,
        )
        return Taken(voucher)


async def _give_back_stock(session: AsyncSession, rewards: Iterable[str]) -> None:
    """Catalogue vouchers that stopped standing (expired, voided) free their units."""
    counts: dict[str, int] = {}
    for slug in rewards:
        counts[slug] = counts.get(slug, 0) + 1
    if not counts:
        return
    await session.execute(
        select(RewardStock.slug)
        .where(RewardStock.slug.in_(counts))
        .order_by(RewardStock.slug)
        .with_for_update()
    )
    for slug in sorted(counts):
        await session.execute(
            update(RewardStock)
            .where(RewardStock.slug == slug)
            .values(issued=func.greatest(RewardStock.issued - counts[slug], 0))
        )


async def _lock_wallets(session: AsyncSession, member_ids: Iterable[int]) -> None:
    """Lock the members' wallets before their holds are voided: FOR NO KEY UPDATE
    (`key_share=True`), in id order, the lock ledger_post takes on the accounts it posts to.
    Voiding a hold updates its wallet's `held`; taken here first, in one order, those locks
    cannot deadlock with a posting or another job voiding holds of the same wallets."""
    ids = set(member_ids)
    if ids:
        await session.execute(
            select(Account.id)
            .where(Account.member_id.in_(ids), Account.kind == AccountKind.MEMBER)
            .order_by(Account.id)
            .with_for_update(key_share=True)
        )


@dataclass(frozen=True, slots=True)
class ClosedVoucher:
    """A voucher expired or voided unclaimed."""

    id: int
    code: str
    member_id: int
    reward: str
    points_returned: int  # held points that are spendable again (0 for a funded voucher)


async def expire_vouchers(
    session: AsyncSession, program: Program, *, now: datetime, batch: int = 500
) -> list[ClosedVoucher]:
    """Mark open vouchers past their expiry expired, void their holds (the points are the
    member's to spend again) and tell each member, a batch per transaction. Run twice, or
    by two instances, each voucher expires once (it is re-read under its lock)."""
    expired: list[ClosedVoucher] = []
    while True:
        async with unit_of_work(session):
            due = (
                await session.execute(
                    select(Voucher.member_id)
                    .where(Voucher.status == "open", Voucher.expires_at <= now)
                    .order_by(Voucher.id)
                    .limit(batch)
                )
            ).scalars()
            members = sorted(set(due))
            if not members:
                return expired
            live = await lock_members(session, members)
            rows = (
                (
                    await session.execute(
                        select(Voucher)
                        .where(
                            Voucher.member_id.in_(members),
                            Voucher.status == "open",
                            Voucher.expires_at <= now,
                        )
                        .order_by(Voucher.id)
                        .with_for_update()
                    )
                )
                .scalars()
                .all()
            )
            done = await _close(session, rows, status="expired", now=now)
            for voucher in done:
                if voucher.member_id in live:
                    await owe(
                        session,
                        Owed(
                            "voucher_expired",
                            {
                                "reward": voucher.reward,
                                "points": voucher.points_returned,
                                "code": voucher.code,
                            },
                            member_id=voucher.member_id,
                        ),
                    )
            expired += done


async def _close(
    session: AsyncSession, rows: Sequence[Voucher], *, status: str, now: datetime
) -> list[ClosedVoucher]:
    """Close locked open vouchers without claiming them: their units back to the stock,
    their holds voided (the wallets locked first), their rows marked."""
    if not rows:
        return []
    catalogue = [v for v in rows if v.source == VoucherSource.CATALOGUE]
    await _give_back_stock(session, (v.reward for v in catalogue))
    await _lock_wallets(session, (v.member_id for v in catalogue))
    voided = set(
        await void_holds(session, keys=[v.hold_key for v in catalogue if v.hold_key], now=now)
    )
    await session.execute(
        update(Voucher)
        .where(Voucher.id.in_([v.id for v in rows]))
        .values(status=status, resolved_at=now)
    )
    return [
        ClosedVoucher(v.id, v.code, v.member_id, v.reward, v.points if v.hold_key in voided else 0)
        for v in rows
    ]


async def void_member_vouchers(session: AsyncSession, member_id: int, *, now: datetime) -> int:
    """Void a leaving member's open vouchers, in the deletion's transaction (the member row
    is locked already): their holds are voided, their units go back to the stock. Returns
    how many."""
    rows = list(
        (
            await session.execute(
                select(Voucher)
                .where(Voucher.member_id == member_id, Voucher.status == "open")
                .order_by(Voucher.id)
                .with_for_update()
            )
        )
        .scalars()
        .all()
    )
    return len(await _close(session, rows, status="voided", now=now))
