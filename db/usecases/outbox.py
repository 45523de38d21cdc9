"""The transactional outbox: messages owed because of committed work.

A use case that posts something adds the messages it owes (`owe`) before it commits, in the
same database transaction; the notice worker delivers them afterwards. So a posting and the
news of it are stored together or not at all, and the news survives Telegram failing or the
process dying right after the commit. Delivery is at least once: only a message in flight
when a process dies can arrive twice.

Per recipient, messages go out in the order they were owed: a notice is claimed only when
no older notice to the same recipient is still open."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Notice
from db.ledger.writer import unit_of_work
from db.usecases.discounts import discount_params

if TYPE_CHECKING:  # the sale's use cases owe their messages through this module
    from db.usecases.purchases import PurchaseResult, ReversalResult
    from db.usecases.stamps import StampBack, StampNews

RETRYABLE_ATTEMPTS = 8
_NOTICES = cast(Table, Notice.__table__)


@dataclass(frozen=True, slots=True)
class Owed:
    """One message owed: to a member (their chat and language are looked up at send time)
    or to a staff chat in a given language; `kind` names how the bot renders `params`."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    member_id: int | None = None
    chat_id: int | None = None
    language: str | None = None
    edit_message_id: int | None = None


def _plain(value: Any) -> Any:
    """JSON-safe params: money as strings (exact), times as ISO strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a notice")


async def owe(session: AsyncSession, *messages: Owed) -> None:
    """Add messages to the outbox inside the caller's transaction (the caller commits)."""
    rows = [
        {
            "member_id": m.member_id,
            "chat_id": m.chat_id,
            "language": m.language,
            "kind": m.kind,
            "params": json.loads(json.dumps(m.params, default=_plain)),
            "edit_message_id": m.edit_message_id,
            "status": "pending",
            "attempts": 0,
        }
        for m in messages
        if (m.member_id is None) != (m.chat_id is None)
    ]
    if rows:
        # Into the table, not through the ORM's bulk insert: cheaper for every sale's news.
        await session.execute(insert(_NOTICES), rows)
        session.info["owing"] = True


_ADD_EXPIRED = text(
    """
    UPDATE notices
    SET params = jsonb_set(params, '{points}', to_jsonb((params->>'points')::bigint + :points))
    WHERE id = (SELECT id FROM notices
                WHERE member_id = :member AND kind = 'expired' AND status = 'pending'
                ORDER BY id DESC LIMIT 1 FOR UPDATE)
    RETURNING id
    """
)


