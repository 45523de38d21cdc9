"""Idempotency-Key on the partner API's POSTs: the same key and request replay the first
answer, another request under the key is refused, a request still running makes a retry
wait; keys are per partner and kept 7 days."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.runtime import Runtime
from bot.workers.jobs import prune_api_keys
from db.ledger.models import Account, ApiIdempotency, Transaction
from db.rules.program import Program
from db.usecases.api_idempotency import IDEMPOTENCY_DAYS, STALE_AFTER
from tests.apiharness import LiveApi, live_api

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def api(engine: AsyncEngine, sessions: Sessions, program: Program) -> AsyncIterator[LiveApi]:
    async with live_api(engine, sessions, program) as live:
        yield live


async def _sales(sessions: Sessions) -> int:
    async with sessions() as s:
        kinds = Transaction.kind.in_(("earn", "redeem"))
        return int(await s.scalar(select(func.count()).where(kinds)) or 0)


def _body(card: str, amount: str = "20.00", document: str = "I-1") -> dict[str, object]:
    return {"member": {"card_number": card}, "amount": amount, "document": document}


async def test_replay_other_request_and_missing_key(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    first = await api.call("POST", "/sales", key=key, idem="k-1", body=_body(ann.card_number))
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    # The same request: the first answer, byte for byte, said to be a replay.
    replay = await api.call("POST", "/sales", key=key, idem="k-1", body=_body(ann.card_number))
    assert replay.status == 201 and replay.body == first.body
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Location"] == first.headers["Location"]
    # The same JSON written otherwise is the same request; the draft's quoted key too.
    spaced = b'{ "document": "I-1", "amount": "20.00", "member": {"card_number": "%s"} }'
    again = await api.call(
        "POST",
        "/sales",
        key=key,
        idem='"k-1"',
        raw=spaced % ann.card_number.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert again.status == 201 and again.body == first.body
    # Another request under that key: refused, whatever it would have done.
    other = await api.call(
        "POST", "/sales", key=key, idem="k-1", body=_body(ann.card_number, "21.00", "I-2")
    )
    assert other.status == 422 and other.code == "idempotency_key_reused"
    elsewhere = await api.call(
        "POST", "/refunds", key=key, idem="k-1", body={"document": "I-1", "reason": "x"}
    )
    assert elsewhere.status == 422 and elsewhere.code == "idempotency_key_reused"
    for missing in (None, "", "with space", "é", "x" * 256):
        headers = {"Idempotency-Key": missing} if missing is not None else {}
        refused = await api.call(
            "POST", "/sales", key=key, headers=headers, body=_body(ann.card_number)
        )
        assert (refused.status, refused.code) == (400, "idempotency_key_required"), missing
    assert await _sales(sessions) == 1


async def test_keys_are_the_partners_own(api: LiveApi, sessions: Sessions) -> None:
    """Two keys of one partner share its Idempotency-Keys; another partner has its own."""
    coffee, coffee_too, books = (
        await api.key("coffee"),
        await api.key("coffee"),
        await api.key("books"),
    )
    ann = await api.member(7001)
    first = await api.call(
        "POST", "/sales", key=coffee, idem="till-7", body=_body(ann.card_number)
    )
    same = await api.call(
        "POST", "/sales", key=coffee_too, idem="till-7", body=_body(ann.card_number)
    )
    assert same.status == 201 and same.body == first.body
    assert same.headers["Idempotent-Replayed"] == "true"
    theirs = await api.call(
        "POST", "/sales", key=books, idem="till-7", body=_body(ann.card_number)
    )
    assert theirs.status == 201 and "Idempotent-Replayed" not in theirs.headers
    assert await _sales(sessions) == 2


async def test_a_refusal_is_replayed_as_it_was(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann, bob = await api.member(7001), await api.member(7002, "Bob")
    assert (await api.sale(key, ann, "20.00", "R-1")).status == 201
    taken = await api.call(
        "POST", "/sales", key=key, idem="r-2", body=_body(bob.card_number, "20.00", "R-1")
    )
    assert taken.status == 409 and taken.code == "receipt_taken"
    again = await api.call(
        "POST", "/sales", key=key, idem="r-2", body=_body(bob.card_number, "20.00", "R-1")
    )
    assert again.status == 409 and again.body == taken.body
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_a_request_still_running_makes_the_retry_wait(
    api: LiveApi, sessions: Sessions, engine: AsyncEngine
) -> None:
    """Two requests with one key at once: the second is told the first still runs (409),
    the first posts once, and its answer is what a retry gets afterwards. The member's
    wallet is held locked by another transaction, so the first is surely still running
    when the second comes."""
    key = await api.key("coffee")
    ann = await api.member(7001)
    body = _body(ann.card_number, "30.00", "C-9")
    async with engine.connect() as blocker:
        await blocker.execute(
            select(Account.id).where(Account.member_id == ann.id).with_for_update()
        )
        first = asyncio.create_task(api.call("POST", "/sales", key=key, idem="same", body=body))
        await _until_claimed(sessions, "same")
        second = await api.call("POST", "/sales", key=key, idem="same", body=body)
        assert (second.status, second.code) == (409, "idempotency_in_flight")
        assert second.headers["Retry-After"] == "1"
        assert not first.done()
        await blocker.rollback()
    done = await first
    assert done.status == 201, done.body
    retry = await api.call("POST", "/sales", key=key, idem="same", body=body)
    assert retry.status == 201 and retry.body == done.body
    assert await _sales(sessions) == 1


async def _until_claimed(sessions: Sessions, key: str) -> None:
    """Until the request with `key` has claimed it (it then waits for the wallet's lock)."""
    for _ in range(500):
        async with sessions() as s:
            if await s.scalar(select(ApiIdempotency.state).where(ApiIdempotency.key == key)):
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} was never claimed")


