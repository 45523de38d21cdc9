"""Campaigns: a segment of consenting members, a message, and an outbox that delivers it
exactly once per member, across restarts and instances.

Delivery claims small batches (status `sending`); a batch whose worker died is handed out
again after `stale_after`, so at most the few messages in flight at a crash can repeat,
and nobody is skipped."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from db.ledger.models import (
    Campaign,
    ClubMembership,
    Member,
    Outbox,
    Partner,
    Transaction,
    TxKind,
)
from db.ledger.writer import unit_of_work
from db.queries.club import active_sql
from db.usecases.outbox import Owed, owe
from db.usecases.staff import StaffInfo, audit


@dataclass(frozen=True, slots=True)
class Segment:
    """Who gets a campaign; every filter given must hold. Only members who consented to
    marketing, have not left and have not blocked the bot are ever included."""

    tier: str | None = None
    partner: str | None = None
    inactive_days: int | None = None
    language: str | None = None
    joined_since: date | None = None
    club: bool = False  # members of the club when the campaign is sent

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.joined_since:
            data["joined_since"] = self.joined_since.isoformat()
        return {k: v for k, v in data.items() if v is not None and v is not False}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Segment:
        since = data.get("joined_since")
        return cls(
            tier=data.get("tier"),
            partner=data.get("partner"),
            inactive_days=data.get("inactive_days"),
            language=data.get("language"),
            joined_since=date.fromisoformat(since) if since else None,
            club=bool(data.get("club")),
        )


def may_receive() -> list[ColumnElement[bool]]:
    """Who may get a campaign message: checked when the campaign is queued and again when
    each message is sent."""
    return [
        Member.deleted_at.is_(None),
        Member.reachable.is_(True),
        Member.marketing_consent.is_(True),
        Member.telegram_id.is_not(None),
    ]


def audience(segment: Segment, now: datetime) -> Select[tuple[int, int]]:
    conditions = may_receive()
    if segment.tier:
        conditions.append(Member.tier == segment.tier)
    if segment.language:
        conditions.append(Member.language == segment.language)
    if segment.joined_since:
        since = datetime.combine(segment.joined_since, datetime.min.time(), tzinfo=UTC)
        conditions.append(Member.joined_at >= since)
    if segment.partner:
        conditions.append(
            exists().where(
                Transaction.member_id == Member.id,
                Transaction.kind.in_(TxKind.SALES),
                Transaction.partner_id
                == select(Partner.id).where(Partner.slug == segment.partner).scalar_subquery(),
            )
        )
    if segment.club:
        conditions.append(
            exists().where(
                ClubMembership.member_id == Member.id, active_sql(ClubMembership.ends_at, now)
            )
        )
    if segment.inactive_days:
        conditions.append(
            ~exists().where(
                Transaction.member_id == Member.id,
                Transaction.kind.in_(TxKind.SALES),
                Transaction.created_at > now - timedelta(days=segment.inactive_days),
            )
        )
    return select(Member.id, Member.telegram_id).where(and_(*conditions))  # type: ignore[return-value]


async def audience_size(
    session: AsyncSession, segment: Segment, now: datetime | None = None
) -> int:
    query = audience(segment, now or datetime.now(UTC)).subquery()
    size = await session.scalar(select(func.count()).select_from(query))
    return int(size or 0)


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    id: int
    status: str
    segment: Segment
    text: str
    photo_file_id: str | None
    button_text: str | None
    button_url: str | None
    scheduled_at: datetime | None
    progress_chat_id: int | None
    progress_message_id: int | None
    language: str
    audience: int
    sent: int
    failed: int
    blocked: int
    created_by: int = 0
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.blocked

    @property
    def skipped(self) -> int:
        """Opted out, left or blocked the bot between queueing and sending (known once the
        campaign is done)."""
        return max(0, self.audience - self.done) if self.status == "done" else 0


def _info(c: Campaign) -> CampaignInfo:
    return CampaignInfo(
        c.id,
        c.status,
        Segment.from_json(c.segment),
        c.text,
        c.photo_file_id,
        c.button_text,
        c.button_url,
        c.scheduled_at,
        c.progress_chat_id,
        c.progress_message_id,
        c.language,
        c.audience,
        c.sent,
        c.failed,
        c.blocked,
        c.created_by,
        c.created_at,
        c.finished_at,
    )


async def get_campaign(session: AsyncSession, campaign_id: int) -> CampaignInfo | None:
    row = await session.get(Campaign, campaign_id, populate_existing=True)
    info = _info(row) if row else None
    return info


async def create_campaign(
    session: AsyncSession,
    *,
    created_by: int,
    segment: Segment,
    text: str,
    photo_file_id: str | None = None,
    button_text: str | None = None,
    button_url: str | None = None,
    language: str = "en",
    staff: StaffInfo | None = None,
) -> int:
    async with unit_of_work(session):
        campaign_id = (
            await session.execute(
                insert(Campaign)
                .values(
                    created_by=created_by,
                    segment=segment.to_json(),
                    text=text,
                    photo_file_id=photo_file_id,
                    button_text=button_text,
                    button_url=button_url,
                    language=language,
                    status="draft",
                )
                .returning(Campaign.id)
            )
        ).scalar_one()
        await audit(
            session,
            "campaign_create",
            actor=created_by,
            staff=staff,
            campaign=campaign_id,
            audience=json.dumps(segment.to_json(), ensure_ascii=False),
        )
        return campaign_id


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts on a campaign: its creator (a marketer) or an owner, who may act on all."""

    telegram_id: int
    owner: bool = False
    staff: StaffInfo | None = None

    def may_act_on(self, created_by: int) -> bool:
        """An owner on any campaign; staff whose role may run campaigns (db/rules/access.py:
        checked here again, whatever the router let through) on their own."""
        if self.owner:
            return True
        staff = self.staff
        return staff is not None and staff.may("campaigns") and created_by == self.telegram_id


