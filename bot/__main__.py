"""`python -m bot`: run the bot; `python -m bot --help` for the other commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bot.config import Settings
from bot.runtime import StartupError

if TYPE_CHECKING:
    from db.rules.program import Program


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise StartupError(f"{name}: {first['msg'].removeprefix('Value error, ')}") from None


def _day(text: str) -> date:
    return date.fromisoformat(text)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # APScheduler logs every run of the 10-second jobs at INFO ("Running job…",
        # "…executed successfully"); its warnings (missed runs) and errors still show.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


async def _migrate(settings: Settings) -> None:
    from bot.runtime import open_runtime

    runtime = await open_runtime(settings)
    await runtime.close()
    print("database is up to date")


async def _settlement(settings: Settings, first: date, end: date) -> tuple[Any, str]:
    """[first, end) in whole days of the program's time zone, as /settlement counts them."""
    from bot.runtime import open_runtime
    from db.queries.settlement import settlement

    runtime = await open_runtime(settings)
    try:
        zone = runtime.program.program.zone
        start = datetime.combine(first, time(), tzinfo=zone)
        end = datetime.combine(end, time(), tzinfo=zone)
        async with runtime.sessions() as session:
            report = await settlement(session, runtime.program, start=start, end=end)
    finally:
        await runtime.close()
    return report, runtime.program.program.currency


async def _simulate(
    settings: Settings, proposed: Program, source: str, first: date, end: date
) -> tuple[Any, str]:
    """Replay [first, end), whole days of the program's time zone as settlement's periods,
    through `proposed`, in a read-only transaction."""
    from bot.runtime import open_runtime
    from db.queries.simulate import currency_change, read_only, simulate

    runtime = await open_runtime(settings)
    try:
        if refusal := currency_change(proposed, runtime.program):
            raise StartupError(f"{source}: {refusal}")
        zone = runtime.program.program.zone
        start = datetime.combine(first, time(), tzinfo=zone)
        stop = datetime.combine(end, time(), tzinfo=zone)
        async with runtime.sessions() as session:
            await read_only(session)
            result = await simulate(session, proposed, runtime.program, start=start, end=stop)
    finally:
        await runtime.close()
    return result, str(proposed.program.name)


def _write_settlement(report: Any, currency: str, out: str) -> None:
    from bot.views.settlement_csv import write_settlement

    if out == "-":
        write_settlement(report, currency, sys.stdout)
        return
    with open(out, "w", newline="", encoding="utf-8") as fp:
        write_settlement(report, currency, fp)


def _writable(path: str) -> None:
    """Refuse, before a long run, a file that could not be written after it: its folder is
    missing, it is a folder, or it may not be written. Nothing is left behind."""
    target = Path(path)
    existed = target.exists()
    try:
        with target.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise StartupError(f"--csv {path}: cannot be written ({exc.strerror})") from None
    if not existed:
        target.unlink(missing_ok=True)


def _proposed(path: str) -> Program:
    """The proposed program file; PROGRAM_FILE names the current one, so a missing proposed
    file is not told to set it."""
    from db.rules.program import ProgramError, load_program

    if not Path(path).is_file():
        raise StartupError(f"{path}: program file not found")
    try:
        return load_program(path)
    except ProgramError as exc:
        raise StartupError(str(exc)) from None


def _run_simulation(settings: Settings, args: argparse.Namespace) -> None:
    from bot.views.simulation import text_report, write_simulation

    if args.end <= args.start:
        raise StartupError(
            f"--to ({args.end}) must come after --from ({args.start}); --to is exclusive"
        )
    proposed = _proposed(args.program)
    if args.csv:
        _writable(args.csv)
    result, name = asyncio.run(_simulate(settings, proposed, args.program, args.start, args.end))
    print(text_report(result, name, now=datetime.now(UTC)))
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as fp:
            write_simulation(result, fp)
        print(f"CSV written to {args.csv}")


def _counts(program: Program) -> str:
    """What check-program found, as an owner counts it: "4 partners and 1 charity, 2 stamp
    cards, 4 rewards, 6 promotions, a club (250 Stars or PLN 29.00 a month)"."""

    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    charities = len(program.charities)
    partners = count(len(program.partners) - charities, "partner", "partners")
    if charities:
        partners += " and " + count(charities, "charity", "charities")
    cards = count(len(program.stamp_cards), "stamp card", "stamp cards")
    rewards = count(len(program.rewards), "reward", "rewards")
    promotions = count(len(program.promotions), "promotion", "promotions")
    club = ""
    if program.club is not None:
        stars = program.club.stars_per_month
        prices = [f"{stars} Star{'' if stars == 1 else 's'}"] if stars else []
        if program.club.price:
            prices.append(f"{program.program.currency} {program.club.price:.2f}")
        club = f", a club ({' or '.join(prices)} a month)"
    return f"{partners}, {cards}, {rewards}, {promotions}{club}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="A coalition loyalty program run through a Telegram bot. Settings come "
        "from the environment: BOT_TOKEN, DATABASE_URL (unset: an embedded PostgreSQL under "
        "DATA_DIR), DATA_DIR, TELEGRAM_API_BASE, ADMIN_IDS, PROGRAM_FILE, SIGNING_SECRET, "
        "REDIS_URL, WEBHOOK_URL, WEBHOOK_SECRET, HTTP_HOST, HTTP_PORT, METRICS_TOKEN, "
        "DELIVERY_RATE, FLOOD_RATE, FLOOD_BURST, API_RATE, API_BURST, LOG_LEVEL "
        "(docs/operator.md: what each means).",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bot (the default)")
    sub.add_parser("migrate", help="apply database migrations and sync partners, then exit")
    check = sub.add_parser("check-program", help="validate the program file and exit")
    check.add_argument("file", nargs="?", help="default: PROGRAM_FILE or program.toml")
    report = sub.add_parser("settlement", help="write the settlement CSV for a period")
    report.add_argument(
        "--from", dest="start", type=_day, required=True, help="YYYY-MM-DD, the program's days"
    )
    report.add_argument(
        "--to",
        dest="end",
        type=_day,
        required=True,
        help="YYYY-MM-DD, exclusive: the report's last day is the day before",
    )
    report.add_argument("--out", default="-", help="file to write; default: standard output")
    simulate = sub.add_parser(
        "simulate",
        help="replay a period's sales through a proposed program file, writing nothing",
    )
    simulate.add_argument("--program", required=True, help="the proposed program file")
    simulate.add_argument(
        "--from", dest="start", type=_day, required=True, help="YYYY-MM-DD, the program's days"
    )
    simulate.add_argument(
        "--to",
        dest="end",
        type=_day,
        required=True,
        help="YYYY-MM-DD, exclusive: the period's last day is the day before (as settlement)",
    )
    simulate.add_argument("--csv", help="also write the figures to this CSV file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings()
        configure_logging(settings.log_level)
        if args.command == "check-program":
            from db.rules.program import ProgramError, load_program

            try:
                program = load_program(args.file or settings.program_file)
            except ProgramError as exc:
                raise StartupError(str(exc)) from None
            print(f"{program.program.name}: {_counts(program)}, OK")
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "settlement":
            if args.end <= args.start:
                raise StartupError(
                    f"--to ({args.end}) must come after --from ({args.start}); --to is exclusive"
                )
            report, currency = asyncio.run(_settlement(settings, args.start, args.end))
            _write_settlement(report, currency, args.out)
        elif args.command == "simulate":
            _run_simulation(settings, args)
        else:
            from bot.app import run

            asyncio.run(run(settings))
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
