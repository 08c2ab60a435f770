"""Verifying and reading the three webhooks: SendGrid's Event Webhook, Twilio's status callbacks, conversions.

Each reader takes the raw request (body bytes, headers) and returns ledger records, or raises `Rejected`
with the HTTP status and a one-line reason for the log. Signatures are checked with the providers' own
helpers (sendgrid's EventWebhook: ECDSA P-256 over timestamp + body; twilio's RequestValidator: HMAC-SHA1
over URL + sorted form fields) and for conversions with HMAC-SHA256 over "<timestamp>.<body>" within a
replay window. Nothing is read from a request before its signature is verified.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clarion.ledger import Conversion, ProviderEvent, Suppression
from clarion.tracking.optouts import sendgrid_suppression
from clarion.tracking.runs import Target

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE = "X-Twilio-Signature"
CLARION_SIGNATURE = "X-Clarion-Signature"
CLARION_TIMESTAMP = "X-Clarion-Timestamp"
REPLAY_WINDOW_S = 300

SENDGRID_EVENTS = frozenset(
    {
        "processed",
        "dropped",
        "delivered",
        "deferred",
        "bounce",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }
)
TWILIO_STATUSES = frozenset(
    {"accepted", "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled"}
)
_DETAIL_FIELDS = ("reason", "type", "response", "status", "bounce_classification")

Resolve = Callable[[str], Target | None]


class Rejected(Exception):
    """A request that records nothing: its status and the reason (for one log line, never echoing secrets)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Read:
    """What a webhook request carried: records to write, and how many items matched no run."""

    events: list[ProviderEvent]
    conversions: list[Conversion]
    unmatched: int = 0
    suppress: list[Suppression] = field(default_factory=list)  # opt-outs, complaints, hard bounces


def _when(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


# -- SendGrid -----------------------------------------------------------------------------------------


def sendgrid_verifier(public_key: str) -> Callable[[bytes, Mapping[str, str]], None]:
    """A check of SendGrid's signature with the account's verification key (base64 DER, from its UI)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        webhook = EventWebhook(public_key=public_key.strip())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid key: paste the 'Verification Key' from SendGrid's "
            f"Mail Settings > Event Webhook ({type(exc).__name__})"
        ) from None

    def verify(body: bytes, headers: Mapping[str, str]) -> None:
        signature, timestamp = headers.get(SENDGRID_SIGNATURE), headers.get(SENDGRID_TIMESTAMP)
        if not signature or not timestamp:
            raise Rejected(401, "SendGrid signature headers missing")
        try:
            valid = webhook.verify_signature(body.decode(), signature, timestamp)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            valid = False
        if not valid:
            raise Rejected(403, "SendGrid signature does not verify")

    return verify


def read_sendgrid(body: bytes, resolve: Resolve) -> Read:
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "SendGrid body is not JSON") from None
    if not isinstance(items, list):
        raise Rejected(400, "SendGrid body is not a JSON array of events")
    read = Read([], [])
    for item in items:
        if not isinstance(item, dict) or item.get("event") not in SENDGRID_EVENTS:
            read.unmatched += 1
            continue
        if (suppression := sendgrid_suppression(item)) is not None:
            read.suppress.append(suppression)  # whichever run (or none) the message belonged to
        token = item.get("clarion_token")
        target = resolve(token) if isinstance(token, str) else None
        if target is None:
            read.unmatched += 1
            continue
        event_id = item.get("sg_event_id")
        if not isinstance(event_id, str) or not event_id:  # no id: the event's own content identifies it
            event_id = hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()
        detail = "; ".join(str(item[k])[:200] for k in _DETAIL_FIELDS if item.get(k)) or None
        message_id = item.get("sg_message_id")
        read.events.append(
            ProviderEvent(
                event_key=f"sendgrid:{event_id}"[:255],
                run_id=target.run.run_id,
                channel=target.channel,
                variant=target.variant,
                contact_seq=target.contact_seq,
                kind=str(item["event"]),
                at=_when(item.get("timestamp")),
                provider_id=str(message_id)[:255] if message_id else None,
                detail=detail,
            )
        )
    return read


# -- Twilio -------------------------------------------------------------------------------------------


def twilio_verifier(auth_token: str) -> Callable[[str, Mapping[str, str], Mapping[str, str]], None]:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(auth_token)

    def verify(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> None:
        signature = headers.get(TWILIO_SIGNATURE)
        if not signature:
            raise Rejected(401, "Twilio signature header missing")
        if not validator.validate(url, dict(params), signature):
            raise Rejected(403, "Twilio signature does not verify")

    return verify


def read_twilio(params: Mapping[str, str], token: str | None, resolve: Resolve) -> Read:
    status = params.get("MessageStatus") or params.get("SmsStatus")
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not status or not sid:
        raise Rejected(400, "Twilio callback without MessageSid and MessageStatus")
    target = resolve(token) if token else None
    if target is None or status not in TWILIO_STATUSES:
        return Read([], [], unmatched=1)
    error = params.get("ErrorCode")
    event = ProviderEvent(
        event_key=f"twilio:{sid}:{status}"[:255],
        run_id=target.run.run_id,
        channel=target.channel,
        variant=target.variant,
        contact_seq=target.contact_seq,
        kind=status,
        at=datetime.now(UTC),
        provider_id=sid[:64],
        detail=f"error {error[:16]}" if error else None,
    )
    return Read([event], [])


# -- conversions --------------------------------------------------------------------------------------


def conversion_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of X-Clarion-Signature for a body sent at `timestamp` (what a landing page computes)."""
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_conversion(
    secret: bytes, body: bytes, headers: Mapping[str, str], now: float | None = None
) -> None:
    signature, timestamp = headers.get(CLARION_SIGNATURE), headers.get(CLARION_TIMESTAMP)
    if not signature or not timestamp:
        raise Rejected(401, "conversion signature headers missing")
    try:
        sent = int(timestamp)
    except ValueError:
        raise Rejected(401, "conversion timestamp is not a number") from None
    if abs((time.time() if now is None else now) - sent) > REPLAY_WINDOW_S:
        raise Rejected(401, f"conversion timestamp outside the {REPLAY_WINDOW_S} s replay window")
    if not hmac.compare_digest(signature.strip(), conversion_signature(secret, timestamp, body)):
        raise Rejected(403, "conversion signature does not verify")


class ConversionIn(BaseModel):
    """A conversion reported by a landing page: by click token, or by the contact's email or phone."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=200, description="The conversion's own id: replays are no-ops.")
    token: str | None = Field(default=None, max_length=64)
    run: str | None = Field(default=None, max_length=200, description="Needed with email or phone.")
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    amount: Decimal = Field(default=Decimal(0), ge=0, le=10**9)
    currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    occurred_at: datetime | None = None

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2026-11-22T21:05:00Z")
        return value

    def amount_minor(self) -> int:
        return int((self.amount * 100).to_integral_value())


def parse_conversion(body: bytes) -> ConversionIn:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "conversion body is not JSON") from None
    try:
        conversion = ConversionIn.model_validate(data)
    except (ValidationError, InvalidOperation) as exc:
        fields = ", ".join(
            ".".join(str(p) for p in e["loc"]) or "body" for e in getattr(exc, "errors", list)()
        )
        raise Rejected(422, f"conversion body invalid: {fields or exc}") from None
    if not conversion.token and not conversion.email and not conversion.phone:
        raise Rejected(422, "conversion names no one: give token, or run with email or phone")
    if not conversion.token and not conversion.run:
        raise Rejected(422, "a conversion keyed by email or phone needs run (the run id)")
    return conversion
