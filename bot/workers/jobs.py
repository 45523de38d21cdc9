"""Daily jobs: points expiry, expiry reminders, tier recalculation, stamp cards' lapses and
their reminders, personal offers, the club's "ending soon" and "ended" notices, the partner
API's Idempotency-Keys past their days; hourly:
gifts nobody accepted go back to their givers; every few minutes: expired vouchers and
redemption requests.

Several bot instances may share one database; each job runs under a PostgreSQL advisory
lock, so only one instance does it at a time. Each job is also safe to run twice: expiry
is keyed by lot, reminders are marked per lot, personal offers per member and occasion,
and the club's notices per membership's end."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import text

from bot.runtime import Runtime
from bot.workers.delivery import start_due_campaigns
from bot.workers.notify import Notifier
from db.rules.program import TIERS_NIGHTLY
from db.usecases.api_idempotency import prune_keys
from db.usecases.club_lapses import tell_club_lapses
from db.usecases.expiry import expire_due
from db.usecases.gifts import return_expired_gifts
from db.usecases.outbox import prune
from db.usecases.personal_offers import tell_personal_offers
from db.usecases.reminders import due_reminders, mark_reminded
from db.usecases.stamp_lapses import lapse_due, remind_lapsing
from db.usecases.tiers import recalculate_tiers
from db.usecases.till import expire_requests
from db.usecases.vouchers import expire_vouchers as expire_due_vouchers

log = logging.getLogger(__name__)
T = TypeVar("T")
REMIND_DAYS_AHEAD = 14


async def exclusively(runtime: Runtime, name: str, job: Callable[[], Awaitable[T]]) -> T | None:
    """Run `job` unless another instance holds the job's advisory lock (then skip it)."""
    key = zlib.crc32(f"loyalty-job:{name}".encode())
    # The lock is the connection's (not a transaction's): autocommit, so the connection
    # that holds it never sits in an open transaction while the job runs.
    async with runtime.engine.connect() as plain:
        conn = await plain.execution_options(isolation_level="AUTOCOMMIT")
        if not await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}):
            log.info("job %s is running elsewhere; skipped", name)
            return None
        try:
            return await job()
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


async def expire_points(runtime: Runtime, now: datetime | None = None) -> int:
    """Expire what is due; each expiry owes the member its message (db/usecases/outbox.py)."""
    async with runtime.sessions() as session:
        expired = await expire_due(session, now=now)
    return sum(lot.points for lot in expired)


async def remind_expiring(
    runtime: Runtime, notifier: Notifier, now: datetime | None = None
) -> int:
    now = now or datetime.now(UTC)
    async with runtime.sessions() as session:
        reminders = await due_reminders(session, now, REMIND_DAYS_AHEAD)
        sent = 0
        for reminder in reminders:
            if await notifier.expiring(reminder):
                sent += 1
            # Marked even when undeliverable: a member who blocked us is not retried daily.
            await mark_reminded(session, reminder.lot_ids, now)
    return sent


async def recalc_tiers(runtime: Runtime, now: datetime | None = None) -> int:
    async with runtime.sessions() as session:
        return await recalculate_tiers(session, runtime.program, now)


async def prune_notices(runtime: Runtime, now: datetime | None = None) -> int:
    async with runtime.sessions() as session:
        return await prune(session, now or datetime.now(UTC))


async def prune_api_keys(runtime: Runtime, now: datetime | None = None) -> int:
    """The partner API's Idempotency-Keys older than they are kept (7 days): removed."""
    async with runtime.sessions() as session:
        return await prune_keys(session, now or datetime.now(UTC))


async def close_expired_requests(runtime: Runtime, now: datetime | None = None) -> int:
    """Redemption requests nobody answered in time: close them (which owes both sides
    their message)."""
    async with runtime.sessions() as session:
        expired = await expire_requests(session, runtime.program, now)
    return len(expired)


async def return_gifts(runtime: Runtime, now: datetime | None = None) -> int:
    """Gifts nobody accepted in time go back to their givers (each is told, by the outbox)."""
    async with runtime.sessions() as session:
        returned = await return_expired_gifts(session, now=now)
    return len(returned)


