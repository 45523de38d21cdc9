from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.rules.program import Program, load_program, parse_program
from db.usecases.partners import sync_partners
from tests import pg
from tests.invariants import assert_ledger_invariants
from tests.redisserver import redis_url

ROOT = Path(__file__).resolve().parent.parent

# A small program with round numbers, so expected points are easy to compute by hand.
TEST_PROGRAM: dict[str, Any] = {
    "program": {
        "name": "Test Bonus",
        "currency": "PLN",
        "point_value": "0.01",
        "welcome_points": 50,
        "expire_days": 365,
        "max_redeem_percent": 50,
        "max_purchase": "5000.00",
        "card_ttl_seconds": 600,
    },
    "referral": {"inviter_points": 200, "invitee_points": 100, "qualifying_purchase": "20.00"},
    "tiers": [
        {"name": "Bronze", "min_spend": "0", "multiplier": "1.0"},
        {"name": "Silver", "min_spend": "1000.00", "multiplier": "1.5"},
        {"name": "Gold", "min_spend": "3000.00", "multiplier": "2.0"},
    ],
    "partners": [
        {"slug": "coffee", "name": "Bean There Coffee", "earn_percent": "5"},
        {"slug": "books", "name": "Chapter One Books", "earn_percent": "3"},
        {"slug": "gym", "name": "Iron Temple Gym", "earn_percent": "2"},
        {"slug": "bakery", "name": "Golden Crust Bakery", "earn_percent": "4"},
    ],
}

TABLES = (
    "notices, outbox, campaigns, audit_log, redemption_requests, staff_invites, point_lots,"
    " entries, transactions, accounts,"
    " staff, members, partners, rewarded_identities, rewards, club_unclaimed,"
    " api_idempotency, api_keys"
)


def make_program(**sections: dict[str, Any]) -> Program:
    data = {key: value for key, value in TEST_PROGRAM.items()}
    for name, overrides in sections.items():
        data[name] = {**data[name], **overrides}
    return parse_program(data)


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    url, server = pg.server_url()
    yield url
    if server is not None:
        server.cleanup()


@pytest.fixture(scope="session")
def redis() -> Iterator[str]:
    """A Redis URL (tests/redisserver.py says which server)."""
    url, server = redis_url()
    yield url
    if server is not None:
        server.shutdown()


@pytest.fixture(scope="session")
async def database_url(admin_url: str) -> AsyncIterator[str]:
    url = await pg.create_database(admin_url)
    yield url
    await pg.drop_database(admin_url, url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=30)
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def program() -> Program:
    return make_program()


@pytest.fixture
def demo_program() -> Program:
    return load_program(ROOT / "program.toml")


async def reset_ledger(engine: AsyncEngine, program: Program) -> None:
    """Empty every table and set up the program's accounts and partners, as after start."""
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        await conn.execute(text("INSERT INTO accounts (kind) VALUES ('program'), ('breakage')"))
    async with session_factory(engine)() as session:
        await sync_partners(session, program)


@pytest.fixture
async def sessions(
    engine: AsyncEngine, program: Program
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A clean ledger with the test program's partners; the invariants are checked after."""
    await reset_ledger(engine, program)
    factory = session_factory(engine)
    yield factory
    async with factory() as session:
        await assert_ledger_invariants(session)


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


@pytest.fixture
async def harness(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], program: Program
) -> AsyncIterator[Any]:
    from tests.botharness import OWNER_ID, running_bot

    async with running_bot(engine, sessions, program, admin_ids=[OWNER_ID]) as running:
        yield running
