"""SendGrid's v3 Mail Send endpoint, `POST /v3/mail/send`: bearer auth, SendGrid's checks, its error bodies.

Success is 202 with an empty body and an X-Message-Id header; every recipient of the request becomes a message
record (see sendgrid_mail.py for the checks and the records).
"""

from __future__ import annotations

import math
import secrets
import time
from typing import ClassVar

from starlette.requests import Request
from starlette.responses import Response

from clarion.channels.emulation import Emulator, Handler, bearer_token, json_response, parse_json
from clarion.channels.sendgrid.mail import MAX_BODY_BYTES, error, validate_and_expand
from clarion.sandbox.store import utc_now_iso

UNAUTHORIZED = {
    "errors": [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]
}


class SendGridEmulator(Emulator):
    name: ClassVar[str] = "sendgrid"

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/v3/mail/send", self.mail_send),
            ("GET", "/v3/scopes", self.scopes),
            ("GET", "/v3/user/credits", self.credits),
        ]

    def _authorized(self, request: Request) -> bool:
        key = bearer_token(request)  # "Bearer None" is what the SDK sends with no key set
        return key is not None and key.startswith("SG.") and not self.store.accounts.get("sendgrid").revoked

    def scopes(self, request: Request, body: bytes) -> Response:
        """The API key's permissions (pre-flight: can this key send mail?)."""
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401)
        return json_response({"scopes": list(self.store.accounts.get("sendgrid").scopes)})

    def credits(self, request: Request, body: bytes) -> Response:
        """Emails left this period, in SendGrid's shape; 403 without the user.credits.read scope."""
        account = self.store.accounts.get("sendgrid")
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
        if errors:
            return json_response({"errors": errors}, 400)
        self.store.add_messages(records)
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    def rate_limited(self, retry_after: float) -> Response:
        reset = math.ceil(time.time() + retry_after)
        headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        return json_response({"errors": [{"field": None, "message": "too many requests"}]}, 429, headers)

    def server_error(self, status: int) -> Response:
        message = "Service Unavailable" if status == 503 else "Internal Server Error"
        return json_response({"errors": [error(message, None)]}, status)

    def not_found(self, request: Request) -> Response:
        return json_response({"errors": [error("resource not found", None)]}, 404)
