"""/simulate: a proposed program file replayed over a period's recorded sales, writing
nothing (db/queries/simulate.py), for owners and marketers. The file comes as a .toml
document, with /simulate as its caption or after the command; the period is the last 90
days, `/simulate 2026-09-01 2026-12-01` (the second day not included, as on the command
line), or one of the periods /stats and /settlement take (`2026-11`,
`2026-11-01..2026-11-30`, `week`, …). The replay runs in the background: the bot answers
everyone else meanwhile, and the table, the chart and the CSV arrive when it is done."""

from __future__ import annotations

import asyncio
import io
import logging
import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from html import escape

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject, StateFilter, or_f
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, Document, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n
from babel.dates import format_interval
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.filters import HasDocument, IsCommand, IsOwner, IsStaff, PrivateChat
from bot.handlers.office.stats import PERIODS
from bot.views import formatting as fmt
from bot.views.charts import render_simulation_chart
from bot.views.simulation import write_simulation
from db.queries.simulate import Rate, Simulation, read_only, simulate
from db.queries.stats import BadPeriod, parse_period
from db.rules.program import Program, ProgramError, parse_program

log = logging.getLogger(__name__)

DEFAULT_DAYS = 90
MAX_FILE = 256 * 1024  # bytes; the demo program is about 15 KB
MESSAGE_LIMIT = 4096
# Rows per batch of the replay in the bot: the replay's arithmetic runs on the bot's event
# loop and yields to it between batches, so a batch this small keeps each slice short
# (the till's updates wait for one batch at most); the command line takes the larger BATCH.
BOT_BATCH = 2_000


class Simulate(StatesGroup):
    file = State()  # waiting for the program file; data: the period's first and end days


def _period(args: str | None, program: Program) -> tuple[date, date] | None:
    """[first, end) in local days: the command's two days (the second not included), one of
    the periods /stats and /settlement take (`2026-11`, `2026-11-01..2026-11-30`, `week`, …),
    or the last DEFAULT_DAYS days."""
    words = (args or "").split()
    if not words:
        today = datetime.now(UTC).astimezone(program.program.zone).date()
        return today - timedelta(days=DEFAULT_DAYS), today
    if len(words) == 1:
        try:
            period = parse_period(
                words[0], now=datetime.now(UTC), timezone=program.program.timezone
            )
        except BadPeriod:
            return None
        return period.first_day, period.end.date()
    if len(words) != 2:
        return None
    try:
        first, end = date.fromisoformat(words[0]), date.fromisoformat(words[1])
    except ValueError:
        return None
    return (first, end) if first < end else None


def _days(first: date, end: date) -> str:
    return format_interval(first, end - timedelta(days=1), "yMMMd", locale=fmt.locale())


async def ask_for_file(
    message: Message, command: CommandObject, state: FSMContext, program: Program
) -> None:
    period = _period(command.args, program)
    if period is None:
        await message.answer(
            _(
                "I do not understand that period. Send /simulate for the last {days} days, "
                "/simulate with one of: {periods} (in a range both days count), or /simulate "
                "FROM TO with days like {example} (TO itself is not included)."
            ).format(days=DEFAULT_DAYS, periods=PERIODS, example="2026-09-01 2026-12-01")
        )
        return
    await state.set_state(Simulate.file)
    await state.update_data(first=period[0].isoformat(), end=period[1].isoformat())
    await message.answer(
        _(
            "Send me the proposed program file (a .toml document). I will replay the sales "
            "of {period} through it and change nothing. /cancel to stop."
        ).format(period=_days(*period))
    )


