"""One soak: a fresh database, the fake Bot API, the bot's processes, the people, the faults;
then the faults stop, what is owed is delivered, and the checks run."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from benchmarks.chaos import checks
from benchmarks.chaos.actors import (
    Cashier,
    Joiner,
    Manager,
    Marketer,
    OfferReader,
    World,
)
from benchmarks.chaos.api import ApiTill, make_key
from benchmarks.chaos.faults import (
    FAULTS,
    Duplicates,
    FaultPlan,
    TelegramFaults,
    sending_now,
    terminate_backends,
)
from benchmarks.chaos.history import History
from benchmarks.chaos.instances import WEBHOOK_PATH, WEBHOOK_SECRET, Instance, WebhookSender
from benchmarks.chaos.jobs import Nights
from benchmarks.chaos.mail import Mailroom
from bot.app import build_bot, signing_secret
from bot.config import Settings
from bot.i18n import build_i18n
from bot.runtime import Runtime
from bot.workers.notify import Notifier
from db.engine import async_url, session_factory
from db.migrate import upgrade
from db.rules.program import load_program
from db.usecases.partners import sync_partners
from tests import pg
from tests.botharness import BOT_USERNAME
from tests.conftest import ROOT
from tests.fakegram import FakeTelegramServer, UserClient
from tests.redisserver import redis_url

OWNER_ID = 1
PARTNERS = ("coffee", "books", "gym", "bakery")
API_PARTNERS = ("books", "bakery")  # whose tills also post sales through the partner API
DRAIN_SECONDS = 180.0  # what is owed must be delivered within this, once the faults stop


@dataclass
class Options:
    seed: int
    minutes: float
    instances: int = 1
    webhook: bool = False  # with one instance: polling unless this; several: always webhook
    members: int = 30  # at the start; more join all along
    cashiers: int = 6
    managers: int = 2
    api_tills: int = 2  # tills posting sales through the partner API
    faults: set[str] | None = None  # None: all of faults.RATES
    # A PostgreSQL of the soak's own (embedded), which it can restart: adds "pg_restart".
    # Without it the soak uses the tests' server, shared, which it may not restart.
    postgres: Any = None
    logs: Path | None = None  # where the bots' logs go (default: a temporary folder)


@dataclass
class Report:
    options: Options
    history: History
    results: list[checks.Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    @property
    def violations(self) -> list[checks.Violation]:
        return [v for c in self.results for v in c.violations]

    def replay(self) -> str:
        o = self.options
        command = f"python -m benchmarks.chaos --seed {o.seed} --minutes {o.minutes:g}"
        if o.instances != 1:
            command += f" --instances {o.instances}"
        if o.webhook and o.instances == 1:
            command += " --webhook"
        if o.members != Options.members:
            command += f" --members {o.members}"
        if o.cashiers != Options.cashiers:
            command += f" --cashiers {o.cashiers}"
        if o.api_tills != Options.api_tills:
            command += f" --api-tills {o.api_tills}"
        if o.faults is not None:
            command += f" --faults {','.join(sorted(o.faults))}"
        if o.postgres is not None:
            command += " --own-postgres"
        return command

    def text(self) -> str:
        o = self.options
        mode = "webhook" if o.webhook or o.instances > 1 else "polling"
        lines = [
            f"chaos soak: seed {o.seed}, {o.minutes:g} min of load, {o.instances} instance(s),"
            f" {mode}, {'its own' if o.postgres is not None else 'a shared'} PostgreSQL",
            "operations: "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.history.operations.items())),
            "faults: " + ", ".join(f"{k} {n}" for k, n in sorted(self.history.faults.items())),
        ]
        lines += [f"{k}: {v}" for k, v in self.figures.items()]
        for check in self.results:
            lines.append(
                f"check {check.name}: {len(check.violations)} violations ({check.figure})"
            )
        violations = self.violations
        if violations:
            lines.append(f"FAILED: {len(violations)} violations")
            for v in violations[:5]:
                lines.append(f"--- {v.check}: {v.what}")
                lines.append(self.history.around(v.at, actors=set(v.actors) or None))
        else:
            lines.append("OK: 0 violations")
        lines.append(f"logs: {', '.join(str(p) for p in self.logs)}")
        lines.append(f"replay: {self.replay()}")
        return "\n".join(lines)


def soak_engine(url: str, name: str) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=5,
        connect_args={"server_settings": {"application_name": name}},
    )


async def run(options: Options, admin: str) -> Report:
    """A soak on a database of its own on the server of `admin` (a maintenance database's
    URL, as tests/pg.py finds one), dropped at the end."""
    url = await pg.create_database(admin)
    try:
        return await _run(options, url)
    finally:
        await pg.drop_database(admin, url)


async def _run(options: Options, url: str) -> Report:
    history = History()
    report = Report(options, history)
    program = load_program(ROOT / "program.toml")
    own = soak_engine(url, "chaos-soak")  # the soak's own: never killed
    worker = soak_engine(url, "chaos-jobs")  # the accelerated jobs': killed like the bots'
    logs = options.logs or Path(tempfile.mkdtemp(prefix="chaos-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    redis, redis_server = redis_url()
    # The jobs the soak runs itself are the bot's code: what they log is checked as the
    # instances' logs are (jobs.log, in their format).
    jobs_log = logging.FileHandler(logs / "jobs.log", mode="w", encoding="utf-8")
    jobs_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    jobs_log.setLevel(logging.WARNING)
    logging.getLogger().addHandler(jobs_log)
    try:
        await upgrade(own)
        async with session_factory(own)() as session:
            await sync_partners(session, program)
        async with FakeTelegramServer(bot_username=BOT_USERNAME) as server:
            await _soak(options, report, program, url, own, worker, server, redis, logs)
    finally:
        logging.getLogger().removeHandler(jobs_log)
        jobs_log.close()
        await own.dispose()
        await worker.dispose()
        if redis_server is not None:
            redis_server.shutdown()
    return report


async def _soak(
    options: Options,
    report: Report,
    program: Any,
    url: str,
    own: AsyncEngine,
    worker: AsyncEngine,
    server: FakeTelegramServer,
    redis: str,
    logs: Path,
) -> None:
    history, seed = report.history, options.seed
    # A bot id of its own: Redis keeps dialogs by bot id, and outlives soaks.
    token = f"{secrets.randbelow(10**9) + 10**9}:CHAOS-{seed}"
    webhook = options.webhook or options.instances > 1
    env = {
        "BOT_TOKEN": token,
        "DATABASE_URL": url,
        "TELEGRAM_API_BASE": server.base_url,
        "ADMIN_IDS": str(OWNER_ID),
        "SIGNING_SECRET": f"chaos-{seed}",
        "REDIS_URL": redis,
        "HTTP_HOST": "127.0.0.1",
        "DELIVERY_RATE": "50",
        "FLOOD_RATE": "1000",
        "FLOOD_BURST": "1000",
        "LOG_LEVEL": "WARNING",
    }
    if webhook:
        env |= {
            "WEBHOOK_URL": f"https://bot.example.org{WEBHOOK_PATH}",
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    settings = Settings(
        bot_token=token,  # type: ignore[arg-type]
        telegram_api_base=server.base_url,
        signing_secret=f"chaos-{seed}",  # type: ignore[arg-type]
        admin_ids=[OWNER_ID],
    )
    instances = [Instance(i, env, logs / f"bot{i}.log") for i in range(max(1, options.instances))]
    report.logs = [i.log_path for i in instances]
    mailroom = Mailroom(server)
    i18n = build_i18n()
    world = World(
        seed,
        server,
        mailroom,
        history,
        signing_secret(settings),
        own,
        i18n,
        program.program.currency,
    )
    world.reward_partners = {r.slug: r.partner for r in program.rewards}
    load_seconds = options.minutes * 60
    enabled = set(options.faults) if options.faults is not None else set(FAULTS)
    if options.postgres is None:
        enabled.discard("pg_restart")
    plan = FaultPlan.draw(seed, load_seconds, enabled=enabled)
    rng = random.Random(f"{seed}:chaos")
    sender: WebhookSender | None = None
    bot = build_bot(settings)
    jobs_runtime = Runtime(settings, program, worker, session_factory(worker))
    nights = Nights(
        jobs_runtime,
        Notifier(bot, i18n, jobs_runtime.sessions, program),
        history,
        days_per_round=max(1.0, 400 / max(1, load_seconds / 3)),
        every=3.0,
    )
    timing: dict[str, float] = {}
    timing_mark = time.monotonic()
    http = aiohttp.ClientSession()
    try:
        for instance in instances:
            await instance.start()
        for instance in instances:
            await instance.wait_healthy()
        doubles = Duplicates(seed, history, server)
        if webhook:
            sender = WebhookSender(
                server, instances, random.Random(f"{seed}:webhook"), doubles, history.note
            )
            sender.start()
        else:
            server.observers.append(doubles.fetched)
            await server.wait_for(lambda: server.calls("getUpdates"), 30, what="the first poll")

        timing["start-up"] = time.monotonic() - timing_mark
        timing_mark = time.monotonic()
        cast = await _hire(world, options)
        tills = [
            ApiTill(
                world,
                i,
                options.api_tills,
                partner,
                await make_key(world, partner, OWNER_ID),
                lambda: [i.port for i in instances if i.alive],
                http,
            )
            for i, partner in (
                (i, API_PARTNERS[i % len(API_PARTNERS)]) for i in range(options.api_tills)
            )
        ]
        first = 100_000_000 + 1000
        joiner = Joiner(world, first, random.Random(f"{seed}:joiner"))
        world.deadline = time.monotonic() + 3600  # while the first members join
        await asyncio.gather(*(_first_join(joiner) for _ in range(options.members)))

        # The load and the faults.
        timing["set-up"] = time.monotonic() - timing_mark
        timing_mark = time.monotonic()
        load_started = time.time()
        world.deadline = time.monotonic() + load_seconds
        faults = TelegramFaults(plan, history, load_started=load_started)
        server.fault = faults
        doubles.on = "duplicate" in enabled
        bound = [0]
        tasks = [asyncio.create_task(c.run()) for c in cast["cashiers"] + cast["managers"]]
        tasks += [asyncio.create_task(t.run()) for t in tills]
        for till in tills:
            till.cutting = "api_cut" in enabled
        tasks.append(asyncio.create_task(cast["marketer"].run()))
        tasks.append(asyncio.create_task(joiner.run()))
        tasks.append(
            asyncio.create_task(OfferReader(world, random.Random(f"{seed}:offers")).run())
        )
        tasks.append(asyncio.create_task(nights.loop(lambda: world.running)))
        for member in list(world.active_members()):
            joiner.tasks.add(asyncio.create_task(member.live()))
        chaos = asyncio.create_task(
            _chaos(plan, world, instances, own, rng, bound, load_started, options.postgres)
        )
        invariants = asyncio.create_task(_watch_invariants(world, report, own))
        await asyncio.sleep(load_seconds)
        timing["load"] = time.monotonic() - timing_mark
        timing_mark = time.monotonic()

        # The load stops (each person finishes the step under way), then the faults.
        await asyncio.wait(tasks, timeout=60)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.wait(list(joiner.tasks), timeout=30)
        for task in list(joiner.tasks):
            task.cancel()
        chaos.cancel()
        invariants.cancel()
        await asyncio.gather(chaos, invariants, return_exceptions=True)
        faults.on = False
        doubles.on = False
        for till in tills:
            till.cutting = False
        for instance in instances:
            await instance.cancel_restarts()
        await asyncio.gather(*(i.back_up(note=history.note) for i in instances))
        timing["wind-down"] = time.monotonic() - timing_mark
        timing_mark = time.monotonic()
        report.figures["Bot API faults hit"] = ", ".join(
            f"{k} {n}" for k, n in faults.hits.items()
        )

        # Faults over, each till sends each of its sales again with its first key.
        await asyncio.gather(
            *(t.settle([s for s in world.api_sales if s.attempt.cashier == t.name]) for t in tills)
        )
        timing["api replays"] = time.monotonic() - timing_mark
        timing_mark = time.monotonic()
        drained, left = await _drain(world, nights, own)
        timing["drain"] = drained
        report.figures["drain"] = (
            f"{drained:.1f} s until nothing was owed"
            if not left
            else f"gave up after {drained:.0f} s with {left}"
        )
        async with session_factory(own)() as session:
            report.results.append(await checks.invariants(session, time.time()))
        report.results.append(await checks.sales(own, world))
        report.results.append(await checks.answers(own, world))
        report.results.append(await checks.refunds(own, world))
        report.results.append(checks.api_replays(world))
        report.results.append(await checks.stamps(own, world, program))
        report.results.append(await checks.vouchers(own, world))
        report.results.append(await checks.gifts(own, world))
        report.results.append(await checks.club(own, world))
        blocked = {m.chat for m in world.members if m.blocked or server.is_blocked(m.chat)} | set(
            _ever_blocked(world)
        )
        owed, twice = await checks.messages(own, world, blocked)
        report.results.append(owed)
        offers, offers_twice = await checks.campaigns(own, world)
        report.results.append(offers)
        report.results.append(_duplicates(twice + offers_twice, bound[0]))
        if nights.failures:
            jobs_check = checks.Check("jobs")
            for failure in nights.failures:
                jobs_check.fail(failure, time.time())
            report.results.append(jobs_check)
    finally:
        timing_mark = time.monotonic()
        if sender is not None:
            await sender.stop()
        for instance in instances:
            await instance.cancel_restarts()
        codes = [await instance.stop() for instance in instances]
        await bot.session.close()
        await http.close()
        timing["stop"] = time.monotonic() - timing_mark
        report.figures["seconds"] = ", ".join(f"{k} {v:.0f}" for k, v in timing.items())
    report.figures["instances"] = ", ".join(
        f"#{i.index}: {i.runs} runs, exit {code}" for i, code in zip(instances, codes, strict=True)
    )
    logs_check, injected = checks.log_errors([i.log_path for i in instances] + [logs / "jobs.log"])
    report.results.append(logs_check)
    report.figures["errors logged"] = f"{injected} (the injected faults')"
    _write_down(report, world, logs)
    if any(code != 0 for code in codes):
        logs_check.fail(f"an instance did not stop cleanly: exit codes {codes}", time.time())


def _ever_blocked(world: World) -> list[int]:
    members = {m.name: m.chat for m in world.members}
    return [
        members[e.detail]
        for e in world.history.events
        if e.what == "403 member blocks" and e.detail in members
    ]


def _duplicates(seen: int, bound: int) -> checks.Check:
    check = checks.Check(
        "duplicates", f"{seen} messages delivered twice, {bound} in flight at kills"
    )
    if seen > bound:
        check.fail(
            f"{seen} messages delivered twice, more than the {bound} in flight at kills",
            time.time(),
        )
    return check


async def _first_join(joiner: Joiner) -> None:
    member = joiner.new_member()
    await member.join()


async def _hire(world: World, options: Options) -> dict[str, Any]:
    """The owner hires the staff with one-time invites, before any fault."""
    owner = UserClient(world.server, OWNER_ID, first_name="Owner")
    inbox = world.mailroom.inbox(OWNER_ID)
    next_id = [200_000_001]

    async def hire(role: str, partner: str | None) -> int:
        telegram_id = next_id[0]
        next_id[0] += 1
        mark = inbox.mark()
        await owner.send(f"/staff_invite {partner + ' ' if partner else ''}{role}")
        found = await inbox.wait(lambda m: "one-time invite" in m.text, since=mark, timeout=30)
        assert found is not None, "the owner got no invite"
        link = found[0].text.split()[-1]
        person = world.mailroom.inbox(telegram_id)
        mark = person.mark()
        await UserClient(world.server, telegram_id).send("/start " + link.split("start=")[1])
        joined = await person.wait(lambda m: "You are now" in m.text, since=mark, timeout=30)
        assert joined is not None, f"the {role} could not join"
        return telegram_id

    cashiers = []
    for i in range(options.cashiers):
        partner = PARTNERS[i % len(PARTNERS)]
        tg = await hire("cashier", partner)
        cashiers.append(Cashier(world, i, options.cashiers, tg, partner))
    managers = []
    for i in range(options.managers):
        partner = PARTNERS[i % len(PARTNERS)]
        tg = await hire("manager", partner)
        managers.append(Manager(world, i, tg, partner))
    marketer = Marketer(world, await hire("marketer", None))
    return {"cashiers": cashiers, "managers": managers, "marketer": marketer}


async def _chaos(
    plan: FaultPlan,
    world: World,
    instances: list[Instance],
    own: AsyncEngine,
    rng: random.Random,
    bound: list[int],
    started: float,
    postgres: Any,
) -> None:
    """The planned moments: windows of Bot API faults are the hook's; here, killing
    connections and processes, and restarting the database."""
    history = world.history
    database = make_url(str(own.url)).database or ""
    for event in plan.events:
        await asyncio.sleep(max(0.0, started + event.at - time.time()))
        if event.kind in ("429", "5xx", "slow"):
            history.fault(f"Bot API {event.kind}", f"{event.seconds:.1f} s ({event.value:g})")
        elif event.kind == "pg_kill":
            bound[0] += await sending_now(own, len(instances))
            try:
                killed = await terminate_backends(own, database, event.value, rng)
            except (OSError, DBAPIError):
                continue  # the database is down (restarting): nothing to kill
            history.fault("pg_terminate_backend", f"{killed} connections")
        elif event.kind == "pg_restart" and postgres is not None:
            bound[0] += await sending_now(own, len(instances))
            await asyncio.to_thread(postgres._stop)
            history.fault("PostgreSQL restart", f"down {event.seconds:.1f} s")
            await asyncio.sleep(event.seconds)
            await asyncio.to_thread(postgres.start)
            history.note("chaos", "PostgreSQL up")
        elif event.kind == "sigkill":
            target = instances[int(event.value * len(instances)) % len(instances)]
            if not target.alive or target.restarting:
                continue
            bound[0] += await sending_now(own, len(instances))
            target.kill()
            await target.reap()
            history.fault("SIGKILL", f"instance {target.index}, down {event.seconds:.1f} s")
            target.restart_later(event.seconds, note=history.note)


async def _watch_invariants(world: World, report: Report, own: AsyncEngine) -> None:
    """The ledger's invariants, every few seconds while the load runs; a violation stops the
    soak at once."""
    sessions = session_factory(own)
    while True:
        await asyncio.sleep(5)
        try:
            async with sessions() as session:
                check = await checks.invariants(session, time.time())
        except (OSError, DBAPIError):
            continue  # the database is restarting
        if check.violations:
            report.results.append(check)
            world.deadline = 0  # stop
            return


OWED = text(
    "SELECT 'notices ' || status, count(*) FROM notices"
    " WHERE status IN ('pending', 'sending') GROUP BY status"
    # Personal offers the accelerated nights queued are due on their (future) night.
    " UNION ALL SELECT 'campaign messages ' || status, count(*) FROM outbox"
    " WHERE status IN ('pending', 'sending') AND next_attempt_at <= now() GROUP BY status"
    " UNION ALL SELECT 'requests pending', count(*) FROM redemption_requests"
    " WHERE status = 'pending' HAVING count(*) > 0"
)


async def _drain(world: World, nights: Nights, own: AsyncEngine) -> tuple[float, str]:
    """Until nothing is owed: requests nobody answered are closed (as their time would), and
    every notice and campaign message is sent (or given up on, for who cannot get it).
    Returns the seconds it took and what was still owed when it gave up ("" if nothing)."""
    started = time.monotonic()
    left = ""
    while time.monotonic() - started < DRAIN_SECONDS:
        await nights.close_requests(timedelta(minutes=5))
        async with own.connect() as conn:
            rows = (await conn.execute(OWED)).all()
        left = ", ".join(f"{n} {what}" for what, n in rows)
        if not left:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(1)  # what was sent last is answered and seen
    world.history.note("chaos", "drained", left or "nothing owed")
    return time.monotonic() - started, left


def _write_down(report: Report, world: World, logs: Path) -> None:
    """The whole history and every sale attempt, next to the bots' logs."""
    history = report.history
    (logs / "history.txt").write_text(
        "\n".join(history.line(e) for e in history.events) + "\n", encoding="utf-8"
    )
    lines = [
        f"#{s.k} {s.cashier} -> {s.member} {s.amount} {s.mode} receipt={s.receipt}"
        f" dialog={s.dialog} acked={s.acked is not None} told_nothing={len(s.told_nothing)}"
        f" closed={s.request_closed!r} how={s.how!r}"
        for s in world.sales
    ]
    (logs / "sales.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report.logs.append(logs / "history.txt")
