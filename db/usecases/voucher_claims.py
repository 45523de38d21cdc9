"""Claiming a voucher at the till: the cashier opens it (its QR link, a photo of it, or its
typed code), sees what it is for, and claims it in one tap.

A voucher is claimed once, only at its partner, never after its expiry, never by staff on
their own member account. Claiming a catalogue voucher posts its hold (the member's points)
to the honouring partner; a funded one moves its funder's points to the honouring partner;
a voucher worth 0 points only changes its row. Each is one transaction with its audit row
and the messages it owes (the member's news, the cashier's result)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.ledger.models import (
    AccountKind,
    AuditLog,
    Member,
    Partner,
    TxKind,
    Voucher,
    VoucherSource,
)
from db.ledger.writer import (
    Leg,
    Lot,
    fingerprint,
    lock_members,
    post,
    system_account,
    unit_of_work,
    wallet_of,
)
from db.rules.errors import DomainError
from db.rules.program import Program
from db.rules.tokens import InvalidToken, read_voucher_token
from db.rules.vouchers import (
    CLAIM_REPLAY,
    OwnVoucher,
    TooManyVoucherCodes,
    UnknownVoucher,
    VoucherClaimed,
    VoucherExpired,
    VoucherVoided,
    VoucherWrongPartner,
)
from db.usecases.outbox import Owed, StaffChat, owe
from db.usecases.partners import partner_accounts
from db.usecases.staff import StaffInfo, audit, refusal_audited
from db.usecases.vouchers import hold_key

# Typed codes that name no voucher: this many within the window and the cashier must scan.
CODE_FAILURES = 20
CODE_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class VoucherInfo:
    id: int
    code: str
    reward: str
    member_id: int
    member_telegram_id: int | None
    member_first_name: str
    partner_id: int
    partner_slug: str
    funder_id: int | None
    funder_slug: str | None
    points: int
    source: str
    status: str
    expires_at: datetime
    resolved_at: datetime | None
    transaction_id: int | None = None
    staff_id: int | None = None  # who claimed it

    def claimed_by(self, staff_id: int, now: datetime) -> bool:
        """Claimed by this cashier within CLAIM_REPLAY of `now`: a Claim now is their
        double tap."""
        return (
            self.status == "claimed"
            and self.staff_id == staff_id
            and self.resolved_at is not None
            and now - self.resolved_at <= CLAIM_REPLAY
        )

    @property
    def member_initial(self) -> str:
        """All the cashier needs to see of whose it is."""
        name = self.member_first_name.strip()
        return f"{name[0]}." if name else "—"


_funder = aliased(Partner)


async def find_voucher(session: AsyncSession, voucher_id: int) -> VoucherInfo | None:
    """The voucher with this id (None: there is none)."""
    return await _find(session, voucher_id=voucher_id)


async def _find(
    session: AsyncSession,
    *,
    voucher_id: int | None = None,
    code: str | None = None,
    lock: bool = False,
) -> VoucherInfo | None:
    stmt = (
        select(Voucher, Member.telegram_id, Member.first_name, Partner.slug, _funder.slug)
        .join(Member, Member.id == Voucher.member_id)
        .join(Partner, Partner.id == Voucher.partner_id)
        .outerjoin(_funder, _funder.id == Voucher.funder_id)
        .where(Voucher.id == voucher_id if voucher_id is not None else Voucher.code == code)
    )
    if lock:
        stmt = stmt.with_for_update(of=Voucher)
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    v, telegram_id, first_name, partner_slug, funder_slug = row
    return VoucherInfo(
        id=v.id,
        code=v.code,
        reward=v.reward,
        member_id=v.member_id,
        member_telegram_id=telegram_id,
        member_first_name=first_name,
        partner_id=v.partner_id,
        partner_slug=partner_slug,
        funder_id=v.funder_id,
        funder_slug=funder_slug,
        points=v.points,
        source=v.source,
        status=v.status,
        expires_at=v.expires_at,
        resolved_at=v.resolved_at,
        transaction_id=v.transaction_id,
        staff_id=v.staff_id,
    )


def check_claimable(
    v: VoucherInfo,
    program: Program,
    now: datetime,
    *,
    partner_id: int | None,
    telegram_id: int | None,
) -> None:
    """Refuse what may not be claimed now at `partner_id` by whoever has the Telegram id
    `telegram_id` (None: a till's software, no member card of its own), saying why (times in
    the program's zone)."""
    zone = program.program.zone
    if v.member_telegram_id is not None and v.member_telegram_id == telegram_id:
        raise OwnVoucher(member_id=v.member_id)
    if v.status == "claimed":
        assert v.resolved_at is not None
        raise VoucherClaimed(at=v.resolved_at.astimezone(zone))
    if v.status == "voided":
        raise VoucherVoided()
    if v.status == "expired" or now >= v.expires_at:
        raise VoucherExpired(at=v.expires_at.astimezone(zone))
    if v.partner_id != partner_id:
        partner = program.partner(v.partner_slug)
        raise VoucherWrongPartner(partner=partner.name if partner else v.partner_slug)


def _own_voucher_audited(
    session: AsyncSession, staff: StaffInfo, action: str
) -> AbstractAsyncContextManager[None]:
    """An OwnVoucher refusal rolls the use case back; the attempt is still written down."""
    return refusal_audited(session, staff, OwnVoucher, "own_voucher_refused", action)


async def _recent_unknown_codes(session: AsyncSession, staff: StaffInfo) -> int:
    # The audit rows' own clock (the database's), whatever `now` the caller decides with.
    return int(
        await session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.staff_id == staff.id,
                AuditLog.created_at > func.now() - CODE_WINDOW,
                AuditLog.action == "voucher_unknown",
            )
        )
        or 0
    )


