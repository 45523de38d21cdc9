"""The partner API's keys: only a key of ours, in use, opens it; a key acts for its own
partner only and within its scopes; each key has its rate; every call is on the audit log
with the key's id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.api.ratelimit import LocalBuckets, RedisBuckets
from db.ledger.models import ApiKey, AuditLog, Staff, Transaction
from db.rules import access
from db.rules.program import Program
from db.usecases.api_keys import KEY_PREFIX, revoke_key
from tests import redisserver
from tests.apiharness import OWNER, LiveApi, live_api

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def api(engine: AsyncEngine, sessions: Sessions, program: Program) -> AsyncIterator[LiveApi]:
    async with live_api(engine, sessions, program) as live:
        yield live


async def _count(sessions: Sessions, *where: object) -> int:
    async with sessions() as s:
        return int(
            await s.scalar(select(func.count()).select_from(Transaction).where(*where)) or 0
        )


async def test_wrong_and_revoked_keys_are_refused(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    assert key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + 48
    lookup = f"/members/lookup?card_number={ann.card_number}"
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    for presented, headers in [
        (None, {}),
        (None, {"Authorization": f"Basic {key}"}),
        (None, {"Authorization": "Bearer"}),
        ("cb_live_nothing", {}),
        (key + "x", {}),
        (wrong_secret, {}),
        (key.replace("cb_live_", "cb_test_"), {}),
    ]:
        refused = await api.call("GET", lookup, key=presented, headers=headers)
        assert (refused.status, refused.code) == (401, "invalid_api_key"), presented
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.headers["Content-Type"] == "application/problem+json"
    assert (await api.call("GET", lookup, key=key)).status == 200
    async with sessions() as s:
        key_id = await s.scalar(select(ApiKey.id))
        assert key_id is not None
        _info, revoked = await revoke_key(
            s, actor=OWNER, owners=[OWNER], staff=None, key_id=key_id
        )
        assert revoked
    gone = await api.call("GET", lookup, key=key)
    assert (gone.status, gone.code) == (401, "api_key_revoked")
    posted = await api.sale(key, ann, "10.00", "X-1")
    assert (posted.status, posted.code) == (401, "api_key_revoked")
    assert await _count(sessions, Transaction.kind == "earn") == 0
    async with sessions() as s:
        rows = (
            await s.execute(
                select(AuditLog.action, AuditLog.details["code"].astext).where(
                    AuditLog.api_key_id == key_id
                )
            )
        ).all()
    # The wrong secret and the revoked key's calls are on record under the key they named.
    assert ("api_key_refused", "invalid_api_key") in rows
    assert rows.count(("api_key_refused", "api_key_revoked")) == 2


async def test_a_key_acts_for_its_own_partner(api: LiveApi, sessions: Sessions) -> None:
    coffee, books = await api.key("coffee"), await api.key("books")
    ann = await api.member(7001)
    assert (await api.sale(coffee, ann, "40.00", "S-1")).status == 201
    # The bookshop cannot read, nor refund, the café's sale: to it, there is none.
    read = await api.call("GET", "/sales/S-1", key=books)
    assert (read.status, read.code) == (404, "unknown_transaction")
    refund = await api.call(
        "POST", "/refunds", key=books, idem="r", body={"document": "S-1", "reason": "x"}
    )
    assert (refund.status, refund.code) == (404, "unknown_transaction")
    assert await _count(sessions, Transaction.kind == "reverse") == 0
    # Its settlement is its own.
    today = datetime.now(UTC).astimezone(api.program.program.zone).date()
    period = f"/settlement?from={today}&to={today + timedelta(days=1)}"
    mine = await api.call("GET", period, key=coffee)
    theirs = await api.call("GET", period, key=books)
    assert (mine.body["partner"], mine.body["points_issued"]) == ("coffee", 200)
    assert (theirs.body["partner"], theirs.body["points_issued"]) == ("books", 0)


async def test_scopes(api: LiveApi, sessions: Sessions) -> None:
    sales, read = await api.key("coffee", ["sales"]), await api.key("coffee", ["read"])
    ann = await api.member(7001)
    lookup = f"/members/lookup?card_number={ann.card_number}"
    assert (await api.call("GET", lookup, key=sales)).status == 200
    assert (await api.call("GET", lookup, key=read)).status == 200
    refused = await api.sale(read, ann, "10.00", "T-1")
    assert (refused.status, refused.code) == (403, "not_staff")
    assert "'sale'" in refused.body["detail"]
    assert (await api.sale(sales, ann, "10.00", "T-1")).status == 201
    assert (await api.call("GET", "/sales/T-1", key=read)).status == 200
    refund = await api.call(
        "POST", "/refunds", key=read, idem="r", body={"document": "T-1", "reason": "x"}
    )
    assert (refund.status, refund.code) == (403, "not_staff")
    today = datetime.now(UTC).astimezone(api.program.program.zone).date()
    period = f"/settlement?from={today}&to={today + timedelta(days=1)}"
    assert (await api.call("GET", period, key=read)).status == 200
    figures = await api.call("GET", period, key=sales)
    assert (figures.status, figures.code) == (403, "not_staff")
    assert await _count(sessions, Transaction.kind == "reverse") == 0


async def test_api_roles_are_never_a_persons(sessions: Sessions) -> None:
    """The scopes' roles are in the table, and the database refuses them as staff roles."""
    assert set(access.API_ROLES.values()).isdisjoint(access.STAFF_ROLES)
    assert access.may_any({access.API_SALES}, "refund") and not access.may("manager", "sale_read")
    assert not access.may_any({access.API_READ}, "sale")
    assert not access.may_any({access.API_SALES, access.API_READ}, "campaigns")
    for role in access.API_ROLES.values():
        async with sessions() as s:
            with pytest.raises(IntegrityError):
                await s.execute(insert(Staff).values(telegram_id=5, role=role, partner_id=1))