class CampaignRefused(Exception):
    """Nothing was changed: `reason` is `closed` (already started or cancelled, or no such
    campaign), `not_yours` (another marketer's) or `empty` (nobody in the audience)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _open_campaign(session: AsyncSession, campaign_id: int, actor: Actor | None) -> Campaign:
    """The campaign, locked, if it is still waiting to start and `actor` may act on it."""
    campaign = (
        await session.execute(
            select(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status.in_(("draft", "scheduled")))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if campaign is None:
        raise CampaignRefused("closed")
    if actor is not None and not actor.may_act_on(campaign.created_by):
        raise CampaignRefused("not_yours")
    return campaign


async def schedule_campaign(
    session: AsyncSession, campaign_id: int, at: datetime, *, actor: Actor | None = None
) -> bool:
    """Schedule (or move) a campaign not yet started; False if it was started or cancelled.
    Refused (CampaignRefused) for another marketer's campaign or an empty audience."""
    try:
        async with unit_of_work(session):
            campaign = await _open_campaign(session, campaign_id, actor)
            if not await _audience_count(session, Segment.from_json(campaign.segment)):
                raise CampaignRefused("empty")
            campaign.status, campaign.scheduled_at = "scheduled", at
            if actor is not None:
                await audit(
                    session,
                    "campaign_schedule",
                    actor=actor.telegram_id,
                    staff=actor.staff,
                    campaign=campaign_id,
                    at=at.isoformat(),
                )
            return True
    except CampaignRefused as refused:
        if refused.reason == "closed":
            return False
        raise


async def cancel_campaign(
    session: AsyncSession, campaign_id: int, *, actor: Actor | None = None
) -> bool:
    """Only a campaign not yet started can be cancelled; a marketer cancels only their own
    (CampaignRefused `not_yours`), an owner any."""
    try:
        async with unit_of_work(session):
            campaign = await _open_campaign(session, campaign_id, actor)
            campaign.status = "cancelled"
            if actor is not None:
                await audit(
                    session,
                    "campaign_cancel",
                    actor=actor.telegram_id,
                    staff=actor.staff,
                    campaign=campaign_id,
                )
            return True
    except CampaignRefused as refused:
        if refused.reason == "closed":
            return False
        raise


async def _audience_count(session: AsyncSession, segment: Segment) -> int:
    query = audience(segment, datetime.now(UTC)).subquery()
    return int(await session.scalar(select(func.count()).select_from(query)) or 0)


async def scheduled_campaigns(session: AsyncSession) -> list[CampaignInfo]:
    rows = (
        (
            await session.execute(
                select(Campaign)
                .where(Campaign.status == "scheduled")
                .order_by(Campaign.scheduled_at)
            )
        )
        .scalars()
        .all()
    )
    infos = [_info(c) for c in rows]
    return infos


