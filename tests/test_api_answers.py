"""The partner API tells the till the truth about points: a refund's points taken back
include what the sale's promotions gave, a voucher a promotion gave was not paid for in
points, a sale names the voucher its promotion gave, and the points a sale's answer shows
are the member's spendable ones, as the lookup counts them. The ledger's invariants are
checked after each test (the `sessions` fixture)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.ledger.models import AuditLog, Voucher
from db.rules.errors import ReceiptTaken
from db.rules.program import Program, parse_program
from db.rules.tokens import voucher_token
from db.rules.vouchers import display_code
from db.usecases.members import MemberInfo, get_member
from db.usecases.staff import accept_invite, create_invite
from db.usecases.till import till_sale
from tests.apiharness import SECRET, Answer, LiveApi, live_api
from tests.test_api_till import api_program

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def program() -> Program:
    """The API's test program, with 100 bonus points on every sale of 10.00 at the café."""
    data: dict[str, Any] = api_program().model_dump(mode="json", by_alias=True)
    data["promotions"].append(
        {
            "slug": "first-visit",
            "title": "100 points for your visit",
            "partners": ["coffee"],
            "min_purchase": "10.00",
            "effect": {"bonus_points": 100},
            "funded_by": "program",
        }
    )
    return parse_program(data)


@pytest.fixture
async def api(engine: AsyncEngine, sessions: Sessions, program: Program) -> AsyncIterator[LiveApi]:
    async with live_api(engine, sessions, program) as live:
        yield live


async def post(api: LiveApi, key: str, path: str, body: Any = None) -> Answer:
    return await api.call("POST", path, key=key, body=body, idem=secrets.token_hex(8))


async def points(sessions: Sessions, member: MemberInfo) -> int:
    async with sessions() as s:
        return (await get_member(s, member.id)).balance


async def test_a_refund_counts_every_point_it_takes_back(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7101)
    sale = await api.sale(key, ann, "40.00", "R-1")
    assert sale.status == 201, sale.body
    assert (sale.body["points_earned"], sale.body["promotions"][0]["points"]) == (200, 100)
    before = await points(sessions, ann)
    part = await post(api, key, "/refunds", {"document": "R-1", "amount": "10.00", "reason": "x"})
    assert part.status == 201, part.body
    taken = before - await points(sessions, ann)
    assert taken == 75  # 50 earned, 25 of the promotion's 100
    assert part.body["points_clawed_back"] == taken
    assert part.body["promotions"] == [
        {"promotion": "first-visit", "points": 25, "shortfall": 0, "stamps": 0}
    ]
    rest = await post(api, key, "/refunds", {"document": "R-1", "reason": "x"})
    assert rest.status == 201, rest.body
    assert rest.body["points_clawed_back"] == before - 75 - await points(sessions, ann) == 225
    assert rest.body["points_available"] == await points(sessions, ann)


async def test_a_voucher_a_promotion_gave_was_not_paid_for_and_the_sale_names_it(
    api: LiveApi, sessions: Sessions
) -> None:
    books, coffee = await api.key("books"), await api.key("coffee")
    ann = await api.member(7102)
    sale = await api.sale(books, ann, "40.00", "BK-1")
    assert sale.status == 201, sale.body
    given = [p for p in sale.body["promotions"] if p["promotion"] == "coffee-with-a-book"]
    assert len(given) == 1, sale.body["promotions"]
    assert given[0]["reward"] == "free-coffee"
    assert given[0]["reward_title"] == "A coffee of your choice"
    assert given[0]["title"] == "Coffee with a book"
    assert given[0]["voucher_expires_at"] is not None
    read = await api.call("GET", "/sales/BK-1", key=books)
    assert read.body["promotions"] == sale.body["promotions"]
    async with sessions() as s:
        code = (await s.scalars(select(Voucher.code).where(Voucher.member_id == ann.id))).one()
    claimed = await post(api, coffee, f"/vouchers/{display_code(code)}/claim")
    assert claimed.status == 201, claimed.body
    assert (claimed.body["points"], claimed.body["source"]) == (0, "promotion")


