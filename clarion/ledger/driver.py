"""Statements compiled once and run as driver SQL, their rows read as plain tuples: the ledger's hottest
statements on SQLite (a send's claim and settlement by id, a batch's due rows), where building the
statement, binding its parameters and making a Row per returned row through SQLAlchemy cost about as much as
SQLite's own work. They still run through the `Connection` (`exec_driver_sql`): its events and its error
wrapping hold. Only values that need no conversion go in and out as they are; timestamps go through the
column type's own processors (`stamp`, `read_time`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from clarion.ledger.schema import UTCDateTime


class Positional:
    """A statement compiled for a dialect with positional parameters (SQLite's) once, run as driver SQL."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} takes named parameters: compile the statement as usual there")
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup)
        self.fixed = dict(compiled.params)  # the values Core put in itself (`attempts + 1`, `|| ''`)

    def run(self, conn: Connection, **values: Any) -> tuple[list[Any], int]:
        """(the rows it returned, as tuples; the rows it changed)."""
        given = self.fixed | values
        result = conn.exec_driver_sql(self.sql, tuple(given[name] for name in self.names))
        try:  # read off the cursor: a Row per row cost as much as an update of it
            rows = list(result.cursor.fetchall()) if result.returns_rows else []
            return rows, max(result.rowcount, 0)
        finally:
            result.close()


def stamp(dialect: Dialect) -> Callable[[datetime], Any]:
    """A timestamp as the ledger's column type binds it on `dialect` (UTC; naive text on SQLite)."""
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    return bind if bind is not None else _same


def read_time(dialect: Dialect) -> Callable[[Any], datetime | None]:
    """A timestamp as the ledger's column type reads it back on `dialect` (timezone-aware, UTC)."""
    read = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    return read if read is not None else _same


def _same(value: Any) -> Any:
    return value


__all__ = ["Positional", "read_time", "stamp"]
