"""The owners' side of paying for the club in Telegram: a payment that bought nothing (its
payer is no longer a member) and a member's request for help with a payment (/paysupport).
Both are audited and told to the owners (ADMIN_IDS) through the outbox, in one
transaction; what the owners do about them (refunds) is theirs.

A payment that bought nothing is claimed once per charge (`club_unclaimed`) before
Telegram is asked to refund it, so that of two deliveries of the same update only one
refunds it and tells the owners; a charge recorded as a club payment is never claimed (a
delivery again after its payer deleted their account bought what it bought)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import ClubPayment, ClubUnclaimed, Member
from db.ledger.writer import unit_of_work
from db.queries.club import payments
from db.usecases.outbox import Owed, owe
from db.usecases.staff import audit

# What a member may write to the owners in one request (the owners' message must fit
# Telegram's 4096 characters with the payments listed under it).
SUPPORT_TEXT_MAX = 1500


async def _owner_chats(session: AsyncSession, owners: Sequence[int]) -> list[tuple[int, str]]:
    """Each owner's chat and the language they use the bot in (English if they never
    joined as a member)."""
    if not owners:
        return []
    rows = await session.execute(
        select(Member.telegram_id, Member.language).where(Member.telegram_id.in_(list(owners)))
    )
    languages = {telegram_id: language for telegram_id, language in rows}
    return [(owner, languages.get(owner) or "en") for owner in dict.fromkeys(owners)]


async def claim_unclaimed(
    session: AsyncSession,
    *,
    charge_id: str,
    method: str,
    currency: str,
    amount: Decimal,
    reason: str,
) -> bool:
    """Claim a payment Telegram took for the club that bought nothing, before Telegram is
    asked to refund it (committed at once). False when this delivery must do nothing: the
    charge was recorded as a club payment (a redelivered update after its payer deleted
    their account), or another delivery claimed it first (refunded and told by that one)."""
    async with unit_of_work(session):
        recorded = await session.scalar(
            select(ClubPayment.id).where(ClubPayment.charge_id == charge_id)
        )
        if recorded is not None:
            return False
        claimed = await session.scalar(
            pg_insert(ClubUnclaimed)
            .values(
                charge_id=charge_id, method=method, currency=currency, amount=amount, reason=reason
            )
            .on_conflict_do_nothing(index_elements=[ClubUnclaimed.charge_id])
            .returning(ClubUnclaimed.charge_id)
        )
        return claimed is not None


async def unclaimed_payment(
    session: AsyncSession,
    *,
    telegram_id: int,
    name: str,
    charge_id: str,
    provider_charge_id: str | None,
    method: str,
    currency: str,
    amount: Decimal,
    refunded: bool,
    reason: str,
    owners: Sequence[int],
) -> bool:
    """Record what became of a payment Telegram took for the club that bought nothing
    (`reason`: its payer is no longer a member, paid for a deleted account, the club is no
    longer sold that way), claimed by `claim_unclaimed` (or claimed here): audited; the
    owners are told when it was not given back (a card payment, or a Stars refund Telegram
    refused), so they refund it, once per charge. An owner's refund of such a charge later
    (`refunded`) is recorded over it. Returns False when there was nothing new to record (a
    charge settled before, or refunded already)."""
    async with unit_of_work(session):
        row = pg_insert(ClubUnclaimed).values(
            charge_id=charge_id,
            method=method,
            currency=currency,
            amount=amount,
            reason=reason,
            refunded=refunded,
        )
        settled = await session.scalar(
            row.on_conflict_do_update(
                index_elements=[ClubUnclaimed.charge_id],
                set_={"refunded": row.excluded.refunded},
                # Claimed and not settled yet; or left to the owners and refunded now.
                where=ClubUnclaimed.refunded.is_(None)
                | (ClubUnclaimed.refunded.is_(False) & row.excluded.refunded),
            ).returning(ClubUnclaimed.charge_id)
        )
        if settled is None:
            return False
        await audit(
            session,
            "club_payment_unclaimed",
            actor=telegram_id,
            charge_id=charge_id,
            provider_charge_id=provider_charge_id,
            method=method,
            amount=amount,
            currency=currency,
            refunded=refunded,
            reason=reason,
        )
        if not refunded:
            params = {
                "telegram_id": telegram_id,
                "name": name,
                "charge_id": charge_id,
                "provider_charge_id": provider_charge_id,
                "method": method,
                "amount": amount,
                "currency": currency,
                "reason": reason,
            }
            await owe(
                session,
                *(
                    Owed("club_unclaimed", params, chat_id=chat, language=language)
                    for chat, language in await _owner_chats(session, owners)
                ),
            )
        return True


async def support_request(
    session: AsyncSession,
    *,
    telegram_id: int,
    name: str,
    member_id: int | None,
    card_number: str | None,
    text: str,
    owners: Sequence[int],
    now: datetime,
) -> int:
    """Pass a request for help with a payment to the owners, with the member's card number
    and club payments (their charge ids, to refund one); audited. Returns how many owners
    it went to."""
    async with unit_of_work(session):
        paid = await payments(session, member_id) if member_id is not None else []
        chats = await _owner_chats(session, owners)
        await audit(session, "club_support", actor=telegram_id, member_id=member_id, asked_at=now)
        params = {
            "telegram_id": telegram_id,
            "name": name,
            "card_number": card_number,
            "text": text[:SUPPORT_TEXT_MAX],
            "payments": [
                {
                    "paid_at": p.paid_at,
                    "method": p.method,
                    "currency": p.currency,
                    "amount": p.amount,
                    "until": p.until,
                    "charge_id": p.charge_id,
                    "refunded": p.refunded,
                }
                for p in paid
            ],
        }
        await owe(
            session,
            *(
                Owed("club_support", params, chat_id=chat, language=language)
                for chat, language in chats
            ),
        )
        return len(chats)
