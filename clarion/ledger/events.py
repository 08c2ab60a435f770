"""What recipients did after the send: clicks, provider events and conversions, recorded idempotently.

The tracking service writes many small records at once, so `record` takes a mixed batch and writes it in one
transaction (the service groups concurrent requests into one call: group commit). Every write is a no-op on
replay: a provider event by its own id, a conversion by (run, source, external id), a repeated click adds to
its contact's count. Aggregates for the report are computed by the database, grouped per channel x variant.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from clarion.ledger.measurement import Reach, reach_times
from clarion.ledger.rows import RunRecord
from clarion.ledger.schema import assignments, clicks, conversions, events, link_hits, runs

RUN_KEY_BYTES = 5
METRICS = "metrics"  # the event kind of a social post's public-metrics snapshot (detail: JSON)


def run_key_hex(run_id: str) -> str:
    """The key tracked links name a run by (clarion.messages.links.run_key), as the ledger stores it."""
    return hashlib.sha256(run_id.encode()).digest()[:RUN_KEY_BYTES].hex()


@dataclass(frozen=True, slots=True)
class Click:
    run_id: str
    channel: str
    variant: str
    contact_seq: int | None  # None for a social post's link, which names no one
    at: datetime
    # revision 0008: what kind of request (click, unsubscribe_view, beacon) and, when its user agent or
    # network is a known scanner's, why (scanner_agent / scanner_network) and whose (agent)
    kind: str = "click"
    automated: str | None = None
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    event_key: str  # the provider's id of the event: a repeated delivery of it is recorded once per run
    run_id: str
    channel: str
    variant: str
    contact_seq: int | None
    kind: str
    at: datetime
    provider_id: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Conversion:
    run_id: str
    source: str  # "webhook" or "import"
    external_id: str
    arm: str
    amount_minor: int
    currency: str
    at: datetime
    channel: str | None = None
    contact_seq: int | None = None
    kind: str = "conversion"  # or a reversal: "refund" (undoes the gift), "partial_refund", "cancellation"
    refers_to: str | None = None  # a reversal's gift (its external id)


#: Reversals that undo their gift: the contact no longer counts as converted by it.
UNDOES = frozenset({"refund"})


@dataclass
class Engagement:
    """A run's engagement, aggregated: what the report and the statistics start from."""

    unique_clicks: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, variant)
    total_clicks: dict[tuple[str, str], int] = field(default_factory=dict)
    events: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (channel, variant, kind): people
    # per (arm, channel or None): (converting contacts, conversions, revenue in minor units, sum of squares of
    # each contact's revenue in minor units) - what rates, revenue per recipient and Welch's test need
    conversions: dict[tuple[str, str | None], tuple[int, int, int, int]] = field(default_factory=dict)
    # per arm, whatever the channel: contacts who converted, revenue and its sum of squares per contact
    arm_conversions: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    currencies: set[str] = field(default_factory=set)
    click_times: list[tuple[str, str, datetime]] = field(default_factory=list)
    conversion_times: list[tuple[str, str | None, datetime, int]] = field(default_factory=list)
    # with an attribution window: the run's launch, the conversions it claims per contact (count, amount in
    # minor units), and those outside the window, kept apart and never counted
    launch: datetime | None = None
    window: timedelta | None = None
    per_contact: dict[int, tuple[int, int]] = field(default_factory=dict)
    first_conversion: dict[int, datetime] = field(default_factory=dict)  # per contact, of those counted
    outside: list[Outside] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outside:
    """A conversion the run does not claim: before the contact's first send (`before`) or after the
    attribution window closed (`after`)."""

    arm: str
    channel: str | None
    contact_seq: int | None
    at: datetime
    amount_minor: int
    currency: str
    why: str
    start: datetime | None  # the moment the contact's window opened (None: nothing sent yet)


@dataclass(frozen=True)
class _Statements:
    click: Any
    event: Any
    conversion: Any


@functools.cache
def _statements(dialect: str) -> _Statements:
    """The idempotent inserts, built once per backend (building them is most of a small batch's cost)."""
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    click = insert(clicks)
    click = click.on_conflict_do_update(
        index_elements=[clicks.c.run_id, clicks.c.channel, clicks.c.contact_seq],
        set_={"count": clicks.c.count + 1, "last_at": click.excluded.last_at},
    )
    event = insert(events).on_conflict_do_nothing(index_elements=[events.c.run_id, events.c.event_key])
    conversion = insert(conversions).on_conflict_do_nothing(
        index_elements=[conversions.c.run_id, conversions.c.source, conversions.c.external_id]
    )
    return _Statements(click, event, conversion)


def _now() -> datetime:
    return datetime.now(UTC)


