"""Planning's bulk inserts, the ledger's hot path: thousands of rows per statement, duplicates ignored;
and `among`, how a statement names thousands of values (recipients, addresses) in one parameter.

Both write one chunk per call and return how many rows were new (ON CONFLICT DO NOTHING skips the rest,
which is what makes planning idempotent). The statements are built with Core, once per dialect:

- PostgreSQL gets the whole chunk as one array per column and inserts from `unnest(...)`: one statement
  and one round trip per chunk, with an exact count of the rows inserted (psycopg's executemany sends a
  statement per row: 6.8 s against 4.2 s for 200,000 sends on a 2-core machine).
- SQLite gets the DBAPI's executemany with plain tuples: the rows go straight to sqlite3's C loop, without
  SQLAlchemy processing each row's parameters (which costs more than the insert itself).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Dialect,
    Executable,
    String,
    Table,
    any_,
    bindparam,
    case,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from clarion.ledger.rows import SendFields, SendState
from clarion.ledger.schema import UTCDateTime, assignments, sends

CHUNK = 5_000  # rows per statement (PostgreSQL) or executemany (SQLite)
IN_CHUNK = 1_000  # recipients per statement naming them (a claim, a release, a settlement)
#: Planned sends and assignments written per transaction. Each commit writes back every page it touched, and
#: an index led by something random (an audience keyed by UUIDs: the sends' unique run, channel, recipient
#: and the assignments' run, contact id) takes each row at a random page: bigger transactions rewrite each
#: page less often. A million contacts keyed by random UUIDs planned in 49.3 s with 5,000 a transaction,
#: 34.3 s with 50,000 and 31.1 s with 200,000 (peak RSS 265 and 331 MB); with sequential ids, 20.4 and
#: 21.0 s (SQLite, planning alone; README, Performance).
PLAN_ROWS = 50_000
#: SQLite's page cache (KiB) while it inserts planning's rows, instead of its default 2 MB. The rows go into
#: indexes led by (run, channel, contact id) and (run, contact id): with contact ids that do not follow the
#: file's order (UUIDs, a CRM's keys) each row lands on a page of its own, and a chunk of them dirtied more
#: pages than the default cache holds, so SQLite wrote pages out to the WAL mid-statement and read them back.
#: Set for the insert and set back after it, which lets the pages go (a connection keeps its cache).
PLAN_CACHE_KIB = 65_536
_T = TypeVar("_T")

_SEND_COLUMNS = ("channel", "variant", "contact_id", "recipient", "seq", "batch", "reason", "address_key")
_ASSIGNMENT_COLUMNS = ("contact_id", "seq", "arm")
#: The SQLite inserts' parameters, in the tables' column order (the compiled statements'; checked): the
#: rows are built as tuples in this order, straight for sqlite3's executemany
_SQLITE_ASSIGNMENT_ORDER = ("run_id", "contact_id", "seq", "arm")
_SQLITE_SEND_ORDER = (
    "run_id",
    "channel",
    "variant",
    "contact_id",
    "recipient",
    "seq",
    "batch",
    "state",
    "reason",
    "attempts",
    "planned_at",
    "settled_at",
    "address_key",
)
_COUNTED = {"preserve_rowcount": True}  # SQLAlchemy keeps the row count of UPDATE and DELETE only


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # parameter order for positional (qmark) execution


class BulkWriter:
    """Inserts planned sends and assignments for one dialect; statements are compiled once."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.postgres = dialect.name == "postgresql"
        self._time = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        if self.postgres:
            self._sends: Executable = _pg_insert_sends()
            self._assignments: Executable = _pg_insert(assignments, _ASSIGNMENT_COLUMNS)
        else:
            self._sqlite_sends = self._compile(sends, _SQLITE_SEND_ORDER)
            self._sqlite_assignments = self._compile(assignments, _SQLITE_ASSIGNMENT_ORDER)

    def sends(self, conn: Connection, run_id: str, chunk: Sequence[SendFields], now: datetime) -> int:
        """`chunk`: PlannedSend's, or plain tuples of their fields in the same order (_SEND_COLUMNS')."""
        if self.postgres:
            params: dict[str, Any] = {"run_id": run_id, "now": now}
            columns = list(zip(*chunk, strict=True)) if chunk else [()] * len(_SEND_COLUMNS)
            for name, values in zip(_SEND_COLUMNS, columns, strict=True):
                params[f"a_{name}"] = list(values)
            return _count(conn.execute(self._sends, params, execution_options=_COUNTED).rowcount)
        at = self._time(now) if self._time else now
        planned, skipped = SendState.PLANNED.value, SendState.SKIPPED.value
        # _SQLITE_SEND_ORDER
        rows = [
            (
                run_id,
                channel,
                variant,
                contact_id,
                recipient,
                seq,
                batch,
                planned if reason is None else skipped,
                reason,
                0,
                at,
                None if reason is None else at,
                key,
            )
            for channel, variant, contact_id, recipient, seq, batch, reason, key in chunk
        ]
        return self._executemany(conn, self._sqlite_sends, rows)

    def assignments(self, conn: Connection, run_id: str, chunk: Sequence[tuple[int, str, str]]) -> int:
        if self.postgres:
            params = {
                "run_id": run_id,
                "a_seq": [seq for seq, _, _ in chunk],
                "a_contact_id": [cid for _, cid, _ in chunk],
                "a_arm": [arm for _, _, arm in chunk],
            }
            return _count(conn.execute(self._assignments, params, execution_options=_COUNTED).rowcount)
        rows = [(run_id, cid, seq, arm) for seq, cid, arm in chunk]  # _SQLITE_ASSIGNMENT_ORDER
        return self._executemany(conn, self._sqlite_assignments, rows)

    def _compile(self, table: Table, names: tuple[str, ...]) -> _Compiled:
        """The SQLite insert of `names`, whose parameters must come in that order (the table's column
        order, which the rows are built in): a column added to the table must be added there too."""
        statement = sqlite.insert(table).on_conflict_do_nothing()
        compiled = statement.compile(dialect=self.dialect, column_keys=list(names))
        order = tuple(compiled.positiontup or ())
        if order != names:
            raise RuntimeError(f"the {table.name} insert's parameters are {order}, not {names}")
        return _Compiled(str(compiled), order)

    def _executemany(self, conn: Connection, compiled: _Compiled, rows: list[tuple[Any, ...]]) -> int:
        """Planning's rows into SQLite, with a page cache of PLAN_CACHE_KIB for the statement."""
        (usual,) = conn.exec_driver_sql("PRAGMA cache_size").one()
        conn.exec_driver_sql(f"PRAGMA cache_size = -{PLAN_CACHE_KIB}")
        try:
            return _count(conn.exec_driver_sql(compiled.sql, rows, execution_options=_COUNTED).rowcount)
        finally:
            conn.exec_driver_sql(f"PRAGMA cache_size = {int(usual)}")  # its pages are let go


