"""SendGrid in the sandbox: `POST /v3/mail/send` (bearer auth, SendGrid's checks, its error bodies), the
pre-flight endpoints (`GET /v3/scopes`, `GET /v3/user/credits`), the Email Activity API (`GET /v3/messages`,
activity.py; the paid add-on is the account's `email_activity`), and what SendGrid does after accepting a
message, for simulated recipients: signed Event Webhook batches (processed, delivered or bounce, open,
spamreport) and the one-click unsubscribe a mail client posts.

Success is 202 with an empty body and an X-Message-Id header; every recipient of the request becomes a message
record (see mail.py for the checks and the records).
"""

from __future__ import annotations

import json
import math
import random
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from clarion.channels.emulation import (
    Account,
    Behaviour,
    Emulator,
    Recipients,
    Route,
    bearer_token,
    json_response,
    parse_json,
    utc_now_iso,
)
from clarion.channels.sendgrid import activity
from clarion.channels.sendgrid.mail import MAX_BODY_BYTES, error, validate_and_expand
from clarion.channels.sendgrid.webhooks import PUBLIC_KEY_VARIABLE, EventSigner

SCHEDULE_LIMIT = 72 * 3600  # SendGrid holds a scheduled message at most this long

UNAUTHORIZED = {
    "errors": [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]
}


EVENT_BATCH = 500  # events per signed webhook request, as SendGrid batches them


@dataclass(frozen=True)
class SendGridAccount(Account):
    # the API key's permissions; messages.read is Email Activity access
    scopes: tuple[str, ...] = ("mail.send", "user.credits.read", "messages.read")
    credits: int = 100_000  # emails left this period
    # the paid "additional email activity history" add-on, without which GET /v3/messages is refused
    email_activity: bool = True