async def test_a_sales_points_are_the_spendable_ones_as_lookup_counts_them(
    api: LiveApi, sessions: Sessions
) -> None:
    key = await api.key("coffee")
    ann = await api.member(7103)
    first = await api.sale(key, ann, "40.00", "P-1")
    assert first.status == 201, first.body
    assert "points_balance" not in first.body
    assert first.body["points_available"] == await points(sessions, ann) == 350
    # 100 points held by a request the member has not answered yet.
    held = await post(
        api,
        key,
        "/sales",
        {
            "member": {"card_number": ann.card_number},
            "amount": "10.00",
            "document": "P-2",
            "points": 100,
        },
    )
    assert held.status == 202, held.body
    second = await api.sale(key, ann, "10.00", "P-3")
    assert second.status == 201, second.body
    found = await api.call("GET", f"/members/lookup?card_number={ann.card_number}", key=key)
    assert second.body["points_available"] == found.body["points"]
    assert second.body["points_available"] == await points(sessions, ann) - 100


# ------------------------------------------------------------- one document, one sale


async def test_the_same_sale_in_another_form_is_the_same_sale(
    api: LiveApi, sessions: Sessions
) -> None:
    key = await api.key("coffee")
    ann, bob = await api.member(7104), await api.member(7105, "Bob")
    body = {"member": {"card_number": ann.card_number}, "amount": "20.00", "document": "DP-1"}
    first = await post(api, key, "/sales", {**body, "discount_percent": "0"})
    assert first.status == 201, first.body
    for again in ({**body, "discount_percent": "0.00"}, body, {**body, "amount": "20"}):
        same = await post(api, key, "/sales", again)
        assert (same.status, same.body["document"]) == (200, "DP-1"), (again, same.body)
    # What differs is said.
    other = await post(api, key, "/sales", {**body, "amount": "21.00"})
    assert other.status == 409 and other.code == "receipt_taken"
    assert other.body["differs"] == "amount" and "another amount" in other.body["detail"]
    bob_s = await post(api, key, "/sales", {**body, "member": {"card_number": bob.card_number}})
    assert bob_s.body["differs"] == "member" and "another member" in bob_s.body["detail"]
    off = await post(api, key, "/sales", {**body, "discount_percent": "3"})
    assert (off.code, off.body["differs"]) == ("receipt_taken", "discount")
    lines = [{"category": "cups", "amount": "20.00"}]
    lined = await post(api, key, "/sales", {**body, "lines": lines})
    assert (lined.code, lined.body["differs"]) == ("receipt_taken", "lines")


async def test_a_receipt_typed_in_the_bot_and_posted_with_lines_is_one_sale(
    api: LiveApi, sessions: Sessions
) -> None:
    key = await api.key("coffee")
    ann = await api.member(7106)
    lines = [
        {"category": "coffee-beans", "amount": "30.00"},
        {"category": "cups", "quantity": "2", "amount": "70.00"},
    ]
    body = {"member": {"card_number": ann.card_number}, "amount": "100.00"}
    posted = await post(api, key, "/sales", {**body, "document": "A-1045", "lines": lines})
    assert posted.status == 201, posted.body
    async with sessions() as s:
        token = await create_invite(s, created_by=1, role="cashier", partner_slug="coffee")
        staff = await accept_invite(s, token, telegram_id=7190)
        typed = await till_sale(
            s,
            api.program,
            staff,
            member_id=ann.id,
            amount=Decimal("100"),
            dialog="d1",
            receipt="A-1045",
        )
        assert typed.replayed and typed.points_earned == posted.body["points_earned"]
        # Typed first, then posted with lines: the same sale, as the ledger has it.
        await till_sale(
            s,
            api.program,
            staff,
            member_id=ann.id,
            amount=Decimal("50"),
            dialog="d2",
            receipt="A-1046",
        )
        with pytest.raises(ReceiptTaken) as taken:
            await till_sale(
                s,
                api.program,
                staff,
                member_id=ann.id,
                amount=Decimal("60"),
                dialog="d3",
                receipt="A-1046",
            )
        assert taken.value.params["differs"] == "amount"
    again = await post(
        api,
        key,
        "/sales",
        {
            **body,
            "amount": "50.00",
            "document": "A-1046",
            "lines": [{"category": "cups", "amount": "50.00"}],
        },
    )
    assert again.status == 200, again.body
    assert again.body["lines"] == []  # the ledger's sale has none
    read = await api.call("GET", "/sales/A-1046", key=key)
    assert read.body["lines"] == []
    # Made when the cashier posted it, not when the till sent it again.
    for sale in (again.body, read.body):
        assert sale["created_at"] == sale["posted_at"], sale


