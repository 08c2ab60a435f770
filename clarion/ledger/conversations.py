"""Conversations in the ledger: what people wrote to a responder and what it answered, exactly once.

Mixed into `Ledger`. `receive` records one inbound message and the decision about it in one transaction:
the conversation (one per responder, channel and sender's address key) is created or locked, the message
is inserted unless its provider id is already there (a redelivered webhook is a duplicate and decides
nothing), the caller's `decide` sees the conversation's state (its open question, replies in the last
hour, the last reply's text) and returns what to do, and the reply is queued, unique per inbound message.
Replies then go queued -> sending (committed before the provider is called) -> sent | failed |
uncertain, like sends: a crash leaves `sending` rows, which a restart marks uncertain, never resends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from clarion.ledger.schema import conversation_messages as messages
from clarion.ledger.schema import conversations, runs, suppressions

#: Reply states that count against a sender's hourly cap: it went, may have gone, or is about to go.
COUNTED = ("queued", "sending", "sent", "uncertain")


@dataclass(frozen=True)
class InboundMessage:
    responder: str
    channel: str
    address_key: str
    provider: str
    provider_id: str
    text: str
    at: datetime
    kind: str = ""  # the sender's suppression kind and address: checked in the same transaction, never stored
    address: str = ""


@dataclass(frozen=True)
class ConversationState:
    id: int
    new: bool
    pending_rule: str | None
    pending_until: datetime | None
    pending_misses: int
    fallbacks: int
    replies_last_hour: int
    last_reply: str | None
    suppressed: bool = False  # the sender opted out of this kind of message


@dataclass(frozen=True)
class Outgoing:
    rule: str
    kind: str
    text: str
    recipient: str
    destination: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to record about an inbound message, and the reply to queue (if any)."""

    rule: str | None
    kind: str  # compliance, keyword, pattern, answer, fallback, ignored
    state: str = "answered"  # answered, ignored
    reason: str | None = None
    reply: Outgoing | None = None
    conversation: dict[str, Any] = field(default_factory=dict)  # columns of the conversation to set


@dataclass(frozen=True)
class Received:
    duplicate: bool
    conversation_id: int | None = None
    inbound_id: int | None = None
    reply_id: int | None = None
    decision: Decision | None = None


@dataclass(frozen=True)
class QueuedReply:
    id: int
    conversation_id: int
    channel: str
    provider: str
    recipient: str
    text: str


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Statements:
    conversation: Any
    find: Any
    inbound: Any
    facts: Any
    decided: Any
    outbound: Any


