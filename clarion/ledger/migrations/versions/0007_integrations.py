"""Integrations: refunds and cancellations of conversions, the outbound-event outbox and its cursors, and
the SendGrid batch ids of scheduled email (to cancel them).

Revision ID: 0007_integrations
Revises: 0006_console
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_integrations"
down_revision: str | None = "0006_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("conversions") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="conversion"))
        batch.add_column(sa.Column("refers_to", sa.String(), nullable=True))
    # a refund finds its gift by the platform's id, whatever the run
    op.create_index("ix_conversions_source_external_id", "conversions", ["source", "external_id"])
    op.create_index("ix_conversions_source_refers_to", "conversions", ["source", "refers_to"])
    op.create_table(
        "outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret_env", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("delivered_at", Timestamp, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("endpoint", "event_id", name="uq_outbox_endpoint_event_id"),
    )
    op.create_index("ix_outbox_state_next_at", "outbox", ["state", "next_at"])
    op.create_table(
        "outbox_cursors",
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("position", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "run_id", "stream", name="pk_outbox_cursors"),
    )
    op.create_table(
        "scheduled_batches",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("cancelled_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_scheduled_batches_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "channel", "batch_id", name="pk_scheduled_batches"),
    )


def downgrade() -> None:
    op.drop_table("scheduled_batches")
    op.drop_table("outbox_cursors")
    op.drop_index("ix_outbox_state_next_at", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_conversions_source_refers_to", table_name="conversions")
    op.drop_index("ix_conversions_source_external_id", table_name="conversions")
    with op.batch_alter_table("conversions") as batch:
        batch.drop_column("refers_to")
        batch.drop_column("kind")
