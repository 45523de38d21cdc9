"""A month of the club sold at the till for money (the program's `[club] price`): the
cashier takes the money, then records it here. The payment and the membership it buys are
db/usecases/club.py's (record_payment, exactly once per charge id); this adds what the till
asks of it: the role (club_sale, db/rules/access.py), the price the till showed, the
cashier's own card refused, and the cashier's receipt owed with it.

The charge id is the till panel's: "till:<partner id>:<panel>", so the button pressed twice
(or Telegram delivering the press again) records one payment, and says so. The money is the
selling partner's to hand to the coalition: settlement counts it (db/queries/settlement.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import Member
from db.rules.errors import ClubPriceChanged, NoClub, UnknownMember
from db.rules.program import Program
from db.rules.tokens import identity_hash
from db.usecases.club import ClubPaid, Payment, club_paid_params, record_payment
from db.usecases.outbox import Owed, StaffChat
from db.usecases.staff import StaffInfo
from db.usecases.till import _check_not_own, _own_card_audited, check_sells


def charge_id(partner_id: int | None, panel: str) -> str:
    """The till's charge id of a month sold from one panel (its sale dialog's random id)."""
    return f"till:{partner_id}:{panel}"


def till_price(program: Program) -> Decimal:
    """The price of a month at the till; NoClub when the program sells none for money."""
    if program.club is None or not program.club.price:
        raise NoClub()
    return program.club.price


async def sell_month(
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
    *,
    member_id: int,
    panel: str,
    price: Decimal,
    secret: bytes,
    reply: StaffChat | None = None,
    now: datetime | None = None,
) -> ClubPaid:
    """Record a month of the club the cashier sold to the member for `price` (what the till
    showed; ClubPriceChanged, nothing recorded, when the program's price is another now),
    from the till panel `panel`. The member's news ("club_paid") and the cashier's receipt
    ("club_sold", to `reply`) are owed with the payment. The same panel again records
    nothing and returns the first (`new` False). Refused on the cashier's own card
    (OwnCard, audited) and at a charity's till. `secret`: the bot's signing secret, for the
    member's identity (the welcome points once per person ever, even after deleting)."""
    staff.require("club_sale")
    check_sells(program, staff)
    current = till_price(program)
    if price != current:
        raise ClubPriceChanged(price=current, currency=program.program.currency)
    now = now or datetime.now(UTC)
    payment = Payment(
        member_id=member_id,
        charge_id=charge_id(staff.partner_id, panel),
        method="till",
        currency=program.program.currency,
        amount=current,
        now=now,
        partner_id=staff.partner_id,
        staff_id=staff.id,
    )

    def receipt(paid: ClubPaid) -> list[Owed]:
        if reply is None:
            return []
        params = {"about": member_id, **club_paid_params(paid, payment)}
        return [Owed("club_sold", params, chat_id=reply.chat_id, language=reply.language)]

    async with _own_card_audited(session, staff, "club_sale"):
        # Read before record_payment's transaction, which it then starts (unit_of_work);
        # a member deleted meanwhile is refused there, under their row's lock.
        row = (
            await session.execute(select(Member.telegram_id).where(Member.id == member_id))
        ).one_or_none()
        if row is None:
            raise UnknownMember()
        _check_not_own(staff, member_id, row.telegram_id)
        identity = identity_hash(secret, row.telegram_id) if row.telegram_id else None
        return await record_payment(
            session, program, payment, identity=identity, actor=staff.telegram_id, also=receipt
        )
