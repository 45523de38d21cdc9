"""What the API's endpoints are given: the program, the database, the card-token secret and
the clock (ApiContext, one per app), and per request the database session and the key's
actor, which ApiRoute (bot/api/route.py) opened and checked before the endpoint runs.

The dependencies are coroutines: FastAPI runs a plain function in a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.api.ratelimit import RateLimiter
from db.rules.program import Program
from db.usecases.api.actor import ApiActor


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ApiContext:
    sessions: async_sessionmaker[AsyncSession]
    program: Program
    secret: bytes  # card tokens' signing key (bot.app.signing_secret)
    limiter: RateLimiter
    clock: Callable[[], datetime] = field(default=_now)
    # Run after a commit that wrote (the notice worker's wake-up: a sale's messages go now).
    after_commit: list[Callable[[], None]] = field(default_factory=list)


async def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


async def session(request: Request) -> AsyncSession:
    """The request's session (ApiRoute opens it, and closes it after the answer)."""
    db: AsyncSession = request.state.session
    return db


async def actor(request: Request) -> ApiActor:
    """The key the request came with, checked by ApiRoute."""
    key: ApiActor = request.state.actor
    return key


async def idempotency_key(request: Request) -> str:
    """The request's Idempotency-Key (ApiRoute refused a POST without one)."""
    key: str = request.state.idempotency_key
    return key


Context = Annotated[ApiContext, Depends(context)]
Session = Annotated[AsyncSession, Depends(session)]
Actor = Annotated[ApiActor, Depends(actor)]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
