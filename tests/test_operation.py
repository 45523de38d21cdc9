"""The running bot's housekeeping: a quiet log and daily jobs at the program's local hours."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent

from bot.__main__ import configure_logging
from bot.workers.jobs import start_scheduler
from tests.botharness import BotHarness
from tests.conftest import make_program

WARSAW = make_program(program={"timezone": "Europe/Warsaw"})


@pytest.fixture
def quiet_scheduler_log() -> object:
    logger = logging.getLogger("apscheduler")
    level = logger.level
    yield logger
    logger.setLevel(level)


@pytest.mark.parametrize("program", [WARSAW])
async def test_routine_job_runs_are_not_logged_at_info(
    harness: BotHarness, caplog: pytest.LogCaptureFixture, quiet_scheduler_log: object
) -> None:
    configure_logging("INFO")
    caplog.set_level(logging.INFO)
    ran = asyncio.Event()

    def executed(event: JobExecutionEvent) -> None:
        if event.job_id == "requests":
            ran.set()

    scheduler = start_scheduler(harness.runtime, harness.notifier)
    try:
        scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
        job = scheduler.get_job("requests")
        assert job is not None
        job.modify(next_run_time=datetime.now(UTC))  # the 10-second job, now
        await asyncio.wait_for(ran.wait(), 10)
        # The daily jobs run at night and in the morning of the program's own clock.
        warsaw = ZoneInfo("Europe/Warsaw")
        daily_jobs = (("expire", 2, 0), ("tiers", 2, 30), ("api_keys", 3, 5), ("remind", 10, 0))
        for job_id, hour, minute in daily_jobs:
            daily = scheduler.get_job(job_id)
            assert daily is not None
            local = daily.next_run_time.astimezone(warsaw)
            assert (local.hour, local.minute) == (hour, minute), job_id
    finally:
        scheduler.shutdown(wait=False)
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")]
    assert chatter == []