class EngagementStore:
    """Mixed into `Ledger`: the engagement half of the ledger."""

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def run_by_key(self, key_hex: str) -> RunRecord | None:
        """The run a token's run key names (None if none); two runs sharing a key is refused, not guessed."""
        with self._tx() as conn:
            rows = conn.execute(select(runs).where(runs.c.run_key == key_hex).limit(2)).mappings().all()
        return RunRecord.from_row(rows[0]) if len(rows) == 1 else None

    def arms_of(self, run_id: str, seqs: Iterable[int]) -> dict[int, str]:
        """The arm each contact (by audience position) was assigned in a run."""
        wanted = sorted(set(seqs))
        found: dict[int, str] = {}
        with self._tx() as conn:
            for start in range(0, len(wanted), 1_000):
                chunk = wanted[start : start + 1_000]
                query = select(assignments.c.seq, assignments.c.arm).where(
                    assignments.c.run_id == run_id, assignments.c.seq.in_(chunk)
                )
                found.update((int(seq), str(arm)) for seq, arm in conn.execute(query))
        return found

    def record(
        self,
        click_rows: Sequence[Click] = (),
        event_rows: Sequence[ProviderEvent] = (),
        conversion_rows: Sequence[Conversion] = (),
    ) -> None:
        """Write a mixed batch in one transaction; replays of the same records change nothing."""
        if not (click_rows or event_rows or conversion_rows):
            return
        received = _now()
        with self._tx(write=True) as conn:
            statements = _statements(conn.dialect.name)
            if click_rows:
                conn.execute(link_hits.insert(), [_hit_row(c) for c in click_rows])
            counted = [c for c in click_rows if c.kind == "click"]
            known = [c for c in counted if c.contact_seq is not None]
            anonymous = [c for c in counted if c.contact_seq is None]
            if known:
                conn.execute(statements.click, [_click_row(c) for c in known])
            if anonymous:
                conn.execute(clicks.insert(), [_click_row(c) for c in anonymous])
            if event_rows:
                conn.execute(statements.event, [_event_row(e, received) for e in event_rows])
            if conversion_rows:
                conn.execute(statements.conversion, [_conversion_row(c, received) for c in conversion_rows])

    def post_metrics(self, run_id: str) -> dict[tuple[str, str], dict[str, int]]:
        """The newest public metrics (impressions, likes...) collected for each social post of a run."""
        query = select(events.c.channel, events.c.variant, events.c.detail, events.c.occurred_at).where(
            events.c.run_id == run_id, events.c.kind == METRICS
        )
        with self._tx() as conn:
            return latest_metrics((r[0], r[1], r[2], r[3]) for r in conn.execute(query))

    def engagement(self, run_id: str, window: timedelta | None = None) -> Engagement:
        """A run's clicks, events and conversions, aggregated per channel x variant (and per arm).

        With `window`, only conversions between the contact's first send (for contacts the run sent nothing,
        the holdout among them: its launch) and `window` after it are counted; the rest are listed in
        `outside`."""
        found = Engagement(window=window)
        reach: Reach | None = None
        with self._tx() as conn:
            if window is not None:
                reach = reach_times(conn, run_id, converted_only=True)
                found.launch = reach.launch
            key = (clicks.c.channel, clicks.c.variant)
            query = select(*key, func.count(), func.sum(clicks.c.count)).where(clicks.c.run_id == run_id)
            for channel, variant, unique, total in conn.execute(query.group_by(*key)):
                found.unique_clicks[(channel, variant)] = int(unique)
                found.total_clicks[(channel, variant)] = int(total)
            ekey = (events.c.channel, events.c.variant, events.c.kind)
            people = func.count(func.distinct(events.c.contact_seq))
            query = (
                select(*ekey, people)
                .where(events.c.run_id == run_id, events.c.kind != METRICS)
                .group_by(*ekey)
            )
            found.events = {(c, v, k): int(n) for c, v, k, n in conn.execute(query)}
            found.click_times = [
                (c, v, t)
                for c, v, t in conn.execute(
                    select(clicks.c.channel, clicks.c.variant, clicks.c.first_at).where(
                        clicks.c.run_id == run_id
                    )
                )
            ]
            query = select(
                conversions.c.arm,
                conversions.c.channel,
                conversions.c.contact_seq,
                conversions.c.amount_minor,
                conversions.c.currency,
                conversions.c.occurred_at,
                conversions.c.kind,
                func.coalesce(conversions.c.refers_to, conversions.c.external_id),
            ).where(conversions.c.run_id == run_id)
            rows = list(conn.execute(query))
        if reach is not None and window is not None:
            rows = _within(found, rows, reach, window)
        _aggregate_conversions(found, rows)
        return found


CLOCK_SKEW = timedelta(seconds=5)  # a landing page's or provider's clock may run a little behind ours


def _within(found: Engagement, rows: Sequence[Any], reach: Reach, window: timedelta) -> list[Any]:
    """The conversions inside their contact's window; the rest go to `found.outside`. A refund or a
    cancellation follows its gift: kept when the gift was (whenever it came), dropped when it was not, and
    judged by its own time only when its gift is not in the ledger."""
    kept, gifts_kept, gifts, reversals = [], set(), set(), []
    for row in rows:
        arm, channel, seq, amount, currency, at, kind, gift = row
        if kind != "conversion":
            reversals.append(row)
            continue
        gifts.add(gift)
        start = reach.first.get(seq, reach.launch) if seq is not None else reach.launch
        why = None
        if start is None or at < start - CLOCK_SKEW:
            why = "before"
        elif at > start + window:
            why = "after"
        if why is None:
            kept.append(row)
            gifts_kept.add(gift)
        else:
            found.outside.append(Outside(arm, channel, seq, at, int(amount), currency, why, start))
    for row in reversals:
        arm, channel, seq, amount, currency, at, kind, gift = row
        start = reach.first.get(seq, reach.launch) if seq is not None else reach.launch
        alone = gift not in gifts  # its gift is not in the ledger: judged by its own time
        if gift in gifts_kept or (alone and start is not None and start - CLOCK_SKEW <= at <= start + window):
            kept.append(row)
    return kept


