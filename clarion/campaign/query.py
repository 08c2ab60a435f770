"""Contacts from a database: `audience.query: {url, sql}`, read through SQLAlchemy and streamed.

The query runs wrapped as `SELECT * FROM (<sql>) AS audience ORDER BY id`, so the order of contacts (their
positions, which tracked links name) is the same every time it runs. Rows come through a server-side
cursor (`stream_results`, `yield_per`) on PostgreSQL and SQLite's own stepping, so memory stays flat
whatever the audience's size. A contact's `offset` is its position: the send engine resumes a batch with
`records(offset=...)`, which skips that many rows in the database (OFFSET), not in Python.

Problems are located like a CSV's: `audience.query:ROW:COLUMN` (the row's 1-based number in the result
and the column's 1-based place). The URL's password never appears in a message.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from clarion.base.errors import Problem
from clarion.campaign.contacts import ID_COLUMN, Contact, ContactsError

YIELD_PER = 2_000
MARK_EVERY = 1_000
DISPLAY = "audience.query"
_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def resolve_url(raw: str, base_dir: Path) -> str:
    """The database URL: `${VAR}` read from the environment; a relative SQLite path made relative to the
    campaign file's folder."""
    found = _ENV.match(raw)
    if found:
        value = os.environ.get(found.group(1), "").strip()
        if not value:
            raise ContactsError(
                Problem(DISPLAY, 0, 0, f"url: the environment variable {found.group(1)} is not set")
            )
        raw = value
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except ArgumentError:
        raise ContactsError(Problem(DISPLAY, 0, 0, "url: not a SQLAlchemy database URL")) from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.is_absolute():
            url = url.set(database=str((base_dir / path).resolve()))
    return url.render_as_string(hide_password=False)


def shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).strip()


