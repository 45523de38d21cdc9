"""Engines and sessions from the ordinary `postgresql://` URLs that hosts and images give."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Connection, TextClause, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.util import greenlet_spawn


def async_url(url: str) -> str:
    """Turn `postgres://…` or `postgresql://…` into the asyncpg form SQLAlchemy wants."""
    parsed = make_url(url)
    if parsed.drivername in (
        "postgres",
        "postgresql",
        "postgresql+psycopg2",
        "postgresql+psycopg",
    ):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername != "postgresql+asyncpg":
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, not {parsed.drivername!r}")
    # libpq's sslmode means nothing to asyncpg; its `ssl` parameter takes the same values.
    query = dict(parsed.query)
    if "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs three round trips per checkout. A connection that died (the
        # server restarted) fails its request once, and SQLAlchemy then drops the whole pool.
        pool_pre_ping=False,
        pool_recycle=1800,
        echo=echo,
    )


class TrackedSession(Session):
    """A session that knows whether it committed a write.

    `info["committed"]` becomes true when a transaction that wrote something (beyond the
    audit log) commits, so the bot's error reporter never says "nothing was changed" about
    committed work; `info["owed"]` when that work owed messages (db/usecases/outbox.py);
    callables in `info["after_commit"]` run after such a commit (the notice worker's
    wake-up)."""


# The ledger writes through its functions, called in a SELECT: those count as writes too
# (a text statement here; db.ledger.writer.post marks its own call).
_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|ledger_post|ledger_sale)\b", re.IGNORECASE)


@event.listens_for(TrackedSession, "do_orm_execute")
def _note_statement(state: ORMExecuteState) -> None:
    statement = state.statement
    if isinstance(statement, TextClause):
        writes = _WRITES.search(statement.text) is not None
    else:
        # The audit log records attempts too (a lookup, a refused action): writing it is
        # not work done for the person.
        table = getattr(statement, "table", None)
        writes = not state.is_select and getattr(table, "name", None) != "audit_log"
    if writes:
        state.session.info["wrote"] = True


@event.listens_for(TrackedSession, "after_flush")
def _note_flush(session: Session, _context: object) -> None:
    session.info["wrote"] = True


@event.listens_for(TrackedSession, "after_commit")
def _committed(session: Session) -> None:
    if session.info.pop("wrote", False):
        session.info["committed"] = True
        if session.info.pop("owing", False):
            session.info["owed"] = True  # messages owed by it are in the outbox
        for hook in session.info.get("after_commit", ()):
            hook()


def note_committed_alone(session: AsyncSession) -> None:
    """The end of a unit of work whose statements were all sent alone (fetch_row_alone:
    each committed by the server), so the session has no transaction to commit: what its
    commit would have noted (the work committed, the messages owed) is noted here, without
    going through SQLAlchemy's commit of nothing."""
    _committed(session.sync_session)


