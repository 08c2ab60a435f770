"""Threads: one post per variant, through Meta's Threads API (Graph API) with httpx (Meta publishes no
maintained Python SDK for Threads).

Credentials come from the environment: THREADS_ACCESS_TOKEN (a long-lived user token with the
`threads_basic`, `threads_content_publish` and `threads_manage_insights` permissions) and optionally
THREADS_USER_ID (default `me`). The token travels in the `Authorization` header, never in a URL.
CLARION_THREADS_URL points the client elsewhere (the sandbox).

A post is made in two calls: a media container (`POST /{user}/threads`, media_type=TEXT), then its
publication (`POST /{user}/threads_publish`). Nothing is visible before the second call, so only a
publication left without an answer is uncertain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx

from clarion.channels.base import (
    AccountCheck,
    Channel,
    ChannelConfig,
    ChannelKind,
    Message,
    Outbound,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Rejected,
    Retryable,
    SendOutcome,
    SendResult,
    Uncertain,
)
from clarion.channels.social import Once, compose_link, http_client, with_empty
from clarion.channels.threads.rules import MAX_CHARACTERS, post_problems, threads_length
from clarion.channels.threads.settings import ThreadsSettings

if TYPE_CHECKING:
    from clarion.channels.reconcile import Found, Lookup

API_VERSION = "v1.0"
THREADS_INTENT = "https://www.threads.net/intent/post"
#: Threads' documented publishing limit: 250 API-published posts per profile in 24 hours.
POSTS_PER_DAY = 250
#: Graph API error codes that mean "slow down" (application, user and business use-case throttles).
RATE_LIMIT_CODES = {4, 17, 32, 613, 80001, 80002, 80004}
#: Graph API error codes that mean "try again" (a transient or unknown server-side problem).
TRANSIENT_CODES = {1, 2}
INVALID_TOKEN = 190
INSIGHTS = ("views", "likes", "replies", "reposts", "quotes", "shares")


class ThreadsConfig(ChannelConfig):
    """`channels.<id>:` for a post on Threads (no `contact` in templates)."""

    provider: Literal["threads"]
    reply_control: Literal["everyone", "accounts_you_follow", "mentioned_only"] = "everyone"


class ThreadsChannel(Channel):
    provider: ClassVar[str] = "threads"
    kind: ClassVar[ChannelKind] = ChannelKind.SOCIAL
    config_model: ClassVar[type[ChannelConfig]] = ThreadsConfig
    settings_model: ClassVar[type[ProviderSettings]] = ThreadsSettings
    emulator_class: ClassVar[str | None] = "clarion.channels.threads.emulator:ThreadsEmulator"
    composes: ClassVar[bool] = True
    max_characters: ClassVar[int] = MAX_CHARACTERS
    listing_delay: ClassVar[float] = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = Once(self._new_http)

    @classmethod
    def size(cls, message: Message, config: ChannelConfig) -> tuple[int, int]:
        return threads_length(message.text), MAX_CHARACTERS

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        return with_empty(post_problems(message.text), message.text)

    @classmethod
    def compose_url(cls, text: str, link: str) -> str:
        """Threads' web intent: opens the signed-in reader's composer with the text and link."""
        return compose_link(cls.provider, THREADS_INTENT, text, link, post_problems)

    # -- the wire ------------------------------------------------------------------------------------

    def _new_http(self) -> httpx.Client:
        settings = self.settings
        assert isinstance(settings, ThreadsSettings)
        return http_client(
            f"{settings.base_url.rstrip('/')}/{API_VERSION}",
            settings.timeout,
            {"Authorization": f"Bearer {settings.access_token.get_secret_value()}"},
        )

    def http(self) -> httpx.Client:
        return self._http.get()

    def warm(self) -> None:
        self.http()

    @property
    def user(self) -> str:
        settings = self.settings
        assert isinstance(settings, ThreadsSettings)
        return settings.user_id

    def request(
        self, what: str, method: str, path: str, *, writes: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """One Graph API call; its errors mapped to ours (see channels/base.py)."""
        try:
            response = self.http().request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Retryable(f"cannot reach Threads: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            if writes:
                raise Uncertain("Threads did not answer in time; the post may have been published") from exc
            raise Retryable(f"Threads did not answer: {type(exc).__name__}") from exc
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        status = response.status_code
        if status < 400 and "error" not in data:
            return data
        raw_error = data.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        code = error.get("code")
        message = str(error.get("message") or response.reason_phrase or status)
        if status == 429 or code in RATE_LIMIT_CODES:
            raise RateLimited(f"Threads rate limit: {message}", "429", _regain_seconds(response))
        if status >= 500 or code in TRANSIENT_CODES:
            raise Retryable(f"Threads server error {status}: {message}", "5xx")
        hint = " (check THREADS_ACCESS_TOKEN)" if code == INVALID_TOKEN else ""
        raise Rejected(
            f"Threads refused to {what} ({status}, code {code}): {message}{hint}", str(code or status)
        )

    # -- sending -------------------------------------------------------------------------------------

    def send(self, batch: Sequence[Outbound]) -> list[SendResult]:
        config = self.config
        assert isinstance(config, ThreadsConfig)
        results = []
        for item in batch:
            try:
                container = self.request(
                    "create the post",
                    "POST",
                    f"/{self.user}/threads",
                    data={
                        "media_type": "TEXT",
                        "text": item.message.text,
                        "reply_control": config.reply_control,
                    },
                )
                published = self.request(
                    "publish the post",
                    "POST",
                    f"/{self.user}/threads_publish",
                    data={"creation_id": str(container["id"])},
                    writes=True,
                )
            except ProviderError as exc:
                results.append(exc.result(item.recipient))
                continue
            except KeyError:
                results.append(Retryable("Threads made no media container").result(item.recipient))
                continue
            post_id = published.get("id")
            if not post_id:
                results.append(
                    Uncertain("Threads published without saying the post's id").result(item.recipient)
                )
                continue
            results.append(SendResult(item.recipient, SendOutcome.SENT, str(post_id)))
        return results

    def public_metrics(self, post_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each post's insights: views, likes, replies, reposts, quotes, shares."""
        found: dict[str, dict[str, int]] = {}
        for post_id in post_ids:
            try:
                data = self.request(
                    "read the post's insights",
                    "GET",
                    f"/{post_id}/insights",
                    params={"metric": ",".join(INSIGHTS)},
                )
            except Rejected:  # deleted since
                continue
            values: dict[str, int] = {}
            for item in data.get("data") or []:
                series = item.get("values") or []
                value = series[0].get("value") if series else (item.get("total_value") or {}).get("value")
                values[str(item.get("name"))] = int(value or 0)
            found[str(post_id)] = {
                "impression_count": values.get("views", 0),
                "like_count": values.get("likes", 0),
                "reply_count": values.get("replies", 0),
                "retweet_count": values.get("reposts", 0),
                "quote_count": values.get("quotes", 0),
                "share_count": values.get("shares", 0),
            }
        return found

    def reconcile(self, lookups: Sequence[Lookup]) -> list[Found]:
        from clarion.channels.threads.reconcile import look_up

        if not lookups:
            return []
        return look_up(self.request, self.user, lookups)

    def verify(self, planned: int) -> list[AccountCheck]:
        """Whose profile the token posts as (`GET /me`), and the planned posts against what is left of the
        profile's 250 posts a day (`threads_publishing_limit`)."""
        try:
            me = self.request("check the token", "GET", "/me", params={"fields": "id,username"})
        except ProviderError as exc:
            return [AccountCheck("credentials", False, exc.message)]
        checks = [
            AccountCheck(
                "credentials", True, f"Threads accepts the token; posts go out as @{me.get('username', '?')}"
            )
        ]
        try:
            limit = self.request(
                "read the publishing quota",
                "GET",
                f"/{self.user}/threads_publishing_limit",
                params={"fields": "quota_usage,config"},
            )
            entries: list[Any] = list(limit.get("data") or [{}])
            entry: dict[str, Any] = entries[0] if isinstance(entries[0], dict) else {}
            config: dict[str, Any] = entry.get("config") or {}
            used = int(entry.get("quota_usage") or 0)
            total = int(config.get("quota_total") or POSTS_PER_DAY)
        except (ProviderError, ValueError, IndexError, AttributeError):
            used, total = 0, POSTS_PER_DAY
        checks.append(
            AccountCheck(
                "quota",
                planned <= total - used,
                f"{planned} posts planned; {total - used} of the profile's {total} a day are left",
            )
        )
        return checks


def _regain_seconds(response: httpx.Response) -> float | None:
    """How long Meta says to wait: `estimated_time_to_regain_access` (minutes) in
    X-Business-Use-Case-Usage, else None (the engine backs off)."""
    raw = response.headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
        minutes = max(
            int(entry.get("estimated_time_to_regain_access") or 0)
            for entries in usage.values()
            for entry in entries
        )
    except (ValueError, TypeError, AttributeError):
        return None
    return float(minutes * 60) if minutes else None