class Runner:
    """The simulations running in the background, one per chat at a time."""

    def __init__(self) -> None:
        self.running: dict[int, asyncio.Task[None]] = {}

    async def from_caption(
        self,
        message: Message,
        command: CommandObject,
        state: FSMContext,
        bot: Bot,
        program: Program,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        """The document came with /simulate (and maybe the period) as its caption."""
        period = _period(command.args, program)
        if period is None:
            await ask_for_file(message, command, state, program)
            return
        await state.clear()
        await self.start(message, period, bot, program, sessions)

    async def from_dialog(
        self,
        message: Message,
        state: FSMContext,
        bot: Bot,
        program: Program,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        """The document sent after /simulate."""
        data = await state.get_data()
        period = date.fromisoformat(data["first"]), date.fromisoformat(data["end"])
        # The wait ends once a file is taken: after a refused one (not .toml, too large,
        # invalid, another currency) the user sends the corrected file, as they are told.
        if await self.start(message, period, bot, program, sessions):
            await state.clear()

    async def start(
        self,
        message: Message,
        period: tuple[date, date],
        bot: Bot,
        program: Program,
        sessions: async_sessionmaker[AsyncSession],
    ) -> bool:
        """Whether the simulation started (else the sender was told why not)."""
        proposed = await _read_program(message, bot)
        if proposed is None:
            return False
        before, after = program.program.currency, proposed.program.currency
        if before != after:
            await message.answer(
                _(
                    "The proposed file changes the currency from {before} to {after}: a "
                    "simulation compares figures in one currency. Nothing was simulated."
                ).format(before=escape(before), after=escape(after))
            )
            return False
        chat = message.chat.id
        if chat in self.running:
            await message.answer(_("A simulation is already running here; wait for its table."))
            return False
        await message.answer(
            _(
                "Replaying {period} through {name}… The table follows when it is ready; "
                "nothing is changed."
            ).format(period=_days(*period), name=escape(fmt.text(proposed.program.name)))
        )
        task = asyncio.create_task(
            _run(message, period, proposed, program, sessions), name=f"simulate-{chat}"
        )
        self.running[chat] = task
        task.add_done_callback(lambda _task: self.running.pop(chat, None))
        return True


async def _read_program(message: Message, bot: Bot) -> Program | None:
    """The attached program, validated; None (the sender told why) when it cannot be used."""
    document: Document | None = message.document
    assert document is not None
    name = document.file_name or "program.toml"
    if not name.lower().endswith(".toml"):
        await message.answer(_("Send the program file as a .toml document."))
        return None
    if document.file_size is not None and document.file_size > MAX_FILE:
        await message.answer(
            _("That file is too large for a program file (at most {size} KB).").format(
                size=MAX_FILE // 1024
            )
        )
        return None
    buffer = io.BytesIO()
    await bot.download(document, destination=buffer)
    raw = buffer.getvalue()
    if len(raw) > MAX_FILE:  # the size Telegram stated is optional: checked again
        await message.answer(
            _("That file is too large for a program file (at most {size} KB).").format(
                size=MAX_FILE // 1024
            )
        )
        return None
    try:
        try:
            data = tomllib.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise ProgramError(f"{name}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ProgramError(f"{name}: not valid TOML: {exc}") from None
        return parse_program(data, name)
    except ProgramError as exc:
        await message.answer(
            _("This program file cannot be used, nothing was simulated:")
            + f"\n<code>{escape(str(exc))}</code>"
        )
        return None


async def _run(
    message: Message,
    period: tuple[date, date],
    proposed: Program,
    current: Program,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    zone = current.program.zone
    start = datetime.combine(period[0], time(), tzinfo=zone)
    end = datetime.combine(period[1], time(), tzinfo=zone)
    try:
        async with sessions() as session:
            await read_only(session)
            result = await simulate(
                session, proposed, current, start=start, end=end, batch=BOT_BATCH
            )
    except Exception:
        log.exception("simulation for chat %s failed", message.chat.id)
        await message.answer(_("The simulation failed; nothing was changed. Try again later."))
        return
    # Apart: a failure to send the table, chart or CSV is not a failed simulation (part of
    # the answer may be out already), so the user is not told it failed; it is logged.
    try:
        await _send(message, result, proposed, period)
    except Exception:
        log.exception("sending the simulation's answer to chat %s failed", message.chat.id)


def _rate(rate: Rate, measured: Callable[[str, str], str], assumed: str) -> str:
    if not rate.measured:
        return assumed
    return measured(fmt.percent((rate.value * 100).quantize(Decimal("0.1"))), str(rate.whole))


def _lines(result: Simulation, proposed: Program, period: tuple[date, date]) -> list[str]:
    currency = result.currency

    def money(value: Decimal) -> str:
        return fmt.money(value, currency)

    def signed(n: int) -> str:
        return ("+" if n > 0 else "") + fmt.number(n)

    def signed_money(value: Decimal) -> str:
        return ("+" if value > 0 else "") + money(value)

    def sales(n: int) -> str:
        return _n("{n} sale", "{n} sales", n).format(n=fmt.number(n))

    lines = [
        f"🧪 <b>{escape(fmt.text(proposed.program.name))}</b> · {_days(*period)}",
        _("{sales} {of_members} replayed ({refunded}).").format(
            sales=sales(result.sales),
            of_members=_n("of {n} member", "of {n} members", result.members).format(
                n=fmt.number(result.members)
            ),
            refunded=_n("{n} of them refunded", "{n} of them refunded", result.refunds).format(
                n=fmt.number(result.refunds)
            ),
        ),
        _("Points issued: {actual} as it was, {simulated} simulated ({change}).").format(
            actual=fmt.number(result.actual_points),
            simulated=fmt.number(result.simulated_points),
            change=signed(result.simulated_points - result.actual_points),
        ),
        _(
            "Expected cost of all the points and vouchers issued (the partners' own earning "
            "included): {actual} as it was, {simulated} simulated."
        ).format(actual=money(result.total_actual_cost), simulated=money(result.total_cost)),
        _(
            "Settlement, all partners: {position} as it was, {simulated} simulated ({moved})."
        ).format(
            position=money(result.position),
            simulated=money(result.simulated_position),
            moved=signed_money(result.position_change),
        ),
        _(
            "Settlement: positive, the coalition pays the partner; negative, the partner pays "
            "the coalition."
        ),
        "",
        _("<b>By partner</b>: as it was → simulated"),
    ]
    if result.end > datetime.now(UTC):
        lines.insert(2, _("⚠️ The period has not ended: sales still to come are not counted."))
    for p in result.partners:
        lines.append(
            f"<b>{escape(fmt.text(p.name))}</b>: "
            + _(
                "{sales} · points {actual} → {simulated} ({change}) · {vouchers} "
                "· expected cost {cost} → {new_cost} · settlement {position} → {new_position} "
                "({moved})"
            ).format(
                sales=sales(p.sales),
                actual=fmt.number(p.actual_issued),
                simulated=fmt.number(p.simulated_issued),
                change=signed(p.points_change),
                vouchers=_n("{n} voucher", "{n} vouchers", p.vouchers).format(
                    n=fmt.number(p.vouchers)
                ),
                cost=money(result.partner_actual_cost(p)),
                new_cost=money(result.partner_cost(p)),
                position=money(p.position),
                new_position=money(p.simulated_position),
                moved=signed_money(p.position_change),
            )
        )
    if result.program_points or result.actual_program_points or result.program_voucher_points:
        lines.append(
            _(
                "<b>The program itself</b>: promotion points {actual} → {simulated} · "
                "expected cost {cost} → {new_cost}"
            ).format(
                actual=fmt.number(result.actual_program_points),
                simulated=fmt.number(result.program_points),
                cost=money(result.program_actual_cost),
                new_cost=money(result.program_cost),
            )
        )
    if result.promotions:
        lines += ["", _("<b>Promotions</b>")]
        for promo in result.promotions:
            lines.append(
                f"<b>{escape(fmt.text(promo.title))}</b>: "
                + _("{sales} · {points} · {vouchers} · {stamps} · expected cost {cost}").format(
                    sales=sales(promo.sales),
                    points=fmt.points(promo.points),
                    vouchers=_n("{n} voucher", "{n} vouchers", promo.vouchers).format(
                        n=fmt.number(promo.vouchers)
                    ),
                    stamps=_n("{n} stamp", "{n} stamps", promo.stamps).format(
                        n=fmt.number(promo.stamps)
                    ),
                    cost=money(result.promotion_cost(promo)),
                )
            )
    lines += [
        "",
        _rate(
            result.points_rate,
            lambda rate, whole: _(
                "Redemption rate {rate}: points redeemed of the {issued} points issued since "
                "the program began."
            ).format(rate=rate, issued=fmt.number(int(whole))),
            _("No points issued yet to measure a redemption rate: costs count them all."),
        ),
        _rate(
            result.voucher_rate,
            lambda rate, whole: _(
                "Voucher claim rate {rate}: given vouchers claimed of the {resolved} claimed or "
                "expired."
            ).format(rate=rate, resolved=fmt.number(int(whole))),
            _("No given voucher claimed or expired yet: costs count every voucher."),
        ),
    ]
    if result.unknown_partner_sales:
        lines.append(
            _("Sales at partners the file does not have earn nothing in it: {sales}.").format(
                sales=sales(result.unknown_partner_sales)
            )
        )
    return lines


def _chunks(lines: list[str]) -> list[str]:
    chunks: list[str] = []
    for line in lines:
        if chunks and len(chunks[-1]) + 1 + len(line) <= MESSAGE_LIMIT:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    return chunks


async def _send(
    message: Message, result: Simulation, proposed: Program, period: tuple[date, date]
) -> None:
    for text in _chunks(_lines(result, proposed, period)):
        await message.answer(text)
    names = [fmt.text(p.name) for p in result.partners]
    png = await asyncio.to_thread(
        render_simulation_chart,
        names,
        [p.actual_issued for p in result.partners],
        [p.simulated_issued for p in result.partners],
        f"{fmt.text(proposed.program.name)} · {_days(*period)}",
        (_("As it was"), _("Simulated"), _("Points issued")),
        fmt.locale(),
    )
    await message.answer_photo(BufferedInputFile(png, filename="simulation.png"))
    out = io.StringIO()
    write_simulation(result, out)
    last = period[1] - timedelta(days=1)
    await message.answer_document(
        BufferedInputFile(
            out.getvalue().encode("utf-8-sig"),
            filename=f"simulation-{period[0].isoformat()}-{last.isoformat()}.csv",
        ),
        caption=_("The simulation's figures for a spreadsheet."),
    )


def build() -> Router:
    router = Router(name="simulate")
    router.message.filter(PrivateChat(), or_f(IsOwner(), IsStaff("simulate")))
    runner = Runner()  # this dispatcher's simulations
    router.message.register(runner.from_caption, HasDocument(), Command("simulate"))
    router.message.register(ask_for_file, Command("simulate"))
    router.message.register(runner.from_dialog, StateFilter(Simulate.file), HasDocument())
    router.message.register(_not_a_file, StateFilter(Simulate.file), ~IsCommand(), ~HasDocument())
    router.message.register(_hint, StateFilter(None), _program_file)
    return router


async def _program_file(message: Message) -> bool:
    """A .toml document without a command as its caption: a program file sent on its own."""
    document = message.document
    name = (document.file_name or "") if document is not None else ""
    return name.lower().endswith(".toml") and not (message.caption or "").startswith("/")


async def _hint(message: Message) -> None:
    await message.answer(_("To test this program file, send it with /simulate as the caption."))


async def _not_a_file(message: Message) -> None:
    await message.answer(
        _("Send the program file as a .toml document, or /cancel to stop the simulation.")
    )
