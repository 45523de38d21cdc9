"""Gifts in the workload: a member gives points to a friend (`/gift N`, Confirm: a link),
and the friend, another member, opens the link and accepts (now and then tapping Accept
twice); a gift the friend is slow to open may have been returned meanwhile (the return job
runs on the accelerated clock).

What each was told is written down here; checks.gifts compares it with the database: a
gift the giver was told is ready exists (its code is derived from the confirmation); one
the friend was told accepted is theirs, with exactly one posting; a friend told the gift
is closed or taken had not been given it before."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.callbacks import GiftCb
from db.rules.gifts import GIFT, gift_code

if TYPE_CHECKING:
    from benchmarks.chaos.actors import Mail, Member

READY = "is ready"
ACCEPTED = "✅ Accepted:"
CLOSED = (
    "already accepted by someone else",
    "no longer available",
    "You have already accepted",
    "Nothing was held",
)
CLOSED_TO_FRIEND = ("already accepted by someone else", "no longer available")


@dataclass
class GiftAttempt:
    giver: str
    giver_id: int
    points: int
    code: str  # derived from the confirmation: the gift it makes, if it does
    started: float
    friend: str = ""
    friend_chat: int = 0
    friend_id: int | None = None
    ready: float | None = None  # when the giver was told the link
    accepted: float | None = None  # when the friend was told "Accepted"
    told_closed: list[float] = field(default_factory=list)  # the friend, told it is closed
    taps: int = 0


async def give(giver: Member) -> None:
    """`/gift N`, Confirm, the link to a friend, who opens it and accepts."""
    world = giver.world
    friends = [m for m in world.active_members() if m is not giver and not m.blocked]
    if not friends or giver.member_id is None:
        return
    friend = giver.rng.choice(friends)
    points = giver.rng.randint(5, 60)
    mark, _ = await giver.say(f"/gift {points}")
    ask = await giver.expect(
        lambda m: (
            (m.data("✅ Confirm") or "").startswith("gift:")
            or "at most" in m.text
            or "no points" in m.text
            or "Nothing was held" in m.text
        ),
        mark,
    )
    data = ask.data("✅ Confirm") if ask is not None else None
    if ask is None or data is None:
        return
    cb = GiftCb.unpack(data)
    gift = GiftAttempt(
        giver.name,
        giver.member_id,
        cb.points,
        gift_code(world.secret, giver.member_id, cb.code),
        time.time(),
    )
    world.gifts.append(gift)
    giver.op("gift", f"{points} to {friend.name}")
    mark = await giver.press(ask, data, "give")
    ready = await giver.expect(
        lambda m: m.kind == "edited" and m.message_id == ask.message_id and READY in m.text, mark
    )
    if ready is None:
        return
    gift.ready = ready.at
    await giver.pause(0.2, 4.0)
    if friend.deleted or friend.blocked or friend.member_id is None:
        return
    gift.friend, gift.friend_chat, gift.friend_id = friend.name, friend.chat, friend.member_id
    # One gift opened at a time by a friend: what they are told is about that gift.
    async with friend.gift_lock:
        await _accept(friend, gift)


async def _accept(friend: Member, gift: GiftAttempt) -> None:
    mark, _ = await friend.say(f"/start {GIFT}{gift.code}")
    offer = await friend.expect(
        lambda m: (
            m.kind == "sent"
            and (_for(m.data("✅ Accept"), gift) or any(c in m.text for c in CLOSED))
        ),
        mark,
    )
    if offer is None:
        return
    accept = offer.data("✅ Accept")
    if accept is None:
        if any(c in offer.text for c in CLOSED_TO_FRIEND):
            gift.told_closed.append(offer.at)
        return
    mark = await friend.press(offer, accept, "accept the gift")
    gift.taps += 1
    if friend.rng.random() < 0.1:
        await friend.press(offer, accept, "accept again")
        gift.taps += 1

    def told(m: Mail) -> bool:
        return (m.kind == "edited" and m.message_id == offer.message_id) or (
            m.kind in ("answer", "sent") and any(c in m.text for c in CLOSED)
        )

    reply = await friend.expect(told, mark)
    if reply is None:
        return
    if ACCEPTED in reply.text:
        gift.accepted = reply.at
        friend.op("accept gift", f"{gift.points} from {gift.giver}")
    elif any(c in reply.text for c in CLOSED_TO_FRIEND):
        gift.told_closed.append(reply.at)
        friend.note("told", reply.text[:70])


def _for(data: str | None, gift: GiftAttempt) -> bool:
    """Whether an Accept button is this gift's."""
    return (
        bool(data) and str(data).startswith("gift:") and GiftCb.unpack(str(data)).code == gift.code
    )
