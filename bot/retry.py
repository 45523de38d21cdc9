"""Retrying the Bot API's passing failures, so a reply is not lost to a hiccup: polling has
already moved past the update by the time its reply is sent."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramNetworkError, TelegramServerError
from aiogram.methods import GetUpdates, Response, TelegramMethod

log = logging.getLogger(__name__)

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
