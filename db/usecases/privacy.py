"""A member's right to their data: export all of it, or delete the account.

Deleting keeps the ledger whole: the person's details are erased, their remaining points
are forfeited to breakage by an ordinary posting (and their stamps go back to each card's
pool), and the anonymised rows stay, so every balance and every past settlement stays
correct."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, false, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import (
    AccountKind,
    AuditLog,
    ClubMembership,
    Member,
    Notice,
    Outbox,
    PointLot,
    PromotionNotice,
    RewardedIdentity,
    Transaction,
    TxKind,
)
from db.ledger.writer import (
    Leg,
    Lot,
    fingerprint,
    lock_accounts,
    lock_members,
    post,
    system_account,
    unit_of_work,
    void_holds,
)
from db.queries.gifts import gifts_export
from db.queries.stamps import card_progress
from db.queries.vouchers import vouchers_export
from db.queries.wallet import history, referral_stats
from db.rules.cards import new_card_number
from db.usecases.gifts import return_gifts_of
from db.usecases.members import MemberInfo
from db.usecases.stamps import forfeit_stamps
from db.usecases.vouchers import void_member_vouchers


async def export_member_data(session: AsyncSession, member: MemberInfo) -> dict[str, Any]:
    row = await session.get_one(Member, member.id)
    lots = (
        await session.execute(
            select(PointLot).where(PointLot.member_id == member.id).order_by(PointLot.id)
        )
    ).scalars()
    items, total = await history(session, member, limit=1_000_000)
    stats = await referral_stats(session, member.id)
    data = {
        "exported_at": datetime.now(UTC).isoformat(),
        "member": {
            "telegram_id": row.telegram_id,
            "card_number": row.card_number,
            "first_name": row.first_name,
            "language": row.language,
            "tier": row.tier,
            "joined_at": row.joined_at.isoformat(),
            "rules_accepted_at": row.rules_accepted_at.isoformat()
            if row.rules_accepted_at
            else None,
            "marketing_consent": row.marketing_consent,
            "invited_by_member": row.referred_by_id is not None,
            # Only the day and month are kept (ISO 8601's --MM-DD).
            "birthday": row.birthday.strftime("--%m-%d") if row.birthday else None,
            "birthday_given_at": row.birthday_set_at.isoformat() if row.birthday_set_at else None,
        },
        "balance": member.balance,
        "point_lots": [
            {
                "points": lot.points,
                "remaining": lot.remaining,
                "earned_at": lot.earned_at.isoformat(),
                "expires_at": lot.expires_at.isoformat() if lot.expires_at else None,
            }
            for lot in lots
        ],
        "transactions": [
            {
                "id": item.transaction_id,
                "kind": item.kind,
                "partner": item.partner,
                "amount": str(item.amount) if item.amount is not None else None,
                "points_in": item.points_in,
                "points_out": item.points_out,
                "reason": item.reason,
                "at": item.created_at.isoformat(),
            }
            for item in items
        ],
        "transactions_total": total,
        "vouchers": await vouchers_export(session, member.id),
        "stamp_cards": [
            {
                "card": card.card,
                "stamps": card.stamps,
                "last_stamp_at": card.last_stamp_at.isoformat() if card.last_stamp_at else None,
            }
            for card in sorted(
                (await card_progress(session, member.id)).values(), key=lambda c: c.card
            )
        ],
        "gifts": await gifts_export(session, member.id),
        "personal_offers_told": [
            {"promotion": n.promotion, "occasion": n.occasion, "at": n.sent_at.isoformat()}
            for n in (
                await session.execute(
                    select(PromotionNotice)
                    .where(PromotionNotice.member_id == member.id)
                    .order_by(PromotionNotice.sent_at, PromotionNotice.promotion)
                )
            ).scalars()
        ],
        "friends_invited": stats.invited,
        "friends_rewarded": stats.rewarded,
    }
    return data


async def delete_member(
    session: AsyncSession,
    member: MemberInfo,
    *,
    identity: str | None = None,
    now: datetime | None = None,
) -> int:
    """Erase the member; returns the points forfeited. Deleting twice changes nothing.

    The member row is locked first, as every posting locks it before the member's accounts
    (lock_members): a sale under way finishes before the forfeiture, and one that comes after
    finds no member. `identity` (the keyed hash of the Telegram id, tokens.identity_hash) is
    kept if the person got a welcome gift or an invitation reward, so joining again pays
    neither twice; the Telegram id and the name are erased everywhere, and the audit rows
    they acted in keep the (anonymised) member id instead."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        if not await lock_members(session, [member.id], delete=True):
            return 0
        row = await session.get_one(Member, member.id, populate_existing=True)
        telegram_id = row.telegram_id
        # Open vouchers go with the account (their holds are voided below, with the rest).
        await void_member_vouchers(session, member.id, now=now)
        breakage = await system_account(session, AccountKind.BREAKAGE)
        await lock_accounts(session, [breakage, member.wallet_id])
        # Requests waiting for the member's yes will find them gone: their points are freed
        # (and forfeited with the rest).
        await void_holds(session, member_id=member.id, now=now)
        await return_gifts_of(session, member.id, now)  # their open gifts: returned, closed
        balances = await lock_accounts(session, [breakage, member.wallet_id])
        points = balances[member.wallet_id]
        if points > 0:
            await post(
                session,
                [Leg(member.wallet_id, -points), Leg(breakage, points)],
                [Lot(member.id, -points)],
                kind=TxKind.EXPIRE,
                key=f"forfeit:{member.id}",
                digest=fingerprint("forfeit", member.id),
                member_id=member.id,
                reason="account deleted at the member's request",
                created_at=now,
            )
        # Their stamps go back to each card's pool (after the wallet, as every change of a
        # member's stamps holds it first).
        await forfeit_stamps(session, member.id, now)
        if identity is not None:
            await _remember_rewards(session, member.id, identity)
        if telegram_id is not None:
            await session.execute(
                update(AuditLog)
                .where(AuditLog.actor_telegram_id == telegram_id)
                .values(actor_telegram_id=None, actor_member_id=member.id)
            )
        # Messages owed to the person are void: to the member, and to their chat as staff.
        await session.execute(
            delete(Notice).where(
                or_(
                    Notice.member_id == member.id,
                    Notice.chat_id == telegram_id if telegram_id is not None else false(),
                )
            )
        )
        # Which personal offers they were told, and when (a birthday week says the
        # birthday), and the offers still waiting to go: gone with the person.
        await session.execute(
            delete(PromotionNotice).where(PromotionNotice.member_id == member.id)
        )
        await session.execute(
            delete(Outbox).where(Outbox.member_id == member.id, Outbox.promotion.is_not(None))
        )
        # Their club membership ends with the account (the bot cancels a Stars subscription's
        # renewal with Telegram after this commits: bot/handlers/members/privacy.py).
        await session.execute(
            update(ClubMembership)
            .where(ClubMembership.member_id == member.id)
            .values(ends_at=func.least(ClubMembership.ends_at, now), renews=False)
        )
        await session.execute(
            update(Member)
            .where(Member.id == member.id, Member.deleted_at.is_(None))
            .values(
                telegram_id=None,
                first_name="",
                birthday=None,
                birthday_set_at=None,
                # A fresh random number: the old card, printed or photographed, names no one.
                card_number=new_card_number(),
                marketing_consent=False,
                reachable=False,
                deleted_at=now,
            )
        )
        return points


async def _remember_rewards(session: AsyncSession, member_id: int, identity: str) -> None:
    """Keep the keyed hash of someone leaving who was paid a welcome gift, an invitation
    reward (as the invitee) or the club's welcome points, and only then."""
    paid = set(
        (
            await session.execute(
                select(Transaction.kind).where(
                    Transaction.member_id == member_id,
                    Transaction.kind.in_((TxKind.WELCOME, TxKind.REFERRAL, TxKind.CLUB)),
                )
            )
        ).scalars()
    )
    if not paid:
        return
    stmt = pg_insert(RewardedIdentity).values(
        identity_hash=identity,
        welcome=TxKind.WELCOME in paid,
        referral=TxKind.REFERRAL in paid,
        club=TxKind.CLUB in paid,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[RewardedIdentity.identity_hash],
            set_={
                "welcome": RewardedIdentity.welcome | stmt.excluded.welcome,
                "referral": RewardedIdentity.referral | stmt.excluded.referral,
                "club": RewardedIdentity.club | stmt.excluded.club,
            },
        )
    )
