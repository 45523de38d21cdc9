"""partner API: keys (hashed, scoped, revocable), idempotency keys, the key on audit rows

Revision ID: 0023_api_keys
Revises: 0022_hot_accounts
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023_api_keys"
down_revision: str | None = "0022_hot_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=10)), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "cardinality(scopes) > 0 AND scopes <@ ARRAY['sales', 'read']::varchar[]",
            name=op.f("ck_api_keys_scopes"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_api_keys_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
        sa.UniqueConstraint("op", name=op.f("uq_api_keys_op")),
    )
    op.create_index("ix_api_keys_partner_id", "api_keys", ["partner_id"])
    op.create_table(
        "api_idempotency",
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('processing', 'done')", name=op.f("ck_api_idempotency_state")
        ),
        sa.CheckConstraint(
            "(state = 'done') = (status IS NOT NULL)", name=op.f("ck_api_idempotency_answered")
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_api_idempotency_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_api_idempotency_api_key_id_api_keys"),
        ),
        sa.PrimaryKeyConstraint("partner_id", "key", name=op.f("pk_api_idempotency")),
    )
    op.create_index("ix_api_idempotency_created_at", "api_idempotency", ["created_at"])
    op.add_column("audit_log", sa.Column("api_key_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_audit_log_api_key_id_api_keys"), "audit_log", "api_keys", ["api_key_id"], ["id"]
    )
    op.create_index(
        "ix_audit_log_api_key_created",
        "audit_log",
        ["api_key_id", "created_at"],
        postgresql_where=sa.text("api_key_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_log_api_key_created", table_name="audit_log")
    op.drop_constraint(op.f("fk_audit_log_api_key_id_api_keys"), "audit_log", type_="foreignkey")
    op.drop_column("audit_log", "api_key_id")
    op.drop_index("ix_api_idempotency_created_at", table_name="api_idempotency")
    op.drop_table("api_idempotency")
    op.drop_index("ix_api_keys_partner_id", table_name="api_keys")
    op.drop_table("api_keys")