class SendGridEmulator(Emulator):
    name: ClassVar[str] = "sendgrid"
    label: ClassVar[str] = "Email (SendGrid)"
    prefixes: ClassVar[tuple[str, ...]] = ("/v3/",)
    account_type: ClassVar[type[Account]] = SendGridAccount
    credentials: ClassVar[dict[str, str]] = {"SENDGRID_API_KEY": "SG.sandbox-key"}
    url_variable: ClassVar[str | None] = "CLARION_SENDGRID_URL"
    offload_bytes: ClassVar[int | None] = 64 * 1024  # mail_send: pure checks, then the store's lock

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.signer = EventSigner()  # signs the simulated recipients' event batches
        self._events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._activity = activity.Activity()
        self.batches: dict[str, str] = {}  # batch id -> "scheduled", "cancel" or "pause"

    @property
    def sendgrid_account(self) -> SendGridAccount:
        account = self.account
        assert isinstance(account, SendGridAccount)
        return account

    def webhook_environment(self) -> dict[str, str]:
        return {PUBLIC_KEY_VARIABLE: self.signer.public_key}

    def routes(self) -> list[Route]:
        return [
            ("POST", "/v3/mail/send", self.mail_send),
            ("GET", "/v3/scopes", self.scopes),
            ("GET", "/v3/user/credits", self.credits),
            ("GET", "/v3/messages", self.email_activity),
            ("POST", "/v3/mail/batch", self.new_batch),
            ("POST", "/v3/user/scheduled_sends", self.scheduled_sends),
            ("GET", "/v3/user/scheduled_sends", self.list_scheduled_sends),
        ]

    def new_batch(self, request: Request, body: bytes) -> Response:
        """A batch id for scheduled sends (Mail Send batch_id), as SendGrid makes one."""
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401)
        batch_id = secrets.token_urlsafe(24)
        self.batches[batch_id] = "scheduled"
        return json_response({"batch_id": batch_id}, 201)

    def scheduled_sends(self, request: Request, body: bytes) -> Response:
        """Cancel or pause a batch's scheduled sends ({batch_id, status: cancel|pause})."""
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401)
        try:
            payload = parse_json(body)
        except ValueError:
            return json_response({"errors": [error("Bad Request", None)]}, 400)
        batch_id = payload.get("batch_id") if isinstance(payload, dict) else None
        status = payload.get("status") if isinstance(payload, dict) else None
        if status not in ("cancel", "pause"):
            return json_response({"errors": [error("status must be cancel or pause", "status")]}, 400)
        if batch_id not in self.batches:
            return json_response({"errors": [error("invalid batch id", "batch_id")]}, 400)
        self.batches[batch_id] = status
        return json_response({"batch_id": batch_id, "status": status}, 201)

    def list_scheduled_sends(self, request: Request, body: bytes) -> Response:
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401)
        found = [{"batch_id": b, "status": s} for b, s in self.batches.items() if s != "scheduled"]
        return json_response(found)

    def _authorized(self, request: Request) -> bool:
        key = bearer_token(request)  # "Bearer None" is what the SDK sends with no key set
        return key is not None and key.startswith("SG.") and not self.account.revoked

    def scopes(self, request: Request, body: bytes) -> Response:
        """The API key's permissions (pre-flight: can this key send mail?)."""
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401)
        return json_response({"scopes": list(self.sendgrid_account.scopes)})

    def credits(self, request: Request, body: bytes) -> Response:
        """Emails left this period, in SendGrid's shape; 403 without the user.credits.read scope."""
        account = self.sendgrid_account
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401)
        if "user.credits.read" not in account.scopes:
            return json_response({"errors": [{"field": None, "message": "access forbidden"}]}, 403)
        return json_response(
            {
                "remain": account.credits,
                "total": max(account.credits, 100_000),
                "overage": 0,
                "used": max(0, 100_000 - account.credits),
                "last_reset": "2026-11-01",
                "next_reset": "2026-12-01",
                "reset_frequency": "monthly",
            }
        )

    def email_activity(self, request: Request, body: bytes) -> Response:
        """The Email Activity API (activity.py): 400 "authorization required" without the paid add-on,
        403 for a key without Email Activity access, as SendGrid answers."""
        account = self.sendgrid_account
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401)
        if not account.email_activity:
            return json_response({"errors": [{"message": "authorization required"}]}, 400)
        if "messages.read" not in account.scopes:
            return json_response({"errors": [{"field": None, "message": "access forbidden"}]}, 403)
        params = request.query_params
        try:
            rows = self._activity.rows(self.store.messages("sendgrid"))
            found = activity.answer(rows, params.get("query"), params.get("limit"))
        except activity.BadQuery as exc:
            return json_response({"errors": [{"message": str(exc)}]}, 400)
        return json_response(found)

    def mail_send(self, request: Request, body: bytes) -> Response:
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401)
        if len(body) > MAX_BODY_BYTES:
            return json_response({"errors": [error("Payload Too Large", None)]}, 413)
        try:
            payload = parse_json(body)
        except ValueError:
            return json_response({"errors": [error("Bad Request", None)]}, 400)
        message_id = secrets.token_urlsafe(16)  # 22 characters, like SendGrid's
        records, errors = validate_and_expand(payload, message_id, utc_now_iso())
        errors.extend(self._schedule_errors(payload))
        if errors:
            return json_response({"errors": errors}, 400)
        self.store.add_messages(records)
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    def _schedule_errors(self, payload: Any) -> list[dict[str, Any]]:
        """send_at (top level or per personalization) at most 72 hours ahead; a batch_id SendGrid made."""
        if not isinstance(payload, dict):
            return []
        found = []
        times = [payload.get("send_at")]
        times += [p.get("send_at") for p in payload.get("personalizations") or [] if isinstance(p, dict)]
        for at in times:
            if at is None:
                continue
            if not isinstance(at, int) or isinstance(at, bool):
                found.append(error("send_at must be a unix timestamp (an integer)", "send_at"))
            elif at > time.time() + SCHEDULE_LIMIT:
                found.append(error("send_at cannot be scheduled more than 72 hours in advance", "send_at"))
        batch_id = payload.get("batch_id")
        if batch_id is not None and batch_id not in self.batches:
            found.append(error("invalid batch id", "batch_id"))
        return found[:1] if found else []

    def rate_limited(self, retry_after: float) -> Response:
        reset = math.ceil(time.time() + retry_after)
        headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        return json_response({"errors": [{"field": None, "message": "too many requests"}]}, 429, headers)

    def server_error(self, status: int) -> Response:
        message = "Service Unavailable" if status == 503 else "Internal Server Error"
        return json_response({"errors": [error(message, None)]}, status)

    def not_found(self, request: Request) -> Response:
        return json_response({"errors": [error("resource not found", None)]}, 404)

    # -- simulated recipients ---------------------------------------------------------------------

    def engage(
        self,
        people: Recipients,
        record: Mapping[str, Any],
        rng: random.Random,
        behaviour: Behaviour,
        token: str,
        variant: str,
    ) -> bool:
        """Delivered or bounced, maybe opened, then maybe unsubscribed (one-click) or reported as spam."""
        delivered = rng.random() < behaviour.delivered
        base = {
            "email": record.get("to"),
            "sg_message_id": f"{record.get('provider_id')}.sandbox.{record.get('personalization', 0)}",
            **(record.get("custom_args") or {}),
        }
        kinds = ["processed", "delivered" if delivered else "bounce"]
        if delivered and rng.random() < behaviour.open:
            kinds.append("open")
            people.count("opens")
        now = int(time.time())
        events = []
        for kind in kinds:
            event = {
                **base,
                "event": kind,
                "timestamp": now,
                "sg_event_id": f"sbx-{rng.getrandbits(96):024x}",
            }
            if kind == "bounce":
                event.update(reason="550 5.1.1 mailbox unavailable (sandbox)", type="bounce")
            events.append(event)
        self._queue_events(events)
        if delivered:
            self._opt_out(people, record, rng, behaviour)
        self.flush(people, force=False)
        return delivered

    def _opt_out(
        self, people: Recipients, record: Mapping[str, Any], rng: random.Random, b: Behaviour
    ) -> None:
        draw = rng.random()
        if draw < b.unsubscribe:
            header = str((record.get("headers") or {}).get("List-Unsubscribe", "")).strip("<>")
            if not header:
                people.fail("an unsubscribe is due but the email has no List-Unsubscribe header")
                return
            path = urlsplit(header).path  # the campaign's public host stands for this tracking service
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            response = people.request("POST", path, content=b"List-Unsubscribe=One-Click", headers=form)
            if response is not None and response.status_code == 200:
                people.count("unsubscribes")
        elif draw < b.unsubscribe + b.spam_report:
            event = {
                "email": record.get("to"),
                "event": "spamreport",
                "timestamp": int(time.time()),
                "sg_event_id": f"sbx-{rng.getrandbits(96):024x}",
                **(record.get("custom_args") or {}),
            }
            self._queue_events([event])
            people.count("spam_reports")

    def _queue_events(self, events: list[dict[str, Any]]) -> None:
        with self._events_lock:
            self._events.extend(events)

    def flush(self, people: Recipients, *, force: bool) -> None:
        """Post the queued events, EVENT_BATCH a request (all of them when `force`), signed."""
        while True:
            with self._events_lock:
                if not self._events or (not force and len(self._events) < EVENT_BATCH):
                    return
                batch, self._events = self._events[:EVENT_BATCH], self._events[EVENT_BATCH:]
            body = json.dumps(batch).encode()
            headers = self.signer.headers(body, str(int(time.time())))
            response = people.request("POST", "/webhooks/sendgrid", content=body, headers=headers)
            if response is not None and response.status_code == 200:
                people.count("events_posted", len(batch))

    def reset(self) -> None:
        super().reset()
        self.batches.clear()
        with self._events_lock:
            self._events.clear()
        self._activity = activity.Activity()
