"""The partner API served for real: the bot's web app (bot/workers/web.py) with the API
mounted, on a local port, and a client that calls it over HTTP as a till would."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.api.app import build_api
from bot.api.context import ApiContext
from bot.api.ratelimit import LocalBuckets, RateLimiter
from bot.workers.web import build_web_app
from db.ledger.models import Member
from db.rules.program import Program
from db.rules.tokens import card_token, derive_secret
from db.usecases.api.actor import ApiActor
from db.usecases.api_keys import authenticate, create_key
from db.usecases.members import MemberInfo, get_member, register_member

OWNER = 1
SECRET = derive_secret("4242:TEST-token")
Sessions = async_sessionmaker[AsyncSession]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


@dataclass
class LiveApi:
    url: str  # the server's root, "http://127.0.0.1:PORT"
    http: ClientSession
    sessions: Sessions
    program: Program
    context: ApiContext
    keys: dict[str, str] = field(default_factory=dict)

    async def key(
        self, partner: str = "coffee", scopes: Collection[str] = ("sales", "read")
    ) -> str:
        """A new key of `partner`, as an owner makes one in the bot."""
        async with self.sessions() as s:
            _info, key = await create_key(
                s,
                actor=OWNER,
                owners=[OWNER],
                staff=None,
                partner_slug=partner,
                scopes=scopes,
                op=secrets.token_urlsafe(9),
            )
        assert key is not None
        return key

    async def member_of(self, telegram_id: int) -> MemberInfo:
        """A member who joined in the bot."""
        async with self.sessions() as s:
            found = await s.scalar(select(Member.id).where(Member.telegram_id == telegram_id))
            assert found is not None
            return await get_member(s, found)

    async def member(self, telegram_id: int, first_name: str = "Ann") -> MemberInfo:
        async with self.sessions() as s:
            return await register_member(
                s, self.program, telegram_id=telegram_id, first_name=first_name
            )

    def token(self, member: MemberInfo, *, seconds: int = 300) -> str:
        """What the member's QR card holds now."""
        return card_token(SECRET, member.id, datetime.now(UTC) + timedelta(seconds=seconds))

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        body: Any = None,
        idem: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if idem is not None:
            sent["Idempotency-Key"] = idem
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(
            method, self.url + "/api/v1" + path, data=data, headers=sent
        ) as response:
            text = await response.read()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text.decode(errors="replace")
            return Answer(response.status, dict(response.headers), parsed)

    async def sale(
        self, key: str, member: MemberInfo, amount: str, document: str, idem: str | None = None
    ) -> Answer:
        return await self.call(
            "POST",
            "/sales",
            key=key,
            idem=idem or secrets.token_hex(8),
            body={
                "member": {"card_number": member.card_number},
                "amount": amount,
                "document": document,
            },
        )


@asynccontextmanager
async def live_api(
    engine: AsyncEngine,
    sessions: Sessions,
    program: Program,
    *,
    limiter: RateLimiter | None = None,
    clock: Callable[[], datetime] | None = None,
    after_commit: Callable[[], None] | None = None,
) -> AsyncIterator[LiveApi]:
    """The API on its own; `after_commit`: a running bot's notice worker's wake-up
    (BotHarness.dp["outbox"].kick), so a sale's messages to the member go at once."""
    context = ApiContext(
        sessions=sessions,
        program=program,
        secret=SECRET,
        limiter=limiter or LocalBuckets(rate=1000, burst=1000),
        after_commit=[after_commit] if after_commit is not None else [],
    )
    if clock is not None:
        context.clock = clock
    server = TestServer(build_web_app(engine, api=build_api(context)), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as http:
            yield LiveApi(str(server.make_url("")).rstrip("/"), http, sessions, program, context)
    finally:
        await server.close()


async def key_actor(
    session: AsyncSession, partner: str = "coffee", scopes: Collection[str] = ("sales", "read")
) -> ApiActor:
    """The actor of a new key of `partner`, made as an owner makes one in the bot and read
    as a request's key is (authenticate): for the API's use cases without HTTP."""
    _info, key = await create_key(
        session,
        actor=OWNER,
        owners=[OWNER],
        staff=None,
        partner_slug=partner,
        scopes=scopes,
        op=secrets.token_urlsafe(9),
    )
    assert key is not None
    return await authenticate(session, key)
