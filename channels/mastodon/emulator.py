"""Mastodon in the sandbox: an instance's REST API as Mastodon.py calls it.

`POST /api/v1/statuses` (form or JSON; counted by Mastodon's own rules against the instance's
`max_characters`; a repeated `Idempotency-Key` answers the status it already made),
`GET /api/v1/statuses/{id}` (counts, settable at `PUT /_sandbox/mastodon/metrics/{id}`),
`GET /api/v1/accounts/verify_credentials`, `GET /api/v2/instance` (the limits pre-flight reads; change
them with `PUT /_sandbox/accounts {"mastodon": {"max_characters": 300}}`) and
`GET /api/v1/accounts/{id}/statuses` (newest first, `max_id`, `limit`, a `Link` header).

Errors are Mastodon's `{"error": "..."}`: 401 "The access token is invalid", 422 "Validation failed: Text
character limit of 500 exceeded", 429 "Too many requests". Every answer carries `X-RateLimit-Limit`,
`-Remaining` and `-Reset` (an ISO 8601 time, as Mastodon sends it), over a 5-minute window.
"""

from __future__ import annotations

import html
import json
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
    FixedWindow,
    Record,
    Route,
    SocialEmulator,
    Store,
    bearer_token,
    json_response,
    utc_now_iso,
)
from clarion.channels.mastodon.rules import mastodon_length
from clarion.channels.text import find_urls

TOKEN = "sandbox-mastodon-token"
INSTANCE = "mastodon.sandbox.example"
ACCOUNT_ID = "109000000000000001"
METRICS = ("favourites_count", "reblogs_count", "replies_count", "quotes_count")
WINDOW_SECONDS = 300
LIMIT = 300


