"""Any command leaves any dialog. A command (typed, or a button of the member's menu) sent
while the chat is in a dialog step (the till's amount or points prompt, a campaign's steps,
the schedule prompt) ends that dialog first, then does what it says; /cancel just ends it.
The steps that take text refuse commands themselves (`~IsCommand()`), so a command can never
become an amount or a campaign's text."""

from __future__ import annotations

from aiogram import Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, StateFilter, and_f
from aiogram.fsm.context import FSMContext
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.filters import InDialog, IsCommand, PrivateChat, command_name
from bot.handlers.office.campaigns import Compose
from bot.handlers.staff.till import Till


async def leave_dialog(message: Message, state: FSMContext, raw_state: str | None) -> None:
    data = await state.get_data()
    await state.clear()
    if command_name(message.text) != "cancel":
        raise SkipHandler()  # the next handlers run the command itself
    if raw_state in Till:
        # In an amount or points prompt nothing of this sale is posted yet.
        await message.answer(_("Cancelled. Nothing was posted."))
    elif raw_state == Compose.when.state:
        await message.answer(
            _("Not scheduled: campaign #{id} was not sent. Its buttons above still work.").format(
                id=data.get("campaign")
            )
        )
    elif raw_state in Compose:
        await message.answer(_("Cancelled: the campaign draft is dropped, nothing was sent."))
    else:
        await message.answer(_("Cancelled."))


def build() -> Router:
    router = Router(name="dialogs")
    router.message.filter(PrivateChat())
    router.message.register(
        leave_dialog,
        InDialog(),
        IsCommand(),
        # /skip is the campaign's button step's own answer, not a way out.
        ~and_f(StateFilter(Compose.button), Command("skip")),
    )
    return router
