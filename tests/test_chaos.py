"""The chaos soak (benchmarks/chaos) in short, twice: with a fixed seed, and with a seed
derived from the commit under test (printed, with the command that replays it), so every
commit meets a workload and a fault plan of its own. A failing seed found anywhere becomes a
regression test: add it to SEEDS."""

from __future__ import annotations

import os
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from benchmarks.chaos import checks
from benchmarks.chaos.actors import SaleAttempt, World
from benchmarks.chaos.api import ApiAnswer, ApiSale
from benchmarks.chaos.history import History
from benchmarks.chaos.mail import Mailroom
from benchmarks.chaos.soak import Options, run
from bot.i18n import build_i18n
from db.rules.program import Program
from db.usecases.members import register_member
from db.usecases.purchases import Sale, record_sale
from tests.conftest import ROOT
from tests.fakegram import FakeTelegramServer

MINUTES = 0.5  # of load; then the drain, the checks and the processes' stop
SEEDS = [17]


def commit_seed() -> int:
    """CHAOS_SEED if set; else the commit's first 8 hex digits as a number; else 0 (not a
    git checkout)."""
    if seed := os.environ.get("CHAOS_SEED"):
        return int(seed)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 0
    return int(sha[:8], 16)


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_short_soak_with_a_fixed_seed(admin_url: str, seed: int) -> None:
    report = await run(Options(seed=seed, minutes=MINUTES), admin_url)
    assert not report.violations, report.text()
    assert report.history.operations["sale (earn)"] and report.history.faults["SIGKILL"]
    assert report.history.operations["sale (api)"]


async def test_a_short_soak_seeded_by_the_commit(
    admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = commit_seed()
    options = Options(seed=seed, minutes=MINUTES, instances=2)
    with capsys.disabled():
        print(f"\nchaos soak seeded by the commit: seed {seed}")
    report = await run(options, admin_url)
    assert not report.violations, report.text()


async def test_the_checks_find_what_they_look_for(
    sessions: async_sessionmaker[AsyncSession], program: Program, tmp_path: Path
) -> None:
    """The soak's checks fail where they should: a sale posted twice, one acknowledged and
    never posted, one told "nothing was changed" after it was posted, a posting nobody made;
    an API sale's key that does not replay what was acknowledged; an error in a log that no
    injected fault explains."""
    async with sessions() as session:
        member = await register_member(session, program, telegram_id=70_001)
    for amount, key in (("10", "a"), ("10", "b"), ("12", "c"), ("13", "d")):
        async with sessions() as session:
            sale = Sale(member_id=member.id, partner="coffee", amount=Decimal(amount), key=key)
            await record_sale(session, program, sale)
    engine = sessions.kw["bind"]
    async with FakeTelegramServer() as server:
        world = World(1, server, Mailroom(server), History(), b"", engine, build_i18n(), "PLN")
        now = time.time()
        for k, amount in enumerate(("10.00", "11.00", "12.00")):
            world.sales.append(
                SaleAttempt(k, "c", 1, "coffee", "m", 2, Decimal(amount), "earn", None, now)
            )
        world.sales[1].acked, world.sales[1].how = now, "receipt"
        world.sales[2].told_nothing.append(now + 1)
        found = await checks.sales(engine, world)
    assert [v.what.split(":")[0] for v in found.violations] == [
        "sale #0 (10.00) posted 2 times",
        "sale #1 (11.00) acknowledged (receipt) but not posted",
        "sale #2 (12.00)",
        "transaction 5 (13.00) matches no sale made",  # 1 is the welcome gift
    ], found.violations

    # An API sale acknowledged 201 whose key answers otherwise after the faults; another
    # whose replay at once is not the stored answer.
    body = {"document": "API-1", "amount": "20.00", "points_earned": 100}
    first = ApiAnswer(201, body)
    told = SaleAttempt(1, "till", 0, "books", "m", 2, Decimal("20.00"), "api", "API-1", now)
    told.acked = now
    world.api_sales = [
        ApiSale(told, "k1", {}, first, [first], settled=ApiAnswer(409, {"code": "x"})),
        ApiSale(told, "k2", {}, first, [first, ApiAnswer(201, body)], settled=first),
    ]
    replays = checks.api_replays(world)
    assert [v.what.split(":")[0] for v in replays.violations] == [
        "api sale #1 acknowledged (201), its key replayed after the faults as 409 {'code'",
        "api sale #1",
    ], replays.violations

    log = tmp_path / "bot0.log"
    log.write_text(
        "2026-01-01 10:00:00,000 ERROR bot.handlers.everyone.errors: update 1 failed\n"
        "Traceback (most recent call last):\n"
        "aiogram.exceptions.TelegramRetryAfter: Telegram server says - Too Many Requests\n"
        "2026-01-01 10:00:01,000 ERROR bot.handlers.everyone.errors: update 2 failed\n"
        "Traceback (most recent call last):\n"
        "KeyError: 'amount'\n"
    )
    logged, injected = checks.log_errors([log])
    assert injected == 1 and len(logged.violations) == 1
    assert "KeyError: 'amount'" in logged.violations[0].what