async def test_finishing_with_another_discount_says_the_members(
    api: LiveApi, sessions: Sessions
) -> None:
    key = await api.key("coffee")
    ann = await api.member(7107)
    body = {"member": {"card_number": ann.card_number}, "amount": "10.00", "document": "F-1"}
    asked = await post(api, key, "/sales", {**body, "points": 10})
    assert asked.status == 202, asked.body
    assert (await post(api, key, "/sales/F-1/withdraw")).status == 200
    other = await post(api, key, "/sales/F-1/finish-without-points", {"discount_percent": "3"})
    assert (other.status, other.code) == (409, "discount_changed"), other.body
    assert other.body["discount_percent"] == "0"
    assert "0 % now" in other.body["detail"]
    done = await post(api, key, "/sales/F-1/finish-without-points", {"discount_percent": "0"})
    assert (done.status, done.body["status"]) == (201, "posted"), done.body
    # When the till posted it stays; when it went into the ledger is told apart.
    assert asked.body["posted_at"] is None and asked.body["expires_at"] is not None
    assert done.body["created_at"] == asked.body["created_at"] < done.body["posted_at"]
    assert done.body["expires_at"] is None
    sale = await post(api, key, "/sales", {**body, "document": "F-2", "discount_percent": "3"})
    assert (sale.code, sale.body["discount_percent"]) == ("discount_changed", "0")


# ------------------------------------------------------- what is kept, what is told


async def test_transient_refusals_are_not_kept_under_the_idempotency_key(
    api: LiveApi, sessions: Sessions
) -> None:
    books, coffee = await api.key("books"), await api.key("coffee")
    ann = await api.member(7108)
    assert (await api.sale(books, ann, "40.00", "G-1")).status == 201
    async with sessions() as s:
        code = (await s.scalars(select(Voucher.code).where(Voucher.member_id == ann.id))).one()
    for n in range(20):
        wrong = await post(api, coffee, f"/vouchers/ZZZZ-{n:04d}/claim")
        assert wrong.code == "unknown_voucher", wrong.body
    path = f"/vouchers/{display_code(code)}/claim"
    stopped = await api.call("POST", path, key=coffee, idem="claim-G-1")
    assert (stopped.status, stopped.code) == (429, "too_many_voucher_codes"), stopped.body
    assert stopped.body["minutes"] == 10 and stopped.headers["Retry-After"] == "600"
    async with sessions() as s, s.begin():  # the window passes
        await s.execute(
            update(AuditLog)
            .where(AuditLog.action == "voucher_unknown")
            .values(created_at=func.now() - timedelta(minutes=11))
        )
    claimed = await api.call("POST", path, key=coffee, idem="claim-G-1")
    assert (claimed.status, claimed.body["source"]) == (201, "promotion"), claimed.body

    # A finish refused while the member may still answer is asked again after.
    body = {"member": {"card_number": ann.card_number}, "amount": "10.00", "document": "F-3"}
    assert (await post(api, coffee, "/sales", {**body, "points": 10})).status == 202
    finish = "/sales/F-3/finish-without-points"
    early = await api.call("POST", finish, key=coffee, idem="finish-F-3")
    assert (early.code, early.body["state"]) == ("request_closed", "pending"), early.body
    assert (await post(api, coffee, "/sales/F-3/withdraw")).status == 200
    later = await api.call("POST", finish, key=coffee, idem="finish-F-3")
    assert (later.status, later.body["status"]) == (201, "posted"), later.body
    withdraw = await post(api, coffee, "/sales/F-3/withdraw")
    assert (withdraw.code, withdraw.body["state"]) == ("request_closed", "posted")


