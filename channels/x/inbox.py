"""Direct messages in the X sandbox: `POST /2/dm_conversations/with/{participant_id}/messages` (tweepy's
`create_direct_message`), `GET /2/dm_events` (its `get_direct_message_events`), and people writing to our
account, delivered as X's Account Activity API does: a signed POST of `direct_message_events` to the
webhook, which X also makes for the DMs the account itself sends (the echo a responder must not answer).

The account is `ACCOUNT_ID`; the webhook's consumer secret is `CONSUMER_SECRET` (X_CONSUMER_SECRET).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections import deque
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from clarion.channels.emulation import Record, Store, json_response, parse_json, utc_now_iso
from clarion.channels.x.webhooks import sign_body

ACCOUNT_ID = "1500000000000000001"
ACCOUNT_NAME = "clarion_sandbox"
CONSUMER_SECRET = "sandbox-x-consumer-secret"
APP_ID = "13090192"
DM_MAX = 10_000
MAX_EVENTS = 20_000


def _snowflake() -> str:
    return str(((int(time.time() * 1000) - 1288834974657) << 22) | secrets.randbits(22))


def dm_event(
    sender_id: str, recipient_id: str, text: str, event_id: str, *, app: str | None = None
) -> dict[str, Any]:
    """One `message_create` event as the Account Activity API sends it."""
    create: dict[str, Any] = {
        "target": {"recipient_id": recipient_id},
        "sender_id": sender_id,
        "message_data": {
            "text": text,
            "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
        },
    }
    if app is not None:
        create["source_app_id"] = app
    return {
        "type": "message_create",
        "id": event_id,
        "created_timestamp": str(int(time.time() * 1000)),
        "message_create": create,
    }


def activity_body(event: dict[str, Any], account_id: str = ACCOUNT_ID) -> bytes:
    """The webhook body carrying one DM event for the subscribed `account_id`."""
    sender = event["message_create"]["sender_id"]
    users = {
        uid: {"id": uid, "name": "Sandbox user", "screen_name": f"user{uid[-6:]}"}
        for uid in {sender, account_id}
    }
    envelope = {"for_user_id": account_id, "direct_message_events": [event], "users": users}
    return json.dumps(envelope, separators=(",", ":")).encode()


def post_event(
    client: httpx.Client | None, webhook: str, body: bytes, secret: str = CONSUMER_SECRET
) -> httpx.Response:
    headers = {"Content-Type": "application/json", "x-twitter-webhooks-signature": sign_body(body, secret)}
    if client is not None:
        return client.post(webhook, content=body, headers=headers)
    return httpx.post(webhook, content=body, headers=headers, timeout=10)


class Inbox:
    """The account's DMs, sent and received; and where the echo of what it sends is delivered."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.webhook: str | None = None  # set: every DM the account sends is echoed there, as X does

    def reset(self) -> None:
        with self._lock:
            self._events.clear()
        self.webhook = None

    def _remember(self, event_id: str, sender: str, recipient: str, text: str) -> None:
        low, high = sorted((sender, recipient))
        item = {
            "id": event_id,
            "event_type": "MessageCreate",
            "text": text,
            "sender_id": sender,
            "dm_conversation_id": f"{low}-{high}",
            "created_at": utc_now_iso().replace("+00:00", "Z"),
        }
        with self._lock:
            self._events.append(item)

    def write(
        self, sender_id: str, text: str, webhook: str, *, event_id: str | None = None
    ) -> httpx.Response:
        """A person sends our account a DM: X delivers it, signed, to the webhook (same id: a redelivery)."""
        event_id = event_id or _snowflake()
        self._remember(event_id, sender_id, ACCOUNT_ID, text)
        return post_event(None, webhook, activity_body(dm_event(sender_id, ACCOUNT_ID, text, event_id)))

    def create(self, request: Request, body: bytes) -> Response:
        participant = request.path_params["participant_id"]
        try:
            payload = parse_json(body)
        except ValueError as exc:
            return _invalid("body", body.decode(errors="replace")[:200], f"Invalid JSON: {exc}")
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text:
            return _invalid("text", "", "$.text: must be a non-empty string")
        if len(text) > DM_MAX:
            return _invalid("text", text[:50], f"$.text: at most {DM_MAX} characters")
        if not participant.isdigit():
            return _invalid("participant_id", participant, "The `participant_id` must be a numeric user id")
        event_id = _snowflake()
        low, high = sorted((ACCOUNT_ID, participant))
        self._remember(event_id, ACCOUNT_ID, participant, text)
        record: Record = {
            "provider": "x",
            "kind": "dm",
            "to": participant,
            "from": ACCOUNT_ID,
            "subject": None,
            "text": text,
            "html": None,
            "custom_args": None,
            "tags": [],
            "status_callback": None,
            "provider_id": event_id,
            "received_at": utc_now_iso(),
        }
        self.store.add_messages([record])
        if self.webhook:
            echo = activity_body(dm_event(ACCOUNT_ID, participant, text, event_id, app=APP_ID))
            threading.Thread(target=_quietly, args=(self.webhook, echo), daemon=True).start()
        return json_response({"data": {"dm_conversation_id": f"{low}-{high}", "dm_event_id": event_id}}, 201)

    def events(self, request: Request, body: bytes) -> Response:
        """The newest DM events first, at most `max_results` (1-100, default 100)."""
        raw = request.query_params.get("max_results", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            return _invalid("max_results", raw, "The `max_results` query parameter value must be 1 to 100")
        fields = {f for f in request.query_params.get("dm_event.fields", "").split(",") if f}
        wanted = {"id", "event_type", "text"} | fields
        with self._lock:
            newest = list(self._events)[::-1][: int(raw)]
        data = [{k: v for k, v in e.items() if k in wanted} for e in newest]
        meta: dict[str, Any] = {"result_count": len(data)}
        return json_response({"data": data, "meta": meta} if data else {"meta": meta})

    def set_webhook(self, request: Request, body: bytes) -> Response:
        """PUT {"url": ...}: where the echo of the account's own DMs goes (null: nowhere)."""
        try:
            payload = parse_json(body)
            url = payload.get("url") if isinstance(payload, dict) else None
            if url is not None and not (isinstance(url, str) and url.startswith("http")):
                raise ValueError('expected {"url": "http://127.0.0.1:8765/webhooks/x"} or {"url": null}')
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        self.webhook = url
        return json_response({"url": url})


def _quietly(webhook: str, body: bytes) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the tracking service is gone: X would retry; we need not
        post_event(None, webhook, body)


def _invalid(parameter: str, value: str, message: str) -> Response:
    body = {
        "errors": [{"parameters": {parameter: [value]}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }
    return json_response(body, 400, media_type="application/problem+json")
