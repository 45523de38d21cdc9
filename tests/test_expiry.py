"""The night's expiry run: one member's failure does not stop the others'."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.workers.jobs import expire_points
from db.rules.program import Program
from db.usecases.expiry import expire_due
from db.usecases.members import get_member, register_member
from tests.botharness import BotHarness
from tests.till import join

T0 = datetime(2025, 1, 1, tzinfo=UTC)


async def _set_lot(session: AsyncSession, member_id: int, remaining: int) -> None:
    """Tamper with a member's lot: more points in it than in the wallet makes posting its
    expiry overdraw the wallet, which the database refuses."""
    await session.execute(
        text("UPDATE point_lots SET points = :r, remaining = :r WHERE member_id = :m"),
        {"r": remaining, "m": member_id},
    )
    await session.commit()


async def test_one_failing_member_does_not_stop_the_run(
    session: AsyncSession, program: Program, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [
        (await register_member(session, program, telegram_id=10 + i, now=T0)).id for i in range(3)
    ]
    broken = ids[1]
    await _set_lot(session, broken, 80)
    try:
        with caplog.at_level(logging.ERROR, logger="db.usecases.expiry"):
            expired = await expire_due(session, now=T0 + timedelta(days=366))
        assert sorted((e.member_id, e.points) for e in expired) == [(ids[0], 50), (ids[2], 50)]
        assert [r.getMessage() for r in caplog.records] == [
            f"expiry of lot 2 of member {broken} failed; skipped"
        ]
        assert (await get_member(session, ids[0])).balance == 0
        assert (await get_member(session, ids[2])).balance == 0
    finally:
        await _set_lot(session, broken, 50)  # as it was, for the invariants check
    # Mended, the member's lot expires on the next run.
    again = await expire_due(session, now=T0 + timedelta(days=367))
    assert [(e.member_id, e.points) for e in again] == [(broken, 50)]


async def test_the_job_tells_the_others(
    harness: BotHarness, sessions: async_sessionmaker[AsyncSession]
) -> None:
    ann, bob = harness.user("Ann"), harness.user("Bob")
    await join(ann)
    await join(bob)
    async with sessions() as s:
        bob_id = (
            await s.execute(
                text("SELECT id FROM members WHERE telegram_id = :t"), {"t": bob.user_id}
            )
        ).scalar_one()
        await _set_lot(s, bob_id, 80)
    try:
        total = await expire_points(harness.runtime, now=datetime.now(UTC) + timedelta(days=400))
        assert total == 50
        await ann.wait_message("expired today")
        assert not any("expired today" in str(m.get("text")) for m in bob.messages)
    finally:
        async with sessions() as s:
            await _set_lot(s, bob_id, 50)