async def owe_expired(session: AsyncSession, member_id: int, points: int) -> None:
    """Expired points are told in one message per member and night: added to the member's
    expiry notice still waiting to go, else a new one."""
    added = (
        await session.execute(_ADD_EXPIRED, {"member": member_id, "points": points})
    ).scalar_one_or_none()
    if added is None:
        await owe(session, Owed("expired", {"points": points}, member_id=member_id))


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed notice with its recipient resolved (chat_id None: nobody to write to)."""

    id: int
    kind: str
    params: dict[str, Any]
    chat_id: int | None
    language: str
    edit_message_id: int | None
    attempts: int
    member_id: int | None
    why_not: str | None = None  # "deleted" or "blocked" when chat_id is None


# The oldest open notice of each recipient that is due, or claimed by a worker that has
# not settled it in time (it died): claimed with SKIP LOCKED, so instances share the work.
# The oldest open notice of each recipient that is due, or claimed by a worker that has
# not settled it in time (it died): claimed with SKIP LOCKED, so instances share the work.
# A member's chat, language and reachability are read as the notice is claimed, and so is the
# first name of a member the notice speaks of (`params.about`, or `params.friend` for the
# other side of an invitation: no name is copied here, and a deleted member's is gone).
_CLAIM = text(
    """
    WITH due AS (
        SELECT n.id FROM notices AS n
        WHERE ((n.status = 'pending' AND n.next_attempt_at <= :now)
               OR (n.status = 'sending' AND n.claimed_at < :stale))
          AND NOT EXISTS (
              SELECT 1 FROM notices AS older
              WHERE older.id < n.id AND older.status IN ('pending', 'sending')
                AND (older.member_id = n.member_id OR older.chat_id = n.chat_id)
          )
        ORDER BY n.id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE notices AS n
    SET status = 'sending', claimed_at = :now, attempts = n.attempts + 1
    FROM due JOIN notices AS src ON src.id = due.id
         LEFT JOIN members AS m ON m.id = src.member_id
         LEFT JOIN members AS friend
             ON friend.id = CAST(COALESCE(src.params->>'about', src.params->>'friend') AS bigint)
    WHERE n.id = due.id
    RETURNING n.id, n.kind, n.params, n.member_id, n.chat_id, n.language, n.edit_message_id,
              n.attempts, m.telegram_id AS member_chat, m.language AS member_language,
              m.reachable, friend.first_name AS member_name
    """
)


async def claim(
    session: AsyncSession, *, limit: int, now: datetime, stale_after: timedelta
) -> list[Due]:
    """Claim due notices (committed at once: a claim is what keeps two workers apart)."""
    async with unit_of_work(session):
        rows = (
            await session.execute(_CLAIM, {"now": now, "stale": now - stale_after, "limit": limit})
        ).all()
    claimed = []
    for row in sorted(rows, key=lambda r: r.id):
        chat_id, language, why_not = row.chat_id, row.language or "en", None
        if row.member_id is not None:
            if row.member_chat is None:
                chat_id, why_not = None, "deleted"
            elif not row.reachable:
                chat_id, why_not = None, "blocked"
            else:
                chat_id, language = row.member_chat, row.member_language
        params = row.params
        if row.member_name:
            params = {**params, "member_name": row.member_name}
        claimed.append(
            Due(
                id=row.id,
                kind=row.kind,
                params=params,
                chat_id=chat_id,
                language=language,
                edit_message_id=row.edit_message_id,
                attempts=row.attempts,
                member_id=row.member_id,
                why_not=why_not,
            )
        )
    return claimed


@dataclass(frozen=True, slots=True)
class Delivered:
    """How one delivery ended: sent, failed, blocked, or "retry" (back to pending)."""

    due: Due
    status: str
    message_id: int | None = None
    error: str | None = None
    retry_at: datetime | None = None


_SETTLE = text(
    """
    UPDATE notices AS n
    SET status = CASE WHEN o.status = 'retry' THEN 'pending' ELSE o.status END,
        next_attempt_at = COALESCE(o.retry_at, n.next_attempt_at),
        sent_at = CASE WHEN o.status = 'sent' THEN CAST(:now AS timestamptz) END,
        message_id = COALESCE(o.message_id, n.message_id),
        error = o.error,
        claimed_at = NULL
    FROM jsonb_to_recordset(CAST(:outcomes AS jsonb))
         AS o(id bigint, status text, message_id bigint, error text, retry_at timestamptz)
    WHERE n.id = o.id
    """
)


async def settle(session: AsyncSession, outcomes: list[Delivered], *, now: datetime) -> None:
    """Record a batch of outcomes in one statement (in the caller's transaction)."""
    if not outcomes:
        return
    rows = [
        {
            "id": o.due.id,
            "status": o.status,
            "message_id": o.message_id,
            "error": o.error[:300] if o.error else None,
            "retry_at": o.retry_at.isoformat() if o.retry_at else None,
        }
        for o in outcomes
    ]
    await session.execute(_SETTLE, {"outcomes": json.dumps(rows), "now": now})


async def due_count(session: AsyncSession, now: datetime) -> int:
    """Open notices that are due (the campaign worker lets these go first)."""
    return int(
        await session.scalar(
            text(
                "SELECT count(*) FROM notices WHERE status IN ('pending', 'sending')"
                " AND next_attempt_at <= :now"
            ),
            {"now": now},
        )
        or 0
    )


async def open_count(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            text("SELECT count(*) FROM notices WHERE status IN ('pending', 'sending')")
        )
        or 0
    )


@dataclass(frozen=True, slots=True)
class StaffChat:
    """Where a staff member's results go: their chat, in the language they use the bot in."""

    chat_id: int
    language: str


def stamp_params(news: Sequence[StampNews | StampBack]) -> dict[str, Any]:
    """A sale's or a refund's stamps, as its notices keep them (nothing without any)."""
    return {"stamps": [n.params() for n in news]} if news else {}


def promotion_params(items: Sequence[Any]) -> dict[str, Any]:
    """A sale's promotions (db/usecases/promotions.py Awarded) or what a refund took back of
    them (PromotionBack), as its notices keep them (nothing without any)."""
    return {"promotions": [i.params() for i in items]} if items else {}


def owed_for_purchase(result: PurchaseResult) -> list[Owed]:
    """A sale's news: to the member, and to the inviter when it paid a referral reward."""
    owed = [
        Owed(
            "purchase",
            {
                "partner": result.partner,
                "amount": result.amount,
                "paid": result.paid,
                "points_earned": result.points_earned,
                "points_redeemed": result.points_redeemed,
                "balance": result.balance,
                "referral_points": result.referral.invitee_points if result.referral else 0,
                "friend": result.referral.inviter_id if result.referral else None,
                "tier_reached": result.tier if result.tier_reached else None,
                "transaction": result.transaction_id,
                **stamp_params(result.stamps),
                **discount_params(result),
                **promotion_params(result.promotions),
            },
            member_id=result.member_id,
        )
    ]
    reward = result.referral
    if reward and reward.inviter_id is not None and reward.inviter_points:
        owed.append(
            Owed(
                "referral_inviter",
                {
                    "points": reward.inviter_points,
                    "friend": result.member_id,
                    "transaction": reward.transaction_id,
                },
                member_id=reward.inviter_id,
            )
        )
    return owed


def owed_for_reversal(result: ReversalResult) -> list[Owed]:
    """A refund's news: to the member, and to the inviter whose reward it took back."""
    back = result.referral
    owed = [
        Owed(
            "reversal",
            {
                "partner": result.partner,
                "amount": result.amount,
                "points_returned": result.points_returned,
                "points_clawed_back": result.points_clawed_back,
                "shortfall": result.shortfall,
                "money_back": result.cash_back,
                # What the spent points kept from the money back (never more than it was).
                "kept": result.money_refund - result.cash_back,
                "referral_points": back.invitee_points if back else 0,
                "balance": result.balance,
                "transaction": result.transaction_id,
                **stamp_params(result.stamps),
                **promotion_params(result.promotions),
            },
            member_id=result.member_id,
        )
    ]
    if back and back.inviter_id is not None and back.inviter_points:
        owed.append(
            Owed(
                "referral_reversed",
                {
                    "points": back.inviter_points,
                    "friend": result.member_id,
                    "transaction": result.transaction_id,
                },
                member_id=back.inviter_id,
            )
        )
    return owed


KEEP_DELIVERED = timedelta(days=30)


async def prune(session: AsyncSession, now: datetime) -> int:
    """Forget notices that ended more than KEEP_DELIVERED ago (the ledger and the audit log
    are the records; these were only the mail)."""
    async with unit_of_work(session):
        result = await session.execute(
            text(
                "DELETE FROM notices WHERE status IN ('sent', 'failed', 'blocked')"
                " AND created_at < :before"
            ),
            {"before": now - KEEP_DELIVERED},
        )
    return int(getattr(result, "rowcount", 0) or 0)
