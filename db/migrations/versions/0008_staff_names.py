"""staff: the first name Telegram gives, so the owner's tools name people, not ids

Revision ID: 0008_staff_names
Revises: 0007_join_source
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_staff_names"
down_revision: str | None = "0007_join_source"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "staff",
        sa.Column("first_name", sa.String(length=200), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("staff", "first_name")
