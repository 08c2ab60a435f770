"""Consent: the suppression store, and the address key frequency caps count sends by.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("sends", sa.Column("address_key", sa.String(32), nullable=True))
    op.create_index("ix_sends_address_key_planned_at", "sends", ["address_key", "planned_at"])
    op.create_table(
        "suppressions",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("lifted_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("kind", "address", name="pk_suppressions"),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("ix_sends_address_key_planned_at", table_name="sends")
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("address_key")
