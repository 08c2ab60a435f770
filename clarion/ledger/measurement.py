"""What the experiment's analysis reads beyond counts: when each contact was first sent to, which contacts a
channel was withheld from, and every request to a message's links.

- `reach_times`: per contact, the first moment the run sent it anything (a send claimed and not refused:
  sent, uncertain or in flight); the run's launch is the first such moment of any contact. The attribution
  window counts from these (clarion.analysis.attribution).
- `channel_groups`: per channel, every contact of a variant arm with an address on it, and whether the
  channel was withheld (skip reason `channel_holdout`): the two groups of a channel's holdout comparison.
- `link_hits` and `delivered_times`: what the click rules read (clarion.analysis.clicks).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from clarion.ledger.rows import SendState
from clarion.ledger.schema import events, link_hits, sends

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


def reach_times(conn: Connection, run_id: str) -> Reach:
    """When the run first reached each contact, and its launch (the first send of any kind)."""
    when = func.min(func.coalesce(sends.c.attempted_at, sends.c.settled_at))
    query = (
        select(sends.c.seq, when)
        .where(sends.c.run_id == run_id, sends.c.contact_id.is_not(None), sends.c.state.in_(REACHED))
        .group_by(sends.c.seq)
    )
    posts = select(when).where(
        sends.c.run_id == run_id, sends.c.contact_id.is_(None), sends.c.state.in_(REACHED)
    )
    first = {int(seq): _utc(at) for seq, at in conn.execute(query) if at is not None}
    posted = conn.execute(posts).scalar()
    moments = list(first.values()) + ([_utc(posted)] if posted is not None else [])
    return Reach(min(moments) if moments else None, first)


class MeasurementStore:
    """Mixed into `Ledger`: the reads the experiment's analysis needs."""

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def reach_times(self, run_id: str) -> Reach:
        with self._tx() as conn:
            return reach_times(conn, run_id)

    def channel_groups(self, run_id: str, channels: Sequence[str]) -> dict[str, list[GroupMember]]:
        """Per channel: the contacts of variant arms with an address on it, withheld or not."""
        found: dict[str, list[GroupMember]] = {c: [] for c in channels}
        if not channels:
            return found
        query = select(sends.c.channel, sends.c.seq, sends.c.variant, sends.c.reason).where(
            sends.c.run_id == run_id,
            sends.c.channel.in_(list(channels)),
            sends.c.contact_id.is_not(None),
        )
        with self._tx() as conn:
            for channel, seq, variant, reason in conn.execute(query):
                if reason == NO_ADDRESS:
                    continue
                found[channel].append(GroupMember(int(seq), str(variant), reason == CHANNEL_HOLDOUT))
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
        """When each (channel, contact) message reached its recipient: the provider's delivered event, else
        the moment the provider accepted it."""
        found: dict[tuple[str, int], datetime] = {}
        accepted = (
            select(sends.c.channel, sends.c.seq, sends.c.settled_at)
            .where(sends.c.run_id == run_id, sends.c.contact_id.is_not(None))
            .where(sends.c.state == SendState.SENT.value)
        )
        delivered = (
            select(events.c.channel, events.c.contact_seq, func.min(events.c.occurred_at))
            .where(events.c.run_id == run_id, events.c.kind == DELIVERED, events.c.contact_seq.is_not(None))
            .group_by(events.c.channel, events.c.contact_seq)
        )
        with self._tx() as conn:
            for channel, seq, at in conn.execute(accepted):
                if at is not None:
                    found[(str(channel), int(seq))] = _utc(at)
            for channel, seq, at in conn.execute(delivered):
                found[(str(channel), int(seq))] = _utc(at)
        return found


__all__ = ["CHANNEL_HOLDOUT", "GroupMember", "Hit", "MeasurementStore", "Reach"]
