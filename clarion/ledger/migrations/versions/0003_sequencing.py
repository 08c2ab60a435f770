"""Sequencing: when a deferred send may go (quiet hours, local send times), and a run's decisions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sends", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("decisions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("decisions")
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("not_before")
