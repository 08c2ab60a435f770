"""SendGrid's Event Webhook: batches of events, signed with ECDSA P-256 over timestamp + body.

Verified with the sendgrid package's own `EventWebhook` and the account's verification key
(SENDGRID_WEBHOOK_PUBLIC_KEY, base64 DER from Mail Settings > Event Webhook); without that key every
request is refused. Events are matched to sends through the `clarion_token` custom arg every email
carries. Events that mean "never again" (unsubscribe, group_unsubscribe, spamreport, a hard bounce, and
drops SendGrid made because of its own lists) suppress the address, whichever run the message came from.

`EventSigner` signs batches the way SendGrid does; the sandbox's simulated recipients use it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clarion.base import addresses
from clarion.base.consent import Reason
from clarion.channels.webhooks import Context, Refused, Webhook, WebhookRead, WebhookRequest
from clarion.ledger import ProviderEvent, Suppression

PUBLIC_KEY_VARIABLE = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_BODY = 8 * 1024 * 1024

EVENTS = frozenset(
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
_DETAIL_FIELDS = ("reason", "type", "response", "status", "bounce_classification")
#: SendGrid `dropped` reasons that come from SendGrid's own suppression lists.
_DROPPED = {
    "Bounced Address": Reason.HARD_BOUNCE,
    "Unsubscribed Address": Reason.SENDGRID_UNSUBSCRIBE,
    "Spam Reporting Address": Reason.SPAM_REPORT,
}
_NEVER_AGAIN = {
    "unsubscribe": Reason.SENDGRID_UNSUBSCRIBE,
    "group_unsubscribe": Reason.SENDGRID_GROUP_UNSUBSCRIBE,
    "spamreport": Reason.SPAM_REPORT,
}


def webhooks(environ: Mapping[str, str]) -> list[Webhook]:
    """The Event Webhook endpoint; refused (403) while SENDGRID_WEBHOOK_PUBLIC_KEY is not set."""
    key = environ.get(PUBLIC_KEY_VARIABLE)
    verify = verifier(key) if key else None

    def read(request: WebhookRequest, context: Context) -> WebhookRead:
        if verify is None:
            raise Refused(403, f"SendGrid webhook refused: {PUBLIC_KEY_VARIABLE} is not set")
        verify(request.body, request.headers)
        return read_events(request.body, context)

    return [Webhook("/webhooks/sendgrid", MAX_BODY, read)]


def verifier(public_key: str) -> Callable[[bytes, Mapping[str, str]], None]:
    """A check of SendGrid's signature with the account's verification key; ValueError for a bad key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        webhook = EventWebhook(public_key=public_key.strip())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            f"{PUBLIC_KEY_VARIABLE} is not a valid key: paste the 'Verification Key' from SendGrid's "
            f"Mail Settings > Event Webhook ({type(exc).__name__})"
        ) from None

    def verify(body: bytes, headers: Mapping[str, str]) -> None:
        signature, timestamp = headers.get(SIGNATURE), headers.get(TIMESTAMP)
        if not signature or not timestamp:
            raise Refused(401, "SendGrid signature headers missing")
        try:
            valid = webhook.verify_signature(body.decode(), signature, timestamp)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            valid = False
        if not valid:
            raise Refused(403, "SendGrid signature does not verify")

    return verify


def read_events(body: bytes, context: Context) -> WebhookRead:
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Refused(400, "SendGrid body is not JSON") from None
    if not isinstance(items, list):
        raise Refused(400, "SendGrid body is not a JSON array of events")
    read = WebhookRead()
    for item in items:
        if not isinstance(item, dict) or item.get("event") not in EVENTS:
            read.unmatched += 1
            continue
        if (suppression := suppression_of(item)) is not None:
            read.suppress.append(suppression)  # whichever run (or none) the message belonged to
        token = item.get("clarion_token")
        target = context.resolve(token) if isinstance(token, str) else None
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
                run_id=target.run_id,
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


def suppression_of(item: Mapping[str, Any]) -> Suppression | None:
    """The suppression one (verified) SendGrid event calls for, if any."""
    kind = item.get("event")
    reason = _NEVER_AGAIN.get(str(kind))
    if kind == "bounce" and str(item.get("type", "bounce")) == "bounce":
        reason = Reason.HARD_BOUNCE
    elif kind == "dropped":
        reason = _DROPPED.get(str(item.get("reason", "")))
    email = item.get("email")
    if reason is None or not isinstance(email, str):
        return None
    try:
        address = addresses.suppression_form(addresses.AddressKind.EMAIL, email)
    except addresses.AddressError:
        return None
    detail = str(item.get("reason") or item.get("status") or "")[:200] or None
    return Suppression(addresses.AddressKind.EMAIL, address, reason, "sendgrid", detail)


def _when(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


class EventSigner:
    """An Event Webhook signing key (ECDSA P-256), as SendGrid signs its event batches.

    `public_key` is base64 DER (SubjectPublicKeyInfo), what SendGrid shows under Mail Settings and what
    `EventWebhook(public_key=...)` verifies with."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: str) -> str:
        """The X-Twilio-Email-Event-Webhook-Signature of `body` sent at `timestamp`."""
        signature = self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()

    def headers(self, body: bytes, timestamp: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            SIGNATURE: self.sign(body, timestamp),
            TIMESTAMP: timestamp,
        }


__all__ = ["EVENTS", "EventSigner", "read_events", "suppression_of", "verifier", "webhooks"]