async def test_the_rate_limit_answers_429_with_retry_after(
    engine: AsyncEngine, sessions: Sessions, program: Program
) -> None:
    now = [1000.0]
    limiter = LocalBuckets(rate=0.5, burst=3, clock=lambda: now[0])
    async with live_api(engine, sessions, program, limiter=limiter) as api:
        key, other = await api.key("coffee"), await api.key("coffee")
        ann = await api.member(7001)
        lookup = f"/members/lookup?card_number={ann.card_number}"
        assert [(await api.call("GET", lookup, key=key)).status for _ in range(3)] == [200] * 3
        limited = await api.call("GET", lookup, key=key)
        assert (limited.status, limited.code) == (429, "rate_limited")
        assert limited.headers["Retry-After"] == "2"  # one request every 2 seconds
        posted = await api.sale(key, ann, "10.00", "L-1")
        assert posted.status == 429
        assert (await api.call("GET", lookup, key=other)).status == 200  # per key
        now[0] += 2
        assert (await api.call("GET", lookup, key=key)).status == 200
        assert (await api.call("GET", lookup, key=key)).status == 429
    assert await _count(sessions, Transaction.kind == "earn") == 0


async def test_the_rate_limit_in_redis_is_shared_by_instances() -> None:
    """Two instances' limiters on one Redis count one key's requests together."""
    from redis.asyncio import Redis

    url, server = redisserver.redis_url()
    redis = Redis.from_url(url)
    try:
        now = [5000.0]
        key_id = 10**9 + int(datetime.now(UTC).timestamp() * 1000) % 10**6  # fresh bucket
        first, second = (
            RedisBuckets(redis, rate=1, burst=2, clock=lambda: now[0]) for _ in range(2)
        )
        assert await first.take(key_id) == 0 and await second.take(key_id) == 0
        assert await first.take(key_id) == pytest.approx(1.0)
        assert await second.take(key_id) == pytest.approx(1.0)
        now[0] += 1
        assert await second.take(key_id) == 0
        await redis.delete(f"loyalty:api-rate:{key_id}")
    finally:
        await redis.aclose()
        if server is not None:
            server.shutdown()


async def test_without_redis_a_process_counts_alone() -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    limiter = RedisBuckets(redis, rate=1, burst=1, fallback=LocalBuckets(1, 1, clock=lambda: 0))
    assert await limiter.take(1) == 0
    assert await limiter.take(1) == 1.0
    await redis.aclose()
