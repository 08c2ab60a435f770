"""X in the sandbox: `POST /2/tweets` to publish, `GET /2/tweets?ids=` and `GET /2/tweets/{id}` to read (with
public metrics, settable at `PUT /_sandbox/metrics/{id}`), `GET /2/users/me` (pre-flight), the account's
posts at `GET /2/users/{id}/tweets` (timeline.py, for settling uncertain posts), and for
simulated recipients a post's audience: impressions, likes and reposts, and clicks on its link.

Errors are RFC 7807 problem documents, as X sends them. Every answer carries X's rate-limit headers; the
sandbox counts requests per endpoint in a 15-minute window for `x-rate-limit-remaining` but only refuses
with 429 when a rate-limit fault is configured.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from clarion.channels.emulation import (
    Account,
    Behaviour,
    Emulator,
    FixedWindow,
    Recipients,
    Record,
    Route,
    Store,
    json_response,
    parse_json,
    rate,
    utc_now_iso,
)
from clarion.channels.x import timeline
from clarion.channels.x.inbox import CONSUMER_SECRET, Inbox
from clarion.channels.x.rules import X_MAX_WEIGHTED_LENGTH, x_weighted_length
from clarion.channels.x.timeline import X_EPOCH_MS
from clarion.channels.x.webhooks import SECRET_VARIABLE

PUBLIC_METRICS = (
    "retweet_count",
    "reply_count",
    "like_count",
    "quote_count",
    "bookmark_count",
    "impression_count",
)
#: The id of the account behind the sandbox's token (GET /2/users/me).
ACCOUNT_ID = "1500000000000000001"
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


def _user_not_found(user_id: str) -> dict[str, Any]:
    return {
        "value": user_id,
        "detail": f"Could not find user with id: [{user_id}].",
        "title": "Not Found Error",
        "resource_type": "user",
        "parameter": "id",
        "resource_id": user_id,
        "type": "https://api.twitter.com/2/problems/resource-not-found",
    }


class DuplicatePost(Exception):
    """The text of a post equals the text of one already published."""


@dataclass(frozen=True)
class XAccount(Account):
    username: str = "clarion_sandbox"  # whose account the token posts as


class XEmulator(Emulator):
    name: ClassVar[str] = "x"
    label: ClassVar[str] = "Posts (X)"
    prefixes: ClassVar[tuple[str, ...]] = ("/2/",)
    account_type: ClassVar[type[Account]] = XAccount
    credentials: ClassVar[dict[str, str]] = {"X_ACCESS_TOKEN": "sandbox-x-token"}
    url_variable: ClassVar[str | None] = "CLARION_X_URL"
    cleared_variables: ClassVar[tuple[str, ...]] = ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN_SECRET")

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self._windows: dict[str, FixedWindow] = {}  # endpoint -> its 15-minute window
        self._posts: dict[str, Record] = {}  # tweet id -> {"text", "public_metrics"}
        self._post_texts: set[str] = set()
        self._last_post_id = 0
        self.inbox = Inbox(store)  # direct messages (inbox.py)

    # -- posts and their metrics ------------------------------------------------------------------

    def _publish(self, text: str, received_at: str) -> str:
        """A new snowflake id for `text`, or DuplicatePost (X refuses a post equal to an earlier one)."""
        with self._lock:
            if text in self._post_texts:
                raise DuplicatePost(text)
            stamp = (int(time.time() * 1000) - X_EPOCH_MS) << 22
            tweet_id = max(stamp, self._last_post_id + 1)
            self._last_post_id = tweet_id
            key = str(tweet_id)
            self._post_texts.add(text)
            self._posts[key] = {"text": text, "public_metrics": dict.fromkeys(PUBLIC_METRICS, 0)}
        return key

    def set_metrics(self, tweet_id: str, metrics: Mapping[str, Any]) -> dict[str, int]:
        """Set a post's public metrics (like_count=3, ...), as X's lookup will report them."""
        unknown = set(metrics) - set(PUBLIC_METRICS)
        if unknown:
            raise ValueError(
                f"unknown public metric(s) {', '.join(sorted(unknown))} (known: {', '.join(PUBLIC_METRICS)})"
            )
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        with self._lock:
            post = self._posts.get(str(tweet_id))
            if post is None:
                raise KeyError(f"no post with id {tweet_id!r} in the sandbox")
            post["public_metrics"].update(metrics)
            return dict(post["public_metrics"])

    def posts(self, ids: Iterable[str]) -> list[tuple[str, Record | None]]:
        with self._lock:
            found = []
            for tweet_id in ids:
                post = self._posts.get(tweet_id)
                copy = None if post is None else {**post, "public_metrics": dict(post["public_metrics"])}
                found.append((tweet_id, copy))
            return found

    def controls(self) -> list[Route]:
        path = "/_sandbox/metrics/{tweet_id}"
        return [
            ("PUT", path, self.metrics),
            ("POST", path, self.metrics),
            ("PUT", "/_sandbox/x/webhook", self.inbox.set_webhook),
        ]

    def webhook_environment(self) -> dict[str, str]:
        return {SECRET_VARIABLE: CONSUMER_SECRET}

    def metrics(self, request: Request, body: bytes) -> Response:
        tweet_id = request.path_params["tweet_id"]
        try:
            payload = parse_json(body)
            if not isinstance(payload, dict):
                raise ValueError('expected an object such as {"like_count": 3}')
            updated = self.set_metrics(tweet_id, payload)
        except KeyError as exc:
            return json_response({"error": str(exc.args[0])}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"id": tweet_id, "public_metrics": updated})

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._windows.clear()
            self._posts.clear()
            self._post_texts.clear()
        self.inbox.reset()

    def routes(self) -> list[Route]:
        return [
            ("POST", "/2/tweets", self.create_tweet),
            ("GET", "/2/tweets", self.lookup_tweets),
            ("GET", "/2/tweets/{tweet_id}", self.lookup_tweet),
            ("GET", "/2/users/me", self.users_me),
            ("GET", "/2/users/{user_id}/tweets", self.user_posts),
            (
                "POST",
                "/2/dm_conversations/with/{participant_id}/messages",
                self._authorized_only(self.inbox.create),
            ),
            ("GET", "/2/dm_events", self._authorized_only(self.inbox.events)),
        ]

    def _authorized_only(self, handler: Any) -> Any:
        def guarded(request: Request, body: bytes) -> Response:
            if not self._authorized(request):
                return json_response(UNAUTHORIZED, 401, media_type=PROBLEM)
            response: Response = handler(request, body)
            return response

        return guarded

    def _authorized(self, request: Request) -> bool:
        return _authorized(request) and not self.account.revoked

    def users_me(self, request: Request, body: bytes) -> Response:
        """The account the token acts for (pre-flight: does X accept the token, and whose is it?)."""
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401, media_type=PROBLEM)
        account = self.account
        name = account.username if isinstance(account, XAccount) else ""
        return json_response({"data": {"id": ACCOUNT_ID, "name": "Clarion sandbox", "username": name}})

    def user_posts(self, request: Request, body: bytes) -> Response:
        """The account's own posts, newest first (timeline.py); another user's id is not found."""
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, 401, media_type=PROBLEM)
        user_id = request.path_params["user_id"]
        if user_id != ACCOUNT_ID:
            return json_response({"errors": [_user_not_found(user_id)]})
        with self._lock:
            posts = [(pid, str(post["text"])) for pid, post in self._posts.items()]
        try:
            return json_response(timeline.page(posts, request.query_params))
        except timeline.BadQuery as exc:
            return invalid_request(exc.parameter, exc.value, exc.message)

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
        try:
            tweet_id = self._publish(text, received_at)
        except DuplicatePost:
            return json_response(DUPLICATE, 403, media_type=PROBLEM)
        record: Record = {
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
        self.store.add_messages([record])
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
        for tweet_id, post in self.posts(ids):
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
        with self._lock:
            window = self._windows.setdefault(key, FixedWindow(WINDOW_SECONDS))
        start, used = window.count()
        headers = response.headers
        if "x-rate-limit-remaining" not in headers:
            headers["x-rate-limit-limit"] = str(limit)
            headers["x-rate-limit-remaining"] = str(max(limit - used, 0))
            headers["x-rate-limit-reset"] = str(math.ceil(start + WINDOW_SECONDS))
        return response

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
        """A post's audience: impressions, some of whom click its link (at most max_social_clicks), like,
        repost, reply, quote or bookmark it; the post's public metrics say so afterwards. A direct message
        has one reader, who may click its link like the reader of a text."""
        if record.get("kind") == "dm":
            return rng.random() < behaviour.delivered
        impressions = int(rate(behaviour.impressions, variant))
        clicks = sum(rng.random() < rate(behaviour.click, variant) for _ in range(impressions))
        for i in range(min(clicks, people.max_social_clicks)):
            people.click(rng, token, variant, behaviour, str(i))

        def share(p: float) -> int:
            return sum(rng.random() < p for _ in range(impressions))

        metrics = {
            "impression_count": impressions,
            "like_count": share(behaviour.likes),
            "retweet_count": share(behaviour.reposts),
            "reply_count": share(behaviour.replies),
            "quote_count": share(behaviour.quotes),
            "bookmark_count": share(behaviour.bookmarks),
        }
        self.set_metrics(str(record.get("provider_id")), metrics)
        return False  # its audience clicked above: no one person to click after it
