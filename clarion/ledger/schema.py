"""The ledger's tables, in SQLAlchemy Core. The migrations in `migrations/versions/` build exactly these.

States and statuses are plain strings (see rows.py). Timestamps are stored in UTC and always read back
timezone-aware, whatever the backend. Constraint names follow one convention, so later migrations (and
SQLite's batch mode, which recreates tables) can refer to them by name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps naive text, so the zone is put back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"the ledger stores timezone-aware datetimes only, got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only makes an INTEGER PRIMARY KEY an auto-incrementing rowid; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

runs = Table(
    "runs",
    metadata,
    Column("id", String, primary_key=True),
    Column("campaign", String, nullable=False),
    Column("campaign_file", Text, nullable=False),
    Column("digest", String(128), nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("error", Text),
    Column("options", JSON, nullable=False),
    Index(None, "created_at"),
)

assignments = Table(
    "assignments",
    metadata,
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", String, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("arm", String, nullable=False),
    PrimaryKeyConstraint("run_id", "contact_id"),
    Index(None, "run_id", "seq"),
)

sends = Table(
    "sends",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String, nullable=False),
    Column("variant", String, nullable=False),
    Column("contact_id", String),
    Column("recipient", String, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("batch", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String),
    Column("error", Text),
    Column("provider_id", String),
    Column("attempts", Integer, nullable=False),
    Column("planned_at", UTCDateTime, nullable=False),
    Column("attempted_at", UTCDateTime),
    Column("settled_at", UTCDateTime),
    UniqueConstraint("run_id", "channel", "recipient"),
    # (run, channel, state) first: batches() reads the batch numbers from the index alone
    Index(None, "run_id", "channel", "state", "batch"),
    # (run, channel, batch) first: pending() reads one batch's rows in seq order
    Index(None, "run_id", "channel", "batch", "seq"),
)
