"""Club payments in the workload: a member opens /club and pays its Telegram Stars
subscription through the fake Bot API's payments (Telegram asks the bot first with a
pre_checkout_query, which an instance killed meanwhile leaves unanswered: then nothing is
taken); some subscriptions are renewed by Telegram later (a new charge, no question asked).

Each charge Telegram took is written down; checks.club proves each was recorded exactly
once as a club payment of that member, and no payment was recorded that Telegram did not
take; the member's news of it is a notice, which checks.messages follows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.fakegram import inline_buttons
from tests.fakegram.payments import Charge

if TYPE_CHECKING:
    from benchmarks.chaos.actors import Member

JOIN = "Join for"  # the Stars button's text: "Join for 250 ⭐"


@dataclass
class ClubCharge:
    member: str
    chat: int
    charge_id: str
    stars: int
    at: float
    renewal: bool = False


async def join_club(member: Member) -> None:
    """/club, then pay the Stars subscription (once per member); now and then a renewal."""
    world = member.world
    if member.in_club:
        if member.rng.random() < 0.3 and member.charge_id:
            charge = world.server.renew_subscription(member.charge_id)
            if charge is not None:
                _charged(member, charge, renewal=True)
                member.op("club renewal", charge.telegram_payment_charge_id)
        return
    mark, _ = await member.say("/club")
    shown = await member.expect(lambda m: "City Club" in m.text and _link(m) is not None, mark)
    link = _link(shown) if shown is not None else None
    if link is None:
        return
    member.op("club payment", "250 ⭐")
    try:
        outcome = await world.server.pay(member.user.user, link)
    except LookupError as exc:  # the invoice is not one the fake knows: a bug of ours
        member.note("club payment refused", repr(exc)[:80])
        return
    if not outcome.ok or outcome.charge is None:
        member.note("club payment failed", outcome.error_message or "")
        return
    charge = outcome.charge
    member.in_club = True
    _charged(member, charge, renewal=False)
    member.note("paid", charge.telegram_payment_charge_id)


def _link(mail: object) -> str | None:
    message = getattr(mail, "message", None)
    if not isinstance(message, dict):
        return None
    for button in inline_buttons(message):
        if str(button.get("text", "")).startswith(JOIN) and "url" in button:
            return str(button["url"])
    return None


def _charged(member: Member, charge: Charge, *, renewal: bool) -> None:
    """A charge Telegram took for the member: theirs now, and for the club payments check."""
    member.charge_id = charge.telegram_payment_charge_id
    member.world.club_charges.append(
        ClubCharge(
            member.name,
            member.chat,
            charge.telegram_payment_charge_id,
            charge.total_amount,
            time.time(),
            renewal=renewal,
        )
    )
