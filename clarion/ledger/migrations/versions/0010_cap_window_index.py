"""Frequency caps read their window through an index on when sends were planned, not on address keys.

The cap's question at planning is which address keys already have N counted sends planned since an
instant (`ConsentStore.capped`): a range of `planned_at`, grouped by key. The index it had, (address_key,
planned_at), took every planned send at a random place (an address key is an HMAC), so planning wrote to
pages all over an index that grows with every run: at 1,000,000 contacts it took 18 of planning's 40
seconds on SQLite (21.9 s with this revision's index instead, 21.7 s with none), and each commit wrote
back every page it touched. An index on planned_at alone grows at its end (sends are planned in time
order; rows planned at the same instant follow their row ids), and it is the one the question reads: the
window, not every send ever planned.

Revision ID: 0010_cap_window_index
Revises: 0009_planned_index
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_cap_window_index"
down_revision: str | None = "0009_planned_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_sends_address_key_planned_at", table_name="sends")
    op.create_index("ix_sends_planned_at", "sends", ["planned_at"])


def downgrade() -> None:
    op.drop_index("ix_sends_planned_at", table_name="sends")
    op.create_index("ix_sends_address_key_planned_at", "sends", ["address_key", "planned_at"])
