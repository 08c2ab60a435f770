"""X's API v2 posts: `POST /2/tweets` to publish, `GET /2/tweets?ids=` and `GET /2/tweets/{id}` to read.

Errors are RFC 7807 problem documents, as X sends them. Every answer carries X's rate-limit headers; the
sandbox counts requests per endpoint in a 15-minute window for `x-rate-limit-remaining` but only refuses
with 429 when a rate-limit fault is configured.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from clarion.channels.emulation import Emulator, Handler, json_response, parse_json
from clarion.channels.textrules import X_MAX_WEIGHTED_LENGTH, x_weighted_length
from clarion.sandbox.store import DuplicatePost, Record, Store, utc_now_iso

WINDOW_SECONDS = 15 * 60
#: Requests per window reported in x-rate-limit-limit, per endpoint (X's user-context limits).
LIMITS = {"POST /2/tweets": 100, "GET /2/tweets": 900}
PROBLEM = "application/problem+json"

UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
FORBIDDEN = {
    "detail": "You are not permitted to perform this action.",
    "type": "about:blank",
    "title": "Forbidden",
    "status": 403,
}
DUPLICATE = {**FORBIDDEN, "detail": "You are not allowed to create a Tweet with duplicate content."}


def invalid_request(parameter: str, value: str, message: str) -> Response:
    body = {
        "errors": [{"parameters": {parameter: [value]}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }
    return json_response(body, 400, media_type=PROBLEM)


def _authorized(request: Request) -> bool:
    value = request.headers.get("authorization", "")
    scheme, _, credentials = value.partition(" ")
    return scheme in ("Bearer", "OAuth") and bool(credentials.strip())


def _not_found(tweet_id: str) -> dict[str, Any]:
    return {
        "value": tweet_id,
        "detail": f"Could not find tweet with ids: [{tweet_id}].",
        "title": "Not Found Error",
        "resource_type": "tweet",
        "parameter": "ids",
        "resource_id": tweet_id,
        "type": "https://api.twitter.com/2/problems/resource-not-found",
    }


class XEmulator(Emulator):
    name: ClassVar[str] = "x"

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # endpoint -> (window start, requests in it)

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/2/tweets", self.create_tweet),
            ("GET", "/2/tweets", self.lookup_tweets),
            ("GET", "/2/tweets/{tweet_id}", self.lookup_tweet),
            ("GET", "/2/users/me", self.users_me),
        ]

    def _authorized(self, request: Request) -> bool:
        return _authorized(request) and not self.store.accounts.get("x").revoked

    def users_me(self, request: Request, body: bytes) -> Response:
        """The account the token acts for (pre-flight: does X accept the token, and whose is it?)."""
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401, media_type=PROBLEM)
        name = self.store.accounts.get("x").username
        return json_response(
            {"data": {"id": "1500000000000000001", "name": "Clarion sandbox", "username": name}}
        )

    # -- endpoints --------------------------------------------------------------------------------

    def create_tweet(self, request: Request, body: bytes) -> Response:
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401, media_type=PROBLEM)
        try:
            payload = parse_json(body)
        except ValueError as exc:
            return invalid_request("body", body.decode(errors="replace")[:200], f"Invalid JSON: {exc}")
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text:
            shown = text if isinstance(text, str) else ""
            return invalid_request("text", shown, "$.text: must be a non-empty string")
        if x_weighted_length(text) > X_MAX_WEIGHTED_LENGTH:
            return json_response(FORBIDDEN, 403, media_type=PROBLEM)
        received_at = utc_now_iso()

        def record(tweet_id: str) -> Record:
            return {
                "provider": "x",
                "to": None,
                "from": None,
                "subject": None,
                "text": text,
                "html": None,
                "custom_args": None,
                "tags": [],
                "status_callback": None,
                "provider_id": tweet_id,
                "received_at": received_at,
            }

        try:
            stored = self.store.add_post(text, record)
        except DuplicatePost:
            return json_response(DUPLICATE, 403, media_type=PROBLEM)
        tweet_id = stored["provider_id"]
        return json_response(
            {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}}, 201
        )

    def lookup_tweets(self, request: Request, body: bytes) -> Response:
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401, media_type=PROBLEM)
        raw = request.query_params.get("ids", "")
        ids = [i.strip() for i in raw.split(",") if i.strip()]
        if not ids or len(ids) > 100 or not all(i.isdigit() for i in ids):
            return invalid_request(
                "ids", raw, "The `ids` query parameter value must be 1 to 100 comma-separated ids"
            )
        return self._lookup(request, ids, single=False)

    def lookup_tweet(self, request: Request, body: bytes) -> Response:
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401, media_type=PROBLEM)
        tweet_id = request.path_params["tweet_id"]
        if not tweet_id.isdigit():
            return invalid_request(
                "id", tweet_id, f"The `id` query parameter value [{tweet_id}] is not valid"
            )
        return self._lookup(request, [tweet_id], single=True)

    def _lookup(self, request: Request, ids: list[str], single: bool) -> Response:
        fields = {f.strip() for f in request.query_params.get("tweet.fields", "").split(",")}
        data, errors = [], []
        for tweet_id, post in self.store.posts(ids):
            if post is None:
                errors.append(_not_found(tweet_id))
                continue
            item: dict[str, Any] = {
                "id": tweet_id,
                "text": post["text"],
                "edit_history_tweet_ids": [tweet_id],
            }
            if "public_metrics" in fields:
                item["public_metrics"] = post["public_metrics"]
            data.append(item)
        result: dict[str, Any] = {}
        if data:
            result["data"] = data[0] if single else data
        if errors:
            result["errors"] = errors
        return json_response(result, 200)

    # -- faults and headers -----------------------------------------------------------------------

    def rate_limited(self, retry_after: float) -> Response:
        headers = {
            "x-rate-limit-limit": str(LIMITS["POST /2/tweets"]),
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(math.ceil(time.time() + retry_after)),
        }
        body = {
            "title": "Too Many Requests",
            "detail": "Too Many Requests",
            "type": "about:blank",
            "status": 429,
        }
        return json_response(body, 429, headers, media_type=PROBLEM)

    def server_error(self, status: int) -> Response:
        title = "Service Unavailable" if status == 503 else "Internal Server Error"
        body = {"title": title, "detail": title, "type": "about:blank", "status": status}
        return json_response(body, status, media_type=PROBLEM)

    def not_found(self, request: Request) -> Response:
        body = {"title": "Not Found Error", "detail": "Not Found", "type": "about:blank", "status": 404}
        return json_response(body, 404, media_type=PROBLEM)

    def finish(self, request: Request, response: Response) -> Response:
        """Rate-limit headers on every answer, counted per endpoint in a 15-minute window."""
        key = f"{request.method} /2/tweets"
        limit = LIMITS.get(key, LIMITS["GET /2/tweets"])
        now = time.time()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= WINDOW_SECONDS:
                start, used = now, 0
            used += 1
            self._windows[key] = (start, used)
        headers = response.headers
        if "x-rate-limit-remaining" not in headers:
            headers["x-rate-limit-limit"] = str(limit)
            headers["x-rate-limit-remaining"] = str(max(limit - used, 0))
            headers["x-rate-limit-reset"] = str(math.ceil(start + WINDOW_SECONDS))
        return response

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
