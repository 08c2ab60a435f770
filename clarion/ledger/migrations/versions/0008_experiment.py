"""Experiment validity: every request to a message's links, kept one by one so clicks can be told apart.

Revision ID: 0008_experiment
Revises: 0007_integrations
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_experiment"
down_revision: str | None = "0007_integrations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "link_hits",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("contact_seq", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("automated", sa.String(32), nullable=True),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_link_hits_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_link_hits"),
    )
    op.create_index(
        "ix_link_hits_run_id_channel_contact_seq", "link_hits", ["run_id", "channel", "contact_seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_link_hits_run_id_channel_contact_seq", table_name="link_hits")
    op.drop_table("link_hits")
