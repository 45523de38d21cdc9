"""Vouchers in the workload: a member takes a reward of the catalogue for points (/rewards,
Confirm), and shows its code at the reward's partner, where a cashier opens it
(`/voucher CODE`) and claims it (✅ Claim), now and then tapping Claim twice.

What each was told is written down here; checks.vouchers compares it with the database: a
voucher the member was told taken exists (its code is derived from the confirmation, so a
confirmation told "nothing was taken" names the voucher it did not take), and one a cashier
saw claimed is claimed with exactly one posting (keyed by its code); nobody told "nothing
was changed" about a claim made before."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.callbacks import RewardCb
from db.rules.vouchers import derived_code, display_code
from tests.fakegram import inline_buttons

if TYPE_CHECKING:
    from benchmarks.chaos.actors import Cashier, Mail, Member

TAKEN = "✅ Taken:"
NOT_TAKEN = ("nothing was taken", "Nothing was taken", "Not taken")


@dataclass
class VoucherTaking:
    member: str
    chat: int
    member_id: int
    reward: str
    partner: str
    code: str  # derived from the confirmation: the voucher it takes, if it does
    started: float
    taken: float | None = None  # when the member was told "Taken"
    told_nothing: list[float] = field(default_factory=list)
    claiming: bool = False  # handed to a cashier


@dataclass
class VoucherClaim:
    cashier: str
    chat: int
    partner: str
    code: str
    started: float
    acked: float | None = None  # when the cashier saw "claimed: hand … over"
    told_nothing: list[float] = field(default_factory=list)
    taps: int = 0


async def take_reward(member: Member) -> None:
    """/rewards, one of the rewards the catalogue offers, Confirm."""
    world = member.world
    mark, _ = await member.say("/rewards")
    catalogue = await member.expect(
        lambda m: "Rewards" in m.text or "no rewards" in m.text or "nothing" in m.text.lower(),
        mark,
    )
    if catalogue is None:
        return
    buttons = [
        str(b["callback_data"])
        for b in inline_buttons(catalogue.message)
        if str(b.get("text", "")).startswith("🎁") and b.get("callback_data")
    ]
    if not buttons:
        return
    mark = await member.press(catalogue, member.rng.choice(buttons), "a reward")
    ask = await member.expect(lambda m: (m.data("✅ Confirm") or "").startswith("rwd:"), mark)
    if ask is None or member.member_id is None:
        return
    data = ask.data("✅ Confirm")
    assert data is not None
    cb = RewardCb.unpack(data)
    taking = VoucherTaking(
        member.name,
        member.chat,
        member.member_id,
        cb.reward,
        world.reward_partners.get(cb.reward, ""),
        derived_code(world.secret, member.member_id, cb.op),
        time.time(),
    )
    world.takings.append(taking)
    member.op("take reward", f"{cb.reward} {display_code(taking.code)}")
    mark = await member.press(ask, data, "take it")

    def told(m: Mail) -> bool:
        return (m.kind == "edited" and m.message_id == ask.message_id) or (
            m.kind == "answer" and bool(m.text)
        )

    reply = await member.expect(told, mark)
    if reply is None:
        return
    if TAKEN in reply.text:
        taking.taken = reply.at
        member.note("told", f"taken {display_code(taking.code)}")
    elif any(p in reply.text for p in NOT_TAKEN):
        taking.told_nothing.append(reply.at)
        member.note("told", reply.text[:70])


def voucher_for(cashier: Cashier) -> VoucherTaking | None:
    """A voucher taken for a reward of the cashier's partner that nobody has come with yet."""
    for taking in cashier.world.takings:
        if taking.taken is not None and not taking.claiming and taking.partner == cashier.partner:
            taking.claiming = True
            return taking
    return None


async def claim(cashier: Cashier, taking: VoucherTaking) -> None:
    """`/voucher CODE`, then ✅ Claim (twice, now and then: a double tap)."""
    shown = display_code(taking.code)
    attempt = VoucherClaim(cashier.name, cashier.chat, cashier.partner, taking.code, time.time())
    cashier.world.claims.append(attempt)
    cashier.op("claim voucher", f"{shown} of {taking.member}")
    mark, _ = await cashier.say(f"/voucher {shown}")
    panel = await cashier.expect(
        lambda m: m.kind == "sent" and (m.data("✅ Claim") is not None or _refusal(m)), mark
    )
    if panel is None:
        return
    data = panel.data("✅ Claim")
    if data is None:
        if _nothing(panel):
            attempt.told_nothing.append(panel.at)
        cashier.note("voucher refused", panel.text[:70])
        return
    mark = await cashier.press(panel, data, "claim")
    attempt.taps += 1
    if cashier.rng.random() < 0.15:
        await cashier.press(panel, data, "claim again")
        attempt.taps += 1

    def result(m: Mail) -> bool:
        return m.kind == "sent" and (
            (shown in m.text and "claimed: hand" in m.text) or _refusal(m)
        )

    reply = await cashier.expect(result, mark)
    if reply is None:
        return
    if shown in reply.text and "claimed: hand" in reply.text:
        attempt.acked = reply.at
        cashier.note("claimed", shown)
    elif _nothing(reply):
        if attempt.taps > 1:
            # Two taps, two answers: a refusal may be the second tap's, the claim the
            # first's. What the cashier reads in the end is whether it was claimed.
            claimed = await cashier.expect(
                lambda m: m.kind == "sent" and shown in m.text and "claimed: hand" in m.text,
                mark,
            )
            if claimed is not None:
                attempt.acked = claimed.at
                cashier.note("claimed", f"{shown} (after a refusal of one tap)")
                return
        attempt.told_nothing.append(reply.at)
        cashier.note("claim refused", reply.text[:70])


def _nothing(m: Mail) -> bool:
    from benchmarks.chaos.actors import nothing_done

    return nothing_done(m)


def _refusal(m: Mail) -> bool:
    return _nothing(m) or "cannot be claimed" in m.text or "Too many codes" in m.text
