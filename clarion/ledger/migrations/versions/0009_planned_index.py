"""Sending's index holds planned sends only: claims and settlements no longer move index entries.

Two indexes took every send: (run, channel, state, batch), whose entry every state change moved (a send
was inserted once and moved twice: claimed, settled), and (run, channel, batch, seq). What reads them wants
planned sends only (the batches still to send, a batch's sends in audience order), so one partial index on
(run, channel, batch, seq) WHERE state = 'planned' replaces both: a send is written to three indexes, not
four, a claim takes its entry out and a settlement touches none. What asks for other states (a dead
shard's batches in flight, a run's sends) reads the run's rows through the unique (run, channel,
recipient) index.

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
    op.drop_index("ix_sends_run_id_channel_batch_seq", table_name="sends")
    op.create_index(
        "ix_sends_planned",
        "sends",
        ["run_id", "channel", "batch", "seq"],
        sqlite_where=PLANNED,
        postgresql_where=PLANNED,
    )


def downgrade() -> None:
    op.drop_index("ix_sends_planned", table_name="sends")
    op.create_index("ix_sends_run_id_channel_batch_seq", "sends", ["run_id", "channel", "batch", "seq"])
    op.create_index("ix_sends_run_id_channel_state_batch", "sends", ["run_id", "channel", "state", "batch"])
