"""The partner API's `Idempotency-Key`s (the IETF draft "The Idempotency-Key HTTP Header
Field"), scoped to the partner whose key sent them.

A POST claims its key before it runs (committed at once, so a second request with the same
key sees it): the same key and request again replays the first answer; another request
under the same key is refused (422); a retry while the first is still running is told to
wait (409). A claim whose request could not be answered (a server error, invalid input)
is released, so the retry runs. A claim left "processing" by a process that died is taken
over by the same request after STALE_AFTER. Keys are kept at least IDEMPOTENCY_DAYS; the
daily job `prune_keys` removes older ones. The ledger's own keys stay behind them: a sale
is keyed by the till's document number and business day, a refund by the partner and
the Idempotency-Key, however old the request."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ApiIdempotency
from db.ledger.writer import unit_of_work

IDEMPOTENCY_DAYS = 7
STALE_AFTER = timedelta(minutes=1)


def request_fingerprint(method: str, target: str, body: bytes) -> str:
    """What makes two requests "the same": method, path with query, and body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), target.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Claim(enum.Enum):
    NEW = "new"  # claimed: run the request, then `answer` or `release`
    REPLAY = "replay"  # answered before: `Stored` is the answer
    OTHER_REQUEST = "other_request"  # the key came with another request
    IN_FLIGHT = "in_flight"  # the first request with this key is still running


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    headers: dict[str, str]
    body: bytes


# Claim the key, or take over a claim of the same request left running too long.
_CLAIM = text(
    """
    INSERT INTO api_idempotency AS i (partner_id, key, api_key_id, fingerprint, state,
                                      created_at)
    VALUES (:partner, :key, :api_key, :fingerprint, 'processing', :now)
    ON CONFLICT (partner_id, key) DO UPDATE
        SET created_at = excluded.created_at, api_key_id = excluded.api_key_id
        WHERE i.state = 'processing' AND i.fingerprint = excluded.fingerprint
          AND i.created_at < :stale
    RETURNING true
    """
)


async def claim(
    session: AsyncSession,
    *,
    partner_id: int,
    key: str,
    api_key_id: int,
    fingerprint: str,
    now: datetime,
) -> tuple[Claim, Stored | None]:
    """Claim `key` for this request (committed before it returns)."""
    params = {
        "partner": partner_id,
        "key": key,
        "api_key": api_key_id,
        "fingerprint": fingerprint,
        "now": now,
        "stale": now - STALE_AFTER,
    }
    for _attempt in range(3):  # a claim released meanwhile is claimed again
        async with unit_of_work(session):
            if (await session.execute(_CLAIM, params)).scalar_one_or_none():
                return Claim.NEW, None
            row = (
                await session.execute(
                    select(
                        ApiIdempotency.fingerprint,
                        ApiIdempotency.state,
                        ApiIdempotency.status,
                        ApiIdempotency.headers,
                        ApiIdempotency.body,
                    ).where(ApiIdempotency.partner_id == partner_id, ApiIdempotency.key == key)
                )
            ).one_or_none()
        if row is None:
            continue
        if row.fingerprint != fingerprint:
            return Claim.OTHER_REQUEST, None
        if row.state != "done":
            return Claim.IN_FLIGHT, None
        return Claim.REPLAY, Stored(row.status, dict(row.headers or {}), row.body or b"")
    return Claim.IN_FLIGHT, None


async def answer(session: AsyncSession, *, partner_id: int, key: str, stored: Stored) -> None:
    """The request's answer, kept for its retries."""
    async with unit_of_work(session):
        await session.execute(
            update(ApiIdempotency)
            .where(ApiIdempotency.partner_id == partner_id, ApiIdempotency.key == key)
            .values(state="done", status=stored.status, headers=stored.headers, body=stored.body)
        )


async def release(session: AsyncSession, *, partner_id: int, key: str) -> None:
    """Forget a claim whose request got no answer worth replaying: a retry runs again."""
    async with unit_of_work(session):
        await session.execute(
            delete(ApiIdempotency).where(
                ApiIdempotency.partner_id == partner_id,
                ApiIdempotency.key == key,
                ApiIdempotency.state == "processing",
            )
        )


async def prune_keys(session: AsyncSession, now: datetime) -> int:
    """Remove keys claimed more than IDEMPOTENCY_DAYS ago; how many."""
    async with unit_of_work(session):
        gone = await session.execute(
            delete(ApiIdempotency).where(
                ApiIdempotency.created_at < now - timedelta(days=IDEMPOTENCY_DAYS)
            )
        )
    return int(gone.rowcount)  # type: ignore[attr-defined]
