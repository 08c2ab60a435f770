"""Twilio in the sandbox: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` and its list (`GET`, see
messages.py), the Account and Balance resources (pre-flight), the numbers that replied STOP (refused with
21610), and what Twilio does after accepting a text, for simulated recipients: signed status callbacks and
people replying STOP.

Form-encoded, basic auth with the account SID as user name. Errors are Twilio's JSON error bodies with the
numeric codes its SDK turns into `TwilioRestException.code`.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import secrets
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response

from clarion.base.consent import Reply, classify_reply
from clarion.channels.emulation import (
    Account,
    Behaviour,
    Emulator,
    Recipients,
    Route,
    Store,
    basic_credentials,
    json_response,
    parse_json,
)
from clarion.channels.twilio import messages
from clarion.channels.twilio.rules import sms_length
from clarion.channels.twilio.webhooks import TOKEN_VARIABLE, sign

API_VERSION = messages.API_VERSION
MAX_BODY_CHARS = 1600
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
SHORT_CODE = re.compile(r"^\d{3,8}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 +\-_&]{1,11}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")

MESSAGES = {
    20003: "Authenticate",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    20001: "Invalid parameter",
}


def twilio_error(
    code: int, status: int, message: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = {
        "code": code,
        "message": message or MESSAGES[code],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(body, status, headers)


def inbound_sms(sender: str, body: str, to: str, message_sid: str | None = None) -> dict[str, str]:
    """The form Twilio posts to the inbound-message webhook when `sender` texts `body` to `to`."""
    params = {
        "MessageSid": message_sid or "SM" + secrets.token_hex(16),
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": str(sms_length(body).segments if body else 1),
        "SmsStatus": "received",
        "ApiVersion": API_VERSION,
    }
    params["SmsMessageSid"] = params["SmsSid"] = params["MessageSid"]
    word = classify_reply(body)
    if word is not None:
        params["OptOutType"] = word.value.upper()
    return params


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "sandbox-token"


@dataclass(frozen=True)
class TwilioAccount(Account):
    status: str = "active"  # active, suspended or closed
    balance: str = "20.00"  # in `currency`
    currency: str = "USD"


class TwilioEmulator(Emulator):
    name: ClassVar[str] = "twilio"
    label: ClassVar[str] = "SMS (Twilio)"
    prefixes: ClassVar[tuple[str, ...]] = (f"/{API_VERSION}/",)
    account_type: ClassVar[type[Account]] = TwilioAccount
    credentials: ClassVar[dict[str, str]] = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, TOKEN_VARIABLE: AUTH_TOKEN}
    url_variable: ClassVar[str | None] = "CLARION_TWILIO_URL"
    cleared_variables: ClassVar[tuple[str, ...]] = ("TWILIO_EDGE", "TWILIO_REGION")

    def __init__(self, store: Store, opted_out: Iterable[str] = ()) -> None:
        super().__init__(store)
        self._opted_out = frozenset(opted_out)
        self._lock = threading.Lock()

    @property
    def twilio_account(self) -> TwilioAccount:
        account = self.account
        assert isinstance(account, TwilioAccount)
        return account

    def webhook_environment(self) -> dict[str, str]:
        return {TOKEN_VARIABLE: AUTH_TOKEN}

    @property
    def opted_out(self) -> frozenset[str]:
        return self._opted_out

    def set_opted_out(self, numbers: Iterable[str]) -> None:
        with self._lock:
            self._opted_out = frozenset(numbers)

    def opt(self, number: str, *, out: bool) -> None:
        """One number replied STOP (out) or START."""
        with self._lock:
            self._opted_out = self._opted_out | {number} if out else self._opted_out - {number}

    def controls(self) -> list[Route]:
        return [
            ("GET", "/_sandbox/opted-out", self.opted_out_numbers),
            ("PUT", "/_sandbox/opted-out", self.opted_out_numbers),
        ]

    def opted_out_numbers(self, request: Request, body: bytes) -> Response:
        """The numbers Twilio refuses with 21610 (GET), or replace them (PUT a JSON list)."""
        if request.method == "PUT":
            try:
                payload = parse_json(body)
                if not isinstance(payload, list) or not all(isinstance(n, str) for n in payload):
                    raise ValueError('expected a list of E.164 numbers such as ["+15005550009"]')
            except ValueError as exc:
                return json_response({"error": str(exc)}, 400)
            self.set_opted_out(payload)
        return json_response(sorted(self.opted_out))

    def routes(self) -> list[Route]:
        return [
            ("POST", f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self.create_message),
            ("GET", f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self.list_messages),
            ("GET", f"/{API_VERSION}/Accounts/{{account_sid}}.json", self.fetch_account),
            ("GET", f"/{API_VERSION}/Accounts/{{account_sid}}/Balance.json", self.fetch_balance),
        ]

    def _refused(self, request: Request) -> Response | None:
        """Twilio's 401 for credentials that are not this account's (or were revoked), else None."""
        account_sid: str = request.path_params["account_sid"]
        credentials = basic_credentials(request)
        if credentials is None or credentials[0] != account_sid or not credentials[1]:
            return twilio_error(20003, 401)
        if self.account.revoked:
            return twilio_error(20003, 401)
        return None

    def fetch_account(self, request: Request, body: bytes) -> Response:
        """The account resource (pre-flight: is it active?)."""
        if refused := self._refused(request):
            return refused
        sid = request.path_params["account_sid"]
        account = self.twilio_account
        stamp = format_datetime(datetime.now(UTC))
        return json_response(
            {
                "sid": sid,
                "owner_account_sid": sid,
                "friendly_name": "Clarion sandbox",
                "status": account.status,
                "type": "Full",
                "auth_token": "[redacted]",
                "date_created": stamp,
                "date_updated": stamp,
                "uri": f"/{API_VERSION}/Accounts/{sid}.json",
                "subresource_uris": {"balance": f"/{API_VERSION}/Accounts/{sid}/Balance.json"},
            }
        )

    def fetch_balance(self, request: Request, body: bytes) -> Response:
        if refused := self._refused(request):
            return refused
        account = self.twilio_account
        return json_response(
            {
                "account_sid": request.path_params["account_sid"],
                "balance": account.balance,
                "currency": account.currency,
            }
        )

    def list_messages(self, request: Request, body: bytes) -> Response:
        """The account's texts, newest first, filtered by To, From and DateSent, a page at a time."""
        if refused := self._refused(request):
            return refused
        account_sid = request.path_params["account_sid"]
        try:
            found = messages.page(self.store.messages("twilio"), account_sid, dict(request.query_params))
        except messages.BadQuery as exc:
            return twilio_error(20001, 400, str(exc))
        return json_response(found)

    def create_message(self, request: Request, body: bytes) -> Response:
        account_sid: str = request.path_params["account_sid"]
        if refused := self._refused(request):
            return refused
        if self.twilio_account.status != "active":
            return twilio_error(20005, 401, "Account not active")
        try:
            form = parse_qs(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            form = {}
        to, sender, service = _first(form, "To"), _first(form, "From"), _first(form, "MessagingServiceSid")
        text, media = _first(form, "Body"), _first(form, "MediaUrl")
        if not to:
            return twilio_error(21604, 400)
        if not E164.match(to):
            return twilio_error(21211, 400, f"The 'To' number {to} is not a valid phone number.")
        if not sender and not service:
            return twilio_error(21603, 400)
        if sender and not (
            E164.match(sender) or SHORT_CODE.match(sender) or ALPHANUMERIC_SENDER.match(sender)
        ):
            kinds = "phone number, shortcode, or alphanumeric sender ID"
            return twilio_error(21212, 400, f"The 'From' number {sender} is not a valid {kinds}.")
        if service and not MESSAGING_SERVICE_SID.match(service):
            return twilio_error(21701, 400, f"The Messaging Service Sid {service} is invalid.")
        if not text and not media:
            return twilio_error(21602, 400)
        text = text or ""
        if len(text) > MAX_BODY_CHARS:
            return twilio_error(21617, 400)
        if to in self._opted_out:
            return twilio_error(21610, 400)
        return self._accept(account_sid, to, sender, service, text, form)

    def _accept(
        self,
        account_sid: str,
        to: str,
        sender: str | None,
        service: str | None,
        text: str,
        form: dict[str, list[str]],
    ) -> Response:
        sid = "SM" + uuid.uuid4().hex
        segments = str(sms_length(text).segments) if text else "1"
        # With a Messaging Service and no sender, Twilio answers "accepted" and picks the sender later.
        status = "accepted" if service and not sender else "queued"
        record = {
            "provider": "twilio",
            "to": to,
            "from": sender,
            "subject": None,
            "text": text,
            "html": None,
            "custom_args": None,
            "tags": [],
            "status_callback": _first(form, "StatusCallback"),
            "provider_id": sid,
            "messaging_service_sid": service,
            "account_sid": account_sid,
            "num_segments": segments,
            "media_urls": form.get("MediaUrl", []),
            "status": status,
            "received_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        }
        self.store.add_messages([record])
        return json_response(messages.resource(record), 201, {"Twilio-Request-Id": "RQ" + uuid.uuid4().hex})

    def rate_limited(self, retry_after: float) -> Response:
        return twilio_error(20429, 429, headers={"Retry-After": str(math.ceil(retry_after))})

    def server_error(self, status: int) -> Response:
        return twilio_error(20503 if status == 503 else 20500, status)

    def not_found(self, request: Request) -> Response:
        message = f"The requested resource {request.url.path} was not found"
        return json_response(
            {
                "code": 20404,
                "message": message,
                "more_info": "https://www.twilio.com/docs/errors/20404",
                "status": 404,
            },
            404,
        )

    # -- people -------------------------------------------------------------------------------------

    def reply(
        self,
        sender: str,
        body: str,
        *,
        webhook: str,
        auth_token: str,
        to: str = "+15005550006",
        message_sid: str | None = None,
    ) -> httpx.Response:
        """A person texts one of our numbers: as Twilio does, a STOP keyword opts the number out (later
        texts to it are refused with 21610) and START opts it back in; then the text is posted, signed
        with the account's auth token, to the inbound-message webhook `webhook` (the same `message_sid`
        again is a redelivery). Returns its answer."""
        word = classify_reply(body)
        if word in (Reply.STOP, Reply.START):
            self.opt(sender, out=word is Reply.STOP)
        params = inbound_sms(sender, body, to, message_sid)
        headers = {"X-Twilio-Signature": sign(auth_token, webhook, params)}
        return httpx.post(webhook, data=params, headers=headers, timeout=10)

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
        """Status callbacks (sent, then delivered or undelivered), then maybe a STOP reply."""
        delivered = rng.random() < behaviour.delivered
        self._status_callbacks(people, record, delivered)
        if delivered and rng.random() < behaviour.stop:
            self._reply_stop(people, record)
        return delivered

    def _status_callbacks(self, people: Recipients, record: Mapping[str, Any], delivered: bool) -> None:
        callback = record.get("status_callback")
        token = people.secret(TOKEN_VARIABLE)
        if not callback:
            return
        if token is None:
            people.fail("an SMS callback is due but the engagement settings have no twilio_auth_token")
            return
        parts = urlsplit(callback)
        target = urlsplit(people.tracking_url)
        url = urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))
        for status in ("sent", "delivered" if delivered else "undelivered"):
            params = {
                "AccountSid": str(record.get("account_sid") or ""),
                "MessageSid": str(record.get("provider_id")),
                "SmsSid": str(record.get("provider_id")),
                "MessageStatus": status,
                "SmsStatus": status,
                "To": str(record.get("to") or ""),
                "From": str(record.get("from") or ""),
                "ApiVersion": API_VERSION,
            }
            if status == "undelivered":
                params["ErrorCode"] = "30003"
            # Signed for the URL actually posted to: the service validates against the URL it is reached at.
            headers = {"X-Twilio-Signature": sign(token, url, params)}
            response = people.request("POST", url, data=params, headers=headers)
            if response is not None and response.status_code == 200:
                people.count("callbacks_posted")

    def _reply_stop(self, people: Recipients, record: Mapping[str, Any]) -> None:
        token = people.secret(TOKEN_VARIABLE)
        if token is None:
            people.fail("a STOP reply is due but the engagement settings have no twilio_auth_token")
            return
        number = str(record.get("to") or "")
        self.opt(number, out=True)
        url = people.tracking_url + "/webhooks/twilio/inbound"
        params = {
            "MessageSid": f"SM{hashlib.sha256(number.encode()).hexdigest()[:32]}",
            "From": number,
            "To": str(record.get("from") or ""),
            "Body": "STOP",
            "OptOutType": "STOP",
        }
        response = people.request(
            "POST", url, data=params, headers={"X-Twilio-Signature": sign(token, url, params)}
        )
        if response is not None and response.status_code == 200:
            people.count("stops")