def among(column: Any, values: Sequence[Any], postgres: bool) -> ColumnElement[bool]:
    """column IN (values), the values as one parameter: an array on PostgreSQL, a JSON array read by
    json_each on SQLite. One parameter keeps the statement the same whatever the number of values, so
    SQLAlchemy compiles it once: a list of 1,000 parameters was rendered and processed anew for every
    claim, settlement and suppression check (`benchmarks/ledger_ops.py --callgrind` counts what sending
    costs the ledger)."""
    if postgres:
        result: ColumnElement[bool] = column == any_(
            bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        )
    else:
        listed = func.json_each(bindparam(None, json.dumps(list(values)), type_=String())).table_valued(
            "value"
        )
        result = column.in_(select(listed.c.value).scalar_subquery())
    return result


def unindexed(column: Any, value: Any) -> ColumnElement[bool]:
    """column = value as a check on rows found another way, never a way in: `column || ''`, SQLite's way to
    keep a term off its indexes (its planner, without statistics for a run's fresh rows, would otherwise walk
    a run's indexes instead of the way the statement means)."""
    check: ColumnElement[bool] = (column + "") == value
    return check


def of_run(conn: Connection, run_id: str) -> tuple[ColumnElement[bool], ...]:
    """The condition that reads every send of a run (a summary, the report's first sends).

    On SQLite, the rows from the run's first id to its last, in the table's order, each checked to be the
    run's (`unindexed`): left to itself SQLite walked the (run, channel, recipient) index and looked each row
    up from there, in contact id order, which for ids in no order (UUIDs) is a page from anywhere per row. A
    million such sends: their summary 2.65 s (5.5 s from a cold cache) against 0.99 s, the run's first send
    2.16 against 0.43 s (sequential ids: 0.88 s and 0.40 s either way). Finding the two ends reads the index
    alone (0.1 s at a million). When other runs' rows fill most of that stretch (a run's later rows planned
    after a bigger run's), the index is the shorter way after all, and taken. PostgreSQL's planner goes by its
    statistics."""
    plain = (sends.c.run_id == run_id,)
    if conn.dialect.name == "postgresql":
        return plain
    ends = select(func.min(sends.c.id), func.max(sends.c.id), func.count()).where(sends.c.run_id == run_id)
    first, last, count = conn.execute(ends).one()
    if first is None or last - first + 1 > 2 * count:
        return plain
    return sends.c.id.between(first, last), unindexed(sends.c.run_id, run_id)


def chunked(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _count(rowcount: int) -> int:
    return max(rowcount, 0)


def _arrays(table: Table, names: Sequence[str]) -> Any:
    """unnest(:a_x, :a_y, ...) AS u(x, y, ...): a chunk's columns, passed as one array each."""
    arrays = [bindparam(f"a_{name}", type_=postgresql.ARRAY(table.c[name].type)) for name in names]
    return func.unnest(*arrays).table_valued(*names).render_derived(name="u")


def _pg_insert(table: Table, names: Sequence[str]) -> Executable:
    u = _arrays(table, names)
    source = select(bindparam("run_id", type_=table.c.run_id.type), *(u.c[name] for name in names))
    return postgresql.insert(table).from_select(["run_id", *names], source).on_conflict_do_nothing()


def _pg_insert_sends() -> Executable:
    u = _arrays(sends, _SEND_COLUMNS)
    now = bindparam("now", type_=UTCDateTime())
    skipped: ColumnElement[bool] = u.c.reason.is_not(None)
    source = select(
        bindparam("run_id", type_=sends.c.run_id.type),
        *(u.c[name] for name in _SEND_COLUMNS),
        case((skipped, SendState.SKIPPED.value), else_=SendState.PLANNED.value),
        literal(0),
        now,
        case((skipped, now), else_=None),
    )
    names = ["run_id", *_SEND_COLUMNS, "state", "attempts", "planned_at", "settled_at"]
    return postgresql.insert(sends).from_select(names, source).on_conflict_do_nothing()


class Statistics:
    """Keeps PostgreSQL's table statistics in step with bulk planning.

    PostgreSQL picks its plans from statistics, and rows planned a moment ago have none until autovacuum
    comes by (a minute or more later). Without them it estimates that "all planned rows of this channel"
    is a handful and scans them, for every claim: 30 ms to seconds per batch on a 100,000-contact run.
    So after rows are inserted, the next claim or read runs ANALYZE once (~0.1-0.2 s; it samples).
    """

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self._stale = False
        self._lock = threading.Lock()

    def inserted(self, count: int) -> None:
        if count and self.postgres:
            self._stale = True

    def refresh(self, transaction: Callable[[], AbstractContextManager[Connection]]) -> None:
        if not self._stale:
            return
        with self._lock:
            if self._stale:
                with transaction() as conn:
                    conn.execute(text(f"ANALYZE {sends.name}, {assignments.name}"))
                self._stale = False
