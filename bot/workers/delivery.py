"""The campaign delivery worker: works the outbox at a global rate. The outbox holds the
campaigns' messages and the personal offers (db/usecases/personal_offers.py), which are
rendered here in each member's language and carry the same "stop offers" button.

- A token bucket keeps to `rate` messages per second (Telegram allows about 30/s in bulk).
- A 429 pauses everyone for its `retry_after`, and the message goes back to the queue.
- A 403 (the member blocked the bot) marks the member unreachable; nobody retries them.
- Other errors are retried with exponential backoff, up to `max_attempts`.
- Only one worker runs across instances (a PostgreSQL advisory lock held while it runs).
- The marketer's progress message is edited every couple of seconds, with an ETA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.callbacks import OffersCb
from bot.metrics import DELIVERIES
from bot.views import offers
from bot.views.notices import campaign_results
from db.rules.program import Program
from db.usecases.campaigns import (
    CampaignInfo,
    OutboxItem,
    Outcome,
    claim,
    get_campaign,
    pending_count,
    progress,
    settle,
    start_campaign,
)
from db.usecases.outbox import due_count as notices_due

log = logging.getLogger(__name__)
LOCK_KEY = zlib.crc32(b"loyalty-job:delivery")


async def send_campaign_message(
    bot: Bot, chat_id: int, campaign: CampaignInfo, stop_label: str | None = None
) -> None:
    """The campaign as members see it (also the marketer's preview). Members' messages carry
    a "stop offers" button (`stop_label`, in their language) that turns offers off."""
    rows = []
    if campaign.button_text and campaign.button_url:
        rows.append([InlineKeyboardButton(text=campaign.button_text, url=campaign.button_url)])
    if stop_label:
        rows += stop_markup(stop_label).inline_keyboard
    markup = InlineKeyboardMarkup(inline_keyboard=rows) if rows else None
    if campaign.photo_file_id:
        await bot.send_photo(
            chat_id, campaign.photo_file_id, caption=campaign.text or None, reply_markup=markup
        )
    else:
        await bot.send_message(chat_id, campaign.text, reply_markup=markup)


def stop_markup(stop_label: str) -> InlineKeyboardMarkup:
    """The "stop offers" button under every campaign message and personal offer."""
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=stop_label, callback_data=OffersCb().pack())]]
    )


class TokenBucket:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        # Half a second's worth: enough to make up the time spent settling a batch, little
        # enough that latency jitter does not push a second's sends past Telegram's limit.
        self.capacity = max(1.0, rate / 2)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self.paused_until = 0.0
        self.lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Nobody sends for `seconds`; afterwards the bucket refills from empty, so a 429 is
        not followed by a full burst (and the next 429)."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)
        self.tokens = 0
        self.updated = self.paused_until

    async def wait_unpaused(self) -> None:
        """Wait out a 429 pause without taking a token (replies owed to people are not held
        to the bulk rate, but nobody sends while Telegram says to wait)."""
        while True:
            left = self.paused_until - self.clock()
            if left <= 0:
                return
            await asyncio.sleep(left)

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = self.clock()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class DeliveryWorker:
    def __init__(
        self,
        bot: Bot,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        i18n: I18n,
        *,
        rate: float = 25.0,
        concurrency: int = 8,
        max_attempts: int = 5,
        stale_after: timedelta = timedelta(seconds=60),
        idle_poll: float = 1.0,
        progress_every: float = 2.0,
        bucket: TokenBucket | None = None,
        program: Program | None = None,
    ) -> None:
        self.bot = bot
        self.engine = engine
        self.sessions = sessions
        self.i18n = i18n
        self.bucket = bucket or TokenBucket(rate)
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.stale_after = stale_after
        self.idle_poll = idle_poll
        self.progress_every = progress_every
        self.program = program  # personal offers are rendered from it
        self._campaigns: dict[int, CampaignInfo] = {}
        self._started: dict[int, tuple[float, int]] = {}
        self._dirty: set[int] = set()
        self._last_report = 0.0

    async def run_forever(self) -> None:
        """Hold the delivery lock (waiting while another instance has it) and deliver."""
        while True:
            try:
                # The lock is the connection's: autocommit, never an open transaction.
                async with self.engine.connect() as plain:
                    conn = await plain.execution_options(isolation_level="AUTOCOMMIT")
                    got = await conn.scalar(
                        text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}
                    )
                    if not got:
                        await asyncio.sleep(5 * self.idle_poll)
                        continue
                    try:
                        while True:
                            if not await self.run_batch():
                                await self.report_all()
                                await asyncio.sleep(self.idle_poll)
                    finally:
                        # A failed unlock (the database is gone) must not replace a
                        # cancellation: the lock ends with the connection anyway.
                        with contextlib.suppress(Exception):
                            await conn.execute(
                                text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY}
                            )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery worker failed; restarting in a few seconds")
                await asyncio.sleep(5 * self.idle_poll)

    async def run_until_idle(self, *, now: Callable[[], datetime] | None = None) -> None:
        """Deliver until nothing is left to send, waiting out retries (tests, one-off runs)."""
        while True:
            if await self.run_batch(now=now):
                continue
            await self.report_all(now=now() if now else None)
            async with self.sessions() as session:
                if not await pending_count(session):
                    return
            await asyncio.sleep(0.05)

    async def run_batch(self, *, now: Callable[[], datetime] | None = None) -> int:
        clock = now or (lambda: datetime.now(UTC))
        async with self.sessions() as session:
            # What postings owe people goes before offers (see bot/workers/outbox.py).
            if await notices_due(session, clock()):
                return 0
            items = await claim(
                session, limit=self.concurrency * 4, now=clock(), stale_after=self.stale_after
            )
        if not items:
            return 0
        gate = asyncio.Semaphore(self.concurrency)

        async def one(item: OutboxItem) -> Outcome:
            async with gate:
                await self.bucket.take()
                return await self.deliver(item, clock)

        outcomes = await asyncio.gather(*(one(item) for item in items))
        async with self.sessions() as session:
            await settle(session, outcomes, now=clock())
        self._dirty.update(item.campaign_id for item in items if item.campaign_id is not None)
        await self.report_all(now=clock(), force=False)
        return len(items)

    async def report_all(self, *, now: datetime | None = None, force: bool = True) -> None:
        """Report on the campaigns touched since the last report: every `progress_every`
        seconds while sending (counting is not free), and always once the queue is idle, so
        a finished campaign is marked done."""
        tick = time.monotonic()
        if not force and tick - self._last_report < self.progress_every:
            return
        self._last_report = tick
        dirty, self._dirty = self._dirty, set()
        for campaign_id in sorted(dirty):
            await self.report(campaign_id, now=now)

    async def _campaign(self, campaign_id: int) -> CampaignInfo:
        if campaign_id not in self._campaigns:
            async with self.sessions() as session:
                info = await get_campaign(session, campaign_id)
            assert info is not None
            self._campaigns[campaign_id] = info
        return self._campaigns[campaign_id]

    async def deliver(self, item: OutboxItem, clock: Callable[[], datetime]) -> Outcome:
        outcome, error, retry_at = "sent", None, None
        offer = None
        with self.i18n.context(), self.i18n.use_locale(item.language):
            stop_label = _("🔕 Stop offers")
            if item.promotion is not None:
                offer = self._personal_offer(item, clock())
                if offer is None:  # gone from the program, or ended: nothing to tell
                    DELIVERIES.labels("campaign_skipped").inc()
                    return Outcome(item, "skipped")
        try:
            if offer is not None:
                await self.bot.send_message(
                    item.telegram_id, offer, reply_markup=stop_markup(stop_label)
                )
            else:
                assert item.campaign_id is not None
                campaign = await self._campaign(item.campaign_id)
                await self.send(campaign, item.telegram_id, stop_label)
        except TelegramRetryAfter as exc:
            # Telegram says slow down: everybody waits, and this message goes back in line.
            self.bucket.pause(exc.retry_after)
            outcome, retry_at = "retry", clock() + timedelta(seconds=exc.retry_after)
        except TelegramForbiddenError as exc:
            outcome, error = "blocked", str(exc)[:300]
        except TelegramBadRequest as exc:
            outcome, error = "failed", str(exc)[:300]  # it would fail the same way again
        except (TimeoutError, TelegramAPIError, OSError) as exc:
            error = str(exc)[:300] or type(exc).__name__
            if item.attempts >= self.max_attempts:
                outcome = "failed"
            else:
                outcome = "retry"
                retry_at = clock() + timedelta(seconds=min(2**item.attempts, 300))
        DELIVERIES.labels("campaign_" + outcome).inc()
        return Outcome(item, outcome, error, retry_at)

    def _personal_offer(self, item: OutboxItem, now: datetime) -> str | None:
        """A personal promotion's message in the member's language (the caller set it)."""
        if self.program is None:
            raise RuntimeError("a personal offer to send, but no program to render it from")
        today = now.astimezone(self.program.program.zone).date()
        params = {**(item.params or {}), "promotion": item.promotion}
        return offers.personal_offer(self.program, params, today)

    async def send(self, campaign: CampaignInfo, chat_id: int, stop_label: str) -> None:
        await send_campaign_message(self.bot, chat_id, campaign, stop_label)

    async def report(self, campaign_id: int, *, now: datetime | None = None) -> None:
        """Update the campaign's figures (marking it done when nothing is left to send) and
        edit the marketer's progress message."""
        async with self.sessions() as session:
            state = await progress(session, campaign_id, now=now)
        tick = time.monotonic()
        info = await self._campaign(campaign_id)
        if state.finished:
            self._campaigns.pop(campaign_id, None)
        if info.progress_chat_id is None or info.progress_message_id is None:
            return
        done = state.sent + state.failed + state.blocked + state.skipped
        started, done_then = self._started.setdefault(campaign_id, (tick, done))
        rate = (done - done_then) / (tick - started) if tick > started else 0
        left = state.audience - done
        eta = f"~{int(left / rate)} s" if rate > 0 and left else "—"
        with self.i18n.context(), self.i18n.use_locale(info.language):
            head = (
                _("✅ Campaign #{id} finished.").format(id=info.id)
                if state.finished
                else _("📣 Campaign #{id} is being sent.").format(id=info.id)
            )
            body = campaign_results(asdict(state))
            eta_line = "" if state.finished else "\n" + _("Time left: {eta}").format(eta=eta)
        try:
            await self.bot.edit_message_text(
                text=f"{head}\n{body}{eta_line}",
                chat_id=info.progress_chat_id,
                message_id=info.progress_message_id,
            )
        except TelegramAPIError:
            log.info("progress of campaign %s not shown", campaign_id, exc_info=True)


async def start_due_campaigns(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> list[int]:
    """Scheduled campaigns whose time has come go into the outbox (the schedule lives in
    PostgreSQL, so a restart or another instance keeps it)."""
    from db.usecases.campaigns import due_campaigns

    started = []
    async with sessions() as session:
        for campaign_id in await due_campaigns(session, now):
            if await start_campaign(session, campaign_id, now=now) is not None:
                started.append(campaign_id)
    return started