class QueryContacts:
    """The audience a query returns: its columns, and its rows from any position on (like ContactsFile)."""

    data_offset = 0
    unit = "row"  # a contact's `line` is its row in the result, 1-based

    def __init__(self, url: str, sql: str) -> None:
        self.url = url
        self.sql = sql
        self.display = DISPLAY
        self._engine: Any = None
        self._lock = threading.Lock()
        self._marks: dict[int, Any] | None = None  # position -> raw id, every MARK_EVERY-th row
        self._positions: list[int] = []
        self.columns = self._columns()
        dupes = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dupes:
            raise ContactsError(
                Problem(DISPLAY, 0, 0, f"the query returns column(s) {', '.join(dupes)} twice")
            )
        if ID_COLUMN not in self.columns:
            raise ContactsError(
                Problem(
                    DISPLAY,
                    0,
                    0,
                    f"the query returns no {ID_COLUMN!r} column (it returns: {', '.join(self.columns)}); "
                    f"select a unique, opaque contact id AS {ID_COLUMN}",
                )
            )

    def column_of(self, name: str) -> int:
        """The 1-based place of a column in the query's result (1 if it has none such)."""
        return self.columns.index(name) + 1 if name in self.columns else 1

    @property
    def path(self) -> Path:  # what a CSV audience would name; a query has none
        return Path(DISPLAY)

    def engine(self) -> Any:
        if self._engine is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            # no pool: every read opens its connection and closes it when done (or abandoned), so a
            # campaign loaded many times leaves no connection open on the organiser's database
            self._engine = create_engine(self.url, poolclass=NullPool)
        return self._engine

    def _wrapped(self, tail: str = "") -> Any:
        from sqlalchemy import text

        return text(f"SELECT * FROM ({self.sql}) AS audience{tail}")

    def _columns(self) -> list[str]:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine().connect() as conn:
                result = conn.execute(self._wrapped(" LIMIT 0"))
                return [str(c) for c in result.keys()]  # noqa: SIM118 (a Result, not a dict)
        except SQLAlchemyError as exc:
            raise ContactsError(Problem(DISPLAY, 0, 0, self._why(exc))) from None

    def _why(self, exc: Exception) -> str:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        return f"the query failed on {shown_url(self.url)}: {detail}"

    def records(self, offset: int | None = None, seq: int = 0, limit: int | None = None) -> Iterator[Contact]:
        """Rows in id order from position `offset` (default 0), numbered from `seq`.

        From a later position, the read starts at the nearest known id before it (`WHERE id >= :mark`,
        which an index on the id column serves) and skips only the rest (OFFSET), so reading the last
        batch of a million costs about what the first does. The marks (every MARK_EVERY-th id, a few KB)
        come from any whole read of the audience (planning does one), else from one id-only pass."""
        from sqlalchemy import bindparam
        from sqlalchemy.exc import SQLAlchemyError

        start = offset or 0
        params: dict[str, Any] = {}
        where, skip = "", start
        if start:
            self._ensure_marks()
            mark = self._mark_before(start)
            if mark is not None:
                where, skip = f" WHERE {ID_COLUMN} >= :mark", start - mark[0]
                params["mark"] = mark[1]
        tail = f"{where} ORDER BY {ID_COLUMN}"
        if limit is not None:
            tail += " LIMIT :limit"
            params["limit"] = limit
        elif skip:
            tail += " LIMIT -1" if self.engine().dialect.name == "sqlite" else ""
        if skip:
            tail += " OFFSET :offset"
            params["offset"] = skip
        statement = self._wrapped(tail)
        if params:
            statement = statement.bindparams(*(bindparam(k) for k in params))
        whole = start == 0 and limit is None
        try:
            with self.engine().connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=YIELD_PER).execute(
                    statement, params
                )
                names = list(result.keys())
                at_id = names.index(ID_COLUMN)
                position = start
                marks: dict[int, Any] = {}
                for row in result:
                    if position % MARK_EVERY == 0:
                        marks[position] = row[at_id]
                    fields = {name: _text(value) for name, value in zip(names, row, strict=True)}
                    if not fields[ID_COLUMN]:
                        raise ContactsError(
                            Problem(
                                DISPLAY,
                                position + 1,
                                at_id + 1,
                                "id is empty; every contact needs a unique, opaque id",
                            )
                        )
                    yield Contact(seq, position + 1, position, fields)
                    seq += 1
                    position += 1
                if whole:
                    self._set_marks(marks)
        except SQLAlchemyError as exc:
            raise ContactsError(Problem(DISPLAY, 0, 0, self._why(exc))) from None

    def _set_marks(self, marks: dict[int, Any]) -> None:
        with self._lock:
            self._marks = dict(sorted(marks.items()))
            self._positions = list(self._marks)

    def _ensure_marks(self) -> None:
        """One id-only pass over the audience to learn the marks, unless a whole read did already."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        with self._lock:
            if self._marks is not None:
                return
            marks: dict[int, Any] = {}
            try:
                with self.engine().connect() as conn:
                    ids = f"SELECT {ID_COLUMN} FROM ({self.sql}) AS audience ORDER BY {ID_COLUMN}"
                    result = conn.execution_options(stream_results=True, yield_per=20_000).execute(text(ids))
                    for position, row in enumerate(result):
                        if position % MARK_EVERY == 0:
                            marks[position] = row[0]
            except SQLAlchemyError as exc:
                raise ContactsError(Problem(DISPLAY, 0, 0, self._why(exc))) from None
            self._marks = marks
            self._positions = list(marks)

    def _mark_before(self, position: int) -> tuple[int, Any] | None:
        with self._lock:
            if not self._positions:
                return None
            found = bisect.bisect_right(self._positions, position) - 1
            if found < 0:
                return None
            at = self._positions[found]
            assert self._marks is not None
            return at, self._marks[at]

    def digest(self) -> str:
        """sha256 over every row of the result, so a resume can tell whether the audience changed."""
        digest = hashlib.sha256()
        digest.update("\x1f".join(self.columns).encode())
        for contact in self.records():
            digest.update(b"\x1e")
            digest.update("\x1f".join(contact.fields[c] for c in self.columns).encode())
        return digest.hexdigest()
