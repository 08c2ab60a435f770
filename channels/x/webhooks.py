"""X's webhook: direct messages people send to our account (Account Activity API, or X Activity API).

The key is the app's consumer secret (its "API Key Secret"), X_CONSUMER_SECRET; without it every request
is refused. X checks the endpoint with a CRC GET (`?crc_token=...`) at registration, hourly and on a PUT:
the answer is `{"response_token": "sha256=" + base64(HMAC-SHA256(consumer secret, crc_token))}`. Every
POST carries `x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256(consumer secret, raw body)>`,
verified in constant time over the exact bytes before anything in the body is read.

The Account Activity API delivers the DMs the account *sends* as well as those it receives: a responder
that answered every `direct_message_events` item would answer itself. Events sent by the account
(`for_user_id`, or the X Activity API's `filter.user_id`) are dropped here; so are typing indicators, read
receipts, other activity, `dm.sent`, and XChat's encrypted `chat.*` events (unreadable without the Chat
XDK). `parse_dm_events` reads the polling alternative, `GET /2/dm_events`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clarion.channels.webhooks import Context, Inbound, Refused, Webhook, WebhookRead, WebhookRequest

SECRET_VARIABLE = "X_CONSUMER_SECRET"
SIGNATURE = "x-twitter-webhooks-signature"
PATH = "/webhooks/x"
MAX_BODY = 64 * 1024  # one delivery may carry several events and the users map


def _hmac_b64(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode("ascii")


def crc_response(crc_token: str, consumer_secret: str) -> dict[str, str]:
    """The JSON answering a CRC GET."""
    return {"response_token": "sha256=" + _hmac_b64(consumer_secret, crc_token.encode())}


def sign_body(body: bytes, consumer_secret: str) -> str:
    """The signature header X sends for `body` (the sandbox signs with this)."""
    return "sha256=" + _hmac_b64(consumer_secret, body)


def verify_signature(body: bytes, header: str | None, consumer_secret: str) -> bool:
    """Whether `header` is X's signature of exactly these bytes; constant-time, never raises."""
    if not header:
        return False
    try:
        given = header.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given, sign_body(body, consumer_secret).encode("ascii"))


@dataclass
class Parsed:
    messages: list[Inbound] = field(default_factory=list)
    skipped: list[tuple[str | None, str]] = field(default_factory=list)  # (event id, why)


def webhooks(environ: Mapping[str, str]) -> list[Webhook]:
    secret = environ.get(SECRET_VARIABLE)

    def challenge(request: WebhookRequest) -> tuple[int, str, str]:
        if not secret:
            raise Refused(403, f"X webhook refused: {SECRET_VARIABLE} is not set")
        token = request.query.get("crc_token", "")
        if not token or len(token) > 512:
            raise Refused(400, "X CRC check without a crc_token")
        return 200, json.dumps(crc_response(token, secret)), "application/json"

    def read(request: WebhookRequest, context: Context) -> WebhookRead:
        if not secret:
            raise Refused(403, f"X webhook refused: {SECRET_VARIABLE} is not set")
        header = request.headers.get(SIGNATURE)
        if not header:
            raise Refused(401, "X signature header missing")
        if not verify_signature(request.body, header, secret):
            raise Refused(403, "X signature does not verify")
        try:
            parsed = parse_webhook(request.body)
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        return WebhookRead(inbound=parsed.messages)

    return [Webhook(PATH, MAX_BODY, read, challenge=challenge)]


