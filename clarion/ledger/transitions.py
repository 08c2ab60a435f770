"""The moves of a send between states, as SQL for one dialect; each runs inside the caller's transaction.

A move names the state a row must be in (a send is claimed only while planned, settled only while in
flight), so a stale or repeated call changes nothing. The statements are shaped so that they stay on the
right index whatever the planner's statistics say: a run's rows are all freshly inserted, so there are
none, and both SQLite and PostgreSQL would otherwise scan every planned row of a channel per call.

- claim: on SQLite BEGIN IMMEDIATE already serialises writers; the rows are found by (run, channel,
  recipient) in a subquery and updated by rowid. On PostgreSQL the rows are first locked with FOR UPDATE
  SKIP LOCKED (rows another transaction holds are left to it: nobody waits, so nobody deadlocks), then
  updated by id.
- keyed updates (settle, skip): PostgreSQL gets one UPDATE ... FROM unnest(arrays); SQLite an executemany.

The send path's moves (claim, settle, release) find their rows by id when the caller read the ids with the
rows (`ids`: recipient -> id, from Ledger.due_in_batch): the rows of a batch sit together in the table,
where the (run, channel, recipient) index puts them wherever their contact ids sort. With contact ids
that do not follow the file's order (UUIDs, a CRM's keys), each recipient found through that index was a
page read from anywhere in it: at a million contacts, about 6 s of a run's sending went to those reads.
Without ids (a resume's settling, the reconciler, a follow-up) they are found by recipient, as before.

On SQLite, a claim and a settlement by id run as statements compiled once, executed as driver SQL
(`_SqliteById`, clarion/ledger/driver.py): the ledger's write lock is held while they run, and building the
statement anew, binding its parameters through SQLAlchemy and making a Row per returned recipient took
about as long as SQLite's own work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Dialect,
    String,
    and_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from clarion.ledger.bulk import CHUNK, IN_CHUNK, among, chunked, unindexed
from clarion.ledger.driver import Positional, stamp
from clarion.ledger.rows import SendState, Settlement
from clarion.ledger.schema import sends


class Transitions:
    """The state changes of sends for one dialect (see the module's docstring for how each is done)."""

    def __init__(self, dialect: Dialect) -> None:
        self.postgres = dialect.name == "postgresql"
        self._sqlite = None if self.postgres else _SqliteById(dialect)

    def claim(
        self,
        conn: Connection,
        run_id: str,
        channel: str,
        recipients: Sequence[str],
        now: datetime,
        ids: Mapping[str, int] | None = None,
    ) -> list[str]:
        """planned -> in_flight (attempts + 1) for those of `recipients` still planned; returns them."""
        if self._sqlite is not None and (known := _by_id(ids, recipients)) is not None:
            return self._sqlite.claim(conn, run_id, channel, [known[r] for r in recipients], now)
        key = _rows(run_id, channel, recipients, ids, self.postgres)
        if self.postgres:
            found = select(sends.c.id).where(key).with_for_update(skip_locked=True)
            locked = list(conn.execute(found).scalars())
            if not locked:
                return []
            target = among(sends.c.id, locked, postgres=True)
        elif ids is None:
            target = sends.c.id.in_(select(sends.c.id).where(key).scalar_subquery())
        else:
            target = key
        query = (
            update(sends)
            .where(target, sends.c.state == SendState.PLANNED.value)
            .values(state=SendState.IN_FLIGHT.value, attempts=sends.c.attempts + 1, attempted_at=now)
            .returning(sends.c.recipient)
        )
        return list(conn.execute(query).scalars().all())  # all(): rows built in bulk, not one by one

    def release(
        self,
        conn: Connection,
        run_id: str,
        channel: str,
        recipients: Sequence[str],
        ids: Mapping[str, int] | None = None,
    ) -> int:
        """in_flight -> planned (attempts kept)."""
        query = (
            update(sends)
            .where(
                _rows(run_id, channel, recipients, ids, self.postgres),
                sends.c.state == SendState.IN_FLIGHT.value,
            )
            .values(state=SendState.PLANNED.value)
        )
        return int(conn.execute(query).rowcount)

    def move_all(
        self,
        conn: Connection,
        run_id: str,
        old: SendState,
        new: SendState,
        reason: str | None,
        batches: Sequence[tuple[str, int]] = (),
    ) -> int:
        """Every send of a run (or of the given (channel, batch) pairs) in state `old` -> `new`, with
        `reason` (and no error or settled_at)."""
        query = (
            update(sends)
            .where(sends.c.run_id == run_id, sends.c.state == old.value)
            .values(state=new.value, reason=reason, error=None, settled_at=None)
        )
        if not batches:
            return int(conn.execute(query).rowcount)
        moved = 0
        for channel in sorted({c for c, _ in batches}):
            numbers = [n for c, n in batches if c == channel]
            scoped = query.where(sends.c.channel == channel, among(sends.c.batch, numbers, self.postgres))
            moved += int(conn.execute(scoped).rowcount)
        return moved

    def settle(
        self,
        conn: Connection,
        run_id: str,
        channel: str,
        results: Sequence[Settlement],
        now: datetime,
        ids: Mapping[str, int] | None = None,
    ) -> int:
        """in_flight -> sent | failed | uncertain, with what the provider said; returns how many moved.

        Results that say the same (a SendGrid request's 1,000 recipients share one message id) are settled
        by one statement per 1,000 recipients, in recipient order."""
        same: dict[tuple[str, str | None, str | None, str | None], list[str]] = {}
        for r in results:  # grouped as given (a state as SendState or str); made a SendState per group
            same.setdefault((r.state, r.provider_id, r.reason, r.error), []).append(r.recipient)
        if len(same) > len(results) // 4 + 1:  # mostly different answers: one statement with a row each
            rows = [
                {
                    "recipient": r.recipient,
                    "state": SendState(r.state).value,
                    "provider_id": r.provider_id,
                    "reason": r.reason,
                    "error": r.error,
                }
                for r in results
            ]
            return self._keyed(conn, run_id, channel, SendState.IN_FLIGHT, rows, {"settled_at": now}, ids)
        moved = 0
        # SQLite's statement by id; PostgreSQL's finds each chunk's rows by id in `_rows`
        known = None if self._sqlite is None else _by_id(ids, [r.recipient for r in results])
        for (given, provider_id, reason, error), recipients in same.items():
            state = SendState(given).value
            if self._sqlite is not None and known is not None:
                found = [known[r] for r in recipients]
                answer = (state, provider_id, reason, error)
                moved += self._sqlite.settle(conn, run_id, channel, found, answer, now)
                continue
            values = {"state": state, "provider_id": provider_id, "reason": reason, "error": error}
            for chunk in chunked(sorted(recipients), IN_CHUNK):
                query = (
                    update(sends)
                    .where(
                        _rows(run_id, channel, chunk, ids, self.postgres),
                        sends.c.state == SendState.IN_FLIGHT.value,
                    )
                    .values(**values, settled_at=now)
                )
                moved += int(conn.execute(query).rowcount)
        return moved

    def resolve(
        self, conn: Connection, run_id: str, channel: str, results: Sequence[Settlement], now: datetime
    ) -> int:
        """uncertain -> sent | failed, once the provider said which; `settled_at` becomes when it said."""
        rows = [
            {
                "recipient": r.recipient,
                "state": SendState(r.state).value,
                "provider_id": r.provider_id,
                "reason": r.reason,
                "error": r.error,
            }
            for r in results
        ]
        return self._keyed(conn, run_id, channel, SendState.UNCERTAIN, rows, {"settled_at": now})

    def requeue(self, conn: Connection, run_id: str, reasons: Sequence[str]) -> int:
        """failed (for one of `reasons`) -> planned; attempts are kept, the failure's record cleared."""
        query = (
            update(sends)
            .where(
                sends.c.run_id == run_id,
                sends.c.state == SendState.FAILED.value,
                among(sends.c.reason, reasons, self.postgres),
            )
            .values(state=SendState.PLANNED.value, reason=None, error=None, settled_at=None)
        )
        return int(conn.execute(query).rowcount)

    def skip(
        self,
        conn: Connection,
        run_id: str,
        channel: str,
        items: Sequence[tuple[str, str, str | None]],
        now: datetime,
    ) -> int:
        """planned -> skipped, from (recipient, reason, error) items; returns how many moved."""
        rows = [{"recipient": r, "reason": reason, "error": error} for r, reason, error in items]
        fixed = {"state": SendState.SKIPPED.value, "settled_at": now}
        return self._keyed(conn, run_id, channel, SendState.PLANNED, rows, fixed)

    def _keyed(
        self,
        conn: Connection,
        run_id: str,
        channel: str,
        old: SendState,
        rows: list[dict[str, Any]],
        fixed: Mapping[str, Any],
        ids: Mapping[str, int] | None = None,
    ) -> int:
        """Per-recipient values, rows of {"recipient": ..., column: value, ...}; `fixed` is the same for all.

        Only rows in state `old` change; returns how many did. Rows are taken in recipient order, so that
        concurrent callers lock in the same order; found by id when `ids` has every recipient's.
        """
        rows.sort(key=lambda row: str(row["recipient"]))
        if (known := _by_id(ids, [row["recipient"] for row in rows])) is not None:
            rows = [{"id": known[row.pop("recipient")], **row} for row in rows]
        return sum(
            self._keyed_chunk(conn, run_id, channel, old, chunk, fixed) for chunk in chunked(rows, CHUNK)
        )

    def _keyed_chunk(
        self,
        conn: Connection,
        run_id: str,
        channel: str,
        old: SendState,
        rows: Sequence[Mapping[str, Any]],
        fixed: Mapping[str, Any],
    ) -> int:
        key = "id" if "id" in rows[0] else "recipient"  # by id when the caller knew them (`_keyed`)
        names = [name for name in rows[0] if name != key]
        if self.postgres:
            kind = BigInteger() if key == "id" else String()
            arrays = [bindparam(f"a_{key}", [r[key] for r in rows], type_=postgresql.ARRAY(kind))]
            arrays += [
                bindparam(f"a_{n}", [r[n] for r in rows], type_=postgresql.ARRAY(sends.c[n].type))
                for n in names
            ]
            u = func.unnest(*arrays).table_valued(key, *names).render_derived(name="u")
            query = (
                update(sends)
                .where(*_of(run_id, channel, old), sends.c[key] == u.c[key])
                .values({**{n: u.c[n] for n in names}, **fixed})
            )
            return int(conn.execute(query).rowcount)
        by_id = key == "id"
        of = (*_checked(run_id, channel, False), _in(old)) if by_id else _of(run_id, channel, old)
        query = (
            update(sends)
            .where(*of, sends.c[key] == bindparam(f"k_{key}"))
            .values({**{n: bindparam(f"v_{n}") for n in names}, **fixed})
        )
        params = [{f"k_{key}": r[key], **{f"v_{n}": r[n] for n in names}} for r in rows]
        return int(conn.execute(query, params).rowcount)


class _SqliteById:
    """A claim and a settlement of rows found by id, on SQLite: compiled once from Core, executed as driver
    SQL with positional parameters, the ids as one JSON array. What the general path does too, without its
    per-call work under the ledger's write lock (see the module's docstring)."""

    def __init__(self, dialect: Dialect) -> None:
        self._stamp = stamp(dialect)
        listed = func.json_each(bindparam("ids", type_=String())).table_valued("value")
        found = (
            sends.c.id.in_(select(listed.c.value).scalar_subquery()),
            unindexed(sends.c.run_id, bindparam("run_id", type_=String())),
            unindexed(sends.c.channel, bindparam("channel", type_=String())),
            sends.c.state == bindparam("old", type_=String()),
        )
        moved = update(sends).where(*found)
        claim = moved.values(
            state=bindparam("v_state"), attempts=sends.c.attempts + 1, attempted_at=bindparam("v_at")
        ).returning(sends.c.recipient)
        settle = moved.values(
            state=bindparam("v_state"),
            provider_id=bindparam("v_provider_id"),
            reason=bindparam("v_reason"),
            error=bindparam("v_error"),
            settled_at=bindparam("v_at"),
        )
        self._claim = Positional(claim, dialect)
        self._settle = Positional(settle, dialect)

    def claim(self, conn: Connection, run_id: str, channel: str, ids: list[int], now: datetime) -> list[str]:
        """planned -> in_flight (attempts + 1) for the rows of `ids` still planned; their recipients."""
        rows, _ = self._claim.run(
            conn,
            ids=json.dumps(ids),
            run_id=run_id,
            channel=channel,
            old=SendState.PLANNED.value,
            v_state=SendState.IN_FLIGHT.value,
            v_at=self._stamp(now),
        )
        return [recipient for (recipient,) in rows]

    def settle(
        self,
        conn: Connection,
        run_id: str,
        channel: str,
        ids: list[int],
        answer: tuple[str, str | None, str | None, str | None],
        now: datetime,
    ) -> int:
        """in_flight -> the answer's state, the same (state, provider id, reason, error) for every row of
        `ids`; returns how many moved."""
        state, provider_id, reason, error = answer
        _, count = self._settle.run(
            conn,
            ids=json.dumps(ids),
            run_id=run_id,
            channel=channel,
            old=SendState.IN_FLIGHT.value,
            v_state=state,
            v_provider_id=provider_id,
            v_reason=reason,
            v_error=error,
            v_at=self._stamp(now),
        )
        return count


def _rows(
    run_id: str, channel: str, recipients: Sequence[str], ids: Mapping[str, int] | None, postgres: bool
) -> ColumnElement[bool]:
    """The condition that finds these recipients' rows of a run's channel: by their ids when the caller read
    them with the rows (`ids` holds every recipient's), else by recipient (see the module's docstring)."""
    if (known := _by_id(ids, recipients)) is not None:
        return and_(
            among(sends.c.id, [known[r] for r in recipients], postgres), *_checked(run_id, channel, postgres)
        )
    return and_(
        sends.c.run_id == run_id, sends.c.channel == channel, among(sends.c.recipient, recipients, postgres)
    )


def _by_id(ids: Mapping[str, int] | None, recipients: Sequence[str]) -> Mapping[str, int] | None:
    """`ids` when the rows are found by id (the caller read every recipient's id with the rows), else None:
    found by recipient."""
    return ids if ids is not None and all(r in ids for r in recipients) else None


def _checked(run_id: str, channel: str, postgres: bool) -> tuple[ColumnElement[bool], ...]:
    """The run and channel of rows found by id: on SQLite `unindexed`, or its planner may walk the (run,
    channel, ...) indexes, every planned row of the channel, instead of looking up each id."""
    if postgres:
        return sends.c.run_id == run_id, sends.c.channel == channel
    return unindexed(sends.c.run_id, run_id), unindexed(sends.c.channel, channel)


def _of(run_id: str, channel: str, state: SendState) -> tuple[ColumnElement[bool], ...]:
    return sends.c.run_id == run_id, sends.c.channel == channel, _in(state)


def _in(state: SendState) -> ColumnElement[bool]:
    return sends.c.state == state.value
