"""t.me deep links to this bot."""

from __future__ import annotations

from aiogram import Bot


async def start_link(bot: Bot, payload: str) -> str:
    me = await bot.me()  # cached by aiogram after the first call
    return f"https://t.me/{me.username}?start={payload}"
