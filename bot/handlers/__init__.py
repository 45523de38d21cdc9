"""The routers, by audience: everyone/, members/, staff/ (the till), office/."""

from aiogram import Router

from bot.filters import IsOwnerOrStaff, PrivateChat
from bot.handlers.everyone import dialogs, errors, fallback, public, system
from bot.handlers.members import (
    club,
    confirm,
    donate,
    gifts,
    join,
    member,
    offers,
    privacy,
    rewards,
    stamp_cards,
)
from bot.handlers.office import (
    campaigns,
    club_charges,
    club_refunds,
    owner,
    poster,
    simulate,
    stats,
)
from bot.handlers.staff import (
    api_keys,
    club_sale,
    figures,
    refund,
    staff_join,
    till,
    vouchers,
)


def _office_and_staff(*routers: Router) -> Router:
    """`routers` behind the check each of them makes itself (an owner or active staff), so
    that a member's update passes them all in one step instead of one router at a time."""
    parent = Router(name="office and staff")
    parent.message.filter(PrivateChat(), IsOwnerOrStaff())
    parent.callback_query.filter(IsOwnerOrStaff())
    parent.include_routers(*routers)
    return parent


def get_routers() -> list[Router]:
    """Fresh routers for one dispatcher, in the order updates try them: a command first
    leaves any dialog; then staff and owners (their routers only match for them); the
    member's everyday commands, the most used (no router after them takes their commands,
    buttons or callbacks); the rest of the member side; the fallback. Errors and chat-member
    updates have routers of their own, last, so that messages do not walk through them."""
    return [
        dialogs.build(),
        club.build_payments(),  # Telegram's payments and /paysupport: for anyone, first
        _office_and_staff(
            owner.build(),
            club_charges.build(),  # /club_refund TELEGRAM-ID CHARGE-ID: before the card's
            club_refunds.build(),
            campaigns.build(),
            till.build(),
            club_sale.build(),  # a month of the club sold from the till's panel
            vouchers.build(),  # the till's vouchers: before the member's voucher link
            figures.build(),
            refund.build(),
            api_keys.build(),  # /api_key: a partner's keys to the partner API
            stats.build(),
            simulate.build(),
            poster.build(),
        ),
        member.build(),
        staff_join.build(),  # /start with a staff invite: no router before takes one
        confirm.build(),
        gifts.build_links(),
        rewards.build(),  # a voucher link opened by anyone but staff: before join's links
        join.build(),
        public.build(),
        gifts.build(),
        donate.build(),
        stamp_cards.build(),
        offers.build(),
        club.build(),
        privacy.build(),
        privacy.build_offers(),
        fallback.build(),
        errors.build(),
        system.build(),
    ]
