"""The ledger's tables, in SQLAlchemy Core. The migrations in `migrations/versions/` build exactly these.

States and statuses are plain strings (see rows.py). Timestamps are stored in UTC and always read back
timezone-aware, whatever the backend. Constraint names follow one convention, so later migrations (and
SQLite's batch mode, which recreates tables) can refer to them by name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps naive text, so the zone is put back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"the ledger stores timezone-aware datetimes only, got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only makes an INTEGER PRIMARY KEY an auto-incrementing rowid; PostgreSQL gets a bigint identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

runs = Table(
    "runs",
    metadata,
    Column("id", String, primary_key=True),
    Column("campaign", String, nullable=False),
    Column("campaign_file", Text, nullable=False),
    Column("digest", String(128), nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("error", Text),
    Column("options", JSON, nullable=False),
    # the 5-byte key tracked links name the run by (links.run_key), in hex; revision 0002
    Column("run_key", String(10)),
    # what the run decided on the way (approval, rollout winner, steps begun), by name; revision 0003
    Column("decisions", JSON),
    Index(None, "created_at"),
    Index(None, "run_key"),
)

assignments = Table(
    "assignments",
    metadata,
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", String, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("arm", String, nullable=False),
    PrimaryKeyConstraint("run_id", "contact_id"),
    Index(None, "run_id", "seq"),
)

sends = Table(
    "sends",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String, nullable=False),
    Column("variant", String, nullable=False),
    Column("contact_id", String),
    Column("recipient", String, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("batch", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String),
    Column("error", Text),
    Column("provider_id", String),
    Column("attempts", Integer, nullable=False),
    Column("planned_at", UTCDateTime, nullable=False),
    Column("attempted_at", UTCDateTime),
    Column("settled_at", UTCDateTime),
    # a planned send deferred to this instant (SMS quiet hours, send_at_local); revision 0003
    Column("not_before", UTCDateTime),
    # HMAC of the normalised address (clarion.base.consent.address_key), to count frequency caps across
    # campaigns without the address itself; revision 0004
    Column("address_key", String(32)),
    UniqueConstraint("run_id", "channel", "recipient"),
    # planned sends only (revision 0009): batches() reads the batch numbers, pending() one batch's sends in
    # audience order; a claim takes a send's entry out and a settlement touches no index
    Index(
        "ix_sends_planned",
        "run_id",
        "channel",
        "batch",
        "seq",
        sqlite_where=text("state = 'planned'"),
        postgresql_where=text("state = 'planned'"),
    ),
    # the frequency caps' window (revision 0010): it grows at its end as sends are planned, where one led
    # by the address key (an HMAC) took every send at a random place
    Index(None, "planned_at"),
)

# -- engagement (revision 0002): what recipients did after the send ------------------------------------

# A click on a tracked link. Email and SMS links name their contact, so one row per (run, channel, contact)
# counts repeats in `count`; a social post's link names no one, so each of its clicks is a row of its own
# (contact_seq NULL: NULLs never collide in a unique constraint, on SQLite or PostgreSQL).
clicks = Table(
    "clicks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String, nullable=False),
    Column("variant", String, nullable=False),
    Column("contact_seq", Integer),
    Column("count", Integer, nullable=False),
    Column("first_at", UTCDateTime, nullable=False),
    Column("last_at", UTCDateTime, nullable=False),
    UniqueConstraint("run_id", "channel", "contact_seq"),
)

# A provider's event about one send (SendGrid delivered/open/bounce..., Twilio sent/delivered/failed...).
# `event_key` is the provider's own id of the event, so a webhook delivered twice is recorded once (unique
# per run: ids from a sandbox, or a test, may repeat across runs; a provider's never do).
events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_key", String, nullable=False),
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String, nullable=False),
    Column("variant", String, nullable=False),
    Column("contact_seq", Integer),
    Column("kind", String(32), nullable=False),
    Column("provider_id", String),
    Column("detail", Text),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("run_id", "event_key"),
    Index(None, "run_id", "channel", "kind"),
)

# A donation or sign-up. `arm` is the contact's assigned arm (a variant or the holdout); `channel` is the
# channel whose link led to it (NULL for an imported conversion, which no link names). Amounts are kept in
# minor units (cents) as integers: exact on every backend. (run, source, external_id) makes replays no-ops.
conversions = Table(
    "conversions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(16), nullable=False),
    Column("external_id", String, nullable=False),
    Column("arm", String, nullable=False),
    Column("channel", String),
    Column("contact_seq", Integer),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # revision 0007: "conversion", or a reversal of one ("refund", "cancellation": amount_minor <= 0) whose
    # `refers_to` is the external id of the conversion it reverses
    Column("kind", String(16), nullable=False, server_default="conversion"),
    Column("refers_to", String),
    UniqueConstraint("run_id", "source", "external_id"),
    Index(None, "run_id", "arm"),
    Index(None, "source", "external_id"),  # revision 0007: a refund finds its gift, whatever the run
    Index(None, "source", "refers_to"),
)

# -- consent (revision 0004) -----------------------------------------------------------------------------

# One suppression store across channels and campaigns: an address (normalised: lower-case email, E.164
# phone) that must not be sent `kind` messages. Opting back in (SMS START, `clarion suppress remove`)
# stamps `lifted_at` rather than deleting, so the history of a person's consent is kept.
suppressions = Table(
    "suppressions",
    metadata,
    Column("kind", String(8), nullable=False),
    Column("address", String, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("source", String, nullable=False),
    Column("detail", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("lifted_at", UTCDateTime),
    PrimaryKeyConstraint("kind", "address"),
)

# -- conversations (revision 0005): what people wrote to a responder, and what it answered ---------------

# One per responder, channel and sender. The sender is kept only as its address key (an HMAC under the
# signing key, clarion.base.addresses.address_key); `reply_to` holds the address only while a reminder is
# due, and is cleared when it goes or the question closes. Its id is the `contact` of personal links.
conversations = Table(
    "conversations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("responder", String, nullable=False),
    Column("channel", String, nullable=False),
    Column("address_key", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_at", UTCDateTime, nullable=False),
    Column("pending_rule", String),  # a follow-up question waiting for its answer
    Column("pending_until", UTCDateTime),
    Column("pending_misses", Integer, nullable=False),
    Column("remind_at", UTCDateTime),  # the question's reminder is due then (held to quiet hours)
    Column("reply_to", String),
    Column("zone", String),  # the sender's time zone for quiet hours, from the number
    Column("fallbacks", Integer, nullable=False),  # fallbacks answered in a row
    UniqueConstraint("responder", "channel", "address_key"),
    Index(None, "remind_at"),
)

# Messages in and out. An inbound message is unique by its provider's id (a redelivered webhook, or X
# echoing our own DM back, finds it there); a reply is unique by the inbound row it answers, so nothing is
# answered twice. `text` is erased after the responder's retention; `recipient` holds the address only
# while a reply is queued or being sent.
conversation_messages = Table(
    "conversation_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("conversation_id", BigInteger, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("direction", String(3), nullable=False),  # in, out
    Column("provider", String(16), nullable=False),
    Column("provider_id", String(64)),
    Column("reply_to_id", BigInteger),
    Column("rule", String),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(32)),
    Column("text", Text),
    Column("destination", Text),  # where the reply's personal link leads
    Column("recipient", String),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime),
    UniqueConstraint("provider", "provider_id"),
    UniqueConstraint("reply_to_id"),
    Index(None, "conversation_id", "created_at"),
    Index(None, "state"),
    Index(None, "created_at"),
)

# -- the console (revision 0006_console) -----------------------------------------------------------------

# Operators who may sign in to `clarion serve`'s /console with a token (`clarion console add-user`). The
# token is never stored: `token_id` finds the row, `token_hash` (scrypt, with its salt and parameters)
# checks the secret part.
console_users = Table(
    "console_users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("token_id", String(32), nullable=False, unique=True),
    Column("token_hash", String(256), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("token_issued_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime),
)

# A signed-in browser. `id` is the SHA-256 of the session cookie (the cookie itself is not stored); `csrf`
# the token every form of the session carries; `via` how the user was known ("token", or "proxy" for the
# reverse proxy's header); `flash` a message for the next page.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False),
    Column("via", String(16), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("flash", Text),
    Index(None, "expires_at"),
)

# -- integrations (revision 0007_integrations) -----------------------------------------------------------

# Outbound events (webhooks_out): one row per (endpoint, event id), written from the ledger's own tables by
# clarion.tracking.outbound and delivered with retries; the body is the exact JSON that is signed. The
# endpoint's secret is never stored: `secret_env` names the environment variable that holds it.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("endpoint", String(32), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret_env", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("run_id", String),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending, delivered, dead
    Column("attempts", Integer, nullable=False),
    Column("next_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("last_error", Text),
    UniqueConstraint("endpoint", "event_id"),
    Index(None, "state", "next_at"),
)

# How far the outbox has read each stream (sent, delivered, clicked, converted, suppressed) for an endpoint
# and run ("" for the ledger-wide suppression stream).
outbox_cursors = Table(
    "outbox_cursors",
    metadata,
    Column("endpoint", String(32), nullable=False),
    Column("run_id", String, nullable=False),
    Column("stream", String(16), nullable=False),
    Column("position", String(64), nullable=False),
    PrimaryKeyConstraint("endpoint", "run_id", "stream"),
)

# SendGrid batch ids of a run's scheduled email (send_at), so `clarion email cancel` can cancel them.
scheduled_batches = Table(
    "scheduled_batches",
    metadata,
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String, nullable=False),
    Column("provider", String(16), nullable=False),
    Column("batch_id", String(128), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("cancelled_at", UTCDateTime),
    PrimaryKeyConstraint("run_id", "channel", "batch_id"),
)

# -- experiment validity (revision 0008_experiment) ------------------------------------------------------

# Every request to one of a message's links, one row each: a tracked-link GET (`click`), a view of its
# unsubscribe page (`unsubscribe_view`), the landing page's beacon (`beacon`). What a request's user agent
# or network says is decided when it arrives (`automated`: scanner_agent, scanner_network; `agent`: the
# scanner's name) so no address is kept; the timing rules are applied when the report is built
# (clarion.analysis.clicks).
link_hits = Table(
    "link_hits",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String, nullable=False),
    Column("variant", String, nullable=False),
    Column("contact_seq", Integer),
    Column("kind", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("automated", String(32)),
    Column("agent", String(64)),
    Index(None, "run_id", "channel", "contact_seq"),
)
