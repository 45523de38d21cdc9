from aiogram import Router

from bot.handlers import fallback, member


def get_routers() -> list[Router]:
    # Order matters: the fallback router answers only what no other router took.
    return [member.router, fallback.router]
