"""Flood control: a token bucket per user. One person sending hundreds of updates would
otherwise take the database connections and the event loop from everyone else; their
excess updates are dropped here, before any database work, after one "slow down" notice."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.types import TelegramObject, Update, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.i18n import pick_language
from bot.middlewares import Handler

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    warned: bool = False


def _payment(event: TelegramObject) -> bool:
    """Telegram's payment updates are never dropped: a pre-checkout query unanswered fails
    the payment, and a successful payment is money taken that must buy what it paid for."""
    return isinstance(event, Update) and (
        event.pre_checkout_query is not None
        or (event.message is not None and event.message.successful_payment is not None)
    )


class ThrottleMiddleware(BaseMiddleware):
    """`burst` updates at once, refilled at `rate` per second. In memory, per instance:
    several instances each allow this much, which still bounds a flood."""

    def __init__(
        self,
        i18n: I18n,
        *,
        rate: float = 1.0,
        burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.i18n = i18n
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.buckets: dict[int, _Bucket] = {}

    def allow(self, user_id: int) -> tuple[bool, bool]:
        """(let the update through, tell the user to slow down now)."""
        now = self.clock()
        bucket = self.buckets.get(user_id)
        if bucket is None:
            if len(self.buckets) > 10_000:
                self._forget_idle(now)
            bucket = self.buckets[user_id] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            if bucket.tokens >= self.burst / 2:
                bucket.warned = False  # calm again: a later flood gets a notice again
            return True, False
        warn = not bucket.warned
        bucket.warned = True
        return False, warn

    def _forget_idle(self, now: float) -> None:
        # A full bucket holds nothing worth keeping.
        full = [
            user_id
            for user_id, b in self.buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for user_id in full:
            del self.buckets[user_id]

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or _payment(event):
            return await handler(event, data)
        allowed, warn = self.allow(user.id)
        if allowed:
            return await handler(event, data)
        if warn and isinstance(event, Update):
            await self._warn(event, data["bot"], user)
        return None

    async def _warn(self, update: Update, bot: Bot, user: User) -> None:
        with self.i18n.context(), self.i18n.use_locale(pick_language(user.language_code)):
            text = _("You are sending too fast. I will ignore your messages for a few seconds.")
        log.info("user %s is flooding; their updates are dropped for now", user.id)
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(text, show_alert=True)
            elif update.message is not None and update.message.chat.type == "private":
                await bot.send_message(update.message.chat.id, text)
        except Exception:  # a notice that cannot be sent is no reason to fail the update
            log.warning("could not send the flood notice to %s", user.id, exc_info=True)
