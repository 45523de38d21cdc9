"""SQLAlchemy models.

`accounts`, `transactions` and `entries` keep these exact names and columns because auditors,
reports and BI tools read them directly. The invariants (wallets never negative, balances equal
the sum of their entries, entries of a transaction sum to zero, postings never change) are kept
by the database itself: see the triggers in migrations 0001 and 0011.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 2)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AccountKind:
    MEMBER = "member"  # the member's points: their wallet
    STAMPS = "stamps"  # the member's stamps on one card (unit stamps:<card>)
    PARTNER_ISSUED = "partner_issued"
    PARTNER_REDEEMED = "partner_redeemed"
    PROGRAM = "program"
    BREAKAGE = "breakage"
    STAMP_POOL = "stamp_pool"  # where a card's stamps come from and go back to

    ALL = (MEMBER, STAMPS, PARTNER_ISSUED, PARTNER_REDEEMED, PROGRAM, BREAKAGE, STAMP_POOL)
    # The accounts whose balance is kept on their row, locked and moved by each posting: a
    # member's wallet and stamp cards (no overdraft, held points). The others (a partner's,
    # the program's, breakage, a stamp pool) are on every sale at their partner or of their
    # kind and may go below zero by design: their balance is the sum of their entries (the
    # view account_balances), their row's stays 0, and a posting does not lock them, so
    # sales at one partner do not wait for each other (migration 0022, whose KEPT is this).
    KEPT = (MEMBER, STAMPS)


class TxKind:
    EARN = "earn"
    REDEEM = "redeem"
    REVERSE = "reverse"
    EXPIRE = "expire"
    REFERRAL = "referral"
    WELCOME = "welcome"
    ADJUST = "adjust"
    STAMP = "stamp"  # a stamp a sale added (related_id: the sale)
    CARD_FILLED = "card_filled"  # a full card's stamps back to its pool, and its reward
    STAMPS_LAPSED = "stamps_lapsed"
    VOUCHER = "voucher"  # a voucher honoured at its partner
    GIFT = "gift"  # points one member gave another
    DONATION = "donation"  # points given to a charity partner
    # Points a promotion gave a sale (related_id: the sale), from its funders' accounts
    PROMOTION = "promotion"
    CLUB = "club"  # the club's welcome points, from the program, once per person ever

    ALL = (
        EARN,
        REDEEM,
        REVERSE,
        EXPIRE,
        REFERRAL,
        WELCOME,
        ADJUST,
        STAMP,
        CARD_FILLED,
        STAMPS_LAPSED,
        VOUCHER,
        GIFT,
        DONATION,
        PROMOTION,
        CLUB,
    )
    SALES = (EARN, REDEEM)  # a purchase at the till, with or without points
    SPEND = (EARN, REDEEM, REVERSE)  # what a member spent: sales less refunds

    @staticmethod
    def sql_in(column: str, kinds: tuple[str, ...]) -> str:
        """`column IN (...)` over these kinds, for hand-written SQL."""
        return _in(column, kinds)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Partner(Base):
    __tablename__ = "partners"
    __table_args__ = (CheckConstraint("kind IN ('business', 'charity')", name="kind"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(60), default="")
    earn_percent: Mapped[Decimal] = mapped_column(Numeric(6, 3))
    # "charity": takes donated points instead of sales.
    kind: Mapped[str] = mapped_column(String(10), default="business", server_default="business")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    synced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint("referred_by_id IS NULL OR referred_by_id <> id", name="no_self_referral"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # NULL once the member asked for deletion: the ledger rows stay, the person is gone.
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    card_number: Mapped[str] = mapped_column(String(16), unique=True)
    first_name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    tier: Mapped[str] = mapped_column(String(60), default="")
    rules_accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where they joined from: the `src-<source>` of the link they opened ("poster-coffee"),
    # "referral" for a friend's invitation; NULL for a plain /start.
    source: Mapped[str | None] = mapped_column(String(60))
    # Given by the member in /privacy (optional), for birthday promotions; changed at most
    # once a year (`birthday_set_at`). Erased with the account.
    birthday: Mapped[date | None] = mapped_column(Date)
    birthday_set_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RewardedIdentity(Base):
    """People who deleted their account after a welcome gift, an invitation reward or the
    club's welcome points (`club`), so a new account of theirs gets none of them again.
    Only a keyed hash (HMAC-SHA256 under the bot's signing secret) of the Telegram id is
    kept: nothing here names anyone or links to the old account."""

    __tablename__ = "rewarded_identities"

    identity_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    welcome: Mapped[bool] = mapped_column(Boolean, default=False)
    referral: Mapped[bool] = mapped_column(Boolean, default=False)
    club: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class Staff(Base):
    __tablename__ = "staff"
    __table_args__ = (
        CheckConstraint(_in("role", ("cashier", "manager", "marketer")), name="role"),
        CheckConstraint("role = 'marketer' OR partner_id IS NOT NULL", name="partner_role"),
        Index(
            "uq_staff_active_telegram_id",
            "telegram_id",
            unique=True,
            postgresql_where="revoked_at IS NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    role: Mapped[str] = mapped_column(String(20))
    # The first name Telegram gave when they joined (and since): the owner's lists name
    # people. Nothing else about them is kept.
    first_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StaffInvite(Base):
    """A one-time link that makes whoever opens it staff. Only the token's hash is stored,
    so a database reader cannot use pending invites."""

    __tablename__ = "staff_invites"
    __table_args__ = (
        CheckConstraint(_in("role", ("cashier", "manager", "marketer")), name="role"),
        CheckConstraint("role = 'marketer' OR partner_id IS NOT NULL", name="partner_role"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    role: Mapped[str] = mapped_column(String(20))
    created_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    used_by: Mapped[int | None] = mapped_column(BigInteger)


class RedemptionRequest(Base):
    """A cashier's request to pay part of a purchase with points, waiting for the member to
    confirm it in their own chat. The public id goes in callback data; the row decides."""

    __tablename__ = "redemption_requests"
    __table_args__ = (
        CheckConstraint(
            _in(
                "status",
                ("pending", "confirmed", "declined", "expired", "cancelled", "unreachable"),
            ),
            name="status",
        ),
        CheckConstraint("points > 0 AND amount > 0", name="positive"),
        CheckConstraint(
            "discount_percent >= 0 AND discount_percent < 100", name="discount_percent"
        ),
        Index(
            "ix_redemption_requests_pending", "expires_at", postgresql_where="status = 'pending'"
        ),
        # A cashier's request has their staff row and chat; a till's through the partner API
        # (an `api_sales` row names it) has neither: the till reads the outcome itself.
        CheckConstraint("(staff_id IS NULL) = (staff_chat_id IS NULL)", name="cashier"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    points: Mapped[int] = mapped_column(BigInteger)
    # The tier discount the till showed on `amount` (0: none); points pay part of the rest.
    discount_percent: Mapped[Decimal] = mapped_column(
        Numeric(5, 2), default=Decimal(0), server_default="0"
    )
    receipt: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    # Where to tell the cashier the outcome, and the member's confirm message to close.
    staff_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    staff_language: Mapped[str] = mapped_column(String(8), default="en")
    staff_message_id: Mapped[int | None] = mapped_column(BigInteger)
    member_message_id: Mapped[int | None] = mapped_column(BigInteger)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Campaign(Base):
    """A message to a segment of members who consented to marketing."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(
            _in("status", ("draft", "scheduled", "sending", "done", "cancelled")), name="status"
        ),
        Index("ix_campaigns_due", "scheduled_at", postgresql_where="status = 'scheduled'"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    created_by: Mapped[int] = mapped_column(BigInteger)
    segment: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict)
    text: Mapped[str] = mapped_column(Text)
    photo_file_id: Mapped[str | None] = mapped_column(String(300))
    button_text: Mapped[str | None] = mapped_column(String(64))
    button_url: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The marketer's live progress message, in their language.
    language: Mapped[str] = mapped_column(String(8), default="en")
    progress_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    audience: Mapped[int] = mapped_column(BigInteger, default=0)
    sent: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    blocked: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Outbox(Base):
    """One bulk message to one member: a campaign's (the unique pair is what keeps a member
    from getting the same campaign twice, whatever restarts or instances come between), or
    a personal promotion's (`promotion`, with `params` saying what to tell; told once per
    occasion by `promotion_notices`, written in the same transaction)."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(
            # skipped: the member opted out, left or blocked the bot before it was sent
            _in("status", ("pending", "sending", "sent", "failed", "blocked", "skipped")),
            name="status",
        ),
        CheckConstraint(
            "(campaign_id IS NULL) <> (promotion IS NULL)", name="campaign_or_promotion"
        ),
        Index("uq_outbox_campaign_member", "campaign_id", "member_id", unique=True),
        Index("ix_outbox_due", "next_attempt_at", "id", postgresql_where="status = 'pending'"),
        Index("ix_outbox_claimed", "claimed_at", postgresql_where="status = 'sending'"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    promotion: Mapped[str | None] = mapped_column(String(40))
    params: Mapped[dict[str, object] | None] = mapped_column(JSONB)
    # No chat id here: it is read from the member when sent, so a deleted member's id is
    # nowhere and consent is checked again then.
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(BigInteger, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(String(300))


class Notice(Base):
    """A message the bot owes someone because of committed work: a posting's notification,
    the cashier's result, a confirmation request, the outcome of one. Written in the same
    transaction as that work and delivered by the notice worker, so it arrives even when
    Telegram fails or the process dies right after the commit.

    A member is addressed by `member_id` (their chat and language are looked up when the
    message is sent, so a deleted member is never written to and no Telegram id is copied
    here); staff by `chat_id` and `language`. `kind` and `params` say what to render."""

    __tablename__ = "notices"
    __table_args__ = (
        CheckConstraint(
            _in("status", ("pending", "sending", "sent", "failed", "blocked")), name="status"
        ),
        CheckConstraint("(member_id IS NULL) <> (chat_id IS NULL)", name="one_recipient"),
        Index(
            "ix_notices_open",
            "id",
            postgresql_where="status IN ('pending', 'sending')",
        ),
        Index("ix_notices_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    language: Mapped[str | None] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict)
    edit_message_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(BigInteger, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Account(Base):
    __tablename__ = "accounts"
    # What an account is, checked by the trigger accounts_shape when a row is inserted or an
    # UPDATE names one of those columns (migration 0020: a CHECK runs on every balance
    # change): its kind is one of AccountKind.ALL (ck_accounts_kind); it counts points, or
    # the stamps of one stamp card (ck_accounts_unit: `unit = 'points' OR unit LIKE
    # 'stamps:_%'`; the entries of a transaction sum to zero per unit, checked by the
    # statement writing them, 0011); a member's wallet and stamps have a member, a
    # partner's accounts a partner, stamps and the stamp pool a unit of stamps, and no other
    # account any of these (ck_accounts_owner).
    __table_args__ = (
        # The one rule no load may break: a member's wallet never goes below zero.
        CheckConstraint(
            "kind NOT IN ('member', 'stamps') OR balance >= 0", name="wallet_not_negative"
        ),
        # Held points are the wallet's own, and no posting may spend them (db.ledger.writer.hold).
        CheckConstraint(
            "held >= 0 AND (kind = 'member' OR held = 0) AND (held = 0 OR balance >= held)",
            name="hold_covered",
        ),
        # One wallet per member (kind 'member'), and one stamps account per member and card.
        Index("uq_accounts_member", "member_id", unique=True, postgresql_where="kind = 'member'"),
        Index(
            "uq_accounts_member_unit",
            "member_id",
            "unit",
            unique=True,
            postgresql_where="kind = 'stamps'",
        ),
        Index(
            "uq_accounts_partner_kind",
            "partner_id",
            "kind",
            unique=True,
            postgresql_where="partner_id IS NOT NULL",
        ),
        Index(
            "uq_accounts_system_kind",
            "kind",
            "unit",
            unique=True,
            postgresql_where="member_id IS NULL AND partner_id IS NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    unit: Mapped[str] = mapped_column(Text, default="points", server_default="points")
    # Points of the wallet promised by open holds: the member may spend balance - held.
    held: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint(_in("kind", TxKind.ALL), name="kind"),
        CheckConstraint("amount IS NULL OR amount > 0", name="amount_positive"),
        CheckConstraint(
            "paid IS NULL OR (paid >= 0 AND paid <= amount)", name="paid_within_amount"
        ),
        CheckConstraint(
            "(kind = 'reverse') = (reverses_id IS NOT NULL)", name="reverse_has_origin"
        ),
        CheckConstraint(
            "discount IS NULL OR (discount > 0 AND discount < amount"
            " AND paid <= amount - discount)",
            name="discount_within_amount",
        ),
        Index("ix_transactions_member_created", "member_id", "created_at"),
        Index("ix_transactions_partner_created", "partner_id", "created_at"),
        Index("ix_transactions_created_at", "created_at"),
        Index("ix_transactions_reverses_id", "reverses_id"),
        # A sale's stamps, promotions and reward; a refund's reversals of them (0019).
        Index(
            "ix_transactions_related_id",
            "related_id",
            postgresql_where="related_id IS NOT NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # A digest of what was asked: the same key with other content is refused, not replayed.
    fingerprint: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    # Purchase total, and the part of it paid in money (the rest was paid with points).
    amount: Mapped[Decimal | None] = mapped_column(Money)
    paid: Mapped[Decimal | None] = mapped_column(Money)
    # Money taken off the amount by the member's tier discount (paid is after it).
    discount: Mapped[Decimal | None] = mapped_column(Money)
    receipt: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    # The purchase that triggered a referral reward, for example.
    related_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_entries_transaction_id", "transaction_id"),
        # With the amount, so an account's balance summed from its entries (account_balances,
        # migration 0022) is read from the index alone.
        Index("ix_entries_account_id", "account_id", postgresql_include=["amount"]),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)


class Hold(Base):
    """Points of a wallet promised and not yet spent (TigerBeetle's pending transfer): a
    redemption waiting for the member's yes. Resolved exactly once, posted (by the posting
    that spends the points) or voided; `accounts.held` is the sum of a wallet's open holds,
    kept by a trigger (migration 0009)."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("status IN ('open', 'posted', 'voided')", name="status"),
        CheckConstraint(
            "(status = 'posted') = (transaction_id IS NOT NULL)"
            " AND (status = 'open') = (resolved_at IS NULL)",
            name="resolution",
        ),
        Index("ix_holds_open_member", "member_id", postgresql_where="status = 'open'"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="open", server_default="open")
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PointLot(Base):
    """Points earned together, expiring together; spending takes the oldest first."""

    __tablename__ = "point_lots"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_within_points"),
        Index(
            "ix_point_lots_open",
            "member_id",
            "expires_at",
            "id",
            postgresql_where="remaining > 0",
        ),
        Index("ix_point_lots_expiring", "expires_at", postgresql_where="remaining > 0"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the member was told this lot is about to expire (once per lot).
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_created_at", "created_at"),
        Index("ix_audit_log_staff_created", "staff_id", "created_at"),
        # A key's recent card numbers that named nobody (db/usecases/till.py, as per staff).
        Index(
            "ix_audit_log_api_key_created",
            "api_key_id",
            "created_at",
            postgresql_where="api_key_id IS NOT NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    actor_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    # A member who acted and later deleted their account: the pseudonymous reference that
    # replaces their Telegram id above.
    actor_member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    # The partner's API key that acted (bot/api), instead of a person.
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    action: Mapped[str] = mapped_column(String(60))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    details: Mapped[dict[str, object]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class RewardStock(Base):
    """How many vouchers of a catalogue reward were issued: locked to keep `stock`."""

    __tablename__ = "rewards"
    __table_args__ = (CheckConstraint("issued >= 0", name="issued_not_negative"),)

    slug: Mapped[str] = mapped_column(String(40), primary_key=True)
    issued: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class VoucherSource:
    CATALOGUE = "catalogue"  # bought with the member's points, held until claimed
    STAMP_CARD = "stamp_card"  # a full stamp card's reward, funded by a partner
    PROMOTION = "promotion"


class Voucher(Base):
    """A reward to claim once at its partner before it expires. A voucher bought from the
    catalogue holds the member's points (`hold_key`); claiming posts the hold to the
    partner, expiry voids it. A funded voucher (stamp card, promotion) moves nothing until
    it is honoured: then its funder's points go to the partner; unclaimed, it costs nothing."""

    __tablename__ = "vouchers"
    __table_args__ = (
        CheckConstraint("points >= 0", name="points_not_negative"),
        CheckConstraint("status IN ('open', 'claimed', 'expired', 'voided')", name="status"),
        CheckConstraint("source IN ('catalogue', 'stamp_card', 'promotion')", name="source"),
        CheckConstraint(
            "(source = 'catalogue') = (hold_key IS NOT NULL)"
            " AND (source IN ('catalogue', 'promotion') OR funder_id IS NOT NULL OR points = 0)",
            name="backing",
        ),
        CheckConstraint("(status = 'open') = (resolved_at IS NULL)", name="resolution"),
        Index("ix_vouchers_open_member", "member_id", postgresql_where="status = 'open'"),
        Index("ix_vouchers_open_expiry", "expires_at", postgresql_where="status = 'open'"),
        Index("ix_vouchers_reward_member", "reward", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)  # typed at the till
    reward: Mapped[str] = mapped_column(String(40))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))  # honours it
    points: Mapped[int] = mapped_column(BigInteger)  # its value, settled when claimed
    funder_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    hold_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(12))
    source_tx_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    status: Mapped[str] = mapped_column(String(10), default="open", server_default="open")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))  # who claimed it
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))


