"""What goes in and comes out of the ledger: the states as enums, the rows as frozen dataclasses.

States are stored as plain strings (readable with any SQL client, and a new state needs no migration of a
database enum type); these enums are the only place their values are spelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy.engine import Row, RowMapping


class RunStatus(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"
    WAITING = "waiting"  # sent what was due; a later step, or texts held for local hours, are scheduled
    EXPIRED = "expired"
    # stopped on request (SIGINT, SIGTERM) or by a lost Prefect server: what was in flight was settled,
    # the rest is planned; `clarion run FILE --run-id RUN` continues it
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """A run in this status is over (a resume makes it running again)."""
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.EXPIRED})


class SendState(StrEnum):
    """Where one planned send stands; only `planned` rows are ever handed to a provider."""

    PLANNED = "planned"  # waiting for its batch
    IN_FLIGHT = "in_flight"  # claimed and committed before the provider call
    SENT = "sent"  # the provider accepted it (provider_id kept)
    FAILED = "failed"  # refused for good, or retries exhausted (reason, error)
    SKIPPED = "skipped"  # never attempted, on purpose (no address, could not be rendered)
    UNCERTAIN = "uncertain"  # may or may not have gone out (crash or timeout mid-call): not resent by default


#: the states `Ledger.settle` may move an in-flight send to
SETTLED_STATES = frozenset({SendState.SENT, SendState.FAILED, SendState.UNCERTAIN})
#: the states `Ledger.resolve_uncertain` may move an uncertain send to, once the provider said
RESOLVED_STATES = frozenset({SendState.SENT, SendState.FAILED})


class SendReason(StrEnum):
    """Reason codes the ledger itself acts on (others are free text from the engine: rejected, timeout...)."""

    RETRIES_EXHAUSTED = "retries_exhausted"  # every attempt refused: 5xx, 429 or no connection
    NOT_RECEIVED = "not_received"  # uncertain, then the provider's listing proved it never took it
    RECONCILED = "reconciled"  # uncertain, then the provider's listing showed it took it


#: Failures whose provider answer proves the message was not taken: `--retry-failed` sends them again.
#: A rejection (4xx, a content or address refusal) is never among them, nor an uncertain send.
RESENDABLE = frozenset({SendReason.RETRIES_EXHAUSTED, SendReason.NOT_RECEIVED})


class PlannedSend(NamedTuple):
    """One send to plan. A `skip_reason` plans it directly as skipped (e.g. "no_address").

    A named tuple, not a dataclass: planning makes one per contact and channel (a tuple is made in half
    the time), and a local send helper receives them pickled (clarion/engine/helpers.py)."""

    channel: str
    variant: str
    contact_id: str | None  # None for a social post, which goes to everyone
    recipient: str  # the contact id, or "post:<variant>" for a social post
    seq: int
    batch: int
    skip_reason: str | None = None
    address_key: str | None = None  # clarion.base.consent.address_key of the address, for frequency caps


#: A PlannedSend's fields as a plain tuple, in its order (what a local send helper receives to write)
SendFields = tuple[str, str, str | None, str, int, int, str | None, str | None]


@dataclass(slots=True)
class Settlement:
    """What became of one in-flight send: `state` is sent, failed or uncertain. Not frozen: one is made per
    message, and a frozen dataclass's fields are set through `object.__setattr__` (clarion.channels.base's
    `Outbound`); nothing changes one once made."""

    recipient: str
    state: SendState
    provider_id: str | None = None
    reason: str | None = None  # short code for failed/uncertain, e.g. "rejected", "timeout"
    error: str | None = None  # the provider's code and message

    def __post_init__(self) -> None:
        if self.state not in SETTLED_STATES:
            raise ValueError(f"a send is settled as sent, failed or uncertain, not {self.state!r}")


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    campaign: str
    campaign_file: str
    digest: str
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    error: str | None
    options: dict[str, Any]
    run_key: str | None = None  # hex of the 5-byte key its tracked links carry (links.run_key)
    decisions: dict[str, Any] = field(default_factory=dict)  # approval, rollout winner, steps begun

    @classmethod
    def from_row(cls, row: RowMapping) -> RunRecord:
        values = dict(row)
        values["status"] = RunStatus(values["status"])
        values["options"] = dict(values["options"] or {})
        values["decisions"] = dict(values.get("decisions") or {})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class SendRow:
    id: int
    run_id: str
    channel: str
    variant: str
    contact_id: str | None
    recipient: str
    seq: int
    batch: int
    state: SendState
    reason: str | None
    error: str | None
    provider_id: str | None
    attempts: int
    planned_at: datetime
    attempted_at: datetime | None
    settled_at: datetime | None
    not_before: datetime | None = None  # deferred until then (quiet hours, send_at_local)
    address_key: str | None = None  # counts frequency caps (clarion.base.consent.address_key)

    @classmethod
    def from_row(cls, row: Row[Any]) -> SendRow:
        values = row._asdict()
        values["state"] = SendState(values["state"])
        return cls(**values)


class DueSend(NamedTuple):
    """What sending needs of a planned send: who, which variant, whether it was deferred before, and the
    row's id (its claim and settlement find the row by it)."""

    recipient: str
    variant: str
    not_before: datetime | None
    id: int


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """How many sends of one channel x variant are in one state (and for one reason)."""

    channel: str
    variant: str
    state: SendState
    reason: str | None
    count: int
