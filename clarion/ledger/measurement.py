"""What the experiment's analysis reads beyond counts: when each contact was first sent to, which contacts a
channel was withheld from, and every request to a message's links.

- `reach_times`: per contact, the first moment the run sent it anything (a send claimed and not refused:
  sent, uncertain or in flight); the run's launch (`launch_time`) is the first such moment of any send. The
  attribution window counts from these (clarion.analysis.attribution).
- `channel_groups`: per channel, every contact of a variant arm with an address on it, and whether the
  channel was withheld (skip reason `channel_holdout`): the two groups of a channel's holdout comparison.
- `link_hits` and `delivered_times`: what the click rules read (clarion.analysis.clicks).

Per-contact reads are limited to the contacts they are read for (those who converted, those whose links were
requested), so that a report's memory follows its engagement, not its audience: a million sends with no
click hold no map of a million delivery times.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, exists, func, select
from sqlalchemy.sql.elements import ColumnElement

from clarion.ledger.bulk import of_run
from clarion.ledger.rows import SendState
from clarion.ledger.schema import conversions, events, link_hits, sends

REACHED = (SendState.SENT.value, SendState.UNCERTAIN.value, SendState.IN_FLIGHT.value)
CHANNEL_HOLDOUT = "channel_holdout"
NO_ADDRESS = "no_address"
DELIVERED = "delivered"


@dataclass(frozen=True)
class Reach:
    """When a run first reached each contact, and its launch (None before anything was sent)."""

    launch: datetime | None
    first: dict[int, datetime]


@dataclass(frozen=True, slots=True)
class Hit:
    channel: str
    variant: str
    contact_seq: int | None
    kind: str
    at: datetime
    automated: str | None
    agent: str | None


@dataclass(frozen=True, slots=True)
class GroupMember:
    seq: int
    arm: str
    withheld: bool


def _utc(value: Any) -> datetime:
    """A timestamp read through an aggregate (which bypasses the column type: SQLite gives text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


FIRST_SEND = func.min(func.coalesce(sends.c.attempted_at, sends.c.settled_at))


def launch_time(conn: Connection, run_id: str) -> datetime | None:
    """The run's first send of any kind, to anyone (None before anything was sent)."""
    return _launch(conn, of_run(conn, run_id))


def _launch(conn: Connection, run: tuple[ColumnElement[bool], ...]) -> datetime | None:
    """`launch_time` of the run whose sends `run` (`of_run`) reads."""
    launch = conn.execute(select(FIRST_SEND).where(*run, sends.c.state.in_(REACHED))).scalar()
    return _utc(launch) if launch is not None else None


def reach_times(conn: Connection, run_id: str, *, converted_only: bool = False) -> Reach:
    """When the run first reached each contact (with `converted_only`, each contact a conversion of the
    run names: all the attribution window reads), and its launch."""
    if converted_only and not _any(conn, conversions, run_id):  # none yet (a launch's own report)
        return Reach(launch_time(conn, run_id), {})  # no scan of its sends
    run = of_run(conn, run_id)  # its ends read once, for both questions
    query = select(sends.c.seq, FIRST_SEND).where(
        *run, sends.c.state.in_(REACHED), sends.c.contact_id.is_not(None)
    )
    if converted_only:
        query = query.where(
            exists().where(conversions.c.run_id == run_id, conversions.c.contact_seq == sends.c.seq)
        )
    first = {int(seq): _utc(at) for seq, at in conn.execute(query.group_by(sends.c.seq)) if at is not None}
    return Reach(_launch(conn, run), first)


def _any(conn: Connection, table: Table, run_id: str) -> bool:
    """Whether `table` has a row of the run (one index probe)."""
    return conn.execute(select(table.c.run_id).where(table.c.run_id == run_id).limit(1)).first() is not None


def _members(run_id: str, channels: Sequence[str]) -> tuple[Any, ...]:
    """The send rows of `channel_groups`: a contact's, on one of `channels`, with an address on it."""
    return (
        sends.c.run_id == run_id,
        sends.c.channel.in_(list(channels)),
        sends.c.contact_id.is_not(None),
        func.coalesce(sends.c.reason, "") != NO_ADDRESS,
    )


class MeasurementStore:
    """Mixed into `Ledger`: the reads the experiment's analysis needs."""

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def reach_times(self, run_id: str) -> Reach:
        with self._tx() as conn:
            return reach_times(conn, run_id)

    def launch_time(self, run_id: str) -> datetime | None:
        with self._tx() as conn:
            return launch_time(conn, run_id)

    def channel_groups(self, run_id: str, channels: Sequence[str]) -> dict[str, list[GroupMember]]:
        """Per channel: the contacts of variant arms with an address on it, withheld or not."""
        found: dict[str, list[GroupMember]] = {c: [] for c in channels}
        if not channels:
            return found
        query = select(sends.c.channel, sends.c.seq, sends.c.variant, sends.c.reason).where(
            *_members(run_id, channels)
        )
        with self._tx() as conn:
            for channel, seq, variant, reason in conn.execute(query):
                found[channel].append(GroupMember(int(seq), str(variant), reason == CHANNEL_HOLDOUT))
        return found

    def channel_group_sizes(self, run_id: str, channels: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Per channel: how many `channel_groups` members are (exposed, withheld), counted in the database."""
        found = dict.fromkeys(channels, (0, 0))
        if not channels:
            return found
        withheld = sends.c.reason == CHANNEL_HOLDOUT
        query = (
            select(sends.c.channel, withheld, func.count())
            .where(*_members(run_id, channels))
            .group_by(sends.c.channel, withheld)
        )
        with self._tx() as conn:
            for channel, held, count in conn.execute(query):
                exposed, out = found[channel]
                found[channel] = (exposed, out + count) if held else (exposed + count, out)
        return found

    def link_hits(self, run_id: str) -> list[Hit]:
        query = select(
            link_hits.c.channel,
            link_hits.c.variant,
            link_hits.c.contact_seq,
            link_hits.c.kind,
            link_hits.c.at,
            link_hits.c.automated,
            link_hits.c.agent,
        ).where(link_hits.c.run_id == run_id)
        with self._tx() as conn:
            return [Hit(*row) for row in conn.execute(query)]

    def delivered_times(self, run_id: str) -> dict[tuple[str, int], datetime]:
        """When each (channel, contact) message whose links were requested reached its recipient: the
        provider's delivered event, else the moment the provider accepted it."""
        found: dict[tuple[str, int], datetime] = {}

        def requested(channel: Any, seq: Any) -> Any:
            return exists().where(
                link_hits.c.run_id == run_id, link_hits.c.channel == channel, link_hits.c.contact_seq == seq
            )

        accepted = (
            select(sends.c.channel, sends.c.seq, sends.c.settled_at)
            .where(sends.c.run_id == run_id, sends.c.contact_id.is_not(None))
            .where(sends.c.state == SendState.SENT.value, requested(sends.c.channel, sends.c.seq))
        )
        delivered = (
            select(events.c.channel, events.c.contact_seq, func.min(events.c.occurred_at))
            .where(events.c.run_id == run_id, events.c.kind == DELIVERED, events.c.contact_seq.is_not(None))
            .where(requested(events.c.channel, events.c.contact_seq))
            .group_by(events.c.channel, events.c.contact_seq)
        )
        with self._tx() as conn:
            if not _any(conn, link_hits, run_id):  # no link requested yet: no scan of the run's sends
                return found
            for channel, seq, at in conn.execute(accepted):
                if at is not None:
                    found[(str(channel), int(seq))] = _utc(at)
            for channel, seq, at in conn.execute(delivered):
                found[(str(channel), int(seq))] = _utc(at)
        return found


__all__ = ["CHANNEL_HOLDOUT", "GroupMember", "Hit", "MeasurementStore", "Reach"]
