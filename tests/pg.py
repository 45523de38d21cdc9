"""Where the tests' PostgreSQL comes from: TEST_DATABASE_URL if set, else the server on
127.0.0.1:5432 if it answers, else an embedded one started for this run."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from db.embedded import start_embedded

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def server_url() -> tuple[str, Any]:
    """A URL of a maintenance database on a server we may create databases on."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        return url, None
    if asyncio.run(_answers(LOCAL)):
        return LOCAL, None
    return start_embedded(Path(tempfile.mkdtemp(prefix="loyalty-pg-")), cleanup="delete")


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def create_database(admin_url: str) -> str:
    name = f"loyalty_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