async def past_campaigns(session: AsyncSession, limit: int = 10) -> list[CampaignInfo]:
    """The last campaigns started (sending or done), newest first, with their figures."""
    rows = (
        (
            await session.execute(
                select(Campaign)
                .where(Campaign.status.in_(("sending", "done")))
                .order_by(Campaign.started_at.desc(), Campaign.id.desc())
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    infos = [_info(c) for c in rows]
    return infos


async def start_campaign(
    session: AsyncSession,
    campaign_id: int,
    *,
    now: datetime | None = None,
    progress_chat_id: int | None = None,
    progress_message_id: int | None = None,
    actor: Actor | None = None,
) -> int | None:
    """Fill the outbox with the segment as it is now; None if the campaign was not waiting
    to start (already started, or cancelled). Starting twice enqueues nobody twice.

    Started by someone (`actor`, "send now"): refused (CampaignRefused) for another
    marketer's campaign, or when nobody is in the audience, and nothing changes. Started by
    its schedule: an audience empty by then ends the campaign at once, and its creator is
    told. The start is written to the audit log."""
    now = now or datetime.now(UTC)
    try:
        async with unit_of_work(session):
            campaign = await _open_campaign(session, campaign_id, actor)
            members = audience(Segment.from_json(campaign.segment), now).subquery()
            inserted = await session.execute(
                insert(Outbox).from_select(
                    ["campaign_id", "member_id", "status", "next_attempt_at"],
                    select(
                        literal(campaign_id, BigInteger),
                        members.c.id,
                        literal("pending"),
                        literal(now, DateTime(timezone=True)),
                    ),
                )
            )
            size = int(inserted.rowcount or 0)  # type: ignore[attr-defined]
            if not size and actor is not None:
                raise CampaignRefused("empty")  # rolls the (empty) insert back
            await session.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(
                    status="sending" if size else "done",
                    started_at=now,
                    finished_at=None if size else now,
                    audience=size,
                    progress_chat_id=progress_chat_id,
                    progress_message_id=progress_message_id,
                )
            )
            await audit(
                session,
                "campaign_start",
                actor=actor.telegram_id if actor else None,
                staff=actor.staff if actor else None,
                campaign=campaign_id,
                by=None if actor else "schedule",
                audience=size,
            )
            if not size:
                await owe(session, _finished(campaign, Progress(0, 0, 0, 0, 0)))
            return size
    except CampaignRefused as refused:
        if refused.reason == "closed":
            return None
        raise


def _finished(campaign: Campaign, result: Progress) -> Owed:
    """The creator's news that a campaign nobody watches (a scheduled one) has finished."""
    return Owed(
        "campaign_finished",
        {
            "campaign": campaign.id,
            "audience": result.audience,
            "sent": result.sent,
            "failed": result.failed,
            "blocked": result.blocked,
            "skipped": result.skipped,
        },
        chat_id=campaign.created_by,
        language=campaign.language,
    )


async def due_campaigns(session: AsyncSession, now: datetime) -> list[int]:
    ids = (
        (
            await session.execute(
                select(Campaign.id).where(
                    Campaign.status == "scheduled", Campaign.scheduled_at <= now
                )
            )
        )
        .scalars()
        .all()
    )
    return list(ids)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed message: a campaign's (`campaign_id`), or a personal promotion's
    (`promotion`, and `params` saying what to tell: db/usecases/personal_offers.py)."""

    id: int
    campaign_id: int | None
    member_id: int
    telegram_id: int
    language: str
    attempts: int
    promotion: str | None = None
    params: dict[str, Any] | None = None


async def claim(
    session: AsyncSession, *, limit: int, now: datetime, stale_after: timedelta
) -> list[OutboxItem]:
    """Take up to `limit` due messages for sending. Messages claimed by a worker that has
    not reported back within `stale_after` (it crashed) are handed out again. Consent,
    deletion and reachability are checked again here: the message of a member who opted
    out, left or blocked the bot since the campaign was queued is `skipped`, not sent; the
    chat id is read from the member now, never stored with the message."""
    async with unit_of_work(session):
        await session.execute(
            update(Outbox)
            .where(Outbox.status == "sending", Outbox.claimed_at < now - stale_after)
            .values(status="pending")
        )
        due = (
            select(Outbox.id)
            .where(Outbox.status == "pending", Outbox.next_attempt_at <= now)
            .order_by(Outbox.next_attempt_at, Outbox.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = (
            await session.execute(
                update(Outbox)
                .where(Outbox.id.in_(due), Member.id == Outbox.member_id)
                .values(
                    status=case((and_(*may_receive()), "sending"), else_="skipped"),
                    claimed_at=now,
                    attempts=Outbox.attempts + 1,
                )
                .returning(
                    Outbox.id,
                    Outbox.campaign_id,
                    Outbox.member_id,
                    Member.telegram_id,
                    Member.language,
                    Outbox.attempts,
                    Outbox.status,
                    Outbox.promotion,
                    Outbox.params,
                )
            )
        ).all()
        # Only messages still allowed are sent; their members have a chat id by then.
        return sorted(
            (
                OutboxItem(
                    row.id,
                    row.campaign_id,
                    row.member_id,
                    row.telegram_id,  # type: ignore[arg-type]  # not NULL: checked above
                    row.language,
                    row.attempts,
                    row.promotion,
                    row.params,
                )
                for row in rows
                if row.status == "sending"
            ),
            key=lambda item: item.id,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one message went: `sent`, `blocked` (the member is marked unreachable),
    `failed`, or `retry` (back to pending until `retry_at`)."""

    item: OutboxItem
    status: str
    error: str | None = None
    retry_at: datetime | None = None


_SETTLE = (
    # The table, not the mapped class: an executemany UPDATE keyed by a bound id.
    update(Outbox.__table__)  # type: ignore[arg-type]
    .where(Outbox.id == bindparam("oid"), Outbox.status == "sending")
    .values(
        status=bindparam("new_status"),
        sent_at=bindparam("sent_at"),
        next_attempt_at=bindparam("next_at"),
        error=bindparam("err"),
    )
)


async def settle(session: AsyncSession, outcomes: list[Outcome], *, now: datetime) -> None:
    """Record a batch of outcomes in one transaction (one statement for the outbox rows).
    Rows no longer `sending` (a stale claim handed out again) are left as they are."""
    if not outcomes:
        return
    async with unit_of_work(session):
        await session.execute(
            _SETTLE,
            [
                {
                    "oid": o.item.id,
                    "new_status": "pending" if o.status == "retry" else o.status,
                    "sent_at": now if o.status == "sent" else None,
                    "next_at": o.retry_at or now,
                    "err": o.error,
                }
                for o in outcomes
            ],
        )
        blocked = [o.item.member_id for o in outcomes if o.status == "blocked"]
        if blocked:
            await session.execute(
                update(Member).where(Member.id.in_(blocked)).values(reachable=False)
            )


@dataclass(frozen=True, slots=True)
class Progress:
    audience: int
    sent: int
    failed: int
    blocked: int
    waiting: int
    skipped: int = 0  # opted out, left or blocked the bot before their message was sent

    @property
    def finished(self) -> bool:
        return self.waiting == 0


async def progress(
    session: AsyncSession, campaign_id: int, *, now: datetime | None = None
) -> Progress:
    """Counts straight from the outbox; when nothing is left to send, the campaign is marked
    done and its final figures are stored on it."""
    async with unit_of_work(session):
        counts = dict(
            (
                await session.execute(
                    select(Outbox.status, func.count())
                    .where(Outbox.campaign_id == campaign_id)
                    .group_by(Outbox.status)
                )
            ).all()
        )
        result = Progress(
            audience=sum(counts.values()),
            sent=counts.get("sent", 0),
            failed=counts.get("failed", 0),
            blocked=counts.get("blocked", 0),
            waiting=counts.get("pending", 0) + counts.get("sending", 0),
            skipped=counts.get("skipped", 0),
        )
        values: dict[str, Any] = {
            "sent": result.sent,
            "failed": result.failed,
            "blocked": result.blocked,
        }
        if result.finished:
            values.update(status="done", finished_at=now or datetime.now(UTC))
        changed = (
            await session.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id, Campaign.status == "sending")
                .values(**values)
                .returning(Campaign)
            )
        ).scalar_one_or_none()
        # Once, as the campaign turns done: a campaign started without a progress message
        # (by its schedule) reports to its creator through the outbox.
        if result.finished and changed is not None and changed.progress_chat_id is None:
            await owe(session, _finished(changed, result))
        return result


async def pending_count(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).where(Outbox.status.in_(("pending", "sending")))
    )
    return int(count or 0)
