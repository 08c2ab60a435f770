"""Bluesky in the sandbox: the XRPC methods Clarion's adapter calls, in the AT Protocol's wire format.

`com.atproto.server.createSession` (app-password sign-in, answering a JWT whose `exp` the SDK reads),
`app.bsky.actor.getProfile`, `com.atproto.identity.resolveHandle` (mention facets),
`com.atproto.repo.createRecord` (validated against the post lexicon: 300 graphemes, 3,000 UTF-8 bytes,
facet byte ranges inside the text, the link card's fields), `app.bsky.feed.getPosts` (counts, settable at
`PUT /_sandbox/bluesky/metrics/{uri}`) and `com.atproto.repo.listRecords` (newest first, for settling
uncertain posts).

Errors are XRPC's `{"error", "message"}`: 401 `AuthenticationRequired` for another handle, an empty
password or a revoked account (like the other emulators, it takes any credential otherwise), 400
`InvalidRequest` for a record the lexicon refuses, 429 `RateLimitExceeded`. Every answer carries the
PDS's rate-limit headers (`ratelimit-limit`, `-remaining`, `-reset` in epoch seconds, `-policy`), counted
over a 5-minute window.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from clarion.channels.bluesky.rules import MAX_BYTES, MAX_GRAPHEMES
from clarion.channels.emulation import (
    Account,
    FixedWindow,
    Record,
    Route,
    SocialEmulator,
    Store,
    bearer_token,
    json_response,
    parse_json,
    utc_now_iso,
)
from clarion.channels.text import graphemes, utf8_bytes

DID = "did:plc:clarionsandbox0000000000"
HANDLE = "clarion-sandbox.bsky.social"
APP_PASSWORD = "sand-box0-app0-pass"
POST = "app.bsky.feed.post"
METRICS = ("likeCount", "repostCount", "replyCount", "quoteCount", "bookmarkCount")
WINDOW_SECONDS = 300
LIMIT = 3000  # requests per 5 minutes per client, the PDS's global limit
_TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"


def xrpc_error(status: int, error: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"error": error, "message": message}, status, headers)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _jwt(scope: str, lifetime: int) -> str:
    now = int(time.time())
    payload = {"scope": scope, "sub": DID, "iat": now, "exp": now + lifetime, "aud": "did:web:sandbox"}
    return f"{_b64({'typ': 'at+jwt', 'alg': 'ES256K'})}.{_b64(payload)}.c2FuZGJveA"


def _token_subject(token: str) -> str | None:
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    if not isinstance(data, dict) or int(data.get("exp", 0)) < time.time():
        return None
    return str(data.get("sub"))


def _did_of(handle: str) -> str:
    return "did:plc:" + hashlib.sha256(handle.lower().encode()).hexdigest()[:24]


@dataclass(frozen=True)
class BlueskyAccount(Account):
    handle: str = HANDLE
    followers: int = 1200


class BlueskyEmulator(SocialEmulator):
    name: ClassVar[str] = "bluesky"
    label: ClassVar[str] = "Posts (Bluesky)"
    prefixes: ClassVar[tuple[str, ...]] = ("/xrpc/",)
    account_type: ClassVar[type[Account]] = BlueskyAccount
    credentials: ClassVar[dict[str, str]] = {"BLUESKY_HANDLE": HANDLE, "BLUESKY_APP_PASSWORD": APP_PASSWORD}
    url_variable: ClassVar[str | None] = "CLARION_BLUESKY_URL"
    metric_names: ClassVar[tuple[str, ...]] = METRICS
    metrics_post_id: ClassVar[str] = "{post_id:path}"  # at:// URIs hold slashes

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self._window = FixedWindow(WINDOW_SECONDS)
        self._last_tid = 0

    def reset(self) -> None:
        super().reset()
        self._window.reset()

    def routes(self) -> list[Route]:
        x = "/xrpc/"
        return [
            ("POST", x + "com.atproto.server.createSession", self.create_session),
            ("GET", x + "app.bsky.actor.getProfile", self._guard(self.get_profile)),
            ("GET", x + "com.atproto.identity.resolveHandle", self._guard(self.resolve_handle)),
            ("POST", x + "com.atproto.repo.createRecord", self._guard(self.create_record)),
            ("GET", x + "app.bsky.feed.getPosts", self._guard(self.get_posts)),
            ("GET", x + "com.atproto.repo.listRecords", self._guard(self.list_records)),
        ]

    # -- auth ----------------------------------------------------------------------------------------

    def refusal(self, request: Request) -> Response | None:
        token = bearer_token(request)
        if token is None:
            return xrpc_error(401, "AuthMissing", "Authentication Required")
        if _token_subject(token) != DID or self.account.revoked:
            return xrpc_error(401, "AuthenticationRequired", "Token has been revoked")
        return None

    def create_session(self, request: Request, body: bytes) -> Response:
        try:
            payload = parse_json(body)
        except ValueError:
            return xrpc_error(400, "InvalidRequest", "Request body must be JSON")
        account = self.account
        handle = account.handle if isinstance(account, BlueskyAccount) else HANDLE
        identifier = payload.get("identifier") if isinstance(payload, dict) else None
        password = payload.get("password") if isinstance(payload, dict) else None
        if not isinstance(identifier, str) or not isinstance(password, str):
            return xrpc_error(400, "InvalidRequest", 'Input must have the property "identifier"')
        if identifier.lower() not in (handle.lower(), DID) or not password or account.revoked:
            return xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password")
        return json_response(
            {
                "accessJwt": _jwt("com.atproto.appPass", 7200),
                "refreshJwt": _jwt("com.atproto.refresh", 90 * 86400),
                "handle": handle,
                "did": DID,
                "active": True,
            }
        )

    # -- reads ---------------------------------------------------------------------------------------

    def _profile(self) -> dict[str, Any]:
        account = self.account
        assert isinstance(account, BlueskyAccount)
        return {
            "did": DID,
            "handle": account.handle,
            "displayName": "Clarion sandbox",
            "followersCount": account.followers,
            "followsCount": 10,
            "postsCount": len(self.posts.texts()),
        }

    def get_profile(self, request: Request, body: bytes) -> Response:
        actor = request.query_params.get("actor", "")
        account = self.account
        assert isinstance(account, BlueskyAccount)
        if actor.lower() not in (account.handle.lower(), DID):
            return xrpc_error(400, "InvalidRequest", "Profile not found")
        return json_response(self._profile())

    def resolve_handle(self, request: Request, body: bytes) -> Response:
        handle = request.query_params.get("handle", "").lower()
        account = self.account
        assert isinstance(account, BlueskyAccount)
        if handle == account.handle.lower():
            return json_response({"did": DID})
        if handle.endswith(".bsky.social") or handle.endswith(".example.org"):
            return json_response({"did": _did_of(handle)})
        return xrpc_error(400, "InvalidRequest", "Unable to resolve handle")

    def _view(self, post: Record) -> dict[str, Any]:
        account = self.account
        assert isinstance(account, BlueskyAccount)
        return {
            "uri": post["id"],
            "cid": post["cid"],
            "author": {"did": DID, "handle": account.handle, "displayName": "Clarion sandbox"},
            "record": post["record"],
            "indexedAt": post["created_at"],
            "labels": [],
            **post["metrics"],
        }

    def get_posts(self, request: Request, body: bytes) -> Response:
        uris = request.query_params.getlist("uris")
        if not uris or len(uris) > 25:
            return xrpc_error(400, "InvalidRequest", "uris must hold 1 to 25 AT URIs")
        found = [post for uri in uris if (post := self.posts.get(uri)) is not None]
        return json_response({"posts": [self._view(p) for p in found]})

    def list_records(self, request: Request, body: bytes) -> Response:
        query = request.query_params
        if query.get("repo") not in (DID, getattr(self.account, "handle", HANDLE)):
            return xrpc_error(400, "InvalidRequest", f"Could not find repo: {query.get('repo')}")
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            return xrpc_error(400, "InvalidRequest", "limit must be an integer")
        if not 1 <= limit <= 100:
            return xrpc_error(400, "InvalidRequest", "limit must be between 1 and 100")
        posts = self.posts.newest_first() if query.get("collection") == POST else []
        cursor = query.get("cursor")
        if cursor:
            posts = [p for p in posts if p["rkey"] < cursor]
        page = posts[:limit]
        answer: dict[str, Any] = {
            "records": [{"uri": p["id"], "cid": p["cid"], "value": p["record"]} for p in page]
        }
        if len(posts) > limit:
            answer["cursor"] = page[-1]["rkey"]
        return json_response(answer)

    # -- writes --------------------------------------------------------------------------------------

    def _tid(self) -> str:
        with self._lock:
            micros = max(int(time.time() * 1_000_000), self._last_tid + 1)
            self._last_tid = micros
        value = (micros << 10) | 7
        return "".join(_TID_CHARS[(value >> (5 * i)) & 31] for i in reversed(range(13)))

    def create_record(self, request: Request, body: bytes) -> Response:
        try:
            payload = parse_json(body)
        except ValueError:
            return xrpc_error(400, "InvalidRequest", "Request body must be JSON")
        if not isinstance(payload, dict):
            return xrpc_error(400, "InvalidRequest", "Input must be an object")
        if payload.get("repo") not in (DID, getattr(self.account, "handle", HANDLE)):
            return xrpc_error(400, "InvalidRequest", f"Could not find repo: {payload.get('repo')}")
        if payload.get("collection") != POST:
            return xrpc_error(400, "InvalidRequest", "Only app.bsky.feed.post records are emulated")
        record = payload.get("record")
        problem = _invalid_post(record)
        if problem:
            return xrpc_error(400, "InvalidRequest", f"Invalid {POST} record: {problem}")
        assert isinstance(record, dict)
        rkey = self._tid()
        uri = f"at://{DID}/{POST}/{rkey}"
        cid = "bafyrei" + hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:52]
        received_at = utc_now_iso()
        text = str(record["text"])
        self.posts.add(uri, text, received_at, rkey=rkey, cid=cid, record=record)
        self.store.add_messages(
            [
                {
                    "provider": "bluesky",
                    "to": None,
                    "from": None,
                    "subject": None,
                    "text": text,
                    "html": None,
                    "custom_args": None,
                    "tags": [],
                    "status_callback": None,
                    "provider_id": uri,
                    "received_at": received_at,
                    "facets": record.get("facets") or [],
                    "embed": record.get("embed"),
                }
            ]
        )
        return json_response(
            {"uri": uri, "cid": cid, "commit": {"cid": cid, "rev": rkey}, "validationStatus": "valid"}
        )

    # -- faults and headers --------------------------------------------------------------------------

    def _headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {
            "ratelimit-limit": str(LIMIT),
            "ratelimit-remaining": str(max(remaining, 0)),
            "ratelimit-reset": str(math.ceil(reset)),
            "ratelimit-policy": f"{LIMIT};w={WINDOW_SECONDS}",
        }

    def rate_limited(self, retry_after: float) -> Response:
        headers = self._headers(0, time.time() + retry_after)
        return xrpc_error(429, "RateLimitExceeded", "Rate Limit Exceeded", headers)

    def server_error(self, status: int) -> Response:
        if status == 503:
            return xrpc_error(503, "UpstreamFailure", "Service Unavailable")
        return xrpc_error(status, "InternalServerError", "Internal Server Error")

    def not_found(self, request: Request) -> Response:
        return xrpc_error(501, "MethodNotImplemented", "Method Not Implemented")

    def finish(self, request: Request, response: Response) -> Response:
        start, used = self._window.count()
        if "ratelimit-remaining" not in response.headers:
            response.headers.update(self._headers(LIMIT - used, start + WINDOW_SECONDS))
        return response

    # -- simulated recipients ------------------------------------------------------------------------

    def audience_metrics(self, seen: Mapping[str, int]) -> dict[str, int]:
        """Readers like, repost, reply to, quote and bookmark a post."""
        return {
            "likeCount": seen["likes"],
            "repostCount": seen["reposts"],
            "replyCount": seen["replies"],
            "quoteCount": seen["quotes"],
            "bookmarkCount": seen["bookmarks"],
        }


def _invalid_post(record: Any) -> str | None:
    """Why the post lexicon refuses `record`, or None."""
    if not isinstance(record, dict) or record.get("$type") not in (None, POST):
        return "Record must be an app.bsky.feed.post"
    text = record.get("text")
    if not isinstance(text, str):
        return 'Record must have the property "text"'
    if not isinstance(record.get("createdAt"), str):
        return 'Record must have the property "createdAt"'
    if utf8_bytes(text) > MAX_BYTES:
        return f"Record/text must not be longer than {MAX_BYTES} characters"
    if graphemes(text) > MAX_GRAPHEMES:
        return f"Record/text must not be longer than {MAX_GRAPHEMES} graphemes"
    size = utf8_bytes(text)
    for i, facet in enumerate(record.get("facets") or []):
        index = facet.get("index") if isinstance(facet, dict) else None
        start = index.get("byteStart") if isinstance(index, dict) else None
        end = index.get("byteEnd") if isinstance(index, dict) else None
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= size):
            return f"Record/facets/{i}/index must be a byte range inside the text"
    embed = record.get("embed")
    if embed is not None:
        external = embed.get("external") if isinstance(embed, dict) else None
        if not isinstance(external, dict) or not all(
            isinstance(external.get(k), str) for k in ("uri", "title", "description")
        ):
            return "Record/embed/external must have uri, title and description"
    return None
