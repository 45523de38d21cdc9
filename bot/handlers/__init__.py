"""The routers, by audience: everyone/, members/, staff/ (the till), office/."""

from aiogram import Router

from bot.handlers.everyone import dialogs, errors, fallback, public, system
from bot.handlers.members import (
    confirm,
    donate,
    gifts,
    join,
    member,
    privacy,
    rewards,
    stamp_cards,
)
from bot.handlers.office import campaigns, owner, poster, stats
from bot.handlers.staff import figures, refund, staff_join, till, vouchers


def get_routers() -> list[Router]:
    """Fresh routers for one dispatcher, in the order updates try them: a command first
    leaves any dialog, then staff and owners (their routers only match for them), the member
    side next, the fallback last."""
    return [
        errors.build(),
        system.build(),
        dialogs.build(),
        staff_join.build(),
        owner.build(),
        campaigns.build(),
        till.build(),
        vouchers.build(),  # the till's vouchers: before the member's voucher link
        figures.build(),
        refund.build(),
        stats.build(),
        poster.build(),
        confirm.build(),
        gifts.build_links(),
        rewards.build(),  # a voucher link opened by anyone but staff: before join's links
        join.build(),
        public.build(),
        member.build(),
        gifts.build(),
        donate.build(),
        stamp_cards.build(),
        privacy.build(),
        privacy.build_offers(),
        fallback.build(),
    ]