def _aggregate_conversions(found: Engagement, rows: Sequence[Any]) -> None:
    # Per contact first (revenue per recipient is a per-contact quantity), then per arm x channel and per arm.
    # A refund counts -1 gift and its (negative) amount; a partial refund or a cancellation only its amount:
    # a contact whose gifts were all refunded has not converted. Anonymous conversions (a social post's link)
    # pair with their reversals through the gift's external id.
    by_channel: dict[tuple[str, str | None, int | str], list[int]] = {}
    by_arm: dict[tuple[str, int | str], list[int]] = {}
    per_contact: dict[int, list[int]] = {}
    for arm, channel, seq, amount, currency, at, kind, gift in rows:
        found.currencies.add(currency)
        found.conversion_times.append((arm, channel, at, int(amount)))
        count = -1 if kind in UNDOES else (1 if kind == "conversion" else 0)
        who: int | str = seq if seq is not None else f"gift:{gift}"
        tallies = [by_channel.setdefault((arm, channel, who), [0, 0]), by_arm.setdefault((arm, who), [0, 0])]
        if seq is not None:
            tallies.append(per_contact.setdefault(seq, [0, 0]))
            first = found.first_conversion.get(seq)
            if kind == "conversion" and (first is None or at < first):
                found.first_conversion[seq] = at
        for tally in tallies:
            tally[0] += count
            tally[1] += int(amount)
    for (arm, channel, _who), (count, amount) in by_channel.items():
        if count > 0 or amount > 0:
            _add(found.conversions, (arm, channel), max(count, 1), amount)
    for (arm, _who), (count, amount) in by_arm.items():
        if count > 0 or amount > 0:
            _add(found.arm_conversions, arm, max(count, 1), amount)
    for seq, (count, amount) in per_contact.items():
        if count > 0 or amount > 0:
            found.per_contact[seq] = (max(count, 1), amount)
        else:  # every gift refunded: not a converter
            found.first_conversion.pop(seq, None)


def _add(table: dict[Any, tuple[int, int, int, int]], key: Any, count: int, amount: int) -> None:
    people, conversions_, revenue, squares = table.get(key, (0, 0, 0, 0))
    table[key] = (people + 1, conversions_ + count, revenue + amount, squares + amount * amount)


def _click_row(click: Click) -> dict[str, Any]:
    return {
        "run_id": click.run_id,
        "channel": click.channel,
        "variant": click.variant,
        "contact_seq": click.contact_seq,
        "count": 1,
        "first_at": click.at,
        "last_at": click.at,
    }


def _hit_row(click: Click) -> dict[str, Any]:
    return {
        "run_id": click.run_id,
        "channel": click.channel,
        "variant": click.variant,
        "contact_seq": click.contact_seq,
        "kind": click.kind,
        "at": click.at,
        "automated": click.automated,
        "agent": click.agent,
    }


def _event_row(event: ProviderEvent, received: datetime) -> dict[str, Any]:
    return {
        "event_key": event.event_key,
        "run_id": event.run_id,
        "channel": event.channel,
        "variant": event.variant,
        "contact_seq": event.contact_seq,
        "kind": event.kind,
        "provider_id": event.provider_id,
        "detail": event.detail,
        "occurred_at": event.at,
        "received_at": received,
    }


def _conversion_row(conversion: Conversion, received: datetime) -> dict[str, Any]:
    return {
        "run_id": conversion.run_id,
        "source": conversion.source,
        "external_id": conversion.external_id,
        "arm": conversion.arm,
        "channel": conversion.channel,
        "contact_seq": conversion.contact_seq,
        "amount_minor": conversion.amount_minor,
        "currency": conversion.currency,
        "occurred_at": conversion.at,
        "received_at": received,
        "kind": conversion.kind,
        "refers_to": conversion.refers_to,
    }


def latest_metrics(
    rows: Iterable[tuple[str, str, str | None, datetime]],
) -> dict[tuple[str, str], dict[str, int]]:
    """The newest public_metrics snapshot per (channel, variant) from `metrics` events."""
    import json

    newest: dict[tuple[str, str], tuple[datetime, dict[str, int]]] = {}
    for channel, variant, detail, at in rows:
        try:
            values = {str(k): int(v) for k, v in json.loads(detail or "{}").items()}
        except (ValueError, TypeError, AttributeError):
            continue
        key = (channel, variant)
        if key not in newest or at >= newest[key][0]:
            newest[key] = (at, values)
    return {key: values for key, (_, values) in newest.items()}
