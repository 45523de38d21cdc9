"""The rewards catalogue and vouchers on a real PostgreSQL: taking a reward holds its points,
claiming at the till posts them to the honouring partner (exactly once, only there, never
after expiry), expiry and account deletion give them back; stock and per-member limits hold
under concurrency. The ledger's invariants (vouchers and their holds included) are checked
after each test by the `sessions` fixture."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.ledger.models import (
    AuditLog,
    Hold,
    Notice,
    RewardStock,
    Transaction,
    TxKind,
    Voucher,
    VoucherSource,
)
from db.queries.rewards_figures import RewardFigures, reward_figures
from db.queries.settlement import settlement
from db.rules.errors import NotEnoughPoints
from db.rules.program import Program, parse_program
from db.rules.tokens import InvalidToken, derive_secret, voucher_token
from db.rules.vouchers import (
    BARE_CODE,
    CodeTaken,
    OutOfStock,
    OwnVoucher,
    PriceChanged,
    RewardLimit,
    RewardUnavailable,
    TooManyVoucherCodes,
    UnknownVoucher,
    VoucherClaimed,
    VoucherExpired,
    VoucherVoided,
    VoucherWrongPartner,
    derived_code,
    display_code,
    new_code,
    normalize_code,
    typed_code,
)
from db.usecases.adjust import adjust
from db.usecases.members import get_member, register_member
from db.usecases.outbox import StaffChat
from db.usecases.partners import partner_accounts
from db.usecases.privacy import delete_member, export_member_data
from db.usecases.staff import StaffInfo, accept_invite, create_invite
from db.usecases.voucher_claims import ClaimedVoucher, claim_voucher, open_voucher
from db.usecases.vouchers import expire_vouchers, hold_key, issue_voucher, take_reward
from tests.conftest import TEST_PROGRAM

Sessions = async_sessionmaker[AsyncSession]
SECRET = derive_secret("4242:TEST-token")
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)

REWARDS: list[dict[str, Any]] = [
    {
        "slug": "free-coffee",
        "title": {"en": "A coffee of your choice", "pl": "Kawa do wyboru"},
        "partner": "coffee",
        "points": 300,
        "valid_days": 30,
    },
    {"slug": "cake", "title": "A slice of cake", "partner": "bakery", "points": 200, "stock": 3},
    {"slug": "book-bag", "title": "A bag", "partner": "books", "points": 100, "per_member": 1},
    {"slug": "house-coffee", "title": "Coffee on the house", "partner": "coffee", "points": 150},
    {"slug": "sticker", "title": "A sticker", "partner": "coffee", "points": 0},
]


def voucher_program() -> Program:
    return parse_program({**TEST_PROGRAM, "rewards": REWARDS})


@pytest.fixture
def program() -> Program:
    return voucher_program()


async def member_with(s: AsyncSession, program: Program, telegram_id: int, points: int) -> int:
    member = await register_member(s, program, telegram_id=telegram_id, now=NOW)  # +50
    if points != 50:
        await adjust(
            s,
            program,
            member_id=member.id,
            points=points - 50,
            reason="test",
            key=f"seed:{telegram_id}",
            now=NOW,
        )
    return member.id


async def cashier_at(s: AsyncSession, partner: str, telegram_id: int) -> StaffInfo:
    token = await create_invite(s, created_by=1, role="cashier", partner_slug=partner)
    return await accept_invite(s, token, telegram_id=telegram_id, first_name="Carl")


async def take(
    s: AsyncSession, program: Program, member_id: int, reward: str, op: str, **kw: Any
) -> Any:
    rules = program.reward(reward)
    return await take_reward(
        s,
        program,
        member_id=member_id,
        reward=reward,
        points=kw.pop("points", rules.points if rules else 0),
        operation=op,
        secret=SECRET,
        now=kw.pop("now", NOW),
        **kw,
    )


async def wallet(s: AsyncSession, member_id: int) -> tuple[int, int]:
    member = await get_member(s, member_id)
    await s.rollback()
    return member.balance, member.held


async def count(s: AsyncSession, model: Any, *where: Any) -> int:
    n = await s.scalar(select(func.count()).select_from(model).where(*where))
    await s.rollback()
    return int(n or 0)


async def issued(s: AsyncSession, slug: str) -> int:
    n = await s.scalar(select(RewardStock.issued).where(RewardStock.slug == slug))
    await s.rollback()
    return int(n or 0)


# Pure rules: tokens and codes.


def test_voucher_tokens_are_short_signed_and_name_their_voucher() -> None:
    from db.rules.tokens import read_voucher_token

    expires = datetime(2027, 4, 1, 9, 30, tzinfo=UTC)
    token = voucher_token(SECRET, 123_456, expires)
    assert len(token) <= 64 and token.startswith("v")
    assert all(c.isalnum() or c in "-_" for c in token)
    read = read_voucher_token(SECRET, token)
    assert (read.voucher_id, read.expires_at) == (123_456, expires)
    for forged in (
        voucher_token(derive_secret("another-token"), 123_456, expires),
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        token[:-3],
        "c" + token[1:],  # a card's prefix on a voucher's body
        voucher_token(SECRET, 123_457, expires)[:20] + token[20:],
    ):
        with pytest.raises(InvalidToken):
            read_voucher_token(SECRET, forged)


def test_codes_are_typeable_derived_and_never_all_digits() -> None:
    assert derived_code(SECRET, 7, "op-1") == derived_code(SECRET, 7, "op-1")
    assert derived_code(SECRET, 7, "op-1") != derived_code(SECRET, 8, "op-1")
    assert derived_code(SECRET, 7, "op-1") != derived_code(derive_secret("x"), 7, "op-1")
    for _ in range(500):
        code = new_code()
        assert len(code) == 8 and not code.isdigit()
        assert normalize_code(display_code(code).lower()) == code
        assert BARE_CODE.match(display_code(code)) and BARE_CODE.match(code.lower())
    assert normalize_code("abcd efgh") == "ABCDEFGH"
    assert normalize_code("0OIL-1234") == "00111234"  # read as Crockford's base32 reads it
    assert normalize_code("ABCDEFG") is None and normalize_code("ABCDEFGU") is None
    for not_a_code in ("12345678", "12.50", "1234 5678", "ABCDEFGHJ", "/start"):
        assert not BARE_CODE.match(not_a_code), not_a_code
    # Typed alone, O, I and L read as /voucher reads them; an amount with its currency does not.
    signs = frozenset({"pln", "zł"})
    for code in ("ROFP-3IKM", "rofp3lkm", "0OIL 1234"):
        assert typed_code(code, signs), code
    for not_a_code in ("12345PLN", "12345 pln", "ABCD-EFGU", "12345678"):
        assert not typed_code(not_a_code, signs), not_a_code


# Taking a reward.


async def test_the_whole_path_take_claim_balance_and_settlement(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 1000)
    carl = await cashier_at(session, "coffee", 900)
    taken = await take(session, program, ann, "free-coffee", "op-1", actor=11)
    voucher = taken.voucher
    assert not taken.replayed and voucher.points == 300 and voucher.partner == "coffee"
    assert voucher.expires_at == NOW + timedelta(days=30)
    assert voucher.code == derived_code(SECRET, ann, "op-1")
    assert await wallet(session, ann) == (1000, 300)  # held, not spent
    assert await issued(session, "free-coffee") == 1
    # The same confirmation again (a double tap) is the same voucher, held once.
    again = await take(session, program, ann, "free-coffee", "op-1")
    assert again.replayed and again.voucher.id == voucher.id
    assert await wallet(session, ann) == (1000, 300)
    # Held points cannot pay anything else.
    with pytest.raises(NotEnoughPoints):
        await adjust(session, program, member_id=ann, points=-701, reason="x", key="too-much")

    opened = await open_voucher(
        session,
        program,
        carl,
        now=NOW + timedelta(days=1),
        secret=SECRET,
        token=voucher_token(SECRET, voucher.id, voucher.expires_at),
        how="qr-link",
    )
    assert (opened.code, opened.reward) == (voucher.code, "free-coffee")
    assert opened.member_initial == "—"  # registered without a name
    claimed = await claim_voucher(
        session,
        program,
        carl,
        code=voucher.code,
        now=NOW + timedelta(days=1),
        reply=StaffChat(900, "en"),
    )
    assert claimed.balance == 700 and claimed.transaction_id is not None
    assert await wallet(session, ann) == (700, 0)
    tx = await session.get_one(Transaction, claimed.transaction_id)
    assert (tx.kind, tx.member_id, tx.staff_id, tx.idempotency_key) == (
        TxKind.VOUCHER,
        ann,
        carl.id,
        hold_key(voucher.code),
    )
    row = (await session.execute(select(Voucher).where(Voucher.id == voucher.id))).scalar_one()
    assert (row.status, row.staff_id, row.transaction_id) == ("claimed", carl.id, tx.id)
    hold = (await session.execute(select(Hold).where(Hold.key == row.hold_key))).scalar_one()
    assert (hold.status, hold.transaction_id) == ("posted", tx.id)
    await session.rollback()
    # Settlement: the café honoured 300 points, the program funded the seed.
    report = await settlement(session, program, start=NOW, end=NOW + timedelta(days=2))
    coffee = next(p for p in report.partners if p.slug == "coffee")
    assert coffee.points_redeemed == 300 and coffee.points_issued == 0
    assert report.wallets_change == 700
    await session.rollback()
    actions = (await session.execute(select(AuditLog.action).order_by(AuditLog.id))).scalars()
    assert [a for a in actions if a.startswith("voucher")] == [
        "voucher_take",
        "voucher_open",
        "voucher_claim",
    ]
    kinds = (await session.execute(select(Notice.kind, Notice.member_id, Notice.chat_id))).all()
    assert ("voucher_claimed", ann, None) in kinds
    assert ("voucher_claimed_staff", None, 900) in kinds
    await session.rollback()
    # Claimed is claimed: a second claim says when.
    with pytest.raises(VoucherClaimed) as second:
        await claim_voucher(session, program, carl, code=voucher.code, now=NOW + timedelta(days=2))
    assert second.value.params["at"] == NOW + timedelta(days=1)
    assert await count(session, Transaction, Transaction.kind == TxKind.VOUCHER) == 1


async def test_not_enough_points_counts_the_held_ones_and_changes_nothing(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 500)
    await take(session, program, ann, "free-coffee", "op-1")
    with pytest.raises(NotEnoughPoints):  # 500 - 300 held = 200 free < 300
        await take(session, program, ann, "free-coffee", "op-2")
    assert await wallet(session, ann) == (500, 300)
    assert await count(session, Voucher) == 1
    assert await count(session, Hold) == 1
    assert await issued(session, "free-coffee") == 1
    await take(session, program, ann, "cake", "op-3")  # 200 free: exactly enough
    assert await wallet(session, ann) == (500, 500)


async def test_what_cannot_be_taken_is_refused(session: AsyncSession, program: Program) -> None:
    ann = await member_with(session, program, 11, 5000)
    with pytest.raises(RewardUnavailable):
        await take(session, program, ann, "sticker", "op-1")  # 0 points: only given
    with pytest.raises(RewardUnavailable):
        await take(session, program, ann, "no-such-reward", "op-2", points=1)
    with pytest.raises(PriceChanged) as changed:
        await take(session, program, ann, "free-coffee", "op-3", points=250)
    assert changed.value.params["points"] == 300
    assert await count(session, Voucher) == 0 and await count(session, Hold) == 0


async def test_per_member_limit_counts_standing_vouchers(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 1000)
    bob = await member_with(session, program, 12, 1000)
    first = await take(session, program, ann, "book-bag", "op-1")
    with pytest.raises(RewardLimit) as limit:
        await take(session, program, ann, "book-bag", "op-2")
    assert limit.value.params["limit"] == 1
    await take(session, program, bob, "book-bag", "op-3")  # a limit per member
    # An expired voucher gave nothing: it no longer counts, and its points are back.
    expired = await expire_vouchers(session, program, now=first.voucher.expires_at)
    assert [(v.member_id, v.points_returned) for v in expired] == [(ann, 100), (bob, 100)]
    assert await wallet(session, ann) == (1000, 0)
    await take(session, program, ann, "book-bag", "op-4", now=first.voucher.expires_at)
    assert await wallet(session, ann) == (1000, 100)


async def test_the_last_units_of_stock_go_to_exactly_that_many_members(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        members = [await member_with(s, program, 100 + i, 500) for i in range(10)]

    async def attempt(member_id: int) -> str:
        async with sessions() as s:
            try:
                await take(s, program, member_id, "cake", f"op-{member_id}")
            except OutOfStock:
                return "out"
            return "taken"

    outcomes = await asyncio.gather(*(attempt(m) for m in members))
    assert sorted(outcomes) == ["out"] * 7 + ["taken"] * 3  # stock = 3
    async with sessions() as s:
        assert await count(s, Voucher, Voucher.reward == "cake") == 3
        assert await issued(s, "cake") == 3
        assert await count(s, Hold, Hold.status == "open") == 3


async def test_a_double_tap_of_confirm_at_once_takes_one_voucher(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann = await member_with(s, program, 11, 1000)

    async def confirm() -> bool:
        async with sessions() as s:
            return bool((await take(s, program, ann, "free-coffee", "same-op")).replayed)

    replays = await asyncio.gather(*(confirm() for _ in range(5)))
    assert sorted(replays) == [False] + [True] * 4
    async with sessions() as s:
        assert await count(s, Voucher) == 1
        assert await wallet(s, ann) == (1000, 300)


async def test_an_explicit_code_that_is_taken_raises(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 1000)
    bob = await member_with(session, program, 12, 1000)
    await take(session, program, ann, "free-coffee", "op-1")
    code = derived_code(SECRET, ann, "op-1")
    with pytest.raises(CodeTaken):
        await issue_voucher(
            session,
            program,
            member_id=bob,
            reward="house-coffee",
            source=VoucherSource.STAMP_CARD,
            funder="coffee",
            now=NOW,
            code=code,
        )
    await session.rollback()
    assert await count(session, Voucher) == 1


# At the till.


async def test_a_voucher_is_claimed_only_at_its_partner(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 1000)
    baker = await cashier_at(session, "bakery", 901)
    code = (await take(session, program, ann, "free-coffee", "op-1")).voucher.code
    for attempt in (
        open_voucher(session, program, baker, now=NOW, code=code, how="code"),
        claim_voucher(session, program, baker, code=code, now=NOW),
    ):
        with pytest.raises(VoucherWrongPartner) as wrong:
            await attempt
        assert wrong.value.params["partner"] == "Bean There Coffee"
    assert await wallet(session, ann) == (1000, 300)
    assert await count(session, Voucher, Voucher.status == "open") == 1


async def test_two_cashiers_claiming_at_once_post_once(
    sessions: Sessions, program: Program
) -> None:
    async with sessions() as s:
        ann = await member_with(s, program, 11, 1000)
        cashiers = [await cashier_at(s, "coffee", 900 + i) for i in range(4)]
        code = (await take(s, program, ann, "free-coffee", "op-1")).voucher.code

    async def claim(staff: StaffInfo) -> ClaimedVoucher | VoucherClaimed:
        async with sessions() as s:
            try:
                return await claim_voucher(s, program, staff, code=code, now=NOW)
            except VoucherClaimed as refused:
                return refused

    outcomes = await asyncio.gather(*(claim(c) for c in cashiers))
    won = [o for o in outcomes if isinstance(o, ClaimedVoucher)]
    assert len(won) == 1 and sum(isinstance(o, VoucherClaimed) for o in outcomes) == 3
    async with sessions() as s:
        assert await count(s, Transaction, Transaction.kind == TxKind.VOUCHER) == 1
        assert await wallet(s, ann) == (700, 0)


async def test_the_cashiers_second_tap_is_their_claim_again(
    session: AsyncSession, program: Program
) -> None:
    """A double tap at the till is answered as the claim it repeats (nothing posted or owed
    again); another cashier, or the same one minutes later, is told it was claimed."""
    ann = await member_with(session, program, 11, 1000)
    carl, dan = await cashier_at(session, "coffee", 900), await cashier_at(session, "coffee", 901)
    code = (await take(session, program, ann, "free-coffee", "op-1")).voucher.code
    first = await claim_voucher(
        session, program, carl, code=code, now=NOW, reply=StaffChat(900, "en")
    )
    assert not first.replayed
    owed = await count(session, Notice)
    again = await claim_voucher(
        session,
        program,
        carl,
        code=code,
        now=NOW + timedelta(minutes=1),
        reply=StaffChat(900, "en"),
    )
    assert again.replayed and again.transaction_id == first.transaction_id
    assert (again.voucher.resolved_at, again.voucher.staff_id) == (NOW, carl.id)
    assert await count(session, Notice) == owed
    assert await count(session, Transaction, Transaction.kind == TxKind.VOUCHER) == 1
    assert await wallet(session, ann) == (700, 0)
    for staff, at in ((dan, NOW + timedelta(minutes=1)), (carl, NOW + timedelta(minutes=6))):
        with pytest.raises(VoucherClaimed) as refused:
            await claim_voucher(session, program, staff, code=code, now=at)
        assert refused.value.params["at"] == NOW


async def test_an_expired_voucher_is_refused_and_the_job_returns_its_points(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 1000)
    carl = await cashier_at(session, "coffee", 900)
    voucher = (await take(session, program, ann, "free-coffee", "op-1")).voucher
    at = voucher.expires_at
    with pytest.raises(VoucherExpired) as expired:
        await claim_voucher(session, program, carl, code=voucher.code, now=at)
    assert expired.value.params["at"] == at
    # Not yet by the job: a run before the expiry changes nothing.
    assert await expire_vouchers(session, program, now=at - timedelta(seconds=1)) == []
    assert await wallet(session, ann) == (1000, 300)
    done = await expire_vouchers(session, program, now=at + timedelta(minutes=5))
    assert [(v.code, v.points_returned) for v in done] == [(voucher.code, 300)]
    assert await wallet(session, ann) == (1000, 0)
    assert await issued(session, "free-coffee") == 0
    assert await expire_vouchers(session, program, now=at + timedelta(minutes=10)) == []
    notices = (await session.execute(select(Notice.kind, Notice.params))).all()
    assert [p["points"] for k, p in notices if k == "voucher_expired"] == [300]
    await session.rollback()
    with pytest.raises(VoucherExpired):
        await claim_voucher(session, program, carl, code=voucher.code, now=at - timedelta(days=1))


async def test_forged_tokens_and_unknown_codes_open_nothing(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 1000)
    carl = await cashier_at(session, "coffee", 900)
    voucher = (await take(session, program, ann, "free-coffee", "op-1")).voucher
    good = voucher_token(SECRET, voucher.id, voucher.expires_at)
    for forged in (
        voucher_token(derive_secret("not-ours"), voucher.id, voucher.expires_at),
        voucher_token(SECRET, voucher.id, voucher.expires_at + timedelta(days=1)),  # not its
        voucher_token(SECRET, voucher.id + 1, voucher.expires_at),  # no such voucher
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
    ):
        with pytest.raises(InvalidToken):
            await open_voucher(
                session, program, carl, now=NOW, secret=SECRET, token=forged, how="qr-link"
            )
    with pytest.raises(UnknownVoucher):
        await open_voucher(session, program, carl, now=NOW, code="ZZZZZZZZ", how="code")
    with pytest.raises(UnknownVoucher):
        await claim_voucher(session, program, carl, code="ZZZZZZZZ", now=NOW)
    # Guessing is stopped: after 20 unknown codes in 10 minutes, typed codes are refused.
    for _ in range(19):
        with pytest.raises(UnknownVoucher):
            await open_voucher(session, program, carl, now=NOW, code="ZZZZZZZZ", how="code")
    with pytest.raises(TooManyVoucherCodes):
        await open_voucher(session, program, carl, now=NOW, code=voucher.code, how="code")
    # A scan still works.
    opened = await open_voucher(
        session, program, carl, now=NOW, secret=SECRET, token=good, how="qr-link"
    )
    assert opened.id == voucher.id
    assert await wallet(session, ann) == (1000, 300)


async def test_staff_cannot_claim_their_own_voucher(
    session: AsyncSession, program: Program
) -> None:
    carl_member = await member_with(session, program, 900, 1000)
    carl = await cashier_at(session, "coffee", 900)
    code = (await take(session, program, carl_member, "free-coffee", "op-1")).voucher.code
    with pytest.raises(OwnVoucher):
        await open_voucher(session, program, carl, now=NOW, code=code, how="code")
    with pytest.raises(OwnVoucher):
        await claim_voucher(session, program, carl, code=code, now=NOW)
    assert await count(session, AuditLog, AuditLog.action == "own_voucher_refused") == 2
    assert await wallet(session, carl_member) == (1000, 300)


async def test_a_funded_voucher_moves_the_funders_points_to_the_honouring_partner(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 50)
    carl = await cashier_at(session, "coffee", 900)
    funded = await issue_voucher(
        session,
        program,
        member_id=ann,
        reward="house-coffee",
        source=VoucherSource.STAMP_CARD,
        funder="bakery",
        now=NOW,
    )
    free = await issue_voucher(
        session, program, member_id=ann, reward="sticker", source=VoucherSource.PROMOTION, now=NOW
    )
    await session.commit()
    claimed = await claim_voucher(session, program, carl, code=funded.code, now=NOW)
    assert claimed.balance is None and claimed.transaction_id is not None
    nothing = await claim_voucher(session, program, carl, code=free.code, now=NOW)
    assert nothing.transaction_id is None  # worth 0 points: the row only
    assert await wallet(session, ann) == (50, 0)  # the member's points untouched
    report = await settlement(session, program, start=NOW, end=NOW + timedelta(days=1))
    by_slug = {p.slug: p for p in report.partners}
    assert by_slug["bakery"].points_issued == 150 and by_slug["coffee"].points_redeemed == 150
    await session.rollback()
    statuses = (await session.execute(select(Voucher.status))).scalars().all()
    assert statuses == ["claimed", "claimed"]


async def test_deleting_the_account_voids_its_vouchers(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 11, 1000)
    carl = await cashier_at(session, "bakery", 900)
    cake = (await take(session, program, ann, "cake", "op-1")).voucher
    await take(session, program, ann, "free-coffee", "op-2")
    assert await issued(session, "cake") == 1
    exported = await export_member_data(session, await get_member(session, ann))
    await session.rollback()
    assert [(v["reward"], v["status"]) for v in exported["vouchers"]] == [
        ("cake", "open"),
        ("free-coffee", "open"),
    ]
    forfeited = await delete_member(session, await get_member(session, ann), now=NOW)
    assert forfeited == 1000  # the held points went back to the wallet, then with the rest
    rows = (await session.execute(select(Voucher.status))).scalars().all()
    await session.rollback()
    assert rows == ["voided", "voided"]
    assert await count(session, Hold, Hold.status == "open") == 0
    assert await issued(session, "cake") == 0
    with pytest.raises(VoucherVoided):
        await claim_voucher(session, program, carl, code=cake.code, now=NOW)
    assert await expire_vouchers(session, program, now=NOW + timedelta(days=60)) == []


async def test_the_rewards_figures_count_vouchers_issued_claimed_and_expired(
    session: AsyncSession, program: Program
) -> None:
    ann = await member_with(session, program, 1, 1000)
    carl = await cashier_at(session, "coffee", 100)
    claimed = (await take(session, program, ann, "free-coffee", "op-1")).voucher
    lapsed = (await take(session, program, ann, "cake", "op-2")).voucher
    await take(session, program, ann, "house-coffee", "op-3", now=NOW + timedelta(hours=1))
    await claim_voucher(session, program, carl, code=claimed.code, now=NOW + timedelta(days=1))
    await expire_vouchers(session, program, now=lapsed.expires_at + timedelta(minutes=1))
    day = timedelta(days=1)

    everyone = await reward_figures(session, start=NOW, end=NOW + 60 * day)
    assert everyone == RewardFigures(3, 1, 1, 0)
    coffee = (await partner_accounts(session, "coffee")).id
    at_coffee = await reward_figures(session, start=NOW, end=NOW + 60 * day, partner_id=coffee)
    assert at_coffee == RewardFigures(2, 1, 0, 0)
    # The period counts each event on its own day: only the claim is on the second day.
    assert await reward_figures(session, start=NOW + day, end=NOW + 2 * day) == RewardFigures(
        0, 1, 0, 0
    )
