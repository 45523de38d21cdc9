"""What keeps an update cheap, checked without timing anything (benchmarks/updates.py
measures): no filter hops to a worker thread, the answers' parsers stay built, and the
identity read costs one round trip yet leaves use cases their transaction."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.dispatcher.event.handler import CallableObject, FilterObject
from aiogram.methods import Response
from aiogram.types import Message, Update, User
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.middlewares.identity import IdentityMiddleware
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
