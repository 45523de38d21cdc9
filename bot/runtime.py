"""What the bot, the jobs and the CLI share at start: the program, the database, migrations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from db.embedded import start_embedded
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.rules.program import Program, ProgramError, load_program
from db.usecases.partners import sync_partners

log = logging.getLogger(__name__)


class StartupError(Exception):
    """Start-up cannot go on; the message says what to fix."""


@dataclass
class Runtime:
    settings: Settings
    program: Program
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    embedded: Any = None

    async def close(self) -> None:
        await self.engine.dispose()
        if self.embedded is not None:
            self.embedded.cleanup()  # stops the embedded server if we were its last user


def _where(url: str) -> str:
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    return f"{host}:{parsed.port or 5432}/{parsed.database or ''}"


async def open_runtime(settings: Settings) -> Runtime:
    try:
        program = load_program(settings.program_file)
    except ProgramError as exc:
        raise StartupError(str(exc)) from None
    url, embedded = settings.database_url, None
    if not url:
        url, embedded = start_embedded(settings.data_dir)
    try:
        engine = create_engine(url)
    except ValueError as exc:
        raise StartupError(f"DATABASE_URL: {exc}") from None
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        await upgrade(engine)
    except (OSError, DBAPIError) as exc:
        await engine.dispose()
        raise StartupError(f"cannot use the database at {_where(url)}: {exc}") from None
    sessions = session_factory(engine)
    async with sessions() as session:
        await sync_partners(session, program)
    log.info("program %r: %d partners", program.program.name, len(program.partners))
    return Runtime(settings, program, engine, sessions, embedded)
