"""The ledger under concurrent load: no overdraft, one posting per key, no deadlocks."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import Hold, RedemptionRequest, Transaction
from db.rules import errors
from db.rules.program import Program
from db.usecases.members import get_member, register_member
from db.usecases.purchases import Refund, Sale, record_refund, record_sale
from db.usecases.staff import accept_invite, create_invite
from db.usecases.till import close_request, confirm_redemption, expire_requests, request_redemption

D = Decimal
Sessions = async_sessionmaker[AsyncSession]


async def test_50_concurrent_redemptions_never_overdraw(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        m = (await register_member(s, program, telegram_id=1)).id
        await record_sale(
            s, program, Sale(member_id=m, partner="coffee", amount=D("200"), key="fund")
        )
        balance = (await get_member(s, m)).balance
    assert balance == 1050

    async def attempt(i: int) -> str:
        async with sessions() as s:
            try:
                await record_sale(
                    s,
                    program,
                    Sale(
                        member_id=m,
                        partner="books",
                        amount=D("2.00"),
                        redeem_points=100,
                        key=f"redeem-{i}",
                    ),
                )
            except errors.NotEnoughPoints:
                return "refused"
            return "ok"

    outcomes = Counter(await asyncio.gather(*(attempt(i) for i in range(50))))
    # Each success takes 100 points and earns 3 on the 1.00 paid in money.
    affordable, left = 0, balance
    while left >= 100:
        left, affordable = left - 100 + 3, affordable + 1
    assert outcomes == {"ok": affordable, "refused": 50 - affordable}
    async with sessions() as s:
        assert (await get_member(s, m)).balance == left


async def test_1000_replays_of_one_earn_post_once(sessions: Sessions, program: Program) -> None:
    async with sessions() as s:
        m = (await register_member(s, program, telegram_id=1)).id
    gate = asyncio.Semaphore(25)

    async def replay() -> tuple[int, bool]:
        async with gate, sessions() as s:
            r = await record_sale(
                s, program, Sale(member_id=m, partner="coffee", amount=D("10"), key="once")
            )
            return r.transaction_id, r.replayed

    results = await asyncio.gather(*(replay() for _ in range(1000)))
    assert len({tx for tx, _ in results}) == 1
    assert sum(1 for _, replayed in results if not replayed) == 1
    async with sessions() as s:
        posted = await s.scalar(select(func.count()).where(Transaction.idempotency_key == "once"))
        assert posted == 1
        assert (await get_member(s, m)).balance == 50 + 50


async def test_mixed_traffic_on_shared_accounts_does_not_deadlock(
    sessions: Sessions, program: Program
) -> None:
    """Earnings, redemptions, referral rewards and refunds touching the same wallets and the
    same partner accounts at once: every posting either lands or fails with a domain error."""
    async with sessions() as s:
        a = (await register_member(s, program, telegram_id=1)).id
        b = (await register_member(s, program, telegram_id=2, inviter_id=a)).id
        c = (await register_member(s, program, telegram_id=3, inviter_id=b)).id
        seed = await record_sale(
            s, program, Sale(member_id=a, partner="coffee", amount=D("500"), key="seed")
        )
    rng = random.Random(7)
    members, partners = [a, b, c], ["coffee", "books"]

    async def one(i: int) -> str:
        async with sessions() as s:
            try:
                if i % 10 == 0:
                    await record_refund(
                        s,
                        program,
                        Refund(
                            transaction_id=seed.transaction_id,
                            amount=D("5"),
                            key=f"rev-{i}",
                            reason="partial refund",
                        ),
                    )
                else:
                    await record_sale(
                        s,
                        program,
                        Sale(
                            member_id=rng.choice(members),
                            partner=rng.choice(partners),
                            amount=D("25.00"),
                            redeem_points=rng.choice([0, 0, 300]),
                            key=f"p-{i}",
                        ),
                    )
            except errors.DomainError as exc:
                return exc.code
            return "ok"

    outcomes = Counter(await asyncio.gather(*(one(i) for i in range(120))))
    assert set(outcomes) <= {"ok", "not_enough_points"}
    assert outcomes["ok"] >= 60


async def test_expiry_locks_the_wallets_in_the_mode_the_void_takes(
    sessions: Sessions, program: Program
) -> None:
    """expire_requests locks the wallets before it closes the requests, FOR NO KEY UPDATE:
    the lock voiding a hold takes. A weaker lock (FOR KEY SHARE) would be upgraded by the
    void, and two batches holding it would deadlock."""
    t0 = datetime.now(UTC)
    async with sessions() as s:
        m = (await register_member(s, program, telegram_id=1)).id
        staff = await accept_invite(
            s,
            await create_invite(s, created_by=1, role="cashier", partner_slug="coffee"),
            telegram_id=99,
        )
        await request_redemption(
            s,
            program,
            staff,
            member_id=m,
            amount=D("10"),
            points=10,
            dialog="late",
            staff_chat_id=99,
            now=t0,
        )
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    async with sessions() as s:
        engine = s.bind.sync_engine  # type: ignore[union-attr]
        event.listen(engine, "before_cursor_execute", seen)
        try:
            closed = await expire_requests(s, program, now=t0 + timedelta(minutes=3))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert [r.public_id for r in closed] == ["late"]
    prelock = [q for q in statements if "FROM accounts" in q and " FOR " in q]
    assert prelock and all("FOR NO KEY UPDATE" in q for q in prelock), statements


async def test_a_hold_resolves_once_when_confirm_decline_and_timeout_race(
    sessions: Sessions, program: Program
) -> None:
    """The member taps Confirm and Decline while the request times out: one of the three
    wins, the hold is posted (by the sale) or voided exactly once, and nothing stays held."""
    t0 = datetime.now(UTC)
    async with sessions() as s:
        m = (await register_member(s, program, telegram_id=1)).id  # 50 points
        staff = await accept_invite(
            s,
            await create_invite(s, created_by=1, role="cashier", partner_slug="coffee"),
            telegram_id=99,
        )
    outcomes: Counter[str] = Counter()
    for i in range(12):
        public_id = f"race{i}"
        async with sessions() as s:
            req = await request_redemption(
                s,
                program,
                staff,
                member_id=m,
                amount=D("10"),
                points=10,
                dialog=public_id,
                staff_chat_id=99,
                now=t0,
            )
            assert (await get_member(s, m)).held == 10
            await s.rollback()

        async def confirm(s: AsyncSession, public_id: str = public_id) -> str | None:
            await confirm_redemption(s, program, public_id, 1, now=t0 + timedelta(minutes=1))
            return "confirmed"

        async def decline(s: AsyncSession, public_id: str = public_id) -> str | None:
            await close_request(s, program, public_id, status="declined", telegram_id=1)
            return "declined"

        async def expire(s: AsyncSession) -> str | None:
            closed = await expire_requests(s, program, now=t0 + timedelta(minutes=3))
            return "expired" if closed else None

        async def run(action: Callable[[AsyncSession], Awaitable[str | None]]) -> str | None:
            async with sessions() as s:
                try:
                    return await action(s)
                except errors.RequestClosed:
                    return None

        actions = [confirm, decline, expire]
        random.shuffle(actions)
        won = [r for r in await asyncio.gather(*(run(a) for a in actions)) if r]
        assert len(won) == 1, won
        outcomes[won[0]] += 1
        async with sessions() as s:
            status, tx = (
                await s.execute(
                    select(RedemptionRequest.status, RedemptionRequest.transaction_id).where(
                        RedemptionRequest.public_id == req.public_id
                    )
                )
            ).one()
            hold = (
                await s.execute(select(Hold).where(Hold.key == f"redemption:{public_id}"))
            ).one()[0]
            assert status == won[0]
            assert hold.status == ("posted" if status == "confirmed" else "voided")
            assert hold.transaction_id == tx
            assert (await get_member(s, m)).held == 0
            await s.rollback()
    assert sum(outcomes.values()) == 12, outcomes