async def test_concurrent_requests_post_once(api: LiveApi, sessions: Sessions) -> None:
    """Eight tills' retries of one sale at once: one posting; every answer is the sale or
    "still running"."""
    key = await api.key("coffee")
    ann = await api.member(7001)
    body = _body(ann.card_number, "10.00", "P-1")
    answers = await asyncio.gather(
        *(api.call("POST", "/sales", key=key, idem="burst", body=body) for _ in range(8))
    )
    assert {a.status for a in answers} <= {201, 409}
    posted = [a.body for a in answers if a.status == 201]
    assert posted and all(b == posted[0] for b in posted)
    assert all(a.code == "idempotency_in_flight" for a in answers if a.status == 409)
    assert await _sales(sessions) == 1


async def test_a_claim_left_by_a_dead_process_is_taken_over(
    api: LiveApi, sessions: Sessions
) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    body = _body(ann.card_number, "10.00", "D-1")
    first = await api.call("POST", "/sales", key=key, idem="dead", body=body)
    assert first.status == 201
    # As if the process died after claiming the key: still "processing", long ago.
    async with sessions() as s, s.begin():
        await s.execute(
            update(ApiIdempotency)
            .where(ApiIdempotency.key == "dead")
            .values(
                state="processing",
                status=None,
                headers=None,
                body=None,
                created_at=datetime.now(UTC) - STALE_AFTER - timedelta(seconds=1),
            )
        )
    # Another request under it is still refused; the same one runs (a replay in the ledger).
    other = await api.call("POST", "/sales", key=key, idem="dead", body=_body(ann.card_number))
    assert other.code == "idempotency_key_reused"
    taken = await api.call("POST", "/sales", key=key, idem="dead", body=body)
    assert taken.status == 200 and taken.body["points_earned"] == first.body["points_earned"]
    assert await _sales(sessions) == 1


async def test_keys_are_kept_seven_days(
    api: LiveApi, sessions: Sessions, engine: AsyncEngine, program: Program
) -> None:
    key = await api.key("coffee")
    ann = await api.member(7001)
    for n in range(3):
        assert (await api.sale(key, ann, "5.00", f"K-{n}", idem=f"keep-{n}")).status == 201
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        week = timedelta(days=IDEMPOTENCY_DAYS)
        ages = (week + timedelta(minutes=1), week - timedelta(minutes=1), timedelta(days=1))
        for n, age in enumerate(ages):
            await conn.execute(
                text("UPDATE api_idempotency SET created_at = :at WHERE key = :key"),
                {"at": now - age, "key": f"keep-{n}"},
            )
    runtime = Runtime(None, program, engine, sessions)  # type: ignore[arg-type]
    assert await prune_api_keys(runtime, now) == 1
    async with sessions() as s:
        left = (await s.execute(select(ApiIdempotency.key).order_by(ApiIdempotency.key))).scalars()
        assert list(left) == ["keep-1", "keep-2"]
