"""Sending's index holds planned sends only: claims and settlements no longer move index entries.

The index on (run, channel, state, batch) took every send, and every state change moved its entry: a send
was inserted once and moved twice (claimed, settled). What reads it wants planned sends only (the batches
still to send), so it becomes a partial index on (run, channel, batch) WHERE state = 'planned': a claim
takes the entry out, a settlement touches no index. Queries for other states read a run's rows through
the (run, channel, batch, seq) index or the unique (run, channel, recipient) one.

Revision ID: 0009_planned_index
Revises: 0008_experiment
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_planned_index"
down_revision: str | None = "0008_experiment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLANNED = sa.text("state = 'planned'")


def upgrade() -> None:
    op.drop_index("ix_sends_run_id_channel_state_batch", table_name="sends")
    op.create_index(
        "ix_sends_planned",
        "sends",
        ["run_id", "channel", "batch"],
        sqlite_where=PLANNED,
        postgresql_where=PLANNED,
    )


def downgrade() -> None:
    op.drop_index("ix_sends_planned", table_name="sends")
    op.create_index("ix_sends_run_id_channel_state_batch", "sends", ["run_id", "channel", "state", "batch"])
