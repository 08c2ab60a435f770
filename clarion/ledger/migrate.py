"""Bringing a ledger database to the newest schema with Alembic, from code (no alembic.ini needed).

The migration scripts ship inside the package (`clarion/ledger/migrations/`), so they are found from an
editable or a regular install alike. Two processes may migrate at once: on SQLite the upgrade runs in one
BEGIN IMMEDIATE transaction, on PostgreSQL under a transaction-scoped advisory lock, so the second waits
for the first and then finds nothing to do. A ledger already at the newest revision is told by one query,
without importing Alembic (a fifth of a second of every command's start-up otherwise).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import URL

from clarion.ledger.database import shown, transaction
from clarion.ledger.errors import LedgerNotMigrated

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("clarion.ledger")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "clarion_alembic_version"  # not alembic_version: the database may be shared (e.g. Prefect's)
PG_LOCK_KEY = 0x436C6172696F6E  # "Clarion": serialises migrations across processes on PostgreSQL
HEAD = "0010_cap_window_index"  # the newest script's revision (a test holds it to the scripts' head)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for the ledger's scripts; env.py runs on `connection` (migrations/__init__.py)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def current_revisions(connection: Connection) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return set(context.get_current_heads())


def head_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def at_head(connection: Connection) -> bool:
    """Whether the database is at HEAD: its version table names that revision alone."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return False
    return set(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()) == {HEAD}


def upgrade(engine: Engine, url: URL) -> None:
    """Alembic upgrade to head; does nothing (and takes no write lock) when already there."""
    with transaction(engine, url, write=False) as connection:
        if at_head(connection):
            return
    from alembic import command
    from alembic.util import CommandError

    heads = head_revisions()
    with transaction(engine, url, write=True) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        before = current_revisions(connection)
        if before == heads:
            return  # another process migrated while this one waited
        try:
            command.upgrade(alembic_config(connection), "head")
        except CommandError as exc:
            raise LedgerNotMigrated(
                f"the ledger database {shown(url)} is at revision {', '.join(sorted(before))}, which this "
                f"Clarion does not know ({exc}); it was probably migrated by a newer Clarion: upgrade Clarion"
            ) from exc
        log.info("ledger %s migrated from %s to %s", shown(url), sorted(before) or "empty", sorted(heads))
