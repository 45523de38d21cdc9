"""notices: the transactional outbox; a redemption request the member cannot receive

Revision ID: 0006_outbox
Revises: 0005_erasure
Create Date: 2026-12-01 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_outbox"
down_revision: str | None = "0005_erasure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REQUEST_STATUSES = ("pending", "confirmed", "declined", "expired", "cancelled")


def _in(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=True),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("edit_message_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(member_id IS NULL) <> (chat_id IS NULL)", name=op.f("ck_notices_one_recipient")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'blocked')",
            name=op.f("ck_notices_status"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_notices_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
    )
    op.create_index(
        "ix_notices_open",
        "notices",
        ["id"],
        unique=False,
        postgresql_where="status IN ('pending', 'sending')",
    )
    op.create_index(op.f("ix_notices_member_id"), "notices", ["member_id"], unique=False)
    op.drop_constraint(op.f("ck_redemption_requests_status"), "redemption_requests", type_="check")
    op.create_check_constraint(
        op.f("ck_redemption_requests_status"),
        "redemption_requests",
        _in((*REQUEST_STATUSES, "unreachable")),
    )


def downgrade() -> None:
    op.execute("UPDATE redemption_requests SET status = 'expired' WHERE status = 'unreachable'")
    op.drop_constraint(op.f("ck_redemption_requests_status"), "redemption_requests", type_="check")
    op.create_check_constraint(
        op.f("ck_redemption_requests_status"), "redemption_requests", _in(REQUEST_STATUSES)
    )
    op.drop_index(op.f("ix_notices_member_id"), table_name="notices")
    op.drop_index(
        "ix_notices_open",
        table_name="notices",
        postgresql_where="status IN ('pending', 'sending')",
    )
    op.drop_table("notices")
