"""Sequencing in the ledger: sends deferred to a later instant, steps' conditions on what recipients did,
and the decisions a run makes on its way (who approved it, which variant won the test), kept with the run
so a resumed or continued run makes each decision once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Connection, func, or_, select, update

from clarion.ledger.errors import RunNotFound
from clarion.ledger.rows import SendState
from clarion.ledger.schema import clicks, conversions, runs, sends

#: A step's `only_if` and the engagement that excludes a contact from it.
SKIP_CHUNK = 500  # contact positions per UPDATE (SQLite's bound-parameter limit)
CONDITIONS = {
    "not_clicked": ("clicked",),
    "not_converted": ("converted",),
    "not_engaged": ("clicked", "converted"),
}
CHUNK = 500


def due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """A planned send that is not deferred past `now` (an instant, or a parameter that will be one)."""
    return or_(sends.c.not_before.is_(None), sends.c.not_before <= now)


class SequencingStore:
    """Mixed into `Ledger`: deferrals, conditions and decisions."""

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def defer(self, run_id: str, channel: str, until: Iterable[tuple[str, datetime]]) -> int:
        """Planned sends wait until the given instant (recipient, not_before); returns how many moved."""
        changed = 0
        items = list(until)
        with self._tx(write=True) as conn:
            for start in range(0, len(items), CHUNK):
                for recipient, when in items[start : start + CHUNK]:
                    query = (
                        update(sends)
                        .where(
                            sends.c.run_id == run_id,
                            sends.c.channel == channel,
                            sends.c.recipient == recipient,
                            sends.c.state == SendState.PLANNED.value,
                        )
                        .values(not_before=when)
                    )
                    changed += conn.execute(query).rowcount
        return changed

    def next_due(self, run_id: str, channels: Iterable[str]) -> datetime | None:
        """The earliest instant a deferred planned send of these channels may go, or None."""
        names = list(channels)
        if not names:
            return None
        query = select(func.min(sends.c.not_before)).where(
            sends.c.run_id == run_id,
            sends.c.channel.in_(names),
            sends.c.state == SendState.PLANNED.value,
            sends.c.not_before.is_not(None),
        )
        with self._tx() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else _utc(value)

    def deferred(self, run_id: str, now: datetime) -> list[tuple[str, datetime, int, str | None]]:
        """Planned sends held past `now` (quiet hours, send_at_local), grouped by channel and the instant
        they may go: (channel, not_before, count, one of their contact ids), soonest first."""
        query = (
            select(sends.c.channel, sends.c.not_before, func.count(), func.min(sends.c.contact_id))
            .where(
                sends.c.run_id == run_id,
                sends.c.state == SendState.PLANNED.value,
                sends.c.not_before > now,
            )
            .group_by(sends.c.channel, sends.c.not_before)
        )
        with self._tx() as conn:
            found = [(c, _utc(at), int(n), contact) for c, at, n, contact in conn.execute(query)]
        return sorted(found, key=lambda row: (row[1], row[0]))

    def first_sent(self, run_id: str) -> dict[str, datetime]:
        """When each channel's first accepted message was requested (its claim), for launch skew."""
        query = (
            select(sends.c.channel, func.min(sends.c.attempted_at))
            .where(sends.c.run_id == run_id, sends.c.state == SendState.SENT.value)
            .group_by(sends.c.channel)
        )
        with self._tx() as conn:
            return {channel: _utc(at) for channel, at in conn.execute(query) if at is not None}

    def skip_engaged(
        self,
        run_id: str,
        channel: str,
        condition: str,
        *,
        since_run: str | None = None,
        machines: Collection[int] = (),
    ) -> int:
        """A step with `only_if`: its planned sends to contacts who already clicked or converted (in
        `since_run`, default this run) are skipped, the reason naming what they did. Returns how many.

        `machines`: contacts every one of whose clicks was a scanner's (clarion.analysis.clicks); they have
        not clicked, so their reminder still goes."""
        source = since_run or run_id
        skipped = 0
        with self._tx(write=True) as conn:
            for what in CONDITIONS[condition]:
                table = clicks if what == "clicked" else conversions
                found = select(table.c.contact_seq).where(
                    table.c.run_id == source, table.c.contact_seq.is_not(None)
                )
                seqs = sorted(
                    {int(seq) for (seq,) in conn.execute(found)}
                    - (set(machines) if what == "clicked" else set())
                )
                for start in range(0, len(seqs), SKIP_CHUNK):
                    query = (
                        update(sends)
                        .where(
                            sends.c.run_id == run_id,
                            sends.c.channel == channel,
                            sends.c.state == SendState.PLANNED.value,
                            sends.c.contact_id.is_not(None),
                            sends.c.seq.in_(seqs[start : start + SKIP_CHUNK]),
                        )
                        .values(state=SendState.SKIPPED.value, reason=f"already_{what}", not_before=None)
                    )
                    skipped += conn.execute(query).rowcount
        return skipped

    def decisions(self, run_id: str) -> dict[str, Any]:
        with self._tx() as conn:
            row = conn.execute(select(runs.c.decisions).where(runs.c.id == run_id)).first()
        if row is None:
            raise RunNotFound(run_id)
        return dict(row[0] or {})

    def decide(self, run_id: str, key: str, value: Any) -> Any:
        """Record a decision once: returns the value already recorded under `key`, or records `value`.

        Read and write in one write transaction, so two processes deciding at once agree on the first."""
        with self._tx(write=True) as conn:
            row = conn.execute(select(runs.c.decisions).where(runs.c.id == run_id).with_for_update()).first()
            if row is None:
                raise RunNotFound(run_id)
            current = dict(row[0] or {})
            if key in current:
                return current[key]
            current[key] = value
            conn.execute(update(runs).where(runs.c.id == run_id).values(decisions=current))
        return value

    def note(self, run_id: str, key: str, value: Any) -> None:
        """Keep (or replace) a fact about the run beside its decisions, e.g. what its approvers are asked;
        unlike `decide`, a later note replaces an earlier one."""
        with self._tx(write=True) as conn:
            row = conn.execute(select(runs.c.decisions).where(runs.c.id == run_id).with_for_update()).first()
            if row is None:
                raise RunNotFound(run_id)
            noted = {**(row[0] or {}), key: value}
            conn.execute(update(runs).where(runs.c.id == run_id).values(decisions=noted))

    def clicked_per_arm(self, run_id: str) -> dict[str, int]:
        with self._tx() as conn:
            return clicked_per_arm(conn, run_id)


def _utc(value: Any) -> datetime:
    """A timestamp read back through an aggregate or GROUP BY, which bypass the column type: SQLite hands
    back text or a naive datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def clicked_per_arm(conn: Connection, run_id: str) -> dict[str, int]:
    """Contacts who clicked any of the run's links, per variant (clicks on two channels count once)."""
    query = (
        select(clicks.c.variant, func.count(func.distinct(clicks.c.contact_seq)))
        .where(clicks.c.run_id == run_id, clicks.c.contact_seq.is_not(None))
        .group_by(clicks.c.variant)
    )
    return {variant: int(n) for variant, n in conn.execute(query)}
