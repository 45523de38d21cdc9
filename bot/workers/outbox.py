"""The notice worker: delivers the messages owed by committed work (db/usecases/outbox.py).

Every instance runs one; they share the work through `FOR UPDATE SKIP LOCKED`. A use case
that owes messages wakes the local worker as it commits, so people hear of their postings at
once; otherwise the worker looks every `idle_poll` seconds (for other instances' work and
retries). They are answers owed to people, not bulk mail: they are not held to the campaign
rate (DELIVERY_RATE), but they share its 429 pauses, and campaigns wait while any are due.

- 429: everybody waits `retry_after` (the shared bucket) and the message goes back in line.
- 5xx and network errors: retried with backoff, up to `max_attempts`.
- 403: the member blocked the bot; they are marked unreachable and not written to again.
- A message to a member who was deleted or is unreachable is not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.metrics import DELIVERIES
from bot.views.notices import RENDERERS
from bot.workers.delivery import TokenBucket
from db.ledger.writer import unit_of_work
from db.queries.wallet import mark_unreachable
from db.rules.program import Program
from db.usecases.outbox import RETRYABLE_ATTEMPTS, Delivered, Due, claim, open_count, settle
from db.usecases.till import request_delivered, request_undeliverable

log = logging.getLogger(__name__)

# What else changes when a notice of a kind is delivered, or cannot be.
AfterSent = Callable[[AsyncSession, Due, int], Awaitable[None]]
Undeliverable = Callable[[AsyncSession, Due], Awaitable[None]]


async def _request_sent(session: AsyncSession, due: Due, message_id: int) -> None:
    await request_delivered(session, str(due.params["request"]), message_id)


async def _request_undeliverable(session: AsyncSession, due: Due) -> None:
    await request_undeliverable(session, str(due.params["request"]))


AFTER_SENT: dict[str, AfterSent] = {"redeem_request": _request_sent}
UNDELIVERABLE: dict[str, Undeliverable] = {"redeem_request": _request_undeliverable}


class NoticeWorker:
    def __init__(
        self,
        bot: Bot,
        sessions: async_sessionmaker[AsyncSession],
        i18n: I18n,
        program: Program,
        *,
        bucket: TokenBucket | None = None,
        concurrency: int = 8,
        max_attempts: int = RETRYABLE_ATTEMPTS,
        stale_after: timedelta = timedelta(seconds=60),
        idle_poll: float = 1.0,
    ) -> None:
        self.bot = bot
        self.sessions = sessions
        self.i18n = i18n
        self.program = program
        self.bucket = bucket or TokenBucket(25)
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.stale_after = stale_after
        self.idle_poll = idle_poll
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Something was owed and committed: deliver it now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run_forever(), name="notice-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_forever(self) -> None:
        failures = 0
        while True:
            try:
                if await self.run_batch():
                    failures = 0
                    continue
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database away, say: logged once per outage, then retried more slowly.
                if not failures:
                    log.exception("notice delivery failed; retrying until it works")
                failures += 1
                await asyncio.sleep(min(self.idle_poll * 2**failures, 30.0))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle_poll)
            self._wake.clear()

    async def run_until_idle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Deliver until nothing is open (tests, one-off runs), waiting out retries."""
        async with asyncio.timeout(timeout):
            while True:
                if await self.run_batch():
                    continue
                async with self.sessions() as session:
                    if not await open_count(session):
                        return
                await asyncio.sleep(0.05)

    async def run_batch(self, now: datetime | None = None) -> int:
        clock = now or datetime.now(UTC)
        self._wake.clear()
        async with self.sessions() as session:
            batch = await claim(
                session, limit=self.concurrency * 4, now=clock, stale_after=self.stale_after
            )
        if not batch:
            return 0
        gate = asyncio.Semaphore(self.concurrency)

        async def one(due: Due) -> Delivered:
            async with gate:
                return await self.deliver(due)

        outcomes = await asyncio.gather(*(one(due) for due in batch))
        await self._settle(outcomes)
        return len(batch)

    async def deliver(self, due: Due) -> Delivered:
        now = datetime.now(UTC)
        if due.chat_id is None:
            return Delivered(
                due, "blocked" if due.why_not == "blocked" else "failed", error=due.why_not
            )
        try:
            render = RENDERERS[due.kind]
            with self.i18n.context(), self.i18n.use_locale(due.language):
                rendered = render(self.program, due.params)
        except Exception as exc:  # a bug in a renderer must not stop the others
            log.exception("notice %s (%s) could not be rendered", due.id, due.kind)
            return Delivered(due, "failed", error=repr(exc))
        await self.bucket.wait_unpaused()
        try:
            if due.edit_message_id is not None:
                sent = await self.bot.edit_message_text(
                    text=rendered.text,
                    chat_id=due.chat_id,
                    message_id=due.edit_message_id,
                    reply_markup=rendered.markup,
                )
                message_id = sent.message_id if isinstance(sent, Message) else None
            else:
                message = await self.bot.send_message(
                    due.chat_id, rendered.text, reply_markup=rendered.markup
                )
                message_id = message.message_id
        except TelegramRetryAfter as exc:
            self.bucket.pause(exc.retry_after)
            DELIVERIES.labels("retry").inc()
            return Delivered(
                due, "retry", error=str(exc), retry_at=now + timedelta(seconds=exc.retry_after)
            )
        except TelegramForbiddenError as exc:
            DELIVERIES.labels("blocked").inc()
            return Delivered(due, "blocked", error=str(exc))
        except TelegramBadRequest as exc:
            # An edit of a message that already reads so is done; anything else would fail
            # the same way again.
            if "message is not modified" in str(exc):
                return Delivered(due, "sent", message_id=due.edit_message_id)
            log.warning("notice %s (%s) refused: %s", due.id, due.kind, exc)
            DELIVERIES.labels("failed").inc()
            return Delivered(due, "failed", error=str(exc))
        except (TimeoutError, OSError, TelegramAPIError) as exc:
            error = str(exc) or type(exc).__name__
            if due.attempts >= self.max_attempts:
                DELIVERIES.labels("failed").inc()
                return Delivered(due, "failed", error=error)
            retry_at = now + timedelta(seconds=min(2**due.attempts, 300))
            return Delivered(due, "retry", error=error, retry_at=retry_at)
        DELIVERIES.labels("sent").inc()
        return Delivered(due, "sent", message_id=message_id)

    async def _settle(self, outcomes: list[Delivered]) -> None:
        """Record a batch's outcomes and what follows from them, in one transaction: a
        member who blocked the bot is marked, a request that could not reach its member is
        closed (which owes the cashier a message), a delivered request remembers its
        message."""
        follow_up = False
        async with self.sessions() as session, unit_of_work(session):
            await settle(session, outcomes, now=datetime.now(UTC))
            for outcome in outcomes:
                due = outcome.due
                if outcome.status == "blocked" and due.chat_id is not None:
                    await mark_unreachable(session, due.chat_id)
                if outcome.status == "sent" and outcome.message_id and due.kind in AFTER_SENT:
                    await AFTER_SENT[due.kind](session, due, outcome.message_id)
                if outcome.status in ("failed", "blocked") and due.kind in UNDELIVERABLE:
                    await UNDELIVERABLE[due.kind](session, due)
                    follow_up = True
        if follow_up:
            self.kick()
