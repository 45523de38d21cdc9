"""The partner API over HTTP next to the running bot (the fake Bot API): a till's whole flow
with a sale paid with points that the member confirms, declines or ignores in Telegram while
the till polls or long-polls the sale; withdrawn and finished sales; sales without a member
card; itemised lines; a voucher claimed; quotes; scopes, other partners' sales and bad input
refused with problem details and nothing written. The ledger's invariants are checked after
each test (the `sessions` fixture)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.ledger.models import ApiSale, RedemptionRequest, Transaction, Voucher
from db.rules.program import Program
from db.rules.vouchers import display_code
from db.usecases.members import MemberInfo, get_member
from tests.apiharness import Answer, LiveApi, live_api
from tests.botharness import BotHarness
from tests.fakegram import UserClient, text_of
from tests.fakegram.client import inline_buttons
from tests.test_api_till import api_program
from tests.till import join

Sessions = async_sessionmaker[AsyncSession]
PROBLEM = "application/problem+json"


@pytest.fixture
def program() -> Program:
    return api_program()


@pytest.fixture
async def api(
    engine: AsyncEngine, sessions: Sessions, program: Program, harness: BotHarness
) -> AsyncIterator[LiveApi]:
    async with live_api(engine, sessions, program, after_commit=harness.dp["outbox"].kick) as live:
        yield live


async def joined(
    api: LiveApi, harness: BotHarness, name: str = "Ann"
) -> tuple[UserClient, MemberInfo]:
    user = harness.user(name)
    await join(user)
    return user, await api.member_of(user.user_id)


async def balance(sessions: Sessions, member: MemberInfo) -> int:
    async with sessions() as s:
        return (await get_member(s, member.id)).balance


async def count(sessions: Sessions, model: type, *where: object) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def card(member: MemberInfo) -> dict[str, str]:
    return {"card_number": member.card_number}


async def post(
    api: LiveApi, key: str, path: str, body: Any = None, idem: str | None = None
) -> Answer:
    return await api.call("POST", path, key=key, body=body, idem=idem or secrets.token_hex(8))


async def sale(
    api: LiveApi, key: str, member: MemberInfo | None, amount: str, document: str, **more: Any
) -> Answer:
    body = {"member": card(member) if member else None, "amount": amount, "document": document}
    return await post(api, key, "/sales", {**body, **more})


def path_of(answer: Answer) -> str:
    return answer.headers["Location"].removeprefix("/api/v1")


# ---------------------------------------------------------------------------- the flow


async def test_lookup_quote_sale_with_points_confirmed_refund(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    ann_chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    found = await api.call("GET", f"/members/lookup?card_token={api.token(ann)}", key=key)
    assert found.status == 200 and found.body["points"] == 50, found.body

    earned = await sale(api, key, ann, "40.00", "F-1")
    assert (earned.status, earned.body["status"], earned.body["points_earned"]) == (
        201,
        "posted",
        200,
    )
    await ann_chat.wait_message("+200 points")
    written = await count(sessions, Transaction)

    quoted = await post(
        api, key, "/quotes", {"member": card(ann), "amount": "10.00", "points": 100}
    )
    assert quoted.status == 200, quoted.body
    q = quoted.body
    assert (q["member"], q["tier"], q["to_pay"], q["points_value"], q["paid"]) == (
        True,
        "Bronze",
        "10.00",
        "1.00",
        "9.00",
    )
    assert q["points_available"] == 250 and q["max_points"] == 250  # 50 % of 10.00 is 500
    assert q["stamps"] and q["stamps"][0]["card"] == "coffee-5"
    assert await count(sessions, Transaction) == written  # the quote wrote nothing

    asked = await sale(api, key, ann, "10.00", "f-2", points=100)
    assert asked.status == 202, asked.body
    pending = asked.body
    day = datetime.now(UTC).astimezone(api.program.program.zone).date().isoformat()
    assert asked.headers["Location"] == f"/api/v1/sales/F-2?day={day}" == pending["url"]
    assert (pending["status"], pending["points_requested"], pending["member"]) == (
        "pending",
        100,
        True,
    )
    assert pending["expires_at"] is not None and pending["points_earned"] is None
    polled = await api.call("GET", path_of(asked), key=key)
    assert polled.status == 200 and polled.body["status"] == "pending"
    assert await balance(sessions, ann) == 250  # nothing moves before the member says so

    prompt = text_of(await ann_chat.wait_message("Confirm?"))
    assert "100 points" in prompt and "Bean There Coffee" in prompt
    await ann_chat.click("✅ Confirm")
    done = await api.call("GET", path_of(asked) + "&wait=10", key=key)
    assert done.status == 200 and done.body["status"] == "posted", done.body
    posted = done.body
    assert (posted["points_redeemed"], posted["paid"], posted["points_earned"]) == (
        100,
        "9.00",
        q["points_earned"],
    )
    assert posted["points_available"] == await balance(sessions, ann) == 250 - 100 + 45
    assert posted["expires_at"] is None

    refund = await post(api, key, "/refunds", {"document": "F-2", "reason": "returned"})
    assert refund.status == 201, refund.body
    assert refund.body["points_returned"] == 100 and refund.body["points_clawed_back"] == 45
    assert refund.body["points_available"] == await balance(sessions, ann) == 250
    after = await api.call("GET", path_of(asked), key=key)
    assert after.body["refunded"] == "10.00" and len(after.body["refunds"]) == 1


async def test_a_long_poll_wakes_when_the_member_confirms(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    ann_chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    asked = await sale(api, key, ann, "20.00", "L-1", points="max")
    assert asked.status == 202 and asked.body["points_requested"] == 50, asked.body
    await ann_chat.wait_message("Confirm?")
    started = time.monotonic()
    waiting = asyncio.create_task(api.call("GET", path_of(asked) + "&wait=30", key=key))
    await asyncio.sleep(1.0)
    assert not waiting.done()  # still pending: the GET waits
    await ann_chat.click("✅ Confirm")
    answer = await waiting
    took = time.monotonic() - started
    assert answer.status == 200 and answer.body["status"] == "posted", answer.body
    assert answer.body["points_redeemed"] == 50
    assert took < 5, took  # woke on the confirmation, not at the end of the wait
    # A wait on a sale that is not pending answers at once.
    started = time.monotonic()
    again = await api.call("GET", path_of(asked) + "&wait=30", key=key)
    assert again.body == answer.body and time.monotonic() - started < 2


async def test_a_long_poll_that_times_out_answers_pending(
    api: LiveApi, harness: BotHarness
) -> None:
    _chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    asked = await sale(api, key, ann, "20.00", "L-2", points=10)
    started = time.monotonic()
    answer = await api.call("GET", path_of(asked) + "&wait=1", key=key)
    assert answer.status == 200 and answer.body["status"] == "pending"
    assert 0.9 < time.monotonic() - started < 5


async def test_declined_then_finished_without_points(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    ann_chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    asked = await sale(api, key, ann, "20.00", "D-1", points=20)
    assert asked.status == 202
    early = await post(api, key, "/sales/D-1/finish-without-points")
    assert (early.status, early.code, early.body.get("state")) == (
        409,
        "request_closed",
        "pending",
    )
    await ann_chat.wait_message("Confirm?")
    await ann_chat.click("✖ Decline")
    declined = await api.call("GET", path_of(asked) + "&wait=10", key=key)
    assert declined.body["status"] == "declined", declined.body
    assert await balance(sessions, ann) == 50
    idem = "finish-D-1"
    finished = await post(api, key, "/sales/D-1/finish-without-points", idem=idem)
    assert finished.status == 201, finished.body
    assert (finished.body["status"], finished.body["points_redeemed"]) == ("posted", 0)
    assert finished.body["points_earned"] == 100  # 5 % of 20.00, a point a cent
    assert finished.headers["Location"] == asked.headers["Location"]
    replay = await post(api, key, "/sales/D-1/finish-without-points", idem=idem)
    assert replay.status == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    again = await post(api, key, "/sales/D-1/finish-without-points")
    assert again.status == 200 and again.body["status"] == "posted"
    assert await balance(sessions, ann) == 150
    assert await count(sessions, Transaction, Transaction.kind == "earn") == 1


async def test_ignored_it_expires_and_is_finished_without_points(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    _chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    asked = await sale(api, key, ann, "20.00", "E-1", points=20)
    expires = datetime.fromisoformat(asked.body["expires_at"])
    real = api.context.clock
    api.context.clock = lambda: expires + timedelta(seconds=1)
    try:
        expired = await api.call("GET", path_of(asked) + "&wait=5", key=key)
        assert expired.body["status"] == "expired", expired.body
        finished = await post(api, key, "/sales/E-1/finish-without-points")
        assert finished.status == 201 and finished.body["status"] == "posted", finished.body
    finally:
        api.context.clock = real
    async with sessions() as s:
        closed = await s.scalar(select(RedemptionRequest.status))
    assert closed == "expired"
    assert await balance(sessions, ann) == 150


async def test_a_till_withdraws_a_pending_sale(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    ann_chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    asked = await sale(api, key, ann, "20.00", "W/1", points=20)
    ask = await ann_chat.wait_message("Confirm?")
    (confirm,) = [b["callback_data"] for b in inline_buttons(ask) if b["text"] == "✅ Confirm"]
    path = "/sales/W%2F1/withdraw"
    withdrawn = await post(api, key, path)
    assert withdrawn.status == 200 and withdrawn.body["status"] == "withdrawn", withdrawn.body
    assert withdrawn.body["expires_at"] is None
    assert (await post(api, key, path)).body["status"] == "withdrawn"  # again: as it is
    # The member's buttons are closed: a late confirmation posts nothing.
    await ann_chat.click(ask, confirm, check=False)
    assert "closed" in (await ann_chat.wait_callback_answer())["text"]
    read = await api.call("GET", path_of(asked), key=key)
    assert read.body["status"] == "withdrawn"
    assert await balance(sessions, ann) == 50
    finished = await post(api, key, "/sales/W%2F1/finish-without-points")
    assert finished.status == 201 and finished.body["status"] == "posted"
    late = await post(api, key, path)
    assert (late.status, late.code, late.body["state"]) == (409, "request_closed", "posted")


async def test_sales_without_a_member_card_and_with_lines(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    _chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    walk_in = await sale(api, key, None, "12.00", "N-1")
    assert walk_in.status == 201, walk_in.body
    body = walk_in.body
    assert (body["status"], body["member"], body["paid"], body["points_earned"]) == (
        "recorded",
        False,
        "12.00",
        0,
    )
    assert (await api.call("GET", path_of(walk_in), key=key)).body == body
    assert (await sale(api, key, None, "12.00", "N-1")).status == 200  # the same again
    no_points = await sale(api, key, None, "12.00", "N-2", points=5)
    assert (no_points.status, no_points.code) == (422, "invalid_points")
    assert await count(sessions, ApiSale) == 1
    lines = [
        {"sku": "B-250", "category": "coffee-beans", "quantity": "1", "amount": "30.00"},
        {"category": "cups", "quantity": "2", "amount": "70.00"},
    ]
    quoted = await post(
        api, key, "/quotes", {"member": card(ann), "amount": "100.00", "lines": lines}
    )
    assert [p["promotion"] for p in quoted.body["promotions"]] == ["beans"], quoted.body
    itemised = await sale(api, key, ann, "100.00", "N-3", lines=lines)
    assert itemised.status == 201, itemised.body
    assert [p["promotion"] for p in itemised.body["promotions"]] == ["beans"]
    assert itemised.body["points_earned"] == quoted.body["points_earned"]
    assert itemised.body["lines"][0] == {
        "sku": "B-250",
        "category": "coffee-beans",
        "quantity": "1",
        "amount": "30.00",
    }
    short = await sale(api, key, ann, "90.00", "N-4", lines=lines)
    assert (short.status, short.code) == (422, "lines_dont_add_up")
    bad = await sale(api, key, ann, "30.00", "N-5", lines=[{"amount": "30.00", "quantity": "0"}])
    assert (bad.status, bad.code) == (422, "invalid_lines")


async def test_a_voucher_claimed_twice(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    _chat, ann = await joined(api, harness)
    books, coffee = await api.key("books"), await api.key("coffee")
    bought = await sale(api, books, ann, "40.00", "V-1")
    assert bought.status == 201 and bought.body["promotions"], bought.body
    async with sessions() as s:
        code = await s.scalar(select(Voucher.code).where(Voucher.member_id == ann.id))
    assert code is not None
    path = f"/vouchers/{display_code(code).lower()}/claim"
    elsewhere = await post(api, books, path)
    assert (elsewhere.status, elsewhere.code) == (403, "voucher_wrong_partner")
    claimed = await post(api, coffee, path, idem="claim-1")
    assert claimed.status == 201, claimed.body
    assert (claimed.body["code"], claimed.body["reward"], claimed.body["name_initial"]) == (
        display_code(code),
        "free-coffee",
        "A",
    )
    replay = await post(api, coffee, path, idem="claim-1")
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.body == claimed.body
    twice = await post(api, coffee, path, idem="claim-2")
    assert (twice.status, twice.code) == (409, "voucher_claimed")
    unknown = await post(api, coffee, "/vouchers/AAAA-AAAA/claim")
    assert (unknown.status, unknown.code) == (404, "unknown_voucher")
    async with sessions() as s:
        status = await s.scalar(select(Voucher.status).where(Voucher.code == code))
    assert status == "claimed"


# ------------------------------------------------------------------------ refusals


async def test_scopes(api: LiveApi, harness: BotHarness, sessions: Sessions) -> None:
    _chat, ann = await joined(api, harness)
    reader = await api.key("coffee", scopes=("read",))
    seller = await api.key("coffee", scopes=("sales",))
    assert (await sale(api, seller, ann, "20.00", "S-1", points=10)).status == 202
    for path, body in (
        ("/sales", {"member": card(ann), "amount": "5.00", "document": "S-2"}),
        ("/quotes", {"member": card(ann), "amount": "5.00"}),
        ("/sales/S-1/withdraw", None),
        ("/sales/S-1/finish-without-points", None),
        ("/vouchers/AAAA-AAAA/claim", None),
        ("/refunds", {"document": "S-1", "reason": "x"}),
    ):
        refused = await post(api, reader, path, body)
        assert (refused.status, refused.code) == (403, "not_staff"), (path, refused.body)
        assert refused.headers["Content-Type"] == PROBLEM
    read = await api.call("GET", "/sales/S-1", key=reader)
    assert read.status == 200 and read.body["status"] == "pending"
    assert (await api.call("GET", "/sales/S-1", key=seller)).status == 200
    assert await count(sessions, ApiSale) == 1


async def test_another_partners_sale_is_not_found(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    _chat, ann = await joined(api, harness)
    coffee, books = await api.key("coffee"), await api.key("books")
    asked = await sale(api, coffee, ann, "20.00", "P-1", points=10)
    assert asked.status == 202
    assert (await api.call("GET", path_of(asked), key=books)).status == 404
    for path, code in (
        ("/sales/P-1/withdraw", "unknown_sale"),
        ("/sales/P-1/finish-without-points", "unknown_sale"),
    ):
        answer = await post(api, books, path)
        assert (answer.status, answer.code) == (404, code), answer.body
    refund = await post(api, books, "/refunds", {"document": "P-1", "reason": "x"})
    assert refund.status == 404
    mine = await api.call("GET", path_of(asked), key=coffee)
    assert mine.body["status"] == "pending"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"amount": "-5.00"}, 422, "invalid_amount"),
        ({"amount": "0"}, 422, "invalid_amount"),
        ({"amount": "0.00"}, 422, "invalid_amount"),
        ({"amount": "99999999999"}, 422, "invalid_amount"),
        ({"amount": "5000.01"}, 422, "amount_too_large"),
        ({"amount": "ten"}, 422, "invalid_amount"),
        ({"amount": 10}, 422, "invalid_amount"),
        ({"points": -1}, 422, "invalid_points"),
        ({"points": "ten"}, 422, "invalid_points"),
        ({"points": 1.5}, 422, "invalid_points"),
        ({"points": 10**12}, 422, "invalid_points"),
        ({"points": 51}, 409, "not_enough_points"),  # the member holds 50
        ({"amount": "1.00", "points": 60}, 422, "redeem_limit_exceeded"),
        ({"lines": [{"amount": "-1.00"}]}, 422, "invalid_lines"),
        ({"member": {"card_number": "1234"}}, 422, "invalid_card_number"),
    ],
)
async def test_bad_sales_and_quotes_change_nothing(
    api: LiveApi,
    harness: BotHarness,
    sessions: Sessions,
    change: dict[str, Any],
    status: int,
    code: str,
) -> None:
    _chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    good = {"member": card(ann), "amount": "20.00", "document": "B-1"}
    for path, body in (("/sales", good), ("/quotes", {**good, "document": None})):
        sent = {k: v for k, v in {**body, **change}.items() if v is not None}
        answer = await post(api, key, path, sent)
        assert (answer.status, answer.code) == (status, code), (path, answer.body)
        assert answer.headers["Content-Type"] == PROBLEM
    assert await count(sessions, ApiSale) == 0
    assert await count(sessions, RedemptionRequest) == 0
    assert await balance(sessions, ann) == 50
    wait = await api.call("GET", "/sales/B-1?wait=-1", key=key)
    assert (wait.status, wait.code) == (422, "invalid_request")


async def test_refunds_of_sales_not_posted_and_with_a_long_idempotency_key(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    _chat, ann = await joined(api, harness)
    key = await api.key("coffee")
    assert (await sale(api, key, ann, "20.00", "R-1", points=10)).status == 202
    assert (await sale(api, key, None, "20.00", "R-2")).status == 201
    for document in ("R-1", "R-2"):
        refused = await post(api, key, "/refunds", {"document": document, "reason": "x"})
        assert (refused.status, refused.code) == (409, "not_reversible"), refused.body
    assert (await sale(api, key, ann, "20.00", "R-3")).status == 201
    long_key = "k" * 255  # the ledger keeps a long one by its digest
    refund = await post(api, key, "/refunds", {"document": "R-3", "reason": "x"}, idem=long_key)
    assert refund.status == 201, refund.body
    again = await post(api, key, "/refunds", {"document": "R-3", "reason": "x"}, idem=long_key)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await balance(sessions, ann) == 50
    digest = hashlib.sha256(long_key.encode()).hexdigest()
    keyed = Transaction.idempotency_key.like(f"api:%:refund:{digest}")
    assert await count(sessions, Transaction, keyed) == 1


async def test_a_key_that_guesses_voucher_codes_is_stopped(
    api: LiveApi, harness: BotHarness, sessions: Sessions
) -> None:
    _chat, ann = await joined(api, harness)
    books, coffee, other = await api.key("books"), await api.key("coffee"), await api.key("coffee")
    assert (await sale(api, books, ann, "40.00", "G-1")).status == 201
    async with sessions() as s:
        code = await s.scalar(select(Voucher.code).where(Voucher.member_id == ann.id))
    assert code is not None
    for n in range(20):
        wrong = await post(api, coffee, f"/vouchers/ZZZZ-{n:04d}/claim")
        assert (wrong.status, wrong.code) == (404, "unknown_voucher"), wrong.body
    stopped = await post(api, coffee, f"/vouchers/{code}/claim")
    assert (stopped.status, stopped.code) == (429, "too_many_voucher_codes"), stopped.body
    assert (await post(api, other, f"/vouchers/{code}/claim")).status == 201  # its own count
