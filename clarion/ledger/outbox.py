"""Integrations in the ledger (mixed into `Ledger`): the outbound-event outbox, the streams it is filled
from, conversions looked up by their platform id (a refund finds its gift), and SendGrid batch ids.

The outbox is written from the ledger's own tables (sends settled as sent, provider events, clicks,
conversions, suppressions), each stream read from a cursor, so nothing on the send or webhook path waits
for an endpoint: a dead endpoint only grows its own queue. Every event has a deterministic id, so a stream
read twice enqueues nothing new (`(endpoint, event_id)` is unique) and a receiver de-duplicates on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from clarion.ledger.rows import SendState
from clarion.ledger.schema import (
    assignments,
    clicks,
    conversions,
    events,
    outbox,
    outbox_cursors,
    scheduled_batches,
    sends,
    suppressions,
)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class OutboxItem:
    endpoint: str
    event_id: str
    url: str
    secret_env: str
    kind: str
    run_id: str | None
    body: str
    id: int = 0
    attempts: int = 0
    next_at: datetime | None = None
    state: str = PENDING
    last_error: str | None = None


@dataclass(frozen=True)
class Gift:
    """A recorded conversion, found by its platform id: where a refund of it belongs."""

    run_id: str
    arm: str
    channel: str | None
    contact_seq: int | None
    amount_minor: int
    currency: str


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class OutboxStore:
    url: Any

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _insert(self) -> Any:
        return postgresql.insert if self.url.get_backend_name() == "postgresql" else sqlite.insert

    # -- the outbox ------------------------------------------------------------------------------------

    def enqueue(self, items: Sequence[OutboxItem], cursors: Iterable[tuple[str, str, str, str]] = ()) -> int:
        """Add events (those already queued for their endpoint are ignored) and move the stream cursors
        (endpoint, run, stream, position) in the same transaction; returns how many were new."""
        now = datetime.now(UTC)
        added = 0
        insert = self._insert()
        with self._tx(write=True) as conn:
            for start in range(0, len(items), 500):
                rows = [
                    {
                        "endpoint": i.endpoint,
                        "event_id": i.event_id,
                        "url": i.url,
                        "secret_env": i.secret_env,
                        "kind": i.kind,
                        "run_id": i.run_id,
                        "body": i.body,
                        "state": PENDING,
                        "attempts": 0,
                        "next_at": now,
                        "created_at": now,
                    }
                    for i in items[start : start + 500]
                ]
                statement = insert(outbox).on_conflict_do_nothing(
                    index_elements=[outbox.c.endpoint, outbox.c.event_id]
                )
                # RETURNING counts the rows really inserted (rowcount of a batch is not reliable on psycopg)
                added += len(conn.execute(statement.returning(outbox.c.id), rows).all())
            for endpoint, run_id, stream, position in cursors:
                statement = insert(outbox_cursors).values(
                    endpoint=endpoint, run_id=run_id, stream=stream, position=position
                )
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=[
                            outbox_cursors.c.endpoint,
                            outbox_cursors.c.run_id,
                            outbox_cursors.c.stream,
                        ],
                        set_={"position": statement.excluded.position},
                    )
                )
        return max(added, 0)

    def cursor(self, endpoint: str, run_id: str, stream: str) -> str | None:
        query = select(outbox_cursors.c.position).where(
            outbox_cursors.c.endpoint == endpoint,
            outbox_cursors.c.run_id == run_id,
            outbox_cursors.c.stream == stream,
        )
        with self._tx() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else str(value)

    def outbox_due(self, now: datetime, limit: int = 200, *, lease: float = 60.0) -> list[OutboxItem]:
        """Claim the pending events whose time has come, oldest first: each is leased (its next_at moved
        `lease` seconds on) to this caller, so two deliverers never post one event at once; one that dies
        mid-post lets the lease run out and the event is tried again."""
        due = (
            select(outbox.c.id)
            .where(outbox.c.state == PENDING, outbox.c.next_at <= now)
            .order_by(outbox.c.next_at, outbox.c.id)
            .limit(limit)
        )
        until = now + timedelta(seconds=lease)
        with self._tx(write=True) as conn:
            ids = [int(i) for i in conn.execute(due).scalars()]
            if not ids:
                return []
            claim = (
                update(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.state == PENDING, outbox.c.next_at <= now)
                .values(next_at=until)
                .returning(*outbox.c)
            )
            claimed = [_item(row) for row in conn.execute(claim).mappings()]
        return sorted(claimed, key=lambda i: ids.index(i.id))

    def outbox_settle(
        self, item_id: int, *, delivered: bool, error: str | None = None, retry_at: datetime | None = None
    ) -> None:
        """One attempt's outcome: delivered, or failed (retried at `retry_at`, or dead without one)."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {"attempts": outbox.c.attempts + 1, "last_error": error}
        if delivered:
            values.update(state=DELIVERED, delivered_at=now, last_error=None)
        elif retry_at is None:
            values.update(state=DEAD)
        else:
            values.update(next_at=retry_at)
        with self._tx(write=True) as conn:
            conn.execute(
                update(outbox).where(outbox.c.id == item_id, outbox.c.state == PENDING).values(values)
            )

    def outbox_postpone(self, endpoint: str, until: datetime) -> int:
        """An endpoint failed: its other pending events wait until its next try too (no attempt counted)."""
        query = (
            update(outbox)
            .where(outbox.c.endpoint == endpoint, outbox.c.state == PENDING, outbox.c.next_at < until)
            .values(next_at=until)
        )
        with self._tx(write=True) as conn:
            return int(conn.execute(query).rowcount)

    def outbox_items(self, *, state: str | None = None, limit: int = 50) -> list[OutboxItem]:
        query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
        if state:
            query = query.where(outbox.c.state == state)
        with self._tx() as conn:
            return [_item(row) for row in conn.execute(query).mappings()]

    def outbox_summary(self) -> list[tuple[str, str, int, datetime | None]]:
        """(url, state, count, oldest next_at) per endpoint and state."""
        query = select(outbox.c.url, outbox.c.state, func.count(), func.min(outbox.c.next_at)).group_by(
            outbox.c.url, outbox.c.state
        )
        with self._tx() as conn:
            return [(u, s, int(n), None if t is None else _utc(t)) for u, s, n, t in conn.execute(query)]

    def outbox_requeue(self, *, url: str | None = None) -> int:
        """Dead events (their retries ran out) pending again, now; optionally for one endpoint URL."""
        query = update(outbox).where(outbox.c.state == DEAD)
        if url:
            query = query.where(outbox.c.url == url)
        with self._tx(write=True) as conn:
            return int(
                conn.execute(query.values(state=PENDING, attempts=0, next_at=datetime.now(UTC))).rowcount
            )

    def outbox_purge(self, before: datetime) -> int:
        """Forget delivered events delivered before `before` (their ids are no longer needed)."""
        query = delete(outbox).where(outbox.c.state == DELIVERED, outbox.c.delivered_at < before)
        with self._tx(write=True) as conn:
            return int(conn.execute(query).rowcount)

    # -- the streams ------------------------------------------------------------------------------------

    def stream_sent(
        self, run_id: str, after: tuple[datetime, int] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Sends settled as sent after the cursor (settled_at, id), in that order."""
        query = select(
            sends.c.id,
            sends.c.channel,
            sends.c.variant,
            sends.c.contact_id,
            sends.c.provider_id,
            sends.c.settled_at,
        ).where(
            sends.c.run_id == run_id, sends.c.state == SendState.SENT.value, sends.c.settled_at.is_not(None)
        )
        if after is not None:
            at, last = after
            query = query.where(
                or_(sends.c.settled_at > at, and_(sends.c.settled_at == at, sends.c.id > last))
            )
        return self._rows(query.order_by(sends.c.settled_at, sends.c.id).limit(limit))

    def stream_events(
        self, run_id: str, after: int, kinds: Sequence[str], limit: int
    ) -> list[dict[str, Any]]:
        contact = assignments.c.contact_id
        query = (
            select(
                events.c.id, events.c.channel, events.c.variant, events.c.kind, events.c.occurred_at, contact
            )
            .select_from(
                events.outerjoin(
                    assignments,
                    and_(assignments.c.run_id == events.c.run_id, assignments.c.seq == events.c.contact_seq),
                )
            )
            .where(events.c.run_id == run_id, events.c.id > after, events.c.kind.in_(list(kinds)))
            .order_by(events.c.id)
            .limit(limit)
        )
        return self._rows(query)

    def stream_clicks(self, run_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        """First clicks (one row per contact and channel; a post's clicks one each), by id."""
        query = (
            select(
                clicks.c.id, clicks.c.channel, clicks.c.variant, clicks.c.first_at, assignments.c.contact_id
            )
            .select_from(
                clicks.outerjoin(
                    assignments,
                    and_(assignments.c.run_id == clicks.c.run_id, assignments.c.seq == clicks.c.contact_seq),
                )
            )
            .where(clicks.c.run_id == run_id, clicks.c.id > after)
            .order_by(clicks.c.id)
            .limit(limit)
        )
        return self._rows(query)

    def stream_conversions(self, run_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        c = conversions.c
        query = (
            select(
                c.id,
                c.source,
                c.external_id,
                c.kind,
                c.refers_to,
                c.arm,
                c.channel,
                c.amount_minor,
                c.currency,
                c.occurred_at,
                assignments.c.contact_id,
            )
            .select_from(
                conversions.outerjoin(
                    assignments, and_(assignments.c.run_id == c.run_id, assignments.c.seq == c.contact_seq)
                )
            )
            .where(c.run_id == run_id, c.id > after)
            .order_by(c.id)
            .limit(limit)
        )
        return self._rows(query)

    def stream_suppressions(
        self, after: tuple[datetime, str, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Active suppressions made after the cursor (created_at, kind, address), in that order."""
        s = suppressions.c
        query = select(s.kind, s.address, s.reason, s.source, s.detail, s.created_at).where(
            s.lifted_at.is_(None)
        )
        if after is not None:
            at, kind, address = after
            query = query.where(
                or_(
                    s.created_at > at,
                    and_(s.created_at == at, or_(s.kind > kind, and_(s.kind == kind, s.address > address))),
                )
            )
        return self._rows(query.order_by(s.created_at, s.kind, s.address).limit(limit))

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        with self._tx() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    # -- conversions by platform id ------------------------------------------------------------------

    def gift(self, source: str, external_id: str) -> Gift | None:
        """The conversion a platform recorded under this id (the newest run's, if several)."""
        c = conversions.c
        query = (
            select(c.run_id, c.arm, c.channel, c.contact_seq, c.amount_minor, c.currency)
            .where(c.source == source, c.external_id == external_id, c.kind == "conversion")
            .order_by(c.id.desc())
            .limit(1)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else Gift(row[0], row[1], row[2], row[3], int(row[4]), row[5])

    def refunded(self, source: str, gift_id: str) -> int:
        """Minor units already recorded as refunded of a gift (a negative number, or 0)."""
        c = conversions.c
        query = select(func.coalesce(func.sum(c.amount_minor), 0)).where(
            c.source == source, c.refers_to == gift_id, c.kind.in_(["refund", "partial_refund"])
        )
        with self._tx() as conn:
            return int(conn.execute(query).scalar() or 0)

    # -- scheduled email ------------------------------------------------------------------------------

    def remember_batches(self, run_id: str, channel: str, provider: str, batch_ids: Iterable[str]) -> None:
        insert = self._insert()
        now = datetime.now(UTC)
        rows = [
            {"run_id": run_id, "channel": channel, "provider": provider, "batch_id": b, "created_at": now}
            for b in batch_ids
        ]
        if not rows:
            return
        with self._tx(write=True) as conn:
            conn.execute(insert(scheduled_batches).on_conflict_do_nothing(), rows)

    def mark_scheduled(self, run_id: str, channel: str, items: Sequence[tuple[str, datetime]]) -> int:
        """Sends the provider accepted for a later delivery: `not_before` records when (sent rows only)."""
        changed = 0
        with self._tx(write=True) as conn:
            for recipient, at in items:
                query = (
                    update(sends)
                    .where(
                        sends.c.run_id == run_id,
                        sends.c.channel == channel,
                        sends.c.recipient == recipient,
                        sends.c.state == SendState.SENT.value,
                    )
                    .values(not_before=at)
                )
                changed += conn.execute(query).rowcount
        return changed

    def scheduled_later(self, run_id: str, now: datetime) -> list[tuple[str, datetime, int]]:
        """Sends a provider accepted for delivery after `now`: (channel, instant, count), soonest first."""
        query = (
            select(sends.c.channel, sends.c.not_before, func.count())
            .where(
                sends.c.run_id == run_id,
                sends.c.state == SendState.SENT.value,
                sends.c.not_before > now,
            )
            .group_by(sends.c.channel, sends.c.not_before)
        )
        with self._tx() as conn:
            found = [(c, _utc(at), int(n)) for c, at, n in conn.execute(query)]
        return sorted(found, key=lambda row: (row[1], row[0]))

    def scheduled_batch_ids(self, run_id: str, *, cancelled: bool = False) -> list[tuple[str, str, str]]:
        """(channel, provider, batch id) of a run's scheduled email batches not yet cancelled."""
        b = scheduled_batches.c
        query = select(b.channel, b.provider, b.batch_id).where(b.run_id == run_id)
        query = query.where(b.cancelled_at.is_not(None) if cancelled else b.cancelled_at.is_(None))
        with self._tx() as conn:
            return [(c, p, i) for c, p, i in conn.execute(query.order_by(b.created_at))]

    def cancel_scheduled(self, run_id: str, channel: str, batch_id: str, now: datetime) -> int:
        """The batch is cancelled at the provider: mark it, and fail the channel's sends still due later
        (reason `cancelled`); returns how many sends that was."""
        with self._tx(write=True) as conn:
            conn.execute(
                update(scheduled_batches)
                .where(
                    scheduled_batches.c.run_id == run_id,
                    scheduled_batches.c.channel == channel,
                    scheduled_batches.c.batch_id == batch_id,
                )
                .values(cancelled_at=now)
            )
            moved = conn.execute(
                update(sends)
                .where(
                    sends.c.run_id == run_id,
                    sends.c.channel == channel,
                    sends.c.state == SendState.SENT.value,
                    sends.c.not_before > now,
                )
                .values(state=SendState.FAILED.value, reason="cancelled", settled_at=now)
            ).rowcount
        return int(moved)


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        endpoint=row["endpoint"],
        event_id=row["event_id"],
        url=row["url"],
        secret_env=row["secret_env"],
        kind=row["kind"],
        run_id=row["run_id"],
        body=row["body"],
        id=int(row["id"]),
        attempts=int(row["attempts"]),
        next_at=_utc(row["next_at"]),
        state=row["state"],
        last_error=row["last_error"],
    )