async def open_voucher(
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
    *,
    now: datetime,
    secret: bytes | None = None,
    token: str | None = None,
    code: str | None = None,
    how: str,
) -> VoucherInfo:
    """The voucher a scanned token or a typed code names, if this cashier may claim it now
    (else the refusal that says why). Audited. A typed code that names no voucher is
    audited too, and a cashier with CODE_FAILURES of those within CODE_WINDOW is refused
    further typed codes until the window has passed (codes are 40 random bits: only
    guessing finds that many wrong ones)."""
    staff.require("claim_voucher")
    found: VoucherInfo | None
    refused: DomainError | None = None
    async with _own_voucher_audited(session, staff, "open"), unit_of_work(session):
        if token is not None:
            assert secret is not None
            named = read_voucher_token(secret, token)
            found = await _find(session, voucher_id=named.voucher_id)
            if found is None or int(found.expires_at.timestamp()) != int(
                named.expires_at.timestamp()
            ):
                raise InvalidToken()
        else:
            if await _recent_unknown_codes(session, staff) >= CODE_FAILURES:
                raise TooManyVoucherCodes(minutes=CODE_WINDOW.seconds // 60)
            found = await _find(session, code=code or "")
            if found is None:
                await audit(
                    session, "voucher_unknown", actor=staff.telegram_id, staff=staff, code=code
                )
        if found is not None:
            try:
                check_claimable(
                    found,
                    program,
                    now,
                    partner_id=staff.partner_id,
                    telegram_id=staff.telegram_id,
                )
            except OwnVoucher:
                raise  # audited as such (_own_voucher_audited)
            except DomainError as error:  # another partner's, expired, claimed, voided
                refused = error
            details: dict[str, Any] = {"code": found.code, "how": how}
            if refused is not None:
                details["refused"] = refused.code
            await audit(
                session,
                "voucher_open" if refused is None else "voucher_open_refused",
                actor=staff.telegram_id,
                staff=staff,
                member_id=found.member_id,
                **details,
            )
    if found is None:
        raise UnknownVoucher(code=code)  # the failure is on record (committed above)
    if refused is not None:
        raise refused  # the refused opening is on record (committed above)
    return found


@dataclass(frozen=True, slots=True)
class ClaimedVoucher:
    voucher: VoucherInfo
    transaction_id: int | None  # None: a voucher worth 0 points moves nothing
    balance: int | None  # the member's wallet after a catalogue voucher's points left it
    replayed: bool = False  # the cashier's double tap: their first claim, nothing posted now

    @property
    def news(self) -> dict[str, Any]:
        """The claim as the member's news and the cashier's result tell it."""
        v = self.voucher
        return {
            "reward": v.reward,
            "partner": v.partner_slug,
            "points": v.points if v.source == VoucherSource.CATALOGUE else 0,
            "balance": self.balance,
            "transaction": self.transaction_id,
        }


async def claim_voucher(
    session: AsyncSession,
    program: Program,
    staff: StaffInfo,
    *,
    code: str,
    now: datetime,
    reply: StaffChat | None = None,
) -> ClaimedVoucher:
    """Claim the voucher for the cashier's partner (claim_at). The member's news and the
    cashier's result (to `reply`) are owed in the same transaction. The same cashier's Claim
    again within CLAIM_REPLAY (a double tap) returns their first claim, `replayed`, and
    owes nothing."""
    staff.require("claim_voucher")
    async with _own_voucher_audited(session, staff, "claim"), unit_of_work(session):
        claimed = await claim_at(
            session,
            program,
            code,
            partner_id=staff.partner_id,
            staff_id=staff.id,
            telegram_id=staff.telegram_id,
            now=now,
        )
        if claimed.replayed:
            return claimed
        v = claimed.voucher
        await audit(
            session,
            "voucher_claim",
            actor=staff.telegram_id,
            staff=staff,
            member_id=v.member_id,
            transaction_id=claimed.transaction_id,
            **claim_details(v),
        )
        if reply is not None:
            await owe(
                session,
                Owed(
                    "voucher_claimed_staff",
                    {**claimed.news, "about": v.member_id, "code": v.code},
                    chat_id=reply.chat_id,
                    language=reply.language,
                ),
            )
        return claimed


def claim_details(v: VoucherInfo) -> dict[str, Any]:
    """What the audit log keeps of a claim."""
    return {"code": v.code, "reward": v.reward, "points": v.points, "source": v.source}


async def claim_at(
    session: AsyncSession,
    program: Program,
    code: str,
    *,
    partner_id: int | None,
    staff_id: int | None,
    telegram_id: int | None,
    now: datetime,
) -> ClaimedVoucher:
    """Claim the voucher `code` for `partner_id`, inside the caller's transaction (the caller
    checked who claims, and audits it): exactly once, whoever else claims it at the same
    moment (the voucher row is locked and its status re-read under the lock; the posting is
    keyed by the code too); the member's news is owed. `staff_id`: the cashier who claims
    (their Claim again within CLAIM_REPLAY is their double tap: their first claim,
    `replayed`, nothing posted or owed); None for a till's software through the partner
    API, which replays by its own idempotency keys (a second claim is VoucherClaimed).
    `telegram_id`: the claimer's, refused on their own voucher (None: none)."""
    seen = await _find(session, code=code)
    if seen is None:
        raise UnknownVoucher(code=code)
    # The member row before the voucher's, as the deletion takes them (it voids vouchers).
    await lock_members(session, [seen.member_id])
    v = await _find(session, code=code, lock=True)
    assert v is not None
    if staff_id is not None and v.claimed_by(staff_id, now):
        return ClaimedVoucher(v, v.transaction_id, None, replayed=True)
    check_claimable(v, program, now, partner_id=partner_id, telegram_id=telegram_id)
    redeemed = (await partner_accounts(session, v.partner_slug, former=True)).redeemed_id
    tx_id = balance = None
    columns: dict[str, Any] = {
        "kind": TxKind.VOUCHER,
        "key": hold_key(v.code),
        "digest": fingerprint(TxKind.VOUCHER, v.code, v.partner_id, v.points),
        "member_id": v.member_id,
        "partner_id": v.partner_id,
        "staff_id": staff_id,
        "reason": v.reward,
        "created_at": now,
    }
    if v.source == VoucherSource.CATALOGUE:
        # The hold's points leave the wallet, oldest lots first, as a redemption's do.
        wallet = await wallet_of(session, v.member_id)
        posted = await post(
            session,
            [Leg(wallet, -v.points), Leg(redeemed, v.points)],
            [Lot(v.member_id, -v.points)],
            post_hold=hold_key(v.code),
            **columns,
        )
        assert posted is not None  # the key is posted only with the claim, under the lock
        tx_id, balance = posted.transaction_id, posted.balances[wallet]
    elif v.points > 0:
        # Its funder's points go to the honouring partner; a promotion's voucher the
        # program funds (no funder) is paid from the program's account.
        if v.funder_slug is not None:
            issued = (await partner_accounts(session, v.funder_slug, former=True)).issued_id
        else:
            assert v.source == VoucherSource.PROMOTION
            issued = await system_account(session, AccountKind.PROGRAM)
        legs = [Leg(issued, -v.points), Leg(redeemed, v.points)]
        posted = await post(session, legs, **columns)
        assert posted is not None
        tx_id = posted.transaction_id
    await session.execute(
        update(Voucher)
        .where(Voucher.id == v.id)
        .values(status="claimed", resolved_at=now, staff_id=staff_id, transaction_id=tx_id)
    )
    claimed = ClaimedVoucher(replace(v, status="claimed", resolved_at=now), tx_id, balance)
    await owe(session, Owed("voucher_claimed", claimed.news, member_id=v.member_id))
    return claimed
