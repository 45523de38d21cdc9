"""erasure: rewarded identities, pseudonymous audit actors, no chat id in the campaign
outbox, skipped campaign messages and cancelled redemption requests

Revision ID: 0005_erasure
Revises: 0004_campaigns
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_erasure"
down_revision: str | None = "0004_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _status(table: str, values: tuple[str, ...]) -> None:
    name = f"ck_{table}_status"
    op.drop_constraint(op.f(name), table, type_="check")
    op.create_check_constraint(
        op.f(name), table, f"status IN ({', '.join(repr(v) for v in values)})"
    )


REQUEST = ("pending", "confirmed", "declined", "expired")
OUTBOX = ("pending", "sending", "sent", "failed", "blocked")


def upgrade() -> None:
    op.create_table(
        "rewarded_identities",
        sa.Column("identity_hash", sa.String(length=64), nullable=False),
        sa.Column("welcome", sa.Boolean(), nullable=False),
        sa.Column("referral", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("identity_hash", name=op.f("pk_rewarded_identities")),
    )
    op.add_column("audit_log", sa.Column("actor_member_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_audit_log_actor_member_id_members"),
        "audit_log",
        "members",
        ["actor_member_id"],
        ["id"],
    )
    # Campaign messages still waiting for members who already left are never sent.
    op.execute(
        "UPDATE outbox SET status = 'skipped' FROM members AS m "
        "WHERE m.id = outbox.member_id AND m.deleted_at IS NOT NULL "
        "AND outbox.status IN ('pending', 'sending')"
    )
    op.drop_column("outbox", "telegram_id")
    _status("outbox", (*OUTBOX, "skipped"))
    _status("redemption_requests", (*REQUEST, "cancelled"))


def downgrade() -> None:
    op.execute("UPDATE redemption_requests SET status = 'expired' WHERE status = 'cancelled'")
    _status("redemption_requests", REQUEST)
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'skipped'")
    _status("outbox", OUTBOX)
    op.add_column("outbox", sa.Column("telegram_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE outbox SET telegram_id = coalesce(m.telegram_id, 0) FROM members AS m "
        "WHERE m.id = outbox.member_id"
    )
    op.alter_column("outbox", "telegram_id", nullable=False)
    op.drop_constraint(
        op.f("fk_audit_log_actor_member_id_members"), "audit_log", type_="foreignkey"
    )
    op.drop_column("audit_log", "actor_member_id")
    op.drop_table("rewarded_identities")
