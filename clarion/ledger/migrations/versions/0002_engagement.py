"""Engagement: the run key tracked links name a run by, and clicks, provider events and conversions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    name = f"fk_{table}_run_id_runs"
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=name, ondelete="CASCADE")


def upgrade() -> None:
    op.add_column("runs", sa.Column("run_key", sa.String(10), nullable=True))
    op.create_index("ix_runs_run_key", "runs", ["run_key"])
    connection = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("run_key", sa.String))
    for (run_id,) in connection.execute(sa.select(runs.c.id)).all():
        key = hashlib.sha256(run_id.encode()).digest()[:5].hex()  # links.run_key, frozen here
        connection.execute(sa.update(runs).where(runs.c.id == run_id).values(run_key=key))

    op.create_table(
        "clicks",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("contact_seq", sa.Integer(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", Timestamp, nullable=False),
        sa.Column("last_at", Timestamp, nullable=False),
        _run_fk("clicks"),
        sa.PrimaryKeyConstraint("id", name="pk_clicks"),
        sa.UniqueConstraint("run_id", "channel", "contact_seq", name="uq_clicks_run_id_channel_contact_seq"),
    )
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("event_key", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("contact_seq", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        _run_fk("events"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("run_id", "event_key", name="uq_events_run_id_event_key"),
    )
    op.create_index("ix_events_run_id_channel_kind", "events", ["run_id", "channel", "kind"])
    op.create_table(
        "conversions",
        sa.Column("id", BigId, autoincrement=True),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("arm", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=True),
        sa.Column("contact_seq", sa.Integer(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        _run_fk("conversions"),
        sa.PrimaryKeyConstraint("id", name="pk_conversions"),
        sa.UniqueConstraint(
            "run_id", "source", "external_id", name="uq_conversions_run_id_source_external_id"
        ),
    )
    op.create_index("ix_conversions_run_id_arm", "conversions", ["run_id", "arm"])


def downgrade() -> None:
    op.drop_table("conversions")
    op.drop_table("events")
    op.drop_table("clicks")
    op.drop_index("ix_runs_run_key", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("run_key")