async def expire_vouchers(runtime: Runtime, now: datetime | None = None) -> int:
    """Vouchers past their expiry: expired, their held points the members' again (each
    member is owed the news in the same transaction)."""
    async with runtime.sessions() as session:
        expired = await expire_due_vouchers(session, runtime.program, now=now or datetime.now(UTC))
    return len(expired)


async def lapse_stamps(runtime: Runtime, now: datetime | None = None) -> int:
    """Stamp cards whose last stamp is expire_days old: their stamps lapse (each lapse owes
    the member its message). Returns how many cards lapsed."""
    async with runtime.sessions() as session:
        return len(await lapse_due(session, runtime.program, now or datetime.now(UTC)))


async def remind_lapsing_stamps(runtime: Runtime, now: datetime | None = None) -> int:
    """Tell members, through the outbox, that a card's stamps lapse in a few days (once per
    card). Returns how many were told."""
    async with runtime.sessions() as session:
        return await remind_lapsing(session, runtime.program, now or datetime.now(UTC))


async def tell_offers(runtime: Runtime, now: datetime | None = None) -> int:
    """Members who newly qualify for a personal promotion are told once, through the
    campaign outbox (db/usecases/personal_offers.py). Returns how many were told."""
    async with runtime.sessions() as session:
        return await tell_personal_offers(session, runtime.program, now or datetime.now(UTC))


async def tell_club(runtime: Runtime, now: datetime | None = None) -> int:
    """Members whose club membership ends within a few days (and will not renew) or has
    ended are told once per end, through the outbox (db/usecases/club_lapses.py). Returns
    how many were told."""
    if runtime.program.club is None:
        return 0
    async with runtime.sessions() as session:
        told = await tell_club_lapses(session, now or datetime.now(UTC))
    return told.ending + told.ended


def start_scheduler(runtime: Runtime, notifier: Notifier) -> AsyncIOScheduler:
    # Daily jobs at the program's local hours (02:00 is a quiet night there, not in UTC).
    zone = runtime.program.program.zone
    scheduler = AsyncIOScheduler(timezone=zone)
    daily = {"misfire_grace_time": 6 * 3600, "coalesce": True, "replace_existing": True}
    # (name, local hour, minute, job): each runs on one instance at a time (`exclusively`).
    at: list[tuple[str, int, int, Callable[[], Awaitable[object]]]] = [
        ("expire", 2, 0, lambda: expire_points(runtime)),
        ("stamps", 2, 15, lambda: lapse_stamps(runtime)),
        ("tiers", TIERS_NIGHTLY.hour, TIERS_NIGHTLY.minute, lambda: recalc_tiers(runtime)),
        ("notices", 3, 0, lambda: prune_notices(runtime)),
        ("api_keys", 3, 5, lambda: prune_api_keys(runtime)),
        ("remind", 10, 0, lambda: remind_expiring(runtime, notifier)),
        ("stamp_reminders", 10, 5, lambda: remind_lapsing_stamps(runtime)),
        ("offers", 10, 10, lambda: tell_offers(runtime)),
        ("club", 10, 15, lambda: tell_club(runtime)),
    ]
    for name, hour, minute, job in at:
        scheduler.add_job(
            exclusively,
            CronTrigger(hour=hour, minute=minute, timezone=zone),
            id=name,
            args=[runtime, name, job],
            **daily,
        )
    # Jobs that come back every few moments; points held by expired vouchers come back within
    # minutes, not the next night.
    every: list[tuple[str, IntervalTrigger, Callable[[], Awaitable[object]]]] = [
        ("gifts", IntervalTrigger(hours=1), lambda: return_gifts(runtime)),
        (
            "campaigns",
            IntervalTrigger(seconds=15),
            lambda: start_due_campaigns(runtime.sessions, datetime.now(UTC)),
        ),
        ("vouchers", IntervalTrigger(minutes=10), lambda: expire_vouchers(runtime)),
    ]
    for name, trigger, job in every:
        scheduler.add_job(
            exclusively,
            trigger,
            id=name,
            args=[runtime, name, job],
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )
    scheduler.add_job(
        close_expired_requests,
        IntervalTrigger(seconds=10),
        id="requests",
        args=[runtime],
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )
    scheduler.start()
    return scheduler
