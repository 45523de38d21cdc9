"""api_sales: sales a till's software posts through the partner API, by document number,
with their itemised lines; a redemption request without a cashier (the API's)

Revision ID: 0024_api_sales
Revises: 0023_api_keys
Create Date: 2027-01-20 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024_api_sales"
down_revision: str | None = "0023_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A request a till opens through the API has no cashier and no chat to tell.
    op.alter_column("redemption_requests", "staff_id", nullable=True)
    op.alter_column("redemption_requests", "staff_chat_id", nullable=True)
    op.create_check_constraint(
        op.f("ck_redemption_requests_cashier"),
        "redemption_requests",
        "(staff_id IS NULL) = (staff_chat_id IS NULL)",
    )
    op.create_table(
        "api_sales",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("partner_id", sa.BigInteger(), nullable=False),
        sa.Column("business_day", sa.Date(), nullable=False),
        sa.Column("document", sa.String(length=100), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("api_key_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_api_sales_amount_positive")),
        sa.CheckConstraint(
            "member_id IS NOT NULL OR (transaction_id IS NULL AND request_id IS NULL)",
            name=op.f("ck_api_sales_walk_in"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_api_sales_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_api_sales_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_api_sales_transaction_id_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["redemption_requests.id"],
            name=op.f("fk_api_sales_request_id_redemption_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_sales")),
        sa.UniqueConstraint(
            "partner_id", "business_day", "document", name=op.f("uq_api_sales_partner_id")
        ),
        sa.UniqueConstraint("request_id", name=op.f("uq_api_sales_request_id")),
    )
    op.create_index(
        "ix_api_sales_walk_ins",
        "api_sales",
        ["created_at"],
        postgresql_where=sa.text("member_id IS NULL"),
    )
    op.create_table(
        "api_sale_lines",
        sa.Column("sale_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=True),
        sa.Column("category", sa.String(length=60), nullable=True),
        sa.Column("quantity", sa.Numeric(12, 3), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_api_sale_lines_quantity_positive")),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_api_sale_lines_amount_not_negative")),
        sa.ForeignKeyConstraint(
            ["sale_id"],
            ["api_sales.id"],
            name=op.f("fk_api_sale_lines_sale_id_api_sales"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sale_id", "position", name=op.f("pk_api_sale_lines")),
    )


def downgrade() -> None:
    op.drop_table("api_sale_lines")
    op.drop_index("ix_api_sales_walk_ins", table_name="api_sales")
    op.drop_table("api_sales")
    # Requests without a cashier cannot be kept by the older schema.
    op.execute("DELETE FROM redemption_requests WHERE staff_id IS NULL")
    op.drop_constraint(
        op.f("ck_redemption_requests_cashier"), "redemption_requests", type_="check"
    )
    op.alter_column("redemption_requests", "staff_chat_id", nullable=False)
    op.alter_column("redemption_requests", "staff_id", nullable=False)
