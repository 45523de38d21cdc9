from aiogram import Router

from bot.handlers import errors, fallback, join, member, privacy, public, system


def get_routers() -> list[Router]:
    """Fresh routers for one dispatcher. Order matters: the fallback router answers only
    what no other router took."""
    return [
        errors.build(),
        system.build(),
        join.build(),
        public.build(),
        member.build(),
        privacy.build(),
        fallback.build(),
    ]
