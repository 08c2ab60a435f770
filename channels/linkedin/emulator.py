"""LinkedIn in the sandbox: the REST endpoints Clarion's adapter calls, in LinkedIn's wire format.

`POST /rest/posts` (201 with the post's URN in `x-restli-id`; the commentary's length checked after
unescaping its little text), `GET /rest/posts?q=author` (newest first, `start`/`count`),
`GET /rest/organizations/{id}` (pre-flight) and `GET /rest/organizationalEntityShareStatistics` (lifetime
statistics, settable at `PUT /_sandbox/linkedin/metrics/{urn}`). Every call needs `LinkedIn-Version` and
the bearer token.

Errors are LinkedIn's `{"status", "serviceErrorCode", "code", "message"}`: 401 INVALID_ACCESS_TOKEN, 403
ACCESS_DENIED for another author, 422 for over-long commentary, 429 TOO_MANY_REQUESTS. LinkedIn documents
daily throttles without rate-limit headers, and so its 429 carries none: the engine's backoff applies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from clarion.channels.emulation import (
    Account,
    Route,
    SocialEmulator,
    Store,
    bearer_token,
    json_response,
    parse_json,
    utc_now_iso,
)
from clarion.channels.linkedin.rules import MAX_CHARACTERS, linkedin_length, unescape_little_text

TOKEN = "sandbox-linkedin-token"
ORGANIZATION_ID = "2414183"
ORGANIZATION = f"urn:li:organization:{ORGANIZATION_ID}"
METRICS = (
    "impressionCount",
    "uniqueImpressionsCount",
    "likeCount",
    "commentCount",
    "shareCount",
    "clickCount",
)


def linkedin_error(status: int, code: str, message: str, service_code: int | None = None) -> Response:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if service_code is not None:
        body["serviceErrorCode"] = service_code
    return json_response(body, status)


@dataclass(frozen=True)
class LinkedInAccount(Account):
    page_name: str = "Clarion Sandbox"
    followers: int = 3400


class LinkedInEmulator(SocialEmulator):
    name: ClassVar[str] = "linkedin"
    label: ClassVar[str] = "Posts (LinkedIn)"
    prefixes: ClassVar[tuple[str, ...]] = ("/rest/",)
    account_type: ClassVar[type[Account]] = LinkedInAccount
    credentials: ClassVar[dict[str, str]] = {
        "LINKEDIN_ACCESS_TOKEN": TOKEN,
        "LINKEDIN_ORGANIZATION": ORGANIZATION_ID,
    }
    url_variable: ClassVar[str | None] = "CLARION_LINKEDIN_URL"
    metric_names: ClassVar[tuple[str, ...]] = METRICS

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self._last_id = 7_400_000_000_000_000_000

    def routes(self) -> list[Route]:
        return [
            ("POST", "/rest/posts", self._guard(self.create_post)),
            ("GET", "/rest/posts", self._guard(self.find_posts)),
            ("GET", "/rest/organizations/{org_id}", self._guard(self.organization)),
            ("GET", "/rest/organizationalEntityShareStatistics", self._guard(self.statistics)),
        ]

    def refusal(self, request: Request) -> Response | None:
        if not bearer_token(request) or self.account.revoked:  # any token, as the sandbox takes
            return linkedin_error(401, "INVALID_ACCESS_TOKEN", "Invalid access token", 65600)
        version = request.headers.get("linkedin-version", "")
        if not (len(version) == 6 and version.isdigit()):
            return linkedin_error(
                400,
                "VERSION_MISSING",
                "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
            )
        return None

    # -- posts ---------------------------------------------------------------------------------------

    def create_post(self, request: Request, body: bytes) -> Response:
        try:
            payload = parse_json(body)
        except ValueError:
            return linkedin_error(400, "INVALID_BODY", "Request body is not valid JSON", 100)
        if not isinstance(payload, dict):
            return linkedin_error(400, "INVALID_BODY", "Request body must be an object", 100)
        if payload.get("author") != ORGANIZATION:
            return linkedin_error(
                403,
                "ACCESS_DENIED",
                f"Not enough permissions to post as {payload.get('author')!s}",
                100,
            )
        commentary = payload.get("commentary")
        if not isinstance(commentary, str):
            return linkedin_error(422, "UNPROCESSABLE_ENTITY", "ERROR :: /commentary :: field is required")
        text = unescape_little_text(commentary)
        length = linkedin_length(text)
        if length > MAX_CHARACTERS:
            return linkedin_error(
                422,
                "UNPROCESSABLE_ENTITY",
                f"ERROR :: /commentary :: length of {length} exceeds the maximum allowed {MAX_CHARACTERS}",
            )
        for field in ("visibility", "distribution", "lifecycleState"):
            if field not in payload:
                return linkedin_error(422, "UNPROCESSABLE_ENTITY", f"ERROR :: /{field} :: field is required")
        with self._lock:
            self._last_id += 1
            urn = f"urn:li:share:{self._last_id}"
        received_at = utc_now_iso()
        self.posts.add(urn, text, received_at, created_ms=int(time.time() * 1000), body=payload)
        article = (
            (payload.get("content") or {}).get("article")
            if isinstance(payload.get("content"), dict)
            else None
        )
        self.store.add_messages(
            [
                {
                    "provider": "linkedin",
                    "to": None,
                    "from": None,
                    "subject": None,
                    "text": text,
                    "html": None,
                    "custom_args": None,
                    "tags": [],
                    "status_callback": None,
                    "provider_id": urn,
                    "received_at": received_at,
                    "article": article,
                }
            ]
        )
        return Response(status_code=201, headers={"x-restli-id": urn, "x-linkedin-id": urn})

    def find_posts(self, request: Request, body: bytes) -> Response:
        query = request.query_params
        if query.get("q") != "author":
            return linkedin_error(400, "ILLEGAL_ARGUMENT", "Only the author finder is emulated")
        if query.get("author") != ORGANIZATION:
            return linkedin_error(403, "ACCESS_DENIED", "Not enough permissions to read this author's posts")
        try:
            start, count = int(query.get("start", "0")), min(int(query.get("count", "10")), 100)
        except ValueError:
            return linkedin_error(400, "ILLEGAL_ARGUMENT", "start and count must be integers")
        posts = self.posts.newest_first()
        page = posts[start : start + count]
        elements = [
            {
                "id": p["id"],
                "author": ORGANIZATION,
                "commentary": p["body"]["commentary"],
                "createdAt": p["created_ms"],
                "lastModifiedAt": p["created_ms"],
                "publishedAt": p["created_ms"],
                "lifecycleState": "PUBLISHED",
                "visibility": p["body"].get("visibility"),
            }
            for p in page
        ]
        return json_response(
            {"elements": elements, "paging": {"start": start, "count": count, "total": len(posts)}}
        )

    def organization(self, request: Request, body: bytes) -> Response:
        if request.path_params["org_id"] != ORGANIZATION_ID:
            return linkedin_error(
                403, "ACCESS_DENIED", "Not enough permissions to access this organization", 100
            )
        account = self.account
        assert isinstance(account, LinkedInAccount)
        return json_response(
            {"id": int(ORGANIZATION_ID), "localizedName": account.page_name, "vanityName": "clarion-sandbox"}
        )

    def statistics(self, request: Request, body: bytes) -> Response:
        query = request.query_params
        if query.get("q") != "organizationalEntity" or query.get("organizationalEntity") != ORGANIZATION:
            return linkedin_error(
                400, "ILLEGAL_ARGUMENT", "q=organizationalEntity of your organization expected"
            )
        elements = []
        for kind in ("shares", "ugcPosts"):
            raw = query.get(kind)
            if not raw:
                continue
            if not (raw.startswith("List(") and raw.endswith(")")):
                return linkedin_error(400, "ILLEGAL_ARGUMENT", f"{kind} must be a List(...) of URNs")
            for urn in (unquote(u) for u in raw[5:-1].split(",") if u):
                post = self.posts.get(urn)
                if post is None:
                    continue
                elements.append(
                    {
                        "organizationalEntity": ORGANIZATION,
                        kind[:-1]: urn,
                        "totalShareStatistics": {**post["metrics"], "engagement": 0.0},
                    }
                )
        return json_response({"elements": elements, "paging": {"start": 0, "count": len(elements)}})

    # -- faults --------------------------------------------------------------------------------------

    def rate_limited(self, retry_after: float) -> Response:
        return linkedin_error(
            429,
            "TOO_MANY_REQUESTS",
            "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
            101,
        )

    def server_error(self, status: int) -> Response:
        return linkedin_error(status, "INTERNAL_SERVER_ERROR", "Internal Server Error")

    def not_found(self, request: Request) -> Response:
        return linkedin_error(404, "NOT_FOUND", "Resource not found")

    # -- simulated recipients ------------------------------------------------------------------------

    def audience_metrics(self, seen: Mapping[str, int]) -> dict[str, int]:
        return {
            "impressionCount": seen["impressions"],
            "uniqueImpressionsCount": int(seen["impressions"] * 0.8),
            "likeCount": seen["likes"],
            "commentCount": seen["replies"],
            "shareCount": seen["reposts"],
            "clickCount": seen["clicks"],
        }
