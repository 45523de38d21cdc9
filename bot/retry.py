"""Retrying passing failures: the Bot API's, so a reply is not lost to a hiccup (polling has
already moved past the update by the time its reply is sent), and the database's, for the
few writes that must not be lost to one (a payment Telegram has already taken)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramServerError
from aiogram.methods import AnswerCallbackQuery, GetUpdates, Response, TelegramMethod

from db.engine import passing_failure

log = logging.getLogger(__name__)
T = TypeVar("T")

# aiogram parses each answer with `Response[method.__returning__]`, a pydantic generic that
# pydantic caches only weakly: each time the garbage collector frees one, the next answer
# builds its schema again (milliseconds, on the busiest path). One kept per method type.
_RESPONSE_TYPES: dict[type, type] = {}


def keep_response_type(method: TelegramMethod[Any]) -> None:
    kind = type(method)
    if kind not in _RESPONSE_TYPES:
        _RESPONSE_TYPES[kind] = Response[method.__returning__]  # type: ignore[name-defined]


class RetryMiddleware(BaseRequestMiddleware):
    """Retry 5xx answers and network errors a few times, with backoff.

    A timed-out send may have arrived anyway, so a retry can rarely repeat a message; that
    is the better failure for a loyalty bot than a member never hearing of their points.
    429 is not retried here: its callers decide (the campaign worker pauses everyone).
    getUpdates is left alone: the polling loop has its own backoff."""

    def __init__(self, attempts: int = 4, base_delay: float = 0.5) -> None:
        self.attempts = attempts
        self.base_delay = base_delay

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Any:
        keep_response_type(method)
        if isinstance(method, GetUpdates):
            return await make_request(bot, method)
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except (TelegramServerError, TelegramNetworkError):
                if attempt == self.attempts:
                    raise
                delay = self.base_delay * 2 ** (attempt - 1)
                log.warning("%s failed; retry %d in %.1fs", type(method).__name__, attempt, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


# What Telegram says to an answer of a button press it no longer takes: the press was answered
# already (it came again: its first handling answered it), or too long ago.
_LATE_ANSWER = ("query is too old", "query ID is invalid")


class LateAnswerMiddleware(BaseRequestMiddleware):
    """An answer to a button press that Telegram no longer takes returns False instead of
    failing the handler: the person's client stopped waiting for it, and the work the press
    asked for goes on (a press delivered again after its first handling is answered as a
    repeat by the use cases; an error here would tell them "nothing was changed" about work
    that was done). Callers that have something to say see False and say it in the chat."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Any:
        if not isinstance(method, AnswerCallbackQuery):
            return await make_request(bot, method)
        try:
            return await make_request(bot, method)
        except TelegramBadRequest as exc:
            if not any(phrase in exc.message for phrase in _LATE_ANSWER):
                raise
            log.info("press %s answered too late: %s", method.callback_query_id, exc.message)
            return False


# A database write retried on a passing failure: tried this many times in all, waiting
# DB_BASE_DELAY, then twice that, … between tries (0.5 + 1 + 2 s: a server restart or a
# dropped connection, not an outage).
DB_ATTEMPTS = 4
DB_BASE_DELAY = 0.5


async def retry_database(
    work: Callable[[], Awaitable[T]], what: str, *, attempts: int | None = None
) -> T:
    """Run `work` (a use case, in its own unit of work: a failed try wrote nothing) again
    while the database fails in a way that may pass (db/engine.py passing_failure), with
    backoff; its last failure, or any other, is raised."""
    attempts = attempts or DB_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except Exception as exc:
            if attempt == attempts or not passing_failure(exc):
                raise
            delay = DB_BASE_DELAY * 2 ** (attempt - 1)
            log.warning("%s failed (%s); retry %d in %.1fs", what, exc, attempt, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