@functools.cache
def _statements(dialect: str) -> _Statements:
    """The statements of `receive`, built once per backend (building and compiling them per message was
    most of its cost)."""
    # SQLite's INSERT OR IGNORE rather than its ON CONFLICT DO NOTHING: SQLAlchemy cannot cache the compiled
    # form of the latter (its cache key is None), and compiling it twice per message cost more than the rest
    if dialect == "postgresql":
        conversation: Any = postgresql.insert(conversations).on_conflict_do_nothing()
        inbound: Any = postgresql.insert(messages).on_conflict_do_nothing(
            index_elements=[messages.c.provider, messages.c.provider_id]
        )
    else:
        conversation = insert(conversations).prefix_with("OR IGNORE")
        inbound = insert(messages).prefix_with("OR IGNORE")
    find = select(conversations).where(
        conversations.c.responder == bindparam("responder"),
        conversations.c.channel == bindparam("channel"),
        conversations.c.address_key == bindparam("address_key"),
    )
    if dialect == "postgresql":
        find = find.with_for_update()  # two messages from one sender at once: one decides first
    cid: Any = bindparam("cid")
    replies = (
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.conversation_id == cid,
            messages.c.direction == "out",
            messages.c.created_at >= bindparam("since"),
            messages.c.state.in_(COUNTED),
        )
        .scalar_subquery()
    )
    last = (
        select(messages.c.text)
        .where(messages.c.conversation_id == cid, messages.c.direction == "out")
        .order_by(messages.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    opted_out = (
        select(func.count())
        .select_from(suppressions)
        .where(
            suppressions.c.kind == bindparam("kind"),
            suppressions.c.address == bindparam("address"),
            suppressions.c.lifted_at.is_(None),
        )
        .scalar_subquery()
    )
    return _Statements(
        conversation=conversation,
        find=find,
        inbound=inbound.returning(messages.c.id),
        facts=select(replies, last, opted_out),
        decided=update(messages)
        .where(messages.c.id == bindparam("mid"))
        .values(
            rule=bindparam("rule"),
            kind=bindparam("kind"),
            state=bindparam("state"),
            reason=bindparam("reason"),
        ),
        outbound=insert(messages).returning(messages.c.id),
    )


class ConversationStore:
    """Conversations, their messages, and the responder's run record."""

    url: Any

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _insert(self) -> Any:
        return postgresql.insert if self.url.get_backend_name() == "postgresql" else sqlite.insert

    # -- the responder's run (its links' run) ------------------------------------------------------

    def ensure_responder_run(
        self, run_id: str, *, name: str, file: str, channels: dict[str, str], rules: list[str], cta: str
    ) -> dict[str, Any]:
        """Create or extend the run a responder's links name; channels and rules are appended, never
        reordered, so links already sent keep their meaning. Returns the run's options."""
        now = _now()
        with self._tx(write=True) as conn:
            row = conn.execute(select(runs.c.options).where(runs.c.id == run_id)).first()
            options: dict[str, Any] = dict(row[0] or {}) if row else {}
            known_channels = list(options.get("channels", []))
            known_rules = list(options.get("variants", []))
            kinds = dict(options.get("kinds", {}))
            for cid, kind in channels.items():
                if cid not in known_channels:
                    known_channels.append(cid)
                kinds[cid] = kind
            known_rules += [r for r in rules if r not in known_rules]
            options.update(
                responder=name, channels=known_channels, variants=known_rules, kinds=kinds, cta=cta
            )
            if row is None:
                from clarion.ledger.events import run_key_hex

                conn.execute(
                    insert(runs),
                    {
                        "id": run_id,
                        "campaign": name,
                        "campaign_file": file,
                        "digest": "responder",
                        "status": "running",
                        "created_at": now,
                        "updated_at": now,
                        "options": options,
                        "run_key": run_key_hex(run_id),
                    },
                )
            else:
                conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id)
                    .values(options=options, campaign_file=file, updated_at=now)
                )
        return options

    # -- receiving ---------------------------------------------------------------------------------

    def receive(self, message: InboundMessage, decide: Callable[[ConversationState], Decision]) -> Received:
        """Record an inbound message and what `decide` makes of it, once; a duplicate decides nothing."""
        sql = _statements(self.url.get_backend_name())
        with self._tx(write=True) as conn:
            key = {
                "responder": message.responder,
                "channel": message.channel,
                "address_key": message.address_key,
            }
            conn.execute(
                sql.conversation,
                {**key, "created_at": message.at, "last_at": message.at, "pending_misses": 0, "fallbacks": 0},
            )
            conversation = conn.execute(sql.find, key).mappings().one()
            cid = int(conversation["id"])
            inserted = conn.execute(
                sql.inbound,
                {
                    "conversation_id": cid,
                    "direction": "in",
                    "provider": message.provider,
                    "provider_id": message.provider_id,
                    "kind": "received",
                    "state": "received",
                    "text": message.text,
                    "created_at": message.at,
                },
            ).first()
            if inserted is None:
                return Received(duplicate=True, conversation_id=cid)
            facts = conn.execute(
                sql.facts,
                {
                    "cid": cid,
                    "since": message.at - timedelta(hours=1),
                    "kind": message.kind,
                    "address": message.address,
                },
            ).one()
            state = ConversationState(
                id=cid,
                new=conversation["created_at"] == conversation["last_at"],
                pending_rule=conversation["pending_rule"],
                pending_until=conversation["pending_until"],
                pending_misses=int(conversation["pending_misses"]),
                fallbacks=int(conversation["fallbacks"]),
                replies_last_hour=int(facts[0]),
                last_reply=facts[1],
                suppressed=bool(facts[2]),
            )
            decision = decide(state)
            conn.execute(
                sql.decided,
                {
                    "mid": inserted[0],
                    "rule": decision.rule,
                    "kind": decision.kind,
                    "state": decision.state,
                    "reason": decision.reason,
                },
            )
            values = {"last_at": message.at, **decision.conversation}
            conn.execute(update(conversations).where(conversations.c.id == cid).values(**values))
            reply_id = None
            if decision.reply is not None:
                reply_id = self._queue(conn, cid, message.provider, decision.reply, int(inserted[0]))
        return Received(False, cid, int(inserted[0]), reply_id, decision)

    def _queue(
        self, conn: Connection, conversation_id: int, provider: str, reply: Outgoing, reply_to: int | None
    ) -> int:
        values = {
            "conversation_id": conversation_id,
            "direction": "out",
            "provider": provider,
            "reply_to_id": reply_to,
            "rule": reply.rule,
            "kind": reply.kind,
            "state": "queued",
            "text": reply.text,
            "destination": reply.destination,
            "recipient": reply.recipient,
            "created_at": _now(),
        }
        row = conn.execute(_statements(conn.dialect.name).outbound, values).one()
        return int(row[0])

    # -- sending replies ---------------------------------------------------------------------------

    def claim_reply(self, reply_id: int) -> bool:
        """queued -> sending, committed before the provider is called; False if someone else has it."""
        query = update(messages).where(messages.c.id == reply_id, messages.c.state == "queued")
        with self._tx(write=True) as conn:
            return bool(conn.execute(query.values(state="sending")).rowcount)

    def settle_reply(
        self, reply_id: int, state: str, provider_id: str | None = None, error: str | None = None
    ) -> None:
        """sending -> sent | failed | uncertain; the address it went to is forgotten."""
        values = {
            "state": state,
            "provider_id": provider_id,
            "error": error,
            "settled_at": _now(),
            "recipient": None,
        }
        with self._tx(write=True) as conn:
            conn.execute(
                update(messages)
                .where(messages.c.id == reply_id, messages.c.state == "sending")
                .values(values)
            )

    def recover_replies(self, responder: str) -> list[QueuedReply]:
        """After a restart: replies caught mid-send become uncertain (never resent); queued ones are returned
        to be sent."""
        mine = select(conversations.c.id).where(conversations.c.responder == responder).scalar_subquery()
        with self._tx(write=True) as conn:
            conn.execute(
                update(messages)
                .where(messages.c.state == "sending", messages.c.conversation_id.in_(mine))
                .values(state="uncertain", recipient=None, settled_at=_now(), error="interrupted mid-send")
            )
            rows = conn.execute(
                select(messages, conversations.c.channel)
                .join(conversations, conversations.c.id == messages.c.conversation_id)
                .where(messages.c.state == "queued", conversations.c.responder == responder)
                .order_by(messages.c.id)
            ).mappings()
            return [
                QueuedReply(
                    r["id"],
                    r["conversation_id"],
                    r["channel"],
                    r["provider"],
                    r["recipient"] or "",
                    r["text"] or "",
                )
                for r in rows
            ]

    # -- follow-ups ----------------------------------------------------------------------------------

    def due_reminders(self, responder: str, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        query = (
            select(conversations)
            .where(
                conversations.c.responder == responder,
                conversations.c.remind_at.is_not(None),
                conversations.c.remind_at <= now,
            )
            .order_by(conversations.c.remind_at)
            .limit(limit)
        )
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def update_conversation(self, conversation_id: int, **values: Any) -> None:
        with self._tx(write=True) as conn:
            conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(**values))

    def queue_followup(
        self, conversation_id: int, provider: str, reply: Outgoing, expected_rule: str
    ) -> int | None:
        """Queue a reminder if the question is still open; clears the reminder and its address."""
        with self._tx(write=True) as conn:
            changed = conn.execute(
                update(conversations)
                .where(
                    conversations.c.id == conversation_id,
                    conversations.c.pending_rule == expected_rule,
                    conversations.c.remind_at.is_not(None),
                )
                .values(remind_at=None, reply_to=None)
            ).rowcount
            if not changed:
                return None
            return self._queue(conn, conversation_id, provider, reply, None)

    # -- retention and links -------------------------------------------------------------------------

    def purge_texts(self, responder: str, before: datetime) -> int:
        """Erase the text of messages older than `before`; returns how many were erased."""
        mine = select(conversations.c.id).where(conversations.c.responder == responder).scalar_subquery()
        query = (
            update(messages)
            .where(
                messages.c.created_at < before,
                messages.c.text.is_not(None),
                messages.c.conversation_id.in_(mine),
            )
            .values(text=None)
        )
        with self._tx(write=True) as conn:
            return int(conn.execute(query).rowcount)

    def link_destination(self, conversation_id: int, rule: str) -> str | None:
        """Where the newest reply of `rule` to this conversation pointed its personal link."""
        query = (
            select(messages.c.destination)
            .where(
                messages.c.conversation_id == conversation_id,
                messages.c.direction == "out",
                messages.c.rule == rule,
                messages.c.destination.is_not(None),
            )
            .order_by(messages.c.id.desc())
            .limit(1)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else str(row[0])

    def conversation_messages(self, responder: str, since_id: int = 0) -> list[dict[str, Any]]:
        """Every message of a responder (for reports and tests), oldest first."""
        query = (
            select(messages, conversations.c.channel, conversations.c.address_key)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(conversations.c.responder == responder, messages.c.id > since_id)
            .order_by(messages.c.id)
        )
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def reply_states(self, ids: Iterable[int]) -> dict[int, str]:
        wanted = list(ids)
        with self._tx() as conn:
            rows = conn.execute(select(messages.c.id, messages.c.state).where(messages.c.id.in_(wanted)))
            return {int(i): str(s) for i, s in rows}


__all__ = [
    "ConversationState",
    "ConversationStore",
    "Decision",
    "InboundMessage",
    "Outgoing",
    "QueuedReply",
    "Received",
]
