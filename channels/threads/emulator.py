"""Threads in the sandbox: the Graph API endpoints Clarion's adapter calls, in Meta's wire format.

`POST /v1.0/{user}/threads` (a TEXT media container; the text counted by Threads' rules: 500 characters,
an emoji as its UTF-8 bytes, at most 5 links), `POST /v1.0/{user}/threads_publish`, `GET /v1.0/me`,
`GET /v1.0/{user}/threads_publishing_limit` (250 a day), `GET /v1.0/{user}/threads` (the profile's posts)
and `GET /v1.0/{media}/insights` (settable at `PUT /_sandbox/threads/metrics/{id}`).

Errors are Graph API errors, `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`: code
190 for a bad token, 100 for an invalid parameter (over-long text), 4 with HTTP 429 for the rate limit,
whose `X-Business-Use-Case-Usage` header says in `estimated_time_to_regain_access` (minutes) how long to
wait. Every answer carries `X-App-Usage`.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from clarion.channels.emulation import (
    Account,
    Route,
    SocialEmulator,
    Store,
    bearer_token,
    json_response,
    utc_now_iso,
)
from clarion.channels.threads.rules import MAX_CHARACTERS, MAX_LINKS, links, threads_length

TOKEN = "sandbox-threads-token"
USER_ID = "17841400000000001"
METRICS = ("views", "likes", "replies", "reposts", "quotes", "shares")
QUOTA = 250


def graph_error(
    status: int,
    message: str,
    code: int,
    *,
    kind: str = "OAuthException",
    subcode: int | None = None,
    headers: Mapping[str, str] | None = None,
    user_message: str | None = None,
) -> Response:
    error: dict[str, Any] = {
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": "A" + hashlib.sha256(f"{time.time()}".encode()).hexdigest()[:22],
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_message:
        error["error_user_msg"] = user_message
    return json_response({"error": error}, status, headers)


@dataclass(frozen=True)
class ThreadsAccount(Account):
    username: str = "clarion.sandbox"
    quota_usage: int = 0  # posts already published through the API in the last 24 hours


class ThreadsEmulator(SocialEmulator):
    name: ClassVar[str] = "threads"
    label: ClassVar[str] = "Posts (Threads)"
    prefixes: ClassVar[tuple[str, ...]] = ("/v1.0/",)
    account_type: ClassVar[type[Account]] = ThreadsAccount
    credentials: ClassVar[dict[str, str]] = {"THREADS_ACCESS_TOKEN": TOKEN}
    url_variable: ClassVar[str | None] = "CLARION_THREADS_URL"
    metric_names: ClassVar[tuple[str, ...]] = METRICS
    cleared_variables: ClassVar[tuple[str, ...]] = ("THREADS_USER_ID",)

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self._containers: dict[str, str | None] = {}  # container id -> text (None once published)
        self._last_id = 18_000_000_000_000_000
        self._calls = 0

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._containers.clear()
            self._calls = 0

    def routes(self) -> list[Route]:
        v = "/v1.0"
        return [
            ("GET", v + "/me", self._guard(self.me)),
            ("POST", v + "/{user}/threads", self._guard(self.create_container)),
            ("GET", v + "/{user}/threads", self._guard(self.list_posts)),
            ("POST", v + "/{user}/threads_publish", self._guard(self.publish)),
            ("GET", v + "/{user}/threads_publishing_limit", self._guard(self.publishing_limit)),
            ("GET", v + "/{media_id}/insights", self._guard(self.insights)),
        ]

    def refusal(self, request: Request) -> Response | None:
        token = bearer_token(request) or request.query_params.get("access_token")
        if not token or self.account.revoked:  # any token, as the sandbox takes
            return graph_error(400, "Invalid OAuth access token - Cannot parse access token", 190)
        user = request.path_params.get("user")
        if user is not None and user not in ("me", USER_ID):
            return graph_error(
                400, f"Unsupported request: object with ID '{user}' does not exist", 100, subcode=33
            )
        return None

    def _settings(self) -> ThreadsAccount:
        account = self.account
        assert isinstance(account, ThreadsAccount)
        return account

    def _next_id(self) -> str:
        with self._lock:
            self._last_id += 1
            return str(self._last_id)

    # -- endpoints -----------------------------------------------------------------------------------

    def me(self, request: Request, body: bytes) -> Response:
        return json_response({"id": USER_ID, "username": self._settings().username})

    def create_container(self, request: Request, body: bytes) -> Response:
        form = {**dict(request.query_params), **_form(body)}
        if form.get("media_type") != "TEXT":
            return graph_error(400, "Invalid parameter: only media_type=TEXT is emulated", 100)
        text = form.get("text") or ""
        if not text.strip():
            return graph_error(400, "Invalid parameter: text is required for a TEXT post", 100)
        length = threads_length(text)
        if length > MAX_CHARACTERS:
            return graph_error(
                400,
                f"Invalid parameter: the text is {length} characters, over the {MAX_CHARACTERS} allowed",
                100,
                kind="THApiException",
                subcode=2207003,
                user_message="The post text is too long.",
            )
        if len(links(text)) > MAX_LINKS:
            return graph_error(
                400,
                "The post has more links than allowed.",
                100,
                kind="THApiException",
                user_message="THREADS_API__LINK_LIMIT_EXCEEDED",
            )
        container = self._next_id()
        with self._lock:
            self._containers[container] = text
        return json_response({"id": container})

    def publish(self, request: Request, body: bytes) -> Response:
        form = {**dict(request.query_params), **_form(body)}
        creation = form.get("creation_id", "")
        if self._settings().quota_usage >= QUOTA:
            return graph_error(
                400, "The user has reached the limit of posts published through the API", 9, subcode=2207042
            )
        with self._lock:
            if creation not in self._containers:
                text = None
                known = False
            else:
                text, known = self._containers[creation], True
                self._containers[creation] = None
        if not known:
            return graph_error(400, "Invalid parameter: media container not found", 100, subcode=4279009)
        if text is None:
            return graph_error(400, "The media container has already been published", 100, subcode=2207050)
        media_id = self._next_id()
        received_at = utc_now_iso()
        self.posts.add(media_id, text, received_at)
        self.store.add_messages(
            [
                {
                    "provider": "threads",
                    "to": None,
                    "from": None,
                    "subject": None,
                    "text": text,
                    "html": None,
                    "custom_args": None,
                    "tags": [],
                    "status_callback": None,
                    "provider_id": media_id,
                    "received_at": received_at,
                    "container": creation,
                }
            ]
        )
        return json_response({"id": media_id})

    def publishing_limit(self, request: Request, body: bytes) -> Response:
        used = self._settings().quota_usage + len(self.posts.texts())
        return json_response(
            {"data": [{"quota_usage": used, "config": {"quota_total": QUOTA, "quota_duration": 86400}}]}
        )

    def list_posts(self, request: Request, body: bytes) -> Response:
        query = request.query_params
        try:
            since = int(query.get("since") or 0)
            limit = min(int(query.get("limit") or 25), 100)
        except ValueError:
            return graph_error(400, "Invalid parameter: since and limit must be integers", 100)
        posts = [
            p
            for p in self.posts.newest_first()
            if datetime.fromisoformat(p["created_at"]).timestamp() >= since
        ]
        after = query.get("after")
        start = int(after) if after and after.isdigit() else 0
        page = posts[start : start + limit]
        data = [
            {
                "id": p["id"],
                "text": p["text"],
                "media_type": "TEXT_POST",
                "timestamp": datetime.fromisoformat(p["created_at"])
                .astimezone(UTC)
                .strftime("%Y-%m-%dT%H:%M:%S+0000"),
                "username": self._settings().username,
            }
            for p in page
        ]
        paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
        if start + limit < len(posts):
            paging["next"] = f"{request.url.path}?after={start + len(page)}"
        return json_response({"data": data, "paging": paging})

    def insights(self, request: Request, body: bytes) -> Response:
        post = self.posts.get(request.path_params["media_id"])
        if post is None:
            return graph_error(400, "Unsupported get request. Object does not exist", 100, subcode=33)
        wanted = [m for m in (request.query_params.get("metric") or "").split(",") if m]
        unknown = [m for m in wanted if m not in METRICS]
        if not wanted or unknown:
            return graph_error(400, f"Invalid parameter: metric must be among {', '.join(METRICS)}", 100)
        data = [
            {
                "name": name,
                "period": "lifetime",
                "values": [{"value": post["metrics"][name]}],
                "title": name.capitalize(),
                "id": f"{post['id']}/insights/{name}/lifetime",
            }
            for name in wanted
        ]
        return json_response({"data": data})

    # -- faults and headers --------------------------------------------------------------------------

    def rate_limited(self, retry_after: float) -> Response:
        usage = {
            USER_ID: [
                {
                    "type": "threads",
                    "call_count": 100,
                    "total_cputime": 20,
                    "total_time": 30,
                    "estimated_time_to_regain_access": max(math.ceil(retry_after / 60), 1),
                }
            ]
        }
        headers = {
            "X-App-Usage": json.dumps({"call_count": 100, "total_cputime": 20, "total_time": 30}),
            "X-Business-Use-Case-Usage": json.dumps(usage),
        }
        return graph_error(429, "Application request limit reached", 4, headers=headers)

    def server_error(self, status: int) -> Response:
        if status == 503:
            return graph_error(503, "Service temporarily unavailable", 2)
        return graph_error(status, "An unknown error has occurred.", 1)

    def not_found(self, request: Request) -> Response:
        return graph_error(400, "Unknown path components", 2500)

    def finish(self, request: Request, response: Response) -> Response:
        with self._lock:
            self._calls += 1
            share = min(self._calls // 48, 100)  # 4,800 calls a day for the minimum 10 impressions, in %
        if "x-app-usage" not in response.headers:
            response.headers["X-App-Usage"] = json.dumps(
                {"call_count": share, "total_cputime": 0, "total_time": 0}
            )
        return response

    # -- simulated recipients ------------------------------------------------------------------------

    def audience_metrics(self, seen: Mapping[str, int]) -> dict[str, int]:
        return {
            "views": seen["impressions"],
            "likes": seen["likes"],
            "replies": seen["replies"],
            "reposts": seen["reposts"],
            "quotes": seen["quotes"],
            "shares": seen["bookmarks"],
        }


def _form(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}
    return {k: v[-1] for k, v in parsed.items()}
