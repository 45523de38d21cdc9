"""A till's software claims a member's voucher, and looks a member up, through the partner
API: the till's own use cases (db/usecases/voucher_claims.py claim_at, the member's card
token or number as db/usecases/till.py lookup_member reads them), for the key's partner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.ledger.models import AuditLog
from db.ledger.writer import unit_of_work
from db.rules.errors import TooManyLookups, UnknownMember
from db.rules.program import Program
from db.rules.tokens import VOUCHER, InvalidToken, read_card_token, read_voucher_token
from db.rules.vouchers import TooManyVoucherCodes, UnknownVoucher, normalize_code
from db.usecases.api.actor import ApiActor
from db.usecases.members import MemberInfo, find_by_card, get_member
from db.usecases.till import LOOKUP_FAILURES, LOOKUP_WINDOW
from db.usecases.voucher_claims import (
    CODE_FAILURES,
    CODE_WINDOW,
    ClaimedVoucher,
    claim_at,
    claim_details,
    find_voucher,
)


async def claim(
    session: AsyncSession,
    program: Program,
    actor: ApiActor,
    *,
    code: str,
    secret: bytes | None = None,
    now: datetime | None = None,
) -> ClaimedVoucher:
    """Claim the voucher `code` (as typed: "ABCD-EFGH", lower case, O for 0 all read; or
    with `secret`, what its QR holds: the token or its whole t.me link, InvalidToken if it
    is not one of ours or not the voucher's now) for
    the key's partner, once (claim_at): its points move as at a cashier's till, the
    member's news is owed, the claim is audited with the key. UnknownVoucher,
    VoucherWrongPartner, VoucherExpired, VoucherVoided, VoucherClaimed (also when this very
    till claimed it: its idempotency key replays a claim). A code that names no voucher is
    audited too, and a key with CODE_FAILURES of those within CODE_WINDOW is refused codes
    (TooManyVoucherCodes) until the window has passed, as a cashier is: codes are random,
    only guessing finds that many wrong ones."""
    actor.require("claim_voucher")
    if "start=" in code:  # the voucher's QR: its whole t.me link
        code = code.rsplit("start=", 1)[1]
    scanned = secret is not None and code.startswith(VOUCHER) and len(code) > len(VOUCHER) + 12
    typed = None if scanned else normalize_code(code)
    try:
        async with unit_of_work(session):
            if scanned:  # signed: not a guess, never counted against the key
                assert secret is not None
                named = read_voucher_token(secret, code)
                found = await find_voucher(session, named.voucher_id)
                if found is None or int(found.expires_at.timestamp()) != int(
                    named.expires_at.timestamp()
                ):
                    raise InvalidToken()
                typed = found.code
            elif await _unknown_codes(session, actor) >= CODE_FAILURES:
                raise TooManyVoucherCodes(minutes=CODE_WINDOW // timedelta(minutes=1))
            if typed is None:
                raise UnknownVoucher(code=code)
            claimed = await claim_at(
                session,
                program,
                typed,
                partner_id=actor.partner_id,
                staff_id=None,
                telegram_id=None,
                now=now or datetime.now(UTC),
            )
            v = claimed.voucher
            await actor.audit(
                session,
                "voucher_claim",
                member_id=v.member_id,
                transaction_id=claimed.transaction_id,
                **claim_details(v),
            )
            return claimed
    except UnknownVoucher:
        async with unit_of_work(session):
            await actor.audit(session, "voucher_unknown", code=code[:40])
        raise


async def _unknown_codes(session: AsyncSession, actor: ApiActor) -> int:
    # The audit rows' own clock (the database's), as the cashier's count has it.
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.api_key_id == actor.key_id,
                AuditLog.created_at > func.now() - CODE_WINDOW,
                AuditLog.action == "voucher_unknown",
            )
        )
        or 0
    )


async def _recent_failures(session: AsyncSession, actor: ApiActor) -> int:
    since = datetime.now(UTC) - LOOKUP_WINDOW
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.created_at > since,
                AuditLog.action == "lookup_failed",
                AuditLog.partner_id == actor.partner_id,
                AuditLog.details["api_key"].astext == str(actor.key_id),
            )
        )
        or 0
    )


async def lookup(
    session: AsyncSession,
    actor: ApiActor,
    *,
    secret: bytes,
    token: str | None = None,
    card_number: str | None = None,
) -> MemberInfo:
    """The member a card token (the QR's) or a card number names, audited with the key. A
    number that names nobody is audited too, and a key with LOOKUP_FAILURES of those within
    LOOKUP_WINDOW is refused numbers (TooManyLookups) until the window has passed, as a
    cashier is. InvalidToken, CardExpired, UnknownMember."""
    actor.require("lookup")
    member: MemberInfo | None
    async with unit_of_work(session):
        if token is not None:
            member = await get_member(session, read_card_token(secret, token).member_id)
        else:
            if await _recent_failures(session, actor) >= LOOKUP_FAILURES:
                raise TooManyLookups(minutes=LOOKUP_WINDOW // timedelta(minutes=1))
            member = await find_by_card(session, card_number or "")
            if member is None:
                await actor.audit(session, "lookup_failed", how="number", card_number=card_number)
        if member is not None:
            await actor.audit(
                session, "lookup", member_id=member.id, how="token" if token else "number"
            )
    if member is None:
        raise UnknownMember()  # the failure is on record (committed above)
    return member
