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
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import fetch_row_alone
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


# Claim the key, or take over a claim of the same request left running too long; and the
# claim as it stood before, when this request did not get it. One statement, sent alone.
_CLAIM = """
    WITH claimed AS (
        INSERT INTO api_idempotency AS i (partner_id, key, api_key_id, fingerprint, state,
                                          created_at)
        VALUES ($1, $2, $3, $4, 'processing', $5)
        ON CONFLICT (partner_id, key) DO UPDATE
            SET created_at = excluded.created_at, api_key_id = excluded.api_key_id
            WHERE i.state = 'processing' AND i.fingerprint = excluded.fingerprint
              AND i.created_at < $6
        RETURNING true AS claimed
    )
    SELECT (SELECT claimed FROM claimed) AS claimed, i.fingerprint, i.state, i.status,
           i.headers, i.body
    FROM (SELECT 1) AS one
    LEFT JOIN api_idempotency AS i ON i.partner_id = $1 AND i.key = $2
"""


async def claim(
    session: AsyncSession,
    *,
    partner_id: int,
    key: str,
    api_key_id: int,
    fingerprint: str,
    now: datetime,
) -> tuple[Claim, Stored | None]:
    """Claim `key` for this request (committed before it returns: `session` has no
    transaction under way)."""
    for _attempt in range(3):  # a claim made or released while this looked: look again
        row = await fetch_row_alone(
            session, _CLAIM, partner_id, key, api_key_id, fingerprint, now, now - STALE_AFTER
        )
        if row["claimed"]:
            return Claim.NEW, None
        if row["fingerprint"] is None:
            continue
        if row["fingerprint"] != fingerprint:
            return Claim.OTHER_REQUEST, None
        if row["state"] != "done":
            return Claim.IN_FLIGHT, None
        headers = dict(row["headers"] or {})  # the engine decodes jsonb
        return Claim.REPLAY, Stored(row["status"], headers, bytes(row["body"] or b""))
    return Claim.IN_FLIGHT, None


# The request's answer kept ($6: keep it; else the claim released), the call on the audit
# log, and the key's last use: one statement, alone, after the request's own work.
_FINISH = """
    WITH kept AS (
        UPDATE api_idempotency SET state = 'done', status = $3, headers = $4::jsonb, body = $5
        WHERE partner_id = $1 AND key = $2 AND $6
    ), released AS (
        DELETE FROM api_idempotency
        WHERE partner_id = $1 AND key = $2 AND state = 'processing' AND NOT $6
    ), touched AS (
        UPDATE api_keys SET last_used_at = $8 WHERE id = $7
    )
    INSERT INTO audit_log (api_key_id, partner_id, action, details, created_at)
    VALUES ($7, $1, 'api_call', $9::jsonb, $8)
"""


async def finish(
    session: AsyncSession,
    *,
    partner_id: int,
    key: str,
    stored: Stored | None,
    api_key_id: int,
    now: datetime,
    details: str,
) -> None:
    """Keep the request's answer for its retries (`stored`; None: release the claim, so a
    retry runs), with the call's audit row (`details`, db/usecases/api_keys.py
    call_details): committed together before the answer is sent."""
    await fetch_row_alone(
        session,
        _FINISH,
        partner_id,
        key,
        stored.status if stored else None,
        json.dumps(stored.headers) if stored else None,
        stored.body if stored else None,
        stored is not None,
        api_key_id,
        now,
        details,
    )


async def release(session: AsyncSession, *, partner_id: int, key: str) -> None:
    """Forget a claim whose request got no answer (it failed): a retry runs again."""
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
