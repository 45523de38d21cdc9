"""Faults: the Bot API failing, and PostgreSQL restarting while the bot handles traffic."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.embedded import start_embedded
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.rules.program import Program
from db.usecases.members import get_member
from db.usecases.purchases import Sale, record_sale
from tests.botharness import BotHarness, running_bot
from tests.conftest import reset_ledger
from tests.fakegram import ApiError, RecordedRequest, text_of
from tests.invariants import assert_ledger_invariants
from tests.till import join

Sessions = async_sessionmaker[AsyncSession]


async def test_bot_api_failures_lose_no_update(harness: BotHarness) -> None:
    ann = harness.user("Ann")
    harness.server.fail_next("getUpdates", code=502, count=2)
    await ann.send("/start")  # polled after the failed polls
    await ann.wait_message("one card for", timeout=15)
    harness.server.fail_next("sendMessage", code=500, count=2)
    await ann.send("/partners")
    await ann.wait_message("Our partners", timeout=15)  # the reply was retried
    failed = [r for r in harness.server.calls("sendMessage") if r.status == 500]
    assert len(failed) == 2


async def test_database_restart_while_serving(program: Program) -> None:
    url, server = start_embedded(Path(tempfile.mkdtemp(prefix="loyalty-fault-")), cleanup="delete")
    engine = create_engine(url, pool_size=5)
    try:
        await upgrade(engine)
        await reset_ledger(engine, program)
        sessions = session_factory(engine)
        async with running_bot(engine, sessions, program) as harness:
            ann = harness.user("Ann")
            await join(ann)
            await ann.send("/balance")
            await ann.wait_message("Tier")

            server._stop()  # PostgreSQL goes away under the bot
            await ann.send("/balance")
            assert "try again" in text_of(await ann.wait_message("try again", timeout=20))
            async with sessions() as s:  # a sale during the outage is refused whole
                with pytest.raises((OSError, DBAPIError)):
                    await record_sale(
                        s,
                        program,
                        Sale(member_id=1, partner="coffee", amount=Decimal(10), key="x"),
                    )

            server.start()  # and comes back
            for _attempt in range(100):
                await ann.send("/balance")
                reply = text_of(await ann.wait_message(timeout=20))
                if "Tier" in reply:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the bot did not recover")
            async with sessions() as s:
                await assert_ledger_invariants(s)
                assert (await get_member(s, 1)).balance == 50  # nothing half-posted
    finally:
        await engine.dispose()
        server.cleanup()


async def test_a_connection_lost_after_the_answer_is_no_error_of_the_update(
    harness: BotHarness, engine: AsyncEngine, database_url: str
) -> None:
    """The database connection of an update dies after its handler has answered (here: while
    /history's answer is on its way). Closing the update's session then cannot roll back
    what its reads left open, which the server has undone already: the update was handled,
    and nobody is told that something went wrong and nothing was changed (found by the
    chaos soak, benchmarks/chaos, under pg_terminate_backend)."""
    ann = harness.user("Ann")
    await join(ann)

    async def cut_connections(record: RecordedRequest) -> ApiError | None:
        if record.is_method("sendMessage") and "Transactions" in str(record.params.get("text")):
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await conn.close()
        return None

    def counted(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"type": "message"}) or 0.0

    handled, failed = counted("loyalty_updates_total"), counted("loyalty_update_errors_total")
    harness.server.fault = cut_connections
    try:
        await ann.send("/history")
        await ann.wait_message("Transactions")
        await harness.server.wait_for(lambda: counted("loyalty_updates_total") > handled)
    finally:
        harness.server.fault = None
        await engine.dispose()  # the connections cut are not handed out again
    assert counted("loyalty_update_errors_total") == failed
    assert not [m for m in ann.messages if "went wrong" in text_of(m)]


async def test_a_statement_alone_returns_an_overflow_connection_without_error(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """More statements alone at once than the pool keeps: each overflow connection is closed
    when it comes back, with no error logged and none left open (the return used to close
    it outside SQLAlchemy's greenlet: "Exception closing connection … MissingGreenlet")."""
    from db.engine import fetch_row_alone

    engine = create_engine(database_url, pool_size=1)  # 1 kept and 1 overflow
    sessions = session_factory(engine)

    async def one() -> int:
        async with sessions() as s:
            row = await fetch_row_alone(s, "SELECT 1 AS one FROM pg_sleep(0.05)")
            return int(row["one"])

    try:
        with caplog.at_level("ERROR", logger="sqlalchemy.pool"):
            assert await asyncio.gather(*(one() for _ in range(6))) == [1] * 6
        assert not [r for r in caplog.records if r.name.startswith("sqlalchemy.pool")]
        assert (engine.pool.checkedout(), engine.pool.overflow()) == (0, 0)  # type: ignore[attr-defined]
        assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
