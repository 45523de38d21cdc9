"""Telegram's command menus, from the roles table (bot/roles.py): the members' menu for every
chat, and a menu of their own for each staff member's and owner's chat, in each language.
A menu Telegram refuses is not worth failing for: the commands work without it."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat
from aiogram.utils.i18n import I18n

from bot import roles
from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES

log = logging.getLogger(__name__)


def _commands(i18n: I18n, language: str | None, who: list[str]) -> list[BotCommand]:
    with i18n.context(), i18n.use_locale(language or DEFAULT_LANGUAGE):
        return [BotCommand(command=c, description=d) for c, d in roles.menu(who)]


async def set_default_menu(bot: Bot, i18n: I18n) -> None:
    """The members' menu in each language; the default (no language) is English."""
    try:
        for language in (None, *LANGUAGES):
            await bot.set_my_commands(
                _commands(i18n, language, [roles.MEMBER]), language_code=language
            )
    except TelegramAPIError as exc:
        log.warning("could not set the command menu (%s); going on without it", exc)


async def set_chat_menu(bot: Bot, i18n: I18n, chat_id: int, who: list[str]) -> None:
    """The menu of one person's private chat: their roles' commands and the member ones."""
    scope = BotCommandScopeChat(chat_id=chat_id)
    try:
        for language in (None, *LANGUAGES):
            await bot.set_my_commands(
                _commands(i18n, language, who), scope=scope, language_code=language
            )
    except TelegramAPIError as exc:
        # Telegram refuses a chat it has never seen (an owner who never opened the bot).
        log.warning("could not set the command menu of chat %s (%s)", chat_id, exc)


async def clear_chat_menu(bot: Bot, chat_id: int) -> None:
    """Back to the members' menu: someone who is no longer staff."""
    scope = BotCommandScopeChat(chat_id=chat_id)
    try:
        for language in (None, *LANGUAGES):
            await bot.delete_my_commands(scope=scope, language_code=language)
    except TelegramAPIError as exc:
        log.warning("could not clear the command menu of chat %s (%s)", chat_id, exc)


async def set_owner_menus(bot: Bot, i18n: I18n, owner_ids: list[int]) -> None:
    for owner_id in owner_ids:
        await set_chat_menu(bot, i18n, owner_id, [roles.OWNER])
