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

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from clarion.ledger.schema import conversation_messages as messages
from clarion.ledger.schema import conversations, runs

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
        with self._tx(write=True) as conn:
            conversation = self._conversation(conn, message)
            inserted = conn.execute(
                self._insert()(messages)
                .values(
                    conversation_id=conversation["id"],
                    direction="in",
                    provider=message.provider,
                    provider_id=message.provider_id,
                    kind="received",
                    state="received",
                    text=message.text,
                    created_at=message.at,
                )
                .on_conflict_do_nothing(index_elements=[messages.c.provider, messages.c.provider_id])
                .returning(messages.c.id)
            ).first()
            if inserted is None:
                return Received(duplicate=True, conversation_id=int(conversation["id"]))
            state = self._state(conn, conversation, message.at)
            decision = decide(state)
            conn.execute(
                update(messages)
                .where(messages.c.id == inserted[0])
                .values(rule=decision.rule, kind=decision.kind, state=decision.state, reason=decision.reason)
            )
            values = {"last_at": message.at, **decision.conversation}
            conn.execute(update(conversations).where(conversations.c.id == state.id).values(**values))
            reply_id = None
            if decision.reply is not None:
                reply_id = self._queue(conn, state.id, message.provider, decision.reply, int(inserted[0]))
        return Received(False, state.id, int(inserted[0]), reply_id, decision)

    def _conversation(self, conn: Connection, message: InboundMessage) -> Any:
        key = (
            conversations.c.responder == message.responder,
            conversations.c.channel == message.channel,
            conversations.c.address_key == message.address_key,
        )
        conn.execute(
            self._insert()(conversations)
            .values(
                responder=message.responder,
                channel=message.channel,
                address_key=message.address_key,
                created_at=message.at,
                last_at=message.at,
                pending_misses=0,
                fallbacks=0,
            )
            .on_conflict_do_nothing()
        )
        query = select(conversations).where(*key)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()  # two messages from one sender at once: one decides first
        return conn.execute(query).mappings().one()

    def _state(self, conn: Connection, conversation: Any, now: datetime) -> ConversationState:
        cid = int(conversation["id"])
        since = now - timedelta(hours=1)
        replies = conn.execute(
            select(func.count())
            .select_from(messages)
            .where(
                messages.c.conversation_id == cid,
                messages.c.direction == "out",
                messages.c.created_at >= since,
                messages.c.state.in_(COUNTED),
            )
        ).scalar_one()
        last = conn.execute(
            select(messages.c.text)
            .where(messages.c.conversation_id == cid, messages.c.direction == "out")
            .order_by(messages.c.id.desc())
            .limit(1)
        ).first()
        return ConversationState(
            id=cid,
            new=conversation["created_at"] == conversation["last_at"],
            pending_rule=conversation["pending_rule"],
            pending_until=conversation["pending_until"],
            pending_misses=int(conversation["pending_misses"]),
            fallbacks=int(conversation["fallbacks"]),
            replies_last_hour=int(replies),
            last_reply=None if last is None else last[0],
        )

    def _queue(
        self, conn: Connection, conversation_id: int, provider: str, reply: Outgoing, reply_to: int | None
    ) -> int:
        row = conn.execute(
            insert(messages)
            .values(
                conversation_id=conversation_id,
                direction="out",
                provider=provider,
                reply_to_id=reply_to,
                rule=reply.rule,
                kind=reply.kind,
                state="queued",
                text=reply.text,
                destination=reply.destination,
                recipient=reply.recipient,
                created_at=_now(),
            )
            .returning(messages.c.id)
        ).one()
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
