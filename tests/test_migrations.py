"""Every migration goes up, down and up again, and the models match the migrated schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from db.ledger.models import Base
from db.migrate import alembic_config, downgrade, upgrade
from tests import pg


@pytest.fixture
async def empty_engine(admin_url: str) -> AsyncIterator[AsyncEngine]:
    url = await pg.create_database(admin_url)
    engine = create_engine(url, pool_size=2)
    yield engine
    await engine.dispose()
    await pg.drop_database(admin_url, url)


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return {r[0] for r in rows} - {"alembic_version"}


async def test_stairway(empty_engine: AsyncEngine) -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(reversed(list(script.walk_revisions())))
    assert revisions[0].revision == "0001_ledger"
    for rev in revisions:
        await upgrade(empty_engine, rev.revision)
        await downgrade(empty_engine, rev.down_revision or "base")
        await upgrade(empty_engine, rev.revision)
    assert {"accounts", "transactions", "entries"} <= await _tables(empty_engine)
    await downgrade(empty_engine, "base")
    assert await _tables(empty_engine) == set()
    await upgrade(empty_engine, "head")


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == []
