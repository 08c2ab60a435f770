"""Opening the ledger's database: which URL, one Engine set up for it, and errors a person can act on.

SQLite is made fit for several writers (threads, or the processes of a Prefect worker): WAL, so readers
never block the writer; a 30 s busy timeout; foreign keys on; and every write transaction starts with
BEGIN IMMEDIATE, so a second writer queues at BEGIN (where the busy timeout applies) instead of failing
later with "database is locked" when it tries to upgrade a read lock. sqlite3's own transaction handling
is turned off for that, and SQLAlchemy emits the BEGIN (the recipe in SQLAlchemy's SQLite docs). This
machine's Clarion processes take turns at BEGIN on a lock file beside the database (`WriterTurns`).

Every engine closes its pooled connections when its process exits (`atexit`), not when the collector
reaches it: `clarion` leaves its heap out of the last collection (clarion.base.runtime.before_exit), and a
SQLite connection never closed leaves the last transactions in the `-wal` file beside the database
instead of folding them into it (a checkpoint).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own locking alone there
    fcntl = None  # type: ignore[assignment]
from sqlalchemy.exc import ArgumentError, DBAPIError

from clarion.ledger.errors import DatabaseUnavailable, LedgerError, LedgerNotMigrated

SQLITE_BUSY_TIMEOUT_S = 30
PG_CONNECT_TIMEOUT_S = 10
WRITE = "clarion_write"  # execution option: this connection's transaction writes


def resolve_url(url: str | URL | None) -> URL:
    """`url`, else CLARION_DATABASE_URL, else SQLite in CLARION_HOME (default .clarion/clarion.db)."""
    if url is None:
        from clarion.base.settings import ClarionSettings

        url = ClarionSettings().ledger_url()
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise LedgerError(
            "the ledger's database URL is not a database URL; set CLARION_DATABASE_URL to e.g. "
            "sqlite:///.clarion/clarion.db or postgresql+psycopg://user@host:5432/clarion"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):  # psycopg 3 is the driver Clarion installs
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise LedgerError(
            f"the ledger runs on SQLite or PostgreSQL, not {parsed.get_backend_name()!r} "
            f"({shown(parsed)}); check CLARION_DATABASE_URL"
        )
    return parsed


def shown(url: URL) -> str:
    """The URL as it may appear in a message or a log line: never with its password."""
    return url.render_as_string(hide_password=True)


def make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
    else:
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    _close_at_exit(engine)
    return engine


def _close_at_exit(engine: Engine) -> None:
    """Close the engine's pooled connections when this process exits (a SQLite database's last
    connection closed folds its `-wal` file in). Held weakly: an engine dropped before is not kept; a
    forked child leaves its parent's connections to the parent."""
    ref, pid = weakref.ref(engine), os.getpid()

    def close() -> None:
        alive = ref()
        if alive is not None and os.getpid() == pid:
            alive.dispose()

    atexit.register(close)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot create the folder {str(folder)!r} for the ledger database {shown(url)}: "
                f"{exc.strerror or exc}; check CLARION_HOME or CLARION_DATABASE_URL"
            ) from exc
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
            _wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _wal(cursor: Any) -> None:
    """Put the database in WAL mode (kept in the file: usually it already is, which needs no lock).

    Switching needs the database to itself, and SQLite answers "database is locked" at once, without the
    busy timeout, while another connection of a fresh file is doing the same: wait and try again."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        mode = cursor.execute("PRAGMA journal_mode").fetchone()
        if mode and str(mode[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def transaction(engine: Engine, url: URL, *, write: bool) -> Iterator[Connection]:
    """One connection in one transaction, committed on success; database trouble becomes a LedgerError."""
    try:
        connection = engine.connect()
    except DBAPIError as exc:
        raise DatabaseUnavailable(unreachable(url, exc)) from exc
    with connection:
        if write:
            connection.execution_options(**{WRITE: True})
        try:
            with connection.begin():
                yield connection
        except DBAPIError as exc:
            if _missing_table(exc):
                raise LedgerNotMigrated(
                    f"the ledger database {shown(url)} has no ledger tables yet: "
                    f"run Ledger.migrate() (the `clarion` commands do this themselves)"
                ) from exc
            if "database is locked" in str(exc.orig):
                raise LedgerError(
                    f"the ledger database {shown(url)} stayed locked by another writer for "
                    f"{SQLITE_BUSY_TIMEOUT_S} s; check for a stuck clarion process, or use PostgreSQL "
                    "(CLARION_DATABASE_URL) for many concurrent workers"
                ) from exc
            raise


def unreachable(url: URL, exc: DBAPIError) -> str:
    reason = _first_line(exc)
    if url.password:
        reason = reason.replace(str(url.password), "***")
    if url.get_backend_name() == "sqlite":
        advice = "check that the folder exists and is writable, or set CLARION_DATABASE_URL"
    else:
        advice = (
            "check that the server is running and reachable from here, and that the host, port, user, "
            "password and database name in CLARION_DATABASE_URL are right"
        )
    return f"cannot open the ledger database {shown(url)}: {reason}; {advice}"


def _first_line(exc: DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc.orig).__name__


def _missing_table(exc: DBAPIError) -> bool:
    text = str(exc.orig)
    return "no such table" in text or getattr(exc.orig, "sqlstate", None) == "42P01"


class WriterTurns:
    """Turns at writing a SQLite ledger file, across this machine's processes (a launch and its send
    helpers): a lock on a file beside the database, taken before BEGIN IMMEDIATE and let go after COMMIT.

    SQLite's own busy handler sleeps in steps of up to 100 ms while another process writes, however soon
    that process is done; a writer waiting here takes its turn within a millisecond. Only a quicker way
    to the same queue: SQLite's locking still decides, so a process without this lock (another tool, an
    older Clarion) is safe, and a writer that waited SQLITE_BUSY_TIMEOUT_S goes on to SQLite, which then
    answers "database is locked" as before. Not used for PostgreSQL or an in-memory database."""

    def __init__(self, url: URL) -> None:
        database = url.database or "" if url.get_backend_name() == "sqlite" else ""
        usable = fcntl is not None and database not in ("", ":memory:") and not database.startswith("file:")
        self._path = f"{Path(database).expanduser()}-writer" if usable else None
        self._fd: int | None = None
        self._pid = 0
        self._depth = 0  # nested write transactions of this process hold one turn

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the turn while the block writes; the caller serialises this process's own threads."""
        if self._path is None:
            yield
            return
        if self._pid != os.getpid():  # a forked child opens its own: a lock belongs to an open file
            self._fd, self._pid, self._depth = None, os.getpid(), 0
        if self._depth == 0:
            self._take()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _take(self) -> None:
        assert fcntl is not None and self._path is not None
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only folder: SQLite's own locking alone
                self._path = None
                return
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return  # SQLite's busy timeout has the last word, and its message
                time.sleep(0.001)


class ForkSafeEngine:
    """The Engine of this process: a child process made by fork gets fresh connections, never its parent's."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self._engine = make_engine(url)
        self._pid = os.getpid()

    @property
    def engine(self) -> Engine:
        if self._pid != os.getpid():
            self._engine.dispose(close=False)  # leave the parent's connections to the parent
            self._pid = os.getpid()
        return self._engine
