"""What keeps an update cheap, checked without timing anything (benchmarks/updates.py
measures): no filter hops to a worker thread, the answers' parsers stay built, and the
identity read costs one round trip, shared by the updates handled together, yet leaves use
cases their transaction."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.dispatcher.event.handler import CallableObject, FilterObject
from aiogram.methods import Response
from aiogram.types import Message, Update, User
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.middlewares.identity import IdentityMiddleware
from db.engine import create_engine
from db.queries.identity import SenderBatch
from db.rules.program import Program
from db.usecases.members import register_member
from tests.botharness import BotHarness
from tests.fakegram import text_of


def filters_of(router: Router) -> Iterator[tuple[str, FilterObject]]:
    for name, observer in router.observers.items():
        for handler in observer.handlers:
            for flt in handler.filters or []:
                yield from nested(f"{router.name}.{name}", flt)
        for flt in observer._handler.filters or []:
            yield from nested(f"{router.name}.{name} (router)", flt)
    for sub in router.sub_routers:
        yield from filters_of(sub)


def nested(where: str, flt: CallableObject) -> Iterator[tuple[str, FilterObject]]:
    yield where, flt  # type: ignore[misc]
    inner: Any = getattr(flt.callback, "targets", None) or [getattr(flt.callback, "target", None)]
    for target in inner:
        if isinstance(target, CallableObject):
            yield from nested(where, target)


async def test_no_filter_runs_in_a_worker_thread(harness: BotHarness) -> None:
    # aiogram runs a filter that is not a coroutine (`F.…`, a bare `State`) through
    # asyncio.to_thread on every update that reaches it.
    dp: Dispatcher = harness.dp
    sync = [f"{where}: {flt.callback!r}" for where, flt in filters_of(dp) if not flt.awaitable]
    assert sync == []


async def test_answer_parsers_outlive_the_garbage_collector(harness: BotHarness) -> None:
    ann = harness.user("Ann")
    await ann.send("/help")
    assert text_of(await ann.wait_message())
    # pydantic keeps `Response[Message]` only weakly; rebuilt, it costs milliseconds.
    kept = weakref.ref(Response[Message])
    gc.collect()
    assert kept() is not None


async def test_identity_read_leaves_a_transaction_to_the_use_case(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    seen: dict[str, Any] = {}

    async def handler(event: Any, data: dict[str, Any]) -> None:
        session: AsyncSession = data["session"]
        first = (await session.execute(text("SELECT txid_current()"))).scalar_one()
        second = (await session.execute(text("SELECT txid_current()"))).scalar_one()
        seen["one transaction"] = first == second
        await session.rollback()

    async with sessions() as session:
        user = User(id=123_456_789, is_bot=False, first_name="Ann")
        await IdentityMiddleware(sessions.kw["bind"])(
            handler,
            Update(update_id=1),
            {"session": session, "event_from_user": user},
        )
    assert seen == {"one transaction": True}


async def test_updates_handled_together_share_one_identity_query(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], program: Program
) -> None:
    async with sessions() as session:
        for telegram_id in (101, 102):
            await register_member(session, program, telegram_id=telegram_id, first_name="M")
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    batch = SenderBatch(engine)
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        together = await asyncio.gather(*(batch.identify(t) for t in (101, 102, 103, 101)))
        assert len(statements) == 1
        alone = await batch.identify(102)
        assert len(statements) == 2
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    members = [s.member.telegram_id if s.member else None for s in [*together, alone]]
    assert members == [101, 102, None, 101, 102]
    assert [s.wallet is not None for s in together] == [True, True, False, True]
    assert together[0].member and together[0].member.balance == 50  # the welcome gift

    # A waiter that gives up leaves the others their answer.
    waiters = [asyncio.create_task(batch.identify(t)) for t in (101, 102)]
    await asyncio.sleep(0)  # both have asked
    waiters[0].cancel()
    sender = await waiters[1]
    assert sender.member and sender.member.telegram_id == 102
    assert waiters[0].cancelled()


async def test_a_failed_identity_query_fails_every_update_that_shares_it(
    database_url: str,
) -> None:
    missing = make_url(database_url).set(database="no_such_database")
    engine = create_engine(missing.render_as_string(hide_password=False))
    try:
        batch = SenderBatch(engine)
        asking = asyncio.gather(batch.identify(101), batch.identify(102), return_exceptions=True)
        answers = await asyncio.wait_for(asking, 30)  # not left waiting
    finally:
        await engine.dispose()
    assert [isinstance(a, Exception) for a in answers] == [True, True]