@event.listens_for(TrackedSession, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop("wrote", None)
    session.info.pop("owing", None)


@asynccontextmanager
async def own_session(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """A short session of its own on `session`'s engine, for a read whose transaction-local
    settings (SET LOCAL) must not reach the caller's transaction: closing it ends its
    transaction, and the caller's session is left as it was."""
    async with AsyncSession(session.bind, expire_on_commit=False) as reader:
        yield reader


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: DTOs read before the commit stay usable after it.
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=TrackedSession)


async def fetch_row(session: AsyncSession, sql: str, *args: Any) -> Any:
    """One statement through the DBAPI cursor of the session's connection, inside the
    session's transaction (the driver begins it, as for any statement of the session): for
    the hot path of a use case, whose statement costs more Python through SQLAlchemy's
    execution (its statement cache, result metadata and events) than the rest of the use
    case. `sql` is in the driver's own form, with positional parameters ($1, $2, …); the
    first row is returned (None when there is none), as the driver gives it.

    What the database refuses comes out as from session.execute: SQLAlchemy's DBAPIError
    (IntegrityError for a constraint, …) around the driver's error, and a connection that
    broke is invalidated. The session's statement events do not see it: whoever calls this
    marks the session as having written when the statement writes (session.info["wrote"])."""
    conn = await session.connection()

    def run(sync: Connection) -> Any:
        cursor = sync.connection.cursor()
        try:
            cursor.execute(sql, args)
            return cursor.fetchone()
        except sync.dialect.loaded_dbapi.Error as exc:
            broken = sync.dialect.is_disconnect(exc, sync.connection.dbapi_connection, cursor)
            if broken:
                sync.invalidate(exc)
            error = _ERRORS.get((getattr(exc, "sqlstate", None) or "")[:2], DBAPIError)
            raise error(sql, args, exc, connection_invalidated=broken) from exc
        finally:
            cursor.close()

    return await conn.run_sync(run)


def can_send_alone(session: AsyncSession) -> bool:
    """Whether fetch_row_alone may serve this session: it has no transaction under way (so
    nothing it did is waiting for a commit) and it takes its connections from an engine."""
    return not session.in_transaction() and isinstance(session.bind, AsyncEngine)


async def fetch_row_alone(session: AsyncSession, sql: str, *args: Any) -> Any:
    """fetch_row's statement as its own database transaction: sent without BEGIN on a
    connection of the session's engine, straight to the driver, and the server commits it
    (or, refusing it, undoes all of it) by itself: one round trip where BEGIN, the
    statement and COMMIT are three, and none of the session's machinery per statement. For
    a session with no transaction under way (can_send_alone): the statement is committed
    when this returns, whatever the session does next. What the database refuses comes out
    as from fetch_row; a connection that broke is invalidated with the pool, as SQLAlchemy
    does, and one left in an unknown state (a cancellation) is not reused."""
    if not can_send_alone(session):
        raise RuntimeError("a statement alone needs a session with no transaction under way")
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    raw = await engine.raw_connection()
    try:
        return await raw.driver_connection.fetchrow(sql, *args)  # type: ignore[union-attr]
    except asyncpg.PostgresError as exc:  # refused by the server: the connection is sound
        dbapi = engine.dialect.loaded_dbapi
        orig = dbapi.Error(str(exc), exc)  # the driver's error as SQLAlchemy's adapter has it
        orig.__cause__ = exc
        error = _ERRORS.get((exc.sqlstate or "")[:2], DBAPIError)
        raise error(sql, args, orig) from exc
    except Exception as exc:  # in the driver, or the connection broke
        driver = raw.driver_connection
        broken = driver is None or driver.is_closed()  # type: ignore[attr-defined]
        if broken:  # the server went away: as SQLAlchemy does then, the whole pool goes
            await greenlet_spawn(raw.invalidate, exc)
            await engine.dispose(close=False)
        orig = engine.dialect.loaded_dbapi.InterfaceError(str(exc), exc)
        error = OperationalError if broken else DBAPIError
        raise error(sql, args, orig, connection_invalidated=broken) from exc
    except BaseException as exc:  # cancelled mid-statement: the connection is not reused
        await greenlet_spawn(raw.invalidate, exc)
        raise
    finally:
        # Through greenlet_spawn: returning a connection the pool has no room for (one of
        # its overflow) closes it, and closing is the driver's I/O.
        await greenlet_spawn(raw.close)


# SQLAlchemy's errors for the classes of SQLSTATE (its first two characters).
_ERRORS: dict[str, type[DBAPIError]] = {
    "08": OperationalError,  # connection
    "0A": NotSupportedError,
    "22": DataError,
    "23": IntegrityError,
    "40": OperationalError,  # serialization failure, deadlock
    "42": ProgrammingError,
    "53": OperationalError,  # insufficient resources
    "57": OperationalError,  # operator intervention: the server shuts down
    "58": OperationalError,
    "XX": InternalError,
}


def passing_failure(exc: BaseException) -> bool:
    """Whether a database failure may pass if the work is tried again: the connection could
    not be made or broke (the server restarting, a network blip), the server shutting down,
    short of resources, or a serialization failure or deadlock (the SQLSTATE classes
    _ERRORS makes OperationalError). A refusal (a constraint, bad data, a bug) is not."""
    if isinstance(exc, OSError):  # connecting failed (refused, timed out): no DBAPI error yet
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    code = getattr(exc.orig, "sqlstate", None) or ""
    return _ERRORS.get(code[:2]) is OperationalError
