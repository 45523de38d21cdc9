"""Anything anyone may send: random callback data and random arguments to every command the
bot registers, from a member, a cashier, a manager, a marketer and an owner, through the
fake Bot API. Nothing may end in an unhandled exception (the errors router logs those as
"update … failed"); refusals are domain errors or plain answers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiogram import Dispatcher, Router
from aiogram.filters import Command
from aiogram.fsm.storage.base import StorageKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.rules.program import Program
from db.usecases.members import find_by_telegram
from tests.botharness import OWNER_ID, BotHarness, running_bot
from tests.fakegram import UserClient
from tests.till import hire, join

ROLES = ("member", "cashier", "manager", "marketer", "owner")
DIALOG = "<dialog>"  # replaced by the user's open sale dialog, if any


def registered_commands(dp: Dispatcher) -> list[str]:
    """Every command some message handler of the dispatcher is registered for."""
    found: set[str] = set()

    def walk(router: Router) -> None:
        for handler in router.message.handlers:
            for flt in handler.filters or []:
                if isinstance(flt.callback, Command):
                    found.update(c for c in flt.callback.commands if isinstance(c, str))
        for sub in router.sub_routers:
            walk(sub)

    walk(dp)
    return sorted(found)


def _fits(data: str) -> bool:
    return 0 < len(data.encode()) <= 64


words = st.sampled_from(
    [
        "accept", "refresh", "export", "marketing", "delete", "confirm", "cancel", "earn",
        "redeem", "max", "tier", "partner", "language", "inactive", "since", "menu", "reset",
        "next", "now", "schedule", "drop", "1", "0", "true", "false", "en", "pl", "coffee",
        "Gold", DIALOG, "", "\x00", "99999999999999999999", "-1", "²",
    ]
)  # fmt: skip
field = st.one_of(
    words,
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.text(max_size=20),
)


def _shapes() -> list[tuple[str, int]]:
    """(prefix, number of fields) of every callback data factory the bot uses."""
    from aiogram.filters.callback_data import CallbackData

    from bot import callbacks

    return [
        (cls.__prefix__, len(cls.model_fields))
        for cls in vars(callbacks).values()
        if isinstance(cls, type) and issubclass(cls, CallbackData) and cls is not CallbackData
    ]


shaped = st.sampled_from(_shapes()).flatmap(
    lambda shape: st.lists(field, min_size=shape[1], max_size=shape[1]).map(
        lambda fields: ":".join([shape[0], *fields])
    )
)
callback_data = st.one_of(
    shaped,
    shaped,
    st.text(min_size=1, max_size=64),
    st.binary(min_size=1, max_size=64).map(lambda b: b.decode("latin-1")),
).filter(_fits)

argument = st.one_of(
    words,
    st.sampled_from(
        [
            "9999-12", "0001-01", "2026-13", "2026-01-01..9999-12-31", "month", "coffee cashier",
            "marketer", "1 all reason", "99999999999999999999 all x", "1 5.00 x", "#1 1e3 x",
            "4242 4242 4242 +10 fix", "100000000003 +99999999999999999999 x", "c_abc", "si_x",
            "r_123", "12.50 #A\x001", "Tom\x00",
        ]
    ),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.text(max_size=40),
)  # fmt: skip


@pytest.fixture
async def roles(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], program: Program
) -> Any:
    # Flood control is tested on its own; here it would drop most of the examples.
    async with running_bot(
        engine, sessions, program, admin_ids=[OWNER_ID], flood_rate=1000.0, flood_burst=1000
    ) as harness:
        people = {
            "member": harness.user("Ann"),
            "cashier": harness.user("Carl"),
            "manager": harness.user("Mia"),
            "marketer": harness.user("Mark"),
            "owner": harness.owner(),
        }
        await join(people["member"])
        await hire(harness, people["cashier"], "coffee", "cashier")
        await hire(harness, people["manager"], "coffee", "manager")
        await hire(harness, people["marketer"], "", "marketer")
        # Open dialogs, so forged buttons can name them: a sale panel, a campaign draft.
        async with sessions() as s:
            member = await find_by_telegram(s, people["member"].user_id)
        assert member is not None
        await people["cashier"].send(member.card_number)
        await people["cashier"].wait_message("Points can pay up to")
        await people["marketer"].send("/campaign")
        await people["marketer"].wait_message("New campaign")
        yield harness, people, Handled(harness.dp)


class Handled:
    """Wraps the dispatcher's feed_update: which updates were handled to the end (their
    error handlers included)."""

    def __init__(self, dp: Dispatcher) -> None:
        self.done: dict[int, asyncio.Event] = {}
        original = dp.feed_update

        async def feed_update(bot: Any, update: Any, **kwargs: Any) -> Any:
            try:
                return await original(bot, update, **kwargs)
            finally:
                self.event(update.update_id).set()

        dp.feed_update = feed_update  # type: ignore[method-assign]

    def event(self, update_id: int) -> asyncio.Event:
        return self.done.setdefault(update_id, asyncio.Event())

    async def wait(self, update_id: int) -> None:
        await asyncio.wait_for(self.event(update_id).wait(), 10)


async def _dialog(harness: BotHarness, user: UserClient) -> str:
    key = StorageKey(bot_id=harness.bot.id, chat_id=user.user_id, user_id=user.user_id)
    return str((await harness.dp.storage.get_data(key)).get("dialog", "none"))


def _example(role: str, kind: str, data: str = "x", command: int | str = 0, args: str = "") -> Any:
    return example(role=role, kind=kind, data=data, command=command, args=args)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    role=st.sampled_from(ROLES),
    kind=st.sampled_from(["callback", "callback", "command", "command", "text"]),
    data=callback_data,
    command=st.integers(min_value=0),
    args=argument,
)
# What probing found: each of these ended in "Something went wrong".
@_example("member", "callback", "hist:99999999999999999999")
@_example("cashier", "callback", f"till:max:{DIALOG}")
@_example("marketer", "callback", "seg:since:99999999")
@_example("marketer", "callback", "camp:now:" + "9" * 30)
@_example("owner", "callback", "x" * 64)
@_example("owner", "command", command="stats", args="9999-12")
@_example("manager", "command", command="refund", args="99999999999999999999 all x")
@_example("owner", "command", command="staff_revoke", args="²")
@_example("cashier", "text", args="12.50 #A\x001")
@_example("member", "command", command="start", args="r_\x00")
async def test_nothing_sent_ends_in_an_unhandled_exception(
    roles: Any,
    caplog: pytest.LogCaptureFixture,
    role: str,
    kind: str,
    data: str,
    command: int | str,
    args: str,
) -> None:
    harness, people, handled = roles
    user: UserClient = people[role]
    commands = registered_commands(harness.dp)
    assert {"start", "balance", "stats", "campaign", "refund", "adjust"} <= set(commands)
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        if kind == "callback":
            data = data.replace(DIALOG, await _dialog(harness, user))
            data = data.encode()[:64].decode(errors="ignore") or "x"
            user.server.open_callback_query(user.user, user.messages[-1], data)
        elif kind == "command":
            name = command if isinstance(command, str) else commands[command % len(commands)]
            await user.send(f"/{name} {args}".rstrip())
        else:
            await user.send(args or ".")
        await handled.wait(harness.server.pushed_updates[-1]["update_id"])
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]