async def test_refusals_carry_what_the_guide_says(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7109)
    assert (await api.sale(key, ann, "40.00", "E-1")).status == 201
    for reason in ({}, {"reason": ""}, {"reason": "  "}, {"reason": None}):
        refused = await post(api, key, "/refunds", {"document": "E-1", **reason})
        assert (refused.status, refused.code) == (422, "reason_required"), refused.body
    card = {"card_number": ann.card_number}
    short = await post(api, key, "/quotes", {"member": card, "amount": "100.00", "points": 9999})
    assert short.code == "redeem_limit_exceeded" and short.body["max"] == 5000, short.body
    much = await post(api, key, "/quotes", {"member": card, "amount": "1000.00", "points": 999})
    assert (much.code, much.body["asked"], much.body["available"]) == (
        "not_enough_points",
        999,
        350,  # 50 welcome, 200 earned, 100 the promotion's
    ), much.body
    sale = await post(
        api, key, "/sales", {"member": card, "amount": "1000.00", "document": "E-2", "points": 999}
    )
    got = (sale.code, sale.body["asked"], sale.body["available"])
    assert got == ("not_enough_points", 999, 350), sale.body
    most = await post(api, key, "/quotes", {"member": card, "amount": "10.00", "points": "max"})
    assert most.status == 200 and most.body["points"] == most.body["max_points"] > 0, most.body
    nobody = await post(api, key, "/quotes", {"member": None, "amount": "10.00", "points": 5})
    assert (nobody.status, nobody.code) == (422, "invalid_points"), nobody.body


async def test_a_voucher_is_claimed_by_what_its_qr_holds(api: LiveApi, sessions: Sessions) -> None:
    books, coffee = await api.key("books"), await api.key("coffee")
    ann = await api.member(7110)
    assert (await api.sale(books, ann, "40.00", "Q-1")).status == 201
    async with sessions() as s:
        v = (await s.scalars(select(Voucher).where(Voucher.member_id == ann.id))).one()
    token = voucher_token(SECRET, v.id, v.expires_at)
    forged = await post(api, coffee, f"/vouchers/{token[:-2]}AA/claim")
    assert (forged.status, forged.code) == (422, "invalid_token"), forged.body
    assert forged.body["title"] == "Not a valid token"  # not a member card's: a voucher's
    link = quote(f"https://t.me/city_bonus_bot?start={token}", safe="")
    claimed = await post(api, coffee, f"/vouchers/{link}/claim")
    assert (claimed.status, claimed.body["code"]) == (201, display_code(v.code)), claimed.body
    again = await post(api, coffee, f"/vouchers/{token}/claim")
    assert again.code == "voucher_claimed", again.body
    async with sessions() as s:
        unknown = await s.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "voucher_unknown")
        )
    assert unknown == 0  # a scanned QR is no guess


async def test_invalid_input_says_where(api: LiveApi, sessions: Sessions) -> None:
    key = await api.key("coffee")
    ann = await api.member(7111)
    bad = ann.card_number[:-1] + str((int(ann.card_number[-1]) + 1) % 10)
    body = {"member": {"card_number": bad}, "amount": "10.00", "document": "V-1"}
    wrong = await post(api, key, "/sales", body)
    assert wrong.code == "invalid_card_number", wrong.body
    assert wrong.body["detail"].startswith("body.member.card_number: "), wrong.body
    assert [e["location"] for e in wrong.body["errors"]] == ["body.member.card_number"]
    both = await post(api, key, "/sales", {**body, "member": {}})
    assert both.code == "invalid_request", both.body
    card = {"card_number": ann.card_number}
    lines = [{"category": "Coffee Beans", "amount": "10.00"}]
    lined = await post(api, key, "/sales", {**body, "member": card, "lines": lines})
    assert lined.code == "invalid_lines", lined.body
    assert [e["location"] for e in lined.body["errors"]] == ["body.lines.0.category"]
    short = [{"category": "cups", "amount": "9.00"}]
    sums = await post(api, key, "/sales", {**body, "member": card, "lines": short})
    assert sums.code == "lines_dont_add_up" and sums.body["errors"][0]["location"] == "body.lines"
    days = await api.call("GET", "/settlement?from=2026-12-02&to=2026-12-01", key=key)
    assert days.code == "invalid_request" and days.body["errors"][0]["location"] == "query.to"
