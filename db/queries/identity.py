"""Who sent an update: the member, the figures /balance shows of their wallet and the staff
record of a Telegram user, in one query outside any transaction. Every update needs who sent
it before any handler runs; /balance, the most used command, then needs no query of its own,
and an update that only reads starts no transaction (the session's first statement does).
`SenderBatch` identifies the senders of updates handled at the same time in one query."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, and_, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from db.ledger.models import Account, AccountKind, ClubMembership, Member, Partner, Staff
from db.queries.stamps import held_by_card, held_column
from db.queries.wallet import WalletFigures, figures_columns
from db.rules.program import TIER_WINDOW
from db.usecases.members import MemberInfo
from db.usecases.staff import StaffInfo


@dataclass(frozen=True, slots=True)
class Sender:
    member: MemberInfo | None  # None: not joined
    staff: StaffInfo | None  # None: not active staff
    wallet: WalletFigures | None  # the member's


_m, _a = Member.__table__.c, Account.__table__.c
_s, _p = Staff.__table__.c, Partner.__table__.c
_c = ClubMembership.__table__.c
_ids = cast(bindparam("telegram_ids"), ARRAY(BigInteger))
_who = select(func.unnest(_ids).label("tg")).subquery()
_MEMBER = (
    "id",
    "telegram_id",
    "card_number",
    "first_name",
    "language",
    "tier",
    "marketing_consent",
    "referred_by_id",
    "wallet_id",
    "balance",
    "joined_at",
    "held",
)
_IDENTIFY = select(
    _who.c.tg,
    _m.id,
    _m.telegram_id,
    _m.card_number,
    _m.first_name,
    _m.language,
    _m.tier,
    _m.marketing_consent,
    _m.referred_by_id,
    _a.id.label("wallet_id"),
    _a.balance,
    _m.joined_at,
    _a.held,
    *figures_columns(_m.id),
    held_column(_m.id),
    _c.ends_at.label("club_ends_at"),
    _c.renews.label("club_renews"),
    _c.subscription_until.label("club_subscription_until"),
    _s.id.label("staff_id"),
    _s.role,
    _s.partner_id,
    _p.slug,
    _p.name,
).select_from(
    _who.outerjoin(Member, _m.telegram_id == _who.c.tg)
    .outerjoin(Account, and_(_a.member_id == _m.id, _a.kind == AccountKind.MEMBER))
    .outerjoin(ClubMembership, _c.member_id == _m.id)
    .outerjoin(Staff, and_(_s.telegram_id == _who.c.tg, _s.revoked_at.is_(None)))
    .outerjoin(Partner, _p.id == _s.partner_id)
)


async def identify_all(
    engine: AsyncEngine,
    telegram_ids: Iterable[int],
    now: datetime | None = None,
    timezone: str = "UTC",
) -> dict[int, Sender]:
    """The senders with these Telegram ids, by id (every id is there); `timezone`: the
    program's, whose days the points expiring on the soonest day are counted in."""
    since = (now or datetime.now(UTC)) - TIER_WINDOW
    params = {"telegram_ids": list(telegram_ids), "since": since, "tz": timezone}
    # Autocommit: a read alone needs no transaction, so no BEGIN and ROLLBACK round trips.
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        rows = (await connection.execute(_IDENTIFY, params)).mappings().all()
    found = {}
    for row in rows:
        member = wallet = None
        if row["id"] is not None and row["wallet_id"] is not None:
            member = MemberInfo(**{name: row[name] for name in _MEMBER})
            wallet = WalletFigures(
                row["spend"],
                row["soonest_expiry"],
                int(row["expiring"]),
                held_by_card(row["stamps"]),
                row["club_ends_at"],
                bool(row["club_renews"]),
                row["club_subscription_until"],
            )
        staff = None
        if row["staff_id"] is not None:
            partner = (row["partner_id"], row["slug"], row["name"])
            staff = StaffInfo(row["staff_id"], row["tg"], row["role"], *partner)
        found[row["tg"]] = Sender(member, staff, wallet)
    return found


class SenderBatch:
    """Identifies the senders of updates handled at the same time in one query: those that
    ask in the same turn of the event loop (a polled batch of updates starts together) share
    it. A round trip costs the bot far more than a row does: at capacity, this halves its
    CPU per /balance (benchmarks/updates.py). Each sender is read as committed when the
    query runs, as a statement of the update's own READ COMMITTED transaction would."""

    def __init__(self, engine: AsyncEngine, timezone: str = "UTC") -> None:
        self.engine = engine
        self.timezone = timezone
        self._waiting: dict[int, list[asyncio.Future[Sender]]] = {}
        self._queries: set[asyncio.Task[None]] = set()  # running: kept from the collector

    async def identify(self, telegram_id: int) -> Sender:
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._query)
        future: asyncio.Future[Sender] = loop.create_future()
        self._waiting.setdefault(telegram_id, []).append(future)
        return await future

    def _query(self) -> None:
        waiting, self._waiting = self._waiting, {}
        task = asyncio.create_task(self._answer(waiting))
        self._queries.add(task)
        task.add_done_callback(self._queries.discard)

    async def _answer(self, waiting: dict[int, list[asyncio.Future[Sender]]]) -> None:
        futures = [future for futures in waiting.values() for future in futures]
        try:
            found = await identify_all(self.engine, waiting, timezone=self.timezone)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:
            for future in futures:
                if not future.done():  # a waiter cancelled meanwhile is done
                    future.set_exception(exc)
            return
        for telegram_id, waiters in waiting.items():
            for future in waiters:
                if not future.done():
                    future.set_result(found[telegram_id])