def mastodon_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def _reset_header(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def status_html(text: str) -> str:
    """The text as Mastodon renders a local status: escaped, links wrapped, line breaks as <br />."""
    out, position = [], 0
    for url in find_urls(text):
        out.append(html.escape(text[position : url.start]))
        scheme, rest = url.url.split("://", 1)
        out.append(
            f'<a href="{html.escape(url.url)}" rel="nofollow noopener" target="_blank">'
            f'<span class="invisible">{scheme}://</span><span class="ellipsis">{html.escape(rest[:30])}'
            f'</span><span class="invisible">{html.escape(rest[30:])}</span></a>'
        )
        position = url.end
    out.append(html.escape(text[position:]))
    paragraphs = "".join(out).split("\n\n")
    return "".join(f"<p>{p.replace(chr(10), '<br />')}</p>" for p in paragraphs)


@dataclass(frozen=True)
class MastodonAccount(Account):
    username: str = "clarion"
    followers: int = 800
    max_characters: int = 500
    characters_reserved_per_url: int = 23


class MastodonEmulator(SocialEmulator):
    name: ClassVar[str] = "mastodon"
    label: ClassVar[str] = "Statuses (Mastodon)"
    prefixes: ClassVar[tuple[str, ...]] = ("/api/v1/", "/api/v2/")
    account_type: ClassVar[type[Account]] = MastodonAccount
    credentials: ClassVar[dict[str, str]] = {"MASTODON_ACCESS_TOKEN": TOKEN}
    url_variable: ClassVar[str | None] = "MASTODON_INSTANCE"
    metric_names: ClassVar[tuple[str, ...]] = METRICS

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self._window = FixedWindow(WINDOW_SECONDS)
        self._keys: dict[str, str] = {}  # Idempotency-Key -> status id
        self._last_id = 0

    def reset(self) -> None:
        super().reset()
        self._window.reset()
        with self._lock:
            self._keys.clear()

    def routes(self) -> list[Route]:
        return [
            ("POST", "/api/v1/statuses", self._guard(self.create_status)),
            ("GET", "/api/v1/statuses/{status_id}", self._guard(self.get_status)),
            ("GET", "/api/v1/accounts/verify_credentials", self._guard(self.verify_credentials)),
            ("GET", "/api/v1/accounts/{account_id}/statuses", self._guard(self.account_statuses)),
            ("GET", "/api/v2/instance", self.instance),
        ]

    def refusal(self, request: Request) -> Response | None:
        if not bearer_token(request) or self.account.revoked:  # any token, as the sandbox takes
            return mastodon_error(401, "The access token is invalid")
        return None

    # -- the account and the instance ----------------------------------------------------------------

    def _settings(self) -> MastodonAccount:
        account = self.account
        assert isinstance(account, MastodonAccount)
        return account

    def _account_json(self) -> dict[str, Any]:
        account = self._settings()
        return {
            "id": ACCOUNT_ID,
            "username": account.username,
            "acct": account.username,
            "display_name": "Clarion sandbox",
            "url": f"https://{INSTANCE}/@{account.username}",
            "followers_count": account.followers,
            "following_count": 5,
            "statuses_count": len(self.posts.texts()),
            "created_at": "2026-01-01T00:00:00.000Z",
            "note": "",
            "avatar": "",
            "header": "",
            "locked": False,
            "bot": True,
            "emojis": [],
            "fields": [],
        }

    def verify_credentials(self, request: Request, body: bytes) -> Response:
        return json_response(self._account_json())

    def instance(self, request: Request, body: bytes) -> Response:
        account = self._settings()
        return json_response(
            {
                "domain": INSTANCE,
                "title": "Clarion sandbox",
                "version": "4.5.0",
                "source_url": "https://github.com/mastodon/mastodon",
                "description": "A Mastodon instance emulated by Clarion's sandbox",
                "configuration": {
                    "urls": {"streaming": f"wss://{INSTANCE}"},
                    "accounts": {"max_featured_tags": 10},
                    "statuses": {
                        "max_characters": account.max_characters,
                        "max_media_attachments": 4,
                        "characters_reserved_per_url": account.characters_reserved_per_url,
                    },
                },
                "registrations": {"enabled": False, "approval_required": False, "message": None},
                "contact": {"email": "admin@example.org"},
                "rules": [],
            }
        )

    # -- statuses ------------------------------------------------------------------------------------

    def _status_json(self, post: Record) -> dict[str, Any]:
        return {
            "id": post["id"],
            "created_at": post["created_at"].replace("+00:00", "Z"),
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": bool(post["spoiler_text"]),
            "spoiler_text": post["spoiler_text"],
            "visibility": post["visibility"],
            "language": post["language"],
            "uri": f"https://{INSTANCE}/users/clarion/statuses/{post['id']}",
            "url": f"https://{INSTANCE}/@clarion/{post['id']}",
            "content": status_html(str(post["text"])),
            "account": self._account_json(),
            "media_attachments": [],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "reblog": None,
            "card": None,
            "poll": None,
            "application": {"name": "Clarion", "website": None},
            **post["metrics"],
        }

    def _next_id(self) -> str:
        with self._lock:
            stamp = int(time.time() * 1000) << 16
            self._last_id = max(stamp, self._last_id + 1)
            return str(self._last_id)

    def create_status(self, request: Request, body: bytes) -> Response:
        form = _form(request, body)
        if form is None:
            return mastodon_error(400, "Unparseable request body")
        key = request.headers.get("idempotency-key")
        if key:
            with self._lock:
                known = self._keys.get(key)
            if known is not None and (post := self.posts.get(known)) is not None:
                return json_response(self._status_json(post))
        text = str(form.get("status") or "")
        spoiler = str(form.get("spoiler_text") or "")
        if not text.strip():
            return mastodon_error(422, "Validation failed: Text can't be blank")
        account = self._settings()
        length = mastodon_length(text, spoiler, account.characters_reserved_per_url)
        if length > account.max_characters:
            return mastodon_error(
                422, f"Validation failed: Text character limit of {account.max_characters} exceeded"
            )
        visibility = str(form.get("visibility") or "public")
        if visibility not in ("public", "unlisted", "private", "direct"):
            return mastodon_error(422, "Validation failed: Visibility is not included in the list")
        status_id = self._next_id()
        received_at = utc_now_iso()
        self.posts.add(
            status_id,
            text,
            received_at,
            spoiler_text=spoiler,
            visibility=visibility,
            language=form.get("language") or None,
        )
        if key:
            with self._lock:
                self._keys[key] = status_id
        self.store.add_messages(
            [
                {
                    "provider": "mastodon",
                    "to": None,
                    "from": None,
                    "subject": spoiler or None,
                    "text": text,
                    "html": None,
                    "custom_args": None,
                    "tags": [],
                    "status_callback": None,
                    "provider_id": status_id,
                    "received_at": received_at,
                    "idempotency_key": key,
                }
            ]
        )
        post = self.posts.get(status_id)
        assert post is not None
        return json_response(self._status_json(post))

    def get_status(self, request: Request, body: bytes) -> Response:
        post = self.posts.get(request.path_params["status_id"])
        if post is None:
            return mastodon_error(404, "Record not found")
        return json_response(self._status_json(post))

    def account_statuses(self, request: Request, body: bytes) -> Response:
        if request.path_params["account_id"] != ACCOUNT_ID:
            return mastodon_error(404, "Record not found")
        query = request.query_params
        try:
            limit = min(int(query.get("limit") or 20), 40)
        except ValueError:
            return mastodon_error(400, "limit must be an integer")
        posts = self.posts.newest_first()
        max_id = query.get("max_id")
        if max_id:
            posts = [p for p in posts if int(p["id"]) < int(max_id)]
        page = posts[:limit]
        headers = {}
        if len(posts) > limit:
            base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
            headers["Link"] = f'<{base}?limit={limit}&max_id={page[-1]["id"]}>; rel="next"'
        return json_response([self._status_json(p) for p in page], headers=headers)

    # -- faults and headers --------------------------------------------------------------------------

    def rate_limited(self, retry_after: float) -> Response:
        headers = {
            "X-RateLimit-Limit": str(LIMIT),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": _reset_header(time.time() + retry_after),
        }
        return mastodon_error(429, "Too many requests", headers)

    def server_error(self, status: int) -> Response:
        return mastodon_error(status, "We're sorry, but something went wrong")

    def not_found(self, request: Request) -> Response:
        return mastodon_error(404, "Record not found")

    def finish(self, request: Request, response: Response) -> Response:
        start, used = self._window.count()
        if "x-ratelimit-remaining" not in response.headers:
            response.headers["X-RateLimit-Limit"] = str(LIMIT)
            response.headers["X-RateLimit-Remaining"] = str(max(LIMIT - used, 0))
            response.headers["X-RateLimit-Reset"] = _reset_header(start + WINDOW_SECONDS)
        return response

    # -- simulated recipients ------------------------------------------------------------------------

    def audience_metrics(self, seen: Mapping[str, int]) -> dict[str, int]:
        """A status's readers favourite, boost, reply to and quote it."""
        return {
            "favourites_count": seen["likes"],
            "reblogs_count": seen["reposts"],
            "replies_count": seen["replies"],
            "quotes_count": seen["quotes"],
        }


def _form(request: Request, body: bytes) -> dict[str, str] | None:
    """The request's parameters, form-encoded (as Mastodon.py sends them) or JSON."""
    if "json" in request.headers.get("content-type", ""):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    return {k: v[-1] for k, v in parsed.items()}