def parse_webhook(payload: bytes | Mapping[str, Any], *, own_app_ids: Iterable[str] = ()) -> Parsed:
    """Inbound DMs of an AAA or XAA body; everything else is listed in `skipped` with a reason.
    ValueError for a body that is not JSON or not a shape X sends."""
    if isinstance(payload, bytes):
        try:
            payload = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ValueError("X webhook body is not JSON") from None
    if not isinstance(payload, Mapping):
        raise ValueError("X webhook body is not a JSON object")
    apps = frozenset(str(a) for a in own_app_ids)
    out = Parsed()
    if "for_user_id" in payload:  # Account Activity API
        events = payload.get("direct_message_events")
        if isinstance(events, list):
            _dm_events(events, str(payload["for_user_id"]), apps, out)
        else:
            out.skipped.append((None, "no direct_message_events"))
        return out
    data = payload.get("data")
    if isinstance(data, Mapping) and "event_type" in data:  # X Activity API
        kind = data.get("event_type")
        account = _mapping(data.get("filter")).get("user_id")
        if kind == "dm.received" and account is not None:
            events = _mapping(data.get("payload")).get("direct_message_events") or []
            _dm_events(events if isinstance(events, list) else [], str(account), apps, out)
        else:
            out.skipped.append((None, f"event_type {str(kind)[:32]!r}"))
        return out
    raise ValueError("neither an Account Activity (for_user_id) nor an X Activity (data.event_type) body")


def _dm_events(events: list[Any], account: str, apps: frozenset[str], out: Parsed) -> None:
    for event in events:
        if not isinstance(event, Mapping):
            out.skipped.append((None, "not an object"))
            continue
        event_id = str(event["id"])[:64] if event.get("id") is not None else None
        if event.get("type") != "message_create":
            out.skipped.append((event_id, "not a message_create"))
            continue
        create = _mapping(event.get("message_create"))
        sender = create.get("sender_id")
        recipient = _mapping(create.get("target")).get("recipient_id")
        text = _mapping(create.get("message_data")).get("text")
        if event_id is None or sender is None or recipient is None or not isinstance(text, str):
            out.skipped.append((event_id, "incomplete message_create"))
            continue
        app = create.get("source_app_id")
        if str(sender) == account:
            out.skipped.append((event_id, "sent by the subscribed account (our own reply)"))
        elif app is not None and str(app) in apps:
            out.skipped.append((event_id, "sent by our own app"))
        elif str(recipient) != account:
            out.skipped.append((event_id, "not addressed to the subscribed account"))
        else:
            out.messages.append(_inbound(event_id, str(sender), account, text, app))


def _mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object, or an empty one for anything else (a forger's list or number is not a crash)."""
    return value if isinstance(value, Mapping) else {}


def _inbound(event_id: str, sender: str, account: str, text: str, app: Any) -> Inbound:
    return Inbound(
        provider="x",
        kind="x",
        sender=sender[:32] if sender.isdigit() else None,
        to=account[:32],
        text=text,
        message_id=event_id,
        app=None if app is None else str(app)[:32],
    )


def parse_dm_events(page: Mapping[str, Any], account: str) -> Parsed:
    """Inbound DMs of one `GET /2/dm_events` page (the polling alternative to the webhook). Ask for
    dm_event.fields=id,event_type,text,sender_id,dm_conversation_id,created_at: by default X sends only
    id, event_type and text. One-to-one conversation ids are "<id>-<id>"; group conversations are skipped."""
    out = Parsed()
    events = page.get("data")
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, Mapping):
            continue
        event_id = str(event.get("id"))[:64] if event.get("id") is not None else None
        sender = event.get("sender_id")
        if event.get("event_type") != "MessageCreate":
            out.skipped.append((event_id, "not a MessageCreate"))
        elif event_id is None or sender is None or not isinstance(event.get("text"), str):
            out.skipped.append((event_id, "missing sender_id or text: ask for them in dm_event.fields"))
        elif str(sender) == account:
            out.skipped.append((event_id, "sent by the account (our own reply)"))
        elif not _one_to_one(str(event.get("dm_conversation_id") or ""), account):
            out.skipped.append((event_id, "a group conversation"))
        else:
            out.messages.append(_inbound(event_id, str(sender), account, str(event["text"]), None))
    return out


def _one_to_one(conversation: str, account: str) -> bool:
    if not conversation:
        return True  # not asked for: read as one-to-one (the events of /dm_events with an account)
    parts = conversation.split("-")
    return len(parts) == 2 and account in parts


__all__ = [
    "PATH",
    "SECRET_VARIABLE",
    "SIGNATURE",
    "crc_response",
    "parse_dm_events",
    "parse_webhook",
    "sign_body",
    "verify_signature",
    "webhooks",
]
