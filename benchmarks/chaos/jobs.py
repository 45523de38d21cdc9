"""The daily jobs on an accelerated clock. The bot schedules them at local hours of real
days (bot/workers/jobs.py) and has no clock to speed up, so the soak runs the same job
functions itself, each under the same advisory lock as the instances' schedulers
(`exclusively`), with a `now` that runs ahead: every round is `days_per_round` days later,
so a soak lives through a year of nights (points expiring, tiers recalculated, stamps
lapsing, reminders, personal offers). Vouchers expire on a clock at most VOUCHER_DAYS
ahead, so the cashiers can still claim those that live longer (the shorter ones expire).
Redemption requests are closed with the real time,
as the bot does every 10 s, and, at the end, with a time past their life (the requests
nobody answered)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from benchmarks.chaos.history import History
from bot.runtime import Runtime
from bot.workers import jobs
from bot.workers.notify import Notifier
from db.engine import passing_failure

log = logging.getLogger(__name__)
VOUCHER_DAYS = 20  # the vouchers' expiry runs at most this far ahead of the real clock


class Nights:
    def __init__(
        self,
        runtime: Runtime,
        notifier: Notifier,
        history: History,
        *,
        days_per_round: float,
        every: float,
    ) -> None:
        self.runtime = runtime
        self.notifier = notifier
        self.history = history
        self.days_per_round = days_per_round
        self.every = every
        self.rounds = 0
        self.failures: list[str] = []  # not a passing database failure: a bug

    def table(self, now: datetime) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
        runtime = self.runtime
        vouchers_now = min(now, datetime.now(UTC) + timedelta(days=VOUCHER_DAYS))
        return [
            ("expire", lambda: jobs.expire_points(runtime, now)),
            ("stamps", lambda: jobs.lapse_stamps(runtime, now)),
            ("tiers", lambda: jobs.recalc_tiers(runtime, now)),
            ("remind", lambda: jobs.remind_expiring(runtime, self.notifier, now)),
            ("stamp_reminders", lambda: jobs.remind_lapsing_stamps(runtime, now)),
            ("offers", lambda: jobs.tell_offers(runtime, now)),
            ("club", lambda: jobs.tell_club(runtime, now)),
            ("gifts", lambda: jobs.return_gifts(runtime, now)),
            ("vouchers", lambda: jobs.expire_vouchers(runtime, vouchers_now)),
        ]

    async def night(self) -> None:
        self.rounds += 1
        now = datetime.now(UTC) + timedelta(days=self.rounds * self.days_per_round)
        for name, job in self.table(now):
            await self.run(name, job, now)
        self.history.operation("jobs", "night", now.date().isoformat())

    async def run(self, name: str, job: Callable[[], Awaitable[object]], now: datetime) -> None:
        try:
            await jobs.exclusively(self.runtime, name, job)
        except Exception as exc:
            if passing_failure(exc):
                self.history.note("jobs", f"{name} failed", f"{type(exc).__name__} (injected)")
            else:
                log.exception("job %s failed", name)
                self.failures.append(f"job {name} at {now.date()}: {exc!r}")
                self.history.note("jobs", f"{name} failed", repr(exc)[:200])

    async def close_requests(self, ahead: timedelta = timedelta()) -> None:
        now = datetime.now(UTC) + ahead
        await self.run("requests", lambda: jobs.close_expired_requests(self.runtime, now), now)

    async def loop(self, running: Callable[[], bool]) -> None:
        while running():
            await asyncio.sleep(self.every)
            await self.night()
