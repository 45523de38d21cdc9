"""The faults, planned from the seed before the soak starts: when each happens and how long
it lasts is drawn from `random.Random(f"{seed}:faults")` at fixed rates per minute, so a seed
names one plan (which call a Bot API fault hits depends on timing; whether a call in a fault
window is hit is drawn from a generator of its own, seeded the same way).

- Bot API: 429 with retry_after (a share of the calls in a window), 5xx bursts (every call in
  a window), slow answers (every call in a window waits).
- Members who block the bot (403) are the workload's (actors.Member).
- The same update delivered twice (a share of them): polling, queued again as soon as the
  bot fetched it, as Telegram does when it did not see the fetch confirmed; webhook, posted
  again once answered, as Telegram does when it did not see the answer. (A process killed
  also has what it fetched and did not confirm delivered again.)
- PostgreSQL: every connection of the bot's database but the soak's own killed with
  pg_terminate_backend (or a random half of them).
- Bot processes: SIGKILL, then started again after a pause.
- The partner API: a share of the tills' POSTs cut before their answer came (the till's
  connection drops a moment after it sent the request), as a shop's bad network would.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.chaos.history import History
from tests.fakegram import ApiError, FakeTelegramServer, RecordedRequest
from tests.fakegram.server import default_description

# Faults per minute of load (each a window or a moment).
RATES = {
    "429": 3.0,
    "5xx": 3.0,
    "slow": 3.0,
    "pg_kill": 3.0,
    "pg_restart": 0.5,  # only on a PostgreSQL of the soak's own (--own-postgres)
    "sigkill": 1.5,
}
# Calls faults may hit: what the bot sends people and its button answers; long polls get
# 5xx too. Start-up calls (getMe, setWebhook, the menus) are left alone: a bot that cannot
# start is not a soak.
HIT = {
    "sendmessage",
    "sendphoto",
    "senddocument",
    "editmessagetext",
    "editmessagereplymarkup",
    "answercallbackquery",
}
SHARE_429 = 0.5  # of the calls in a 429 window
SHARE_TWICE = 0.02  # of the updates, delivered twice
SHARE_API_CUT = 0.25  # of the partner API's POSTs, whose answer the till never sees
FAULTS = (*RATES, "duplicate", "api_cut")  # what --faults may name


@dataclass(frozen=True, slots=True)
class Planned:
    at: float  # seconds after the load starts
    kind: str
    seconds: float = 0.0  # a window's length; a killed process's time down
    value: float = 0.0  # retry_after, a delay, an HTTP status, a share of connections


@dataclass
class FaultPlan:
    seed: int
    seconds: float
    events: list[Planned] = field(default_factory=list)

    @classmethod
    def draw(cls, seed: int, seconds: float, *, enabled: set[str] | None = None) -> FaultPlan:
        rng = random.Random(f"{seed}:faults")
        plan = cls(seed, seconds)
        minutes = seconds / 60
        for kind, rate in RATES.items():
            if enabled is not None and kind not in enabled:
                continue
            # At least one of each in any soak: a short soak still meets every fault.
            count = max(1, round(rate * minutes * rng.uniform(0.6, 1.4)))
            for _ in range(count):
                # Faults stop a little before the load does, so the last ones are felt.
                at = rng.uniform(0.05, 0.9) * seconds
                plan.events.append(cls._one(rng, kind, at))
        plan.events.sort(key=lambda e: e.at)
        return plan

    @staticmethod
    def _one(rng: random.Random, kind: str, at: float) -> Planned:
        if kind == "429":
            return Planned(at, kind, rng.uniform(1, 4), rng.choice([1, 1, 2, 3]))
        if kind == "5xx":
            return Planned(at, kind, rng.uniform(0.5, 3), rng.choice([500, 502, 503]))
        if kind == "slow":
            return Planned(at, kind, rng.uniform(1, 5), rng.uniform(0.3, 2.5))
        if kind == "pg_kill":
            return Planned(at, kind, value=rng.choice([1.0, 0.5]))
        if kind == "sigkill":
            return Planned(at, kind, seconds=rng.uniform(0.2, 3), value=rng.random())
        if kind == "pg_restart":
            return Planned(at, kind, seconds=rng.uniform(0.5, 4))
        return Planned(at, kind, value=rng.random())

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)


class TelegramFaults:
    """The fake Bot API's fault hook (FakeTelegramServer.fault): answers calls in a planned
    window with its fault."""

    def __init__(self, plan: FaultPlan, history: History, *, load_started: float) -> None:
        self.windows = [e for e in plan.events if e.kind in ("429", "5xx", "slow")]
        self.history = history
        self.started = load_started
        self.rng = random.Random(f"{plan.seed}:telegram")
        self.on = True
        self.hits: dict[str, int] = {"429": 0, "5xx": 0, "slow": 0}

    async def __call__(self, record: RecordedRequest) -> ApiError | None:
        if not self.on:
            return None
        method = record.method.lower()
        if method not in HIT and method != "getupdates":
            return None
        now = record.at - self.started
        for window in self.windows:
            if not window.at <= now < window.at + window.seconds:
                continue
            if window.kind == "slow" and method != "getupdates":
                self.hits["slow"] += 1
                await asyncio.sleep(window.value)
            elif window.kind == "5xx":
                self.hits["5xx"] += 1
                code = int(window.value)
                return ApiError(code, default_description(code))
            elif window.kind == "429" and method != "getupdates" and self.rng.random() < SHARE_429:
                self.hits["429"] += 1
                retry = int(window.value)
                return ApiError(429, default_description(429, retry), {"retry_after": retry})
        return None


# A worker's claim: the notice worker's and the campaign worker's batches (concurrency × 4).
BATCH = 32 + 32


async def sending_now(engine: AsyncEngine, instances: int) -> int:
    """Messages claimed for sending and not yet settled (notices and campaign messages):
    what a kill now may deliver twice. While the database is down, what the workers may
    have claimed: a batch each."""
    try:
        async with engine.connect() as conn:
            return int(
                await conn.scalar(
                    text(
                        "SELECT (SELECT count(*) FROM notices WHERE status = 'sending')"
                        " + (SELECT count(*) FROM outbox WHERE status = 'sending')"
                    )
                )
                or 0
            )
    except (OSError, DBAPIError):
        return BATCH * instances


async def terminate_backends(engine: AsyncEngine, database: str, share: float, rng: Any) -> int:
    """pg_terminate_backend on the database's connections but the soak's own (its
    application_name); `share` of them, drawn with `rng`. Returns how many were killed."""
    async with engine.connect() as conn:
        pids = (
            (
                await conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = :db"
                        " AND pid <> pg_backend_pid() AND application_name <> 'chaos-soak'"
                        " ORDER BY pid"
                    ),
                    {"db": database},
                )
            )
            .scalars()
            .all()
        )
        chosen = [pid for pid in pids if share >= 1 or rng.random() < share]
        for pid in chosen:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await conn.commit()
    return len(chosen)


class Duplicates:
    """Delivers a seeded share of the updates twice (see the module's docstring): for the
    webhook, called with each update answered (True: post it again); for polling, an
    observer of the fake server's answered getUpdates."""

    def __init__(self, seed: int, history: History, server: FakeTelegramServer) -> None:
        self.rng = random.Random(f"{seed}:duplicates")
        self.history = history
        self.server = server
        self.on = False

    def __call__(self, update: dict[str, Any]) -> bool:
        if not self.on or self.rng.random() >= SHARE_TWICE:
            return False
        self.history.fault("update delivered twice", f"update {update.get('update_id')}")
        return True

    def fetched(self, record: RecordedRequest) -> None:
        if not record.is_method("getUpdates") or not record.ok or record.response is None:
            return
        for update in record.response.get("result") or ():
            if self(update):
                self.server.redeliver(update)
