"""The partner API in the workload: a till's software at some partners posts earn-only sales
(`POST /api/v1/sales`) to whichever instance it reaches, with a key the owner made
(db/usecases/api_keys.py). It looks the member's card up first (their discount), posts the
sale under an `Idempotency-Key`, and on a fault (no answer, a 5xx, 409 in flight, 429)
sends the same request again under the same key; now and then, after a fault, under a new
key (a till that lost its key: the document number keys the sale then). Some answered sales
are replayed at once, as a till that missed the answer would.

Each sale is a `SaleAttempt` (mode "api") among the cashiers', its amount unique in the soak,
so checks.sales proves it posted exactly once when acknowledged and never when refused, and
checks.messages that its member was told. After the drain, `settle` replays every sale's
first key, faults over: an acknowledged sale must answer as it did (`Idempotent-Replayed`),
and one whose answer never came gets it now."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from benchmarks.chaos.actors import Member, SaleAttempt, World, sale_amount
from benchmarks.chaos.faults import SHARE_API_CUT
from db.engine import session_factory
from db.usecases.api_keys import create_key

FIRST_K = 30_000  # API sales' numbers (sale_amount): apart from the cashiers'
TRIES = 8  # a request sent at most this often (same key) before the till gives up
# Refusals that are not "nothing was done with this sale": the key or the document is
# another request's, or the first request is still running.
# A member who deleted their account meanwhile is "no such member", whatever was posted.
NOT_A_REFUSAL = {
    "idempotency_in_flight",
    "idempotency_key_reused",
    "receipt_taken",
    "unknown_member",
}


@dataclass
class ApiAnswer:
    status: int  # 0: no answer (the connection failed or timed out)
    body: Any = None
    replayed: bool = False
    at: float = field(default_factory=time.time)

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def retry(self) -> bool:
        """A fault's answer: the same request goes again."""
        return (
            self.status == 0
            or self.status >= 500
            or self.status == 429
            or self.code == "idempotency_in_flight"
        )


@dataclass
class ApiSale:
    attempt: SaleAttempt
    idem: str  # the first Idempotency-Key
    body: dict[str, Any]
    first: ApiAnswer | None = None  # the first answer that was not a fault's
    answers: list[ApiAnswer] = field(default_factory=list)
    settled: ApiAnswer | None = None  # the replay after the drain


async def make_key(world: World, partner: str, owner: int) -> str:
    """A `sales` key of the partner, made as the owner makes one in the bot."""
    async with session_factory(world.engine)() as session:
        _info, key = await create_key(
            session,
            actor=owner,
            owners=[owner],
            staff=None,
            partner_slug=partner,
            scopes=["sales"],
            op=secrets.token_urlsafe(9),  # the dialog that asked: one of its own
        )
    assert key is not None
    return key


