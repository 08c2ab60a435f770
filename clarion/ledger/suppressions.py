"""The suppression store and frequency counts in the ledger: who must not be sent what, across campaigns.

Mixed into `Ledger`. A suppression is one row per (kind, address); a repeated opt-out keeps its first
reason and source (the earliest evidence) unless the address had opted back in, in which case the new
opt-out replaces it. Opting back in stamps `lifted_at`, never deletes: the history of consent is kept.
Addresses are normalised by the caller (clarion.base.consent.normalise).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from clarion.ledger.bulk import CHUNK, among, chunked
from clarion.ledger.rows import SendState
from clarion.ledger.schema import sends, suppressions

#: States of a send that count against a frequency cap: it went, may have gone, or is about to go.
COUNTED = (SendState.PLANNED, SendState.IN_FLIGHT, SendState.SENT, SendState.UNCERTAIN)


@dataclass(frozen=True)
class Suppression:
    kind: str
    address: str
    reason: str
    source: str
    detail: str | None = None
    created_at: datetime | None = None
    lifted_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.lifted_at is None


class ConsentStore:
    """Suppressions (opt-outs, complaints, hard bounces) and per-address send counts."""

    url: Any
    _postgres: bool

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def suppress(self, items: Iterable[Suppression]) -> int:
        """Record opt-outs; returns how many addresses became suppressed (new, or opted out again)."""
        rows = {(s.kind, s.address): s for s in items}
        if not rows:
            return 0
        now = datetime.now(UTC)
        changed = 0
        insert: Any = postgresql.insert if self.url.get_backend_name() == "postgresql" else sqlite.insert
        with self._tx(write=True) as conn:
            # in key order: two writers with overlapping opt-outs lock rows in the same order, so on
            # PostgreSQL they queue instead of deadlocking (found by tests/ledger/test_ledger_concurrency.py)
            for _, s in sorted(rows.items()):
                values = {
                    "kind": s.kind,
                    "address": s.address,
                    "reason": s.reason,
                    "source": s.source,
                    "detail": s.detail,
                    "created_at": s.created_at or now,
                    "lifted_at": None,
                }
                changed += conn.execute(insert(suppressions).values(values).on_conflict_do_nothing()).rowcount
                again = (
                    update(suppressions)
                    .where(
                        suppressions.c.kind == s.kind,
                        suppressions.c.address == s.address,
                        suppressions.c.lifted_at.is_not(None),
                    )
                    .values(values)
                )
                changed += conn.execute(again).rowcount
        return changed

    def lift(self, kind: str, address: str) -> bool:
        """The address opted back in (SMS START, `clarion suppress remove`); False if not suppressed."""
        query = (
            update(suppressions)
            .where(
                suppressions.c.kind == kind,
                suppressions.c.address == address,
                suppressions.c.lifted_at.is_(None),
            )
            .values(lifted_at=datetime.now(UTC))
        )
        with self._tx(write=True) as conn:
            return bool(conn.execute(query).rowcount)

    def suppressed(self, kind: str, addresses: Iterable[str] | None = None) -> set[str]:
        """Which of `addresses` (every one, when None) are suppressed for `kind`."""
        base = select(suppressions.c.address).where(
            suppressions.c.kind == kind, suppressions.c.lifted_at.is_(None)
        )
        with self._tx() as conn:
            if addresses is None:
                return set(conn.execute(base).scalars())
            found: set[str] = set()
            for chunk in chunked(dict.fromkeys(addresses), CHUNK):
                listed = among(suppressions.c.address, chunk, self._postgres)
                found.update(conn.execute(base.where(listed)).scalars().all())
            return found

    def suppressions(
        self, kind: str | None = None, *, include_lifted: bool = False
    ) -> Generator[Suppression, None, None]:
        """Every suppression (of one kind), oldest first, streamed."""
        query = select(suppressions).order_by(suppressions.c.created_at, suppressions.c.address)
        if kind is not None:
            query = query.where(suppressions.c.kind == kind)
        if not include_lifted:
            query = query.where(suppressions.c.lifted_at.is_(None))
        with self._tx() as conn, conn.execution_options(yield_per=1000).execute(query) as result:
            for row in result.mappings():
                yield Suppression(**row)

    def suppression(self, kind: str, address: str) -> Suppression | None:
        """The record of one address (lifted or not), or None when it was never suppressed."""
        query = select(suppressions).where(suppressions.c.kind == kind, suppressions.c.address == address)
        with self._tx() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else Suppression(**row)

    def suppression_counts(self) -> dict[str, int]:
        """Active suppressions per kind."""
        query = (
            select(suppressions.c.kind, func.count())
            .where(suppressions.c.lifted_at.is_(None))
            .group_by(suppressions.c.kind)
        )
        with self._tx() as conn:
            return {kind: int(n) for kind, n in conn.execute(query)}

    def capped(self, keys: Sequence[str] | None, since: datetime, limit: int, *, excluding: str) -> set[str]:
        """Address keys that already have `limit` or more counted sends planned since `since` in runs other
        than `excluding` (every key when `keys` is None)."""
        base = (
            select(sends.c.address_key)
            .where(
                sends.c.address_key.is_not(None),
                sends.c.planned_at >= since,
                sends.c.run_id != excluding,
                sends.c.state.in_([s.value for s in COUNTED]),
            )
            .group_by(sends.c.address_key)
            .having(func.count() >= limit)
        )
        with self._tx() as conn:
            if keys is None:
                return set(conn.execute(base).scalars())
            found: set[str] = set()
            for chunk in chunked(dict.fromkeys(keys), CHUNK):
                listed = among(sends.c.address_key, chunk, self._postgres)
                found.update(conn.execute(base.where(listed)).scalars().all())
            return found
