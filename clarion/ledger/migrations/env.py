"""Alembic's entry point for the ledger: runs on the connection `clarion.ledger.migrate` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from clarion.ledger.schema import metadata

config = context.config
version_table = config.get_main_option("version_table") or "clarion_alembic_version"


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=version_table,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """`alembic upgrade --sql`: print the DDL for a DBA instead of running it."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=version_table,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the ledger's migrations through Ledger.migrate(), which passes a connection")
    run_online(connection)