class ApiTill:
    """A partner's till software calling the partner API."""

    def __init__(
        self,
        world: World,
        index: int,
        count: int,
        partner: str,
        key: str,
        ports: Callable[[], list[int]],
        http: aiohttp.ClientSession,
    ) -> None:
        self.world = world
        self.name = f"till{index}-{partner}"
        self.index, self.count, self.partner = index, count, partner
        self.key = key
        self.ports = ports  # the live instances' HTTP ports
        self.http = http
        self.rng = random.Random(f"{world.seed}:{self.name}")
        self.cuts = random.Random(f"{world.seed}:{self.name}:cuts")
        self.cutting = False  # the "api_cut" fault, while the load runs
        self.sales = 0

    def note(self, what: str, detail: str = "") -> None:
        self.world.history.note(self.name, what, detail)

    async def call(
        self, method: str, path: str, *, body: Any = None, idem: str | None = None
    ) -> ApiAnswer:
        ports = self.ports()
        if not ports:
            return ApiAnswer(0, "no instance up")
        port = self.rng.choice(ports)
        headers = {"Authorization": f"Bearer {self.key}"}
        if idem is not None:
            headers["Idempotency-Key"] = idem
        timeout = 30.0
        cut = method == "POST" and self.cutting and self.cuts.random() < SHARE_API_CUT
        if cut:
            timeout = self.cuts.uniform(0.002, 0.08)  # before, during or after its work
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with self.http.request(
                method,
                f"http://127.0.0.1:{port}/api/v1{path}",
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await response.read()
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = raw.decode(errors="replace")
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                return ApiAnswer(response.status, parsed, replayed)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if cut:
                self.world.history.fault("API answer lost", f"{self.name} {path} {idem}")
            return ApiAnswer(0, repr(exc)[:80])

    async def run(self) -> None:
        while self.world.running:
            members = self.world.active_members()
            if not members:
                await asyncio.sleep(0.5)
                continue
            await self.sale(self.rng.choice(members))
            await self.world.nap(self.rng.uniform(0.5, 3.0))

    async def card_number(self, member: Member) -> str | None:
        try:
            async with self.world.engine.connect() as conn:
                found = await conn.scalar(
                    text("SELECT card_number FROM members WHERE id = :id AND deleted_at IS NULL"),
                    {"id": member.member_id},
                )
        except (OSError, DBAPIError):
            return None
        return str(found) if found is not None else None

    async def sale(self, member: Member) -> None:
        number = await self.card_number(member)
        if number is None:
            return
        # The lookup: the member's discount, which the sale then names.
        for _try in range(3):
            found = await self.call("GET", f"/members/lookup?card_number={number}")
            if not found.retry:
                break
            await self.world.nap(self.rng.uniform(0.5, 2.0))
        if found.status != 200:
            self.note("lookup failed", f"{member.name}: {found.status} {found.code or ''}")
            return
        k = FIRST_K + self.index + self.count * self.sales
        self.sales += 1
        amount = sale_amount(k)
        document = f"API-{k}"
        attempt = SaleAttempt(
            k,
            self.name,
            0,
            self.partner,
            member.name,
            member.chat,
            amount,
            "api",
            document,
            time.time(),
        )
        self.world.sales.append(attempt)
        body = {
            "member": {"card_number": number},
            "amount": f"{amount:.2f}",
            "document": document,
            "discount_percent": found.body["discount_percent"],
        }
        sale = ApiSale(attempt, f"chaos-{self.world.seed}-{k}", body)
        self.world.api_sales.append(sale)
        self.world.history.operation(self.name, "sale (api)", f"#{k} {amount} to {member.name}")
        idem = sale.idem
        for _try in range(TRIES):
            answer = await self.call("POST", "/sales", body=body, idem=idem)
            sale.answers.append(answer)
            if not answer.retry:
                break
            self.note("api fault", f"#{k}: {answer.status} {answer.code or answer.body!s:.40}")
            wait = self.rng.uniform(0.5, 3.0)
            if answer.code == "idempotency_in_flight":
                wait = max(wait, 2.0)
            if not self.world.running:
                attempt.abandoned, attempt.how = True, "load over"
                return
            await self.world.nap(wait)
            if answer.status == 0 and self.rng.random() < 0.15:
                idem = f"chaos-{self.world.seed}-{k}-{secrets.token_hex(3)}"
                self.note("new key", f"#{k}: {idem}")
        else:
            attempt.abandoned, attempt.how = True, "no answer"
            self.note("gives up", f"#{k}")
            return
        sale.first = answer
        self.record(sale, answer)
        if answer.status in (200, 201) and self.rng.random() < 0.2:
            # The till did not see the answer: the same request again, the same key (and
            # again while that meets a fault).
            for _try in range(TRIES):
                again = await self.call("POST", "/sales", body=body, idem=idem)
                if not again.retry:
                    sale.answers.append(again)
                    break
                await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            self.world.history.operation(self.name, "api replay", f"#{k}: {again.status}")

    def record(self, sale: ApiSale, answer: ApiAnswer) -> None:
        attempt = sale.attempt
        if answer.status in (200, 201):
            body = answer.body if isinstance(answer.body, dict) else {}
            if body.get("amount") == f"{attempt.amount:.2f}":
                attempt.acked, attempt.how = answer.at, f"api {answer.status}"
                self.note("posted", f"#{attempt.k} api {answer.status}")
                return
        attempt.how = f"api {answer.status} {answer.code or ''}"
        if 400 <= answer.status < 500 and answer.code not in NOT_A_REFUSAL:
            attempt.told_nothing.append(answer.at)
        self.note("refused", f"#{attempt.k} {attempt.how}")

    async def settle(self, sales: list[ApiSale]) -> None:
        """Each of its sales' first request again, faults over (a claim left running by a
        killed instance is taken over after a minute): the answer every till gets in the
        end."""
        for sale in sales:
            deadline = time.monotonic() + 100
            while True:
                answer = await self.call("POST", "/sales", body=sale.body, idem=sale.idem)
                if not answer.retry or time.monotonic() > deadline:
                    break
                await asyncio.sleep(2)
            sale.settled = answer
            if sale.first is None:
                sale.first = answer
                self.record(sale, answer)
