from aiogram import Router

from bot.handlers import errors, fallback, join, member, privacy, public, system


def get_routers() -> list[Router]:
    # Order matters: the fallback router answers only what no other router took.
    return [
        errors.router,
        system.router,
        join.router,
        public.router,
        member.router,
        privacy.router,
        fallback.router,
    ]
