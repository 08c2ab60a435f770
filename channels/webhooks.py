"""What a provider's webhooks give the tracking service: verified requests, read into ledger records.

A provider declares its endpoints with `Channel.webhooks()`: each `Webhook` has a path, a body cap and a
`read(request, context)` that verifies the request's signature before it reads anything else, then turns
it into a `WebhookRead`: provider events (delivered, bounced, ...) for the runs their tokens name,
suppressions (unsubscribes, complaints, hard bounces), and messages people wrote in (`Inbound`). Anything
it will not record raises `Refused` with the HTTP status and a one-line reason for the log, never echoing
a secret. The tracking service mounts every registered provider's webhooks, caps and reads the body,
calls `read`, writes what came back, and answers; for inbound messages the provider also formats the
answer (`Webhook.reply`, e.g. TwiML). A provider that checks its endpoint with a GET first (X's CRC) gives
`Webhook.challenge`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from clarion.base.consent import Reply
from clarion.ledger import Conversion, ProviderEvent, Suppression


class Refused(Exception):
    """A request that records nothing: its HTTP status and the reason (one log line, never a secret)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WebhookRequest:
    """One request as the provider sent it; `url` is the URL it signed (see CLARION_PUBLIC_URL)."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass(frozen=True)
class Target:
    """What a verified tracked-link token names: a run, its channel and variant, and the contact (or None)."""

    run_id: str
    channel: str
    variant: str
    contact_seq: int | None


class Context(Protocol):
    """What the tracking service lends a webhook while it reads a request."""

    def resolve(self, token: str) -> Target | None:
        """The target of a genuine token of a run in this ledger; None for anything forged or unknown."""


@dataclass(frozen=True)
class Inbound:
    """A message a person wrote to one of our numbers or accounts, already verified."""

    provider: str
    kind: str  # the address kind of the sender ("sms", or "x" for an X account)
    sender: str | None  # normalised (E.164); None when the provider sent something unreadable
    to: str
    text: str
    message_id: str
    keyword: Reply | None = None  # a compliance keyword the provider itself recognised (Twilio's OptOutType)
    app: str | None = None  # the app that created the message, when the provider says (X's source_app_id)


@dataclass
class WebhookRead:
    """What one request carried."""

    events: list[ProviderEvent] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)
    suppress: list[Suppression] = field(default_factory=list)  # opt-outs, complaints, hard bounces
    inbound: list[Inbound] = field(default_factory=list)
    unmatched: int = 0  # items that named no run of this ledger


@dataclass(frozen=True)
class Webhook:
    """One endpoint of a provider under /webhooks/: `read` verifies and reads; `reply` answers a sender."""

    path: str
    max_body: int
    read: Callable[[WebhookRequest, Context], WebhookRead]
    reply: Callable[[str | None], tuple[str, str]] | None = None  # text -> (body, media type)
    #: answers a GET on the same path (X's CRC challenge): request -> (status, body, media type)
    challenge: Callable[[WebhookRequest], tuple[int, str, str]] | None = None

    @property
    def name(self) -> str:
        return self.path.removeprefix("/webhooks/")


__all__ = ["Context", "Inbound", "Refused", "Target", "Webhook", "WebhookRead", "WebhookRequest"]
