"""Vouchers at the till, for cashiers and managers: open a member's voucher (the camera opens
its QR link; a photo of the QR code goes through the till's photo reader; or its code,
`/voucher CODE` at any time, or just the code when no amount is being asked for), see what
it is for and whose it is (their initial), and claim it in one tap. The use cases check
everything again (callback data and links can be forged)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart, Filter, StateFilter
from aiogram.types import CallbackQuery, Message, TelegramObject
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import VoucherCb
from bot.filters import IsStaff, PrivateChat
from bot.views import formatting as fmt
from bot.views import vouchers as views
from bot.views.editing import edit_markup
from bot.views.qr import card_tokens
from db.rules.points import currency_signs
from db.rules.program import Program
from db.rules.tokens import VOUCHER, InvalidToken, read_voucher_token
from db.rules.vouchers import (
    CODE_ALPHABET,
    CODE_LENGTH,
    looks_like_code,
    normalize_code,
    typed_code,
)
from db.usecases.outbox import StaffChat
from db.usecases.staff import StaffInfo
from db.usecases.voucher_claims import VoucherInfo, claim_voucher, open_voucher


class TypedCode(Filter):
    """A voucher code typed alone, not an amount in the program's currency."""

    async def __call__(self, event: TelegramObject, program: Program) -> bool:
        signs = currency_signs(program.program.currency, fmt.BABEL_LOCALES)
        return isinstance(event, Message) and typed_code(event.text or "", signs)


async def _show(message: Message, program: Program, voucher: VoucherInfo) -> None:
    text, markup = views.till_panel(
        program,
        reward=voucher.reward,
        initial=voucher.member_initial,
        code=voucher.code,
        expires_at=voucher.expires_at,
    )
    await message.answer(text, reply_markup=markup)


async def scanned_link(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    staff: StaffInfo,
    program: Program,
    secret: bytes,
) -> None:
    voucher = await open_voucher(
        session,
        program,
        staff,
        now=datetime.now(UTC),
        secret=secret,
        token=command.args,
        how="qr-link",
    )
    await _show(message, program, voucher)


async def voucher_photo(
    message: Message,
    session: AsyncSession,
    staff: StaffInfo,
    program: Program,
    secret: bytes,
    texts: list[str],
) -> bool:
    """The till's photo reader found no member card: open the first voucher of ours in the
    photo, if there is one (False: there is none; the till says what it could not read)."""
    for token in card_tokens(texts, VOUCHER):
        try:
            read_voucher_token(secret, token)
        except InvalidToken:
            continue
        voucher = await open_voucher(
            session,
            program,
            staff,
            now=datetime.now(UTC),
            secret=secret,
            token=token,
            how="photo",
        )
        await _show(message, program, voucher)
        return True
    return False


async def _typed(
    message: Message, session: AsyncSession, staff: StaffInfo, program: Program, text: str
) -> None:
    code = normalize_code(text)
    if code is None:
        await message.answer(
            _("A voucher code is 8 letters and digits, like ABCD-EFGH: /voucher ABCD-EFGH")
        )
        return
    voucher = await open_voucher(
        session, program, staff, now=datetime.now(UTC), code=code, how="code"
    )
    await _show(message, program, voucher)


async def voucher_command(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    staff: StaffInfo,
    program: Program,
) -> None:
    await _typed(message, session, staff, program, command.args or "")


async def bare_code(
    message: Message, session: AsyncSession, staff: StaffInfo, program: Program
) -> None:
    await _typed(message, session, staff, program, message.text or "")


async def code_like(message: Message) -> None:
    """Typed text that was meant as a code and cannot be one: say why, not "no sale"."""
    typed = (message.text or "").strip()
    chars = re.sub(r"[\s-]", "", typed.upper())
    if len(chars) != CODE_LENGTH:
        # TRANSLATORS: {why} in "That looks like a voucher code, but {why} (…)".
        why = _n(
            "it has {n} character",
            "it has {n} characters",
            len(chars),
        ).format(n=len(chars))
    else:
        wrong = sorted({c for c in chars if c not in CODE_ALPHABET + "OIL"})
        # TRANSLATORS: {why} in "That looks like a voucher code, but {why} (…)"; a letter.
        why = _("no code has {letters}").format(letters=", ".join(wrong))
    await message.answer(
        _(
            "That looks like a voucher code, but {why} (codes are 8 characters, like "
            "K7QM-2XHD). Check it and type it again."
        ).format(why=why)
    )


async def claim(
    query: CallbackQuery,
    callback_data: VoucherCb,
    session: AsyncSession,
    staff: StaffInfo,
    program: Program,
    i18n: I18n,
) -> None:
    """One tap claims; the result (and the member's news) is owed by the claim itself. A
    second tap of the cashier who claimed it is told their first claim's result again."""
    chat_id = query.message.chat.id if query.message is not None else query.from_user.id
    claimed = await claim_voucher(
        session,
        program,
        staff,
        code=callback_data.code,
        now=datetime.now(UTC),
        reply=StaffChat(chat_id, i18n.current_locale),
    )
    await query.answer()
    if isinstance(query.message, Message):
        await edit_markup(query.message, None)
        if claimed.replayed:
            await query.message.answer(views.claim_replayed(program, claimed.voucher))


async def _looks_like_code(message: Message) -> bool:
    # A coroutine: aiogram runs a plain function filter in a worker thread.
    return message.text is not None and looks_like_code(message.text)


def build() -> Router:
    router = Router(name="till_vouchers")
    router.message.filter(PrivateChat(), IsStaff("claim_voucher"))
    router.callback_query.filter(IsStaff("claim_voucher"))
    router.message.register(
        scanned_link, CommandStart(deep_link=True, magic=F.args.startswith(VOUCHER))
    )
    router.message.register(voucher_command, Command("voucher"))
    # Outside the sale's prompts only: there, what is typed is an amount or points.
    router.message.register(bare_code, StateFilter(None), TypedCode())
    router.message.register(code_like, StateFilter(None), _looks_like_code)
    router.callback_query.register(claim, VoucherCb.filter(F.action == "claim"))
    return router