class Gift(Base):
    """Points one member gives another: held on the giver's wallet until the friend accepts
    through the shared link (posted to them), or returned after `expires_at` (voided)."""

    __tablename__ = "gifts"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("status IN ('open', 'accepted', 'returned')", name="status"),
        CheckConstraint(
            "(status = 'accepted') = (receiver_id IS NOT NULL AND transaction_id IS NOT NULL)"
            " AND (status = 'open') = (resolved_at IS NULL)",
            name="resolution",
        ),
        CheckConstraint("receiver_id IS NULL OR receiver_id <> giver_id", name="not_to_oneself"),
        Index("ix_gifts_giver_created", "giver_id", "created_at"),
        Index("ix_gifts_open_expiry", "expires_at", postgresql_where="status = 'open'"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    giver_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    receiver_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    hold_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="open", server_default="open")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))


class StampReminder(Base):
    """A member was told their stamps on one card are about to lapse: once per card's cycle
    (`cycle`: the transaction that started the card, its last fill or lapse; 0 for the first)."""

    __tablename__ = "stamp_reminders"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    cycle: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reminded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PromotionUse(Base):
    """How many times a member got a promotion with a `max_per_member` (counted in the
    sale's transaction: `uses` only grows while it is below the limit, so concurrent sales
    cannot both take the last one)."""

    __tablename__ = "promotion_uses"
    __table_args__ = (CheckConstraint("uses > 0", name="uses_positive"),)

    # promotions.use_key: the slug, and a partner's slug or a year after an "@".
    promotion: Mapped[str] = mapped_column(String(80), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    uses: Mapped[int] = mapped_column(Integer)


class PromotionAward(Base):
    """What one promotion gave one sale (db/usecases/promotions.py), in the documented order
    (`position`): its points, posted as the `promotion` transaction `transaction_id` from
    the funders' accounts; extra stamps; a voucher. A replay and a refund read it."""

    __tablename__ = "promotion_awards"
    __table_args__ = (
        CheckConstraint("points >= 0 AND stamps >= 0", name="not_negative"),
        CheckConstraint("(points > 0) = (transaction_id IS NOT NULL)", name="points_posted"),
    )

    sale_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"), primary_key=True)
    promotion: Mapped[str] = mapped_column(String(30), primary_key=True)
    position: Mapped[int] = mapped_column(SmallInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    stamps: Mapped[int] = mapped_column(Integer)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("vouchers.id"))


class PromotionNotice(Base):
    """A member was told of a personal promotion, once per `occasion` ("once" for an offer
    given once, "birthday:2026" for a birthday week, "inactive:<last purchase day>" for a
    win-back), so a job run twice tells nobody twice."""

    __tablename__ = "promotion_notices"

    promotion: Mapped[str] = mapped_column(String(40), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    occasion: Mapped[str] = mapped_column(String(40), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ClubMembership(Base):
    """A member's place in the club (db/usecases/club.py): a member while `ends_at` is
    ahead. `joined_at` is their first day in it ever, `started_at` the first of the present
    run (a new run after a lapse). `renews`: the renewal of their Telegram Stars
    subscription is on (`subscription_charge_id` names it to cancel or resume;
    `subscription_until` is Telegram's own end of it, when Telegram charges again:
    db/rules/club.py `renewing` says whether it still renews). All three are cleared when
    the subscription is over. `welcomed`: the welcome points were paid. `reminded_for` /
    `lapse_told_for`: the `ends_at` the member was told was near / was told had passed
    (each told once per end)."""

    __tablename__ = "club_memberships"
    __table_args__ = (Index("ix_club_memberships_ends_at", "ends_at"),)

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    renews: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    subscription_charge_id: Mapped[str | None] = mapped_column(String(200))
    subscription_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    welcomed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    reminded_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lapse_told_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ClubPayment(Base):
    """One payment for club membership, recorded exactly once per `charge_id` (Telegram's
    telegram_payment_charge_id; "till:…" for a month sold at a till). `method`: "stars"
    (currency XTR, `amount` in Stars), "card" (a payment provider in Telegram) or "till"
    (money the selling `partner_id` collected for the coalition: settlement). It bought
    membership from `period_from` to `period_until`. `refunded_at`: given back (the
    membership it bought ended with it)."""

    __tablename__ = "club_payments"
    __table_args__ = (
        CheckConstraint("method IN ('stars', 'card', 'till')", name="method"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("(method = 'till') = (partner_id IS NOT NULL)", name="till_partner"),
        CheckConstraint("(method = 'stars') = (currency = 'XTR')", name="stars_currency"),
        CheckConstraint("period_until > period_from", name="period"),
        Index("ix_club_payments_created_at", "created_at"),
        Index("ix_club_payments_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    charge_id: Mapped[str] = mapped_column(String(200), unique=True)
    provider_charge_id: Mapped[str | None] = mapped_column(String(200))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    method: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Money)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    recurring: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Whether it started a membership (not in the club when paid) and the welcome points
    # paid with it: a replay of the same charge tells the same.
    joined: Mapped[bool] = mapped_column(Boolean)
    welcome_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    period_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ClubUnclaimed(Base):
    """A payment Telegram took for the club that bought nothing (its payer is no longer a
    member, or it was for nothing the bot sells: db/usecases/club_support.py), claimed once
    per `charge_id` before Telegram is asked to refund it: of two deliveries of the same
    update only the one that claimed it refunds and tells the owners. `refunded`: Telegram
    gave the Stars back (False: the owners were told to refund it; None: claimed, and what
    became of it was never recorded, as when the bot stopped in between)."""

    __tablename__ = "club_unclaimed"
    __table_args__ = (
        CheckConstraint("method IN ('stars', 'card')", name="method"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    charge_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Money)
    reason: Mapped[str] = mapped_column(String(20))
    refunded: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ApiSale(Base):
    """A sale a till's software posted through the partner API, by its document number:
    unique per partner and business day (in the program's time zone), so the same document
    sent again is the same sale (`fingerprint`: what was asked; other content under the
    number is refused). A member's sale is in the ledger (`transaction_id`, or the
    redemption request `request_id` waiting for the member to confirm, whose confirmation
    posts it); a sale without a member card (`member_id` NULL) is recorded here only, for
    the partner's figures: no points, no ledger posting (db/usecases/api/sales.py)."""

    __tablename__ = "api_sales"
    __table_args__ = (
        UniqueConstraint("partner_id", "business_day", "document"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "member_id IS NOT NULL OR (transaction_id IS NULL AND request_id IS NULL)",
            name="walk_in",
        ),
        Index("ix_api_sales_walk_ins", "created_at", postgresql_where="member_id IS NULL"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    business_day: Mapped[date] = mapped_column(Date)
    document: Mapped[str] = mapped_column(String(100))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    fingerprint: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("redemption_requests.id"), unique=True
    )
    # The API key that posted it (the keys are the HTTP layer's: no foreign key here).
    api_key_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiSaleLine(Base):
    """One itemised line of an API sale, in the till's order (db/rules/lines.py)."""

    __tablename__ = "api_sale_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
    )

    sale_id: Mapped[int] = mapped_column(
        ForeignKey("api_sales.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    sku: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(60))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    amount: Mapped[Decimal] = mapped_column(Money)


class ApiKey(Base):
    """A partner's key to the partner API (bot/api), made by its manager or an owner in the
    bot and shown once: `cb_live_` and 48 random letters and digits, of which the first 8
    (`prefix`) name the key in lists and find it, and the whole is kept only as its SHA-256
    (`secret_hash`). A fast hash is enough: the key is 238 random bits, not a password a
    dictionary could guess, and each request checks it in microseconds. `scopes`: "sales"
    (post and refund sales) and/or "read" (members, sales, settlement). `op`: the bot
    dialog that made it, so a double tap makes one key."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(
            "cardinality(scopes) > 0 AND scopes <@ ARRAY['sales', 'read']::varchar[]",
            name="scopes",
        ),
        Index("ix_api_keys_partner_id", "partner_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(10)))
    created_by: Mapped[int] = mapped_column(BigInteger)  # a Telegram id
    op: Mapped[str | None] = mapped_column(String(16), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiIdempotency(Base):
    """An `Idempotency-Key` a partner's POST came with (bot/api/idempotency.py), scoped to the
    partner: the request's `fingerprint` (method, path and body), and once it is answered
    (`state` done) the answer, replayed to a retry with the same key and body. Kept at
    least IDEMPOTENCY_DAYS (db/usecases/api_idempotency.py); a daily job removes older ones.
    `created_at`: when the key was claimed (again, if a claim left processing by a process
    that died was taken over)."""

    __tablename__ = "api_idempotency"
    __table_args__ = (
        CheckConstraint("state IN ('processing', 'done')", name="state"),
        CheckConstraint("(state = 'done') = (status IS NOT NULL)", name="answered"),
        Index("ix_api_idempotency_created_at", "created_at"),
    )

    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(10))
    status: Mapped[int | None] = mapped_column(SmallInteger)
    headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
