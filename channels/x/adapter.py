"""X (formerly Twitter): one post per variant, through tweepy's API v2 client.

Credentials come from the environment: X_ACCESS_TOKEN (an OAuth 2.0 user-context token), or the four
OAuth 1.0a keys X_API_KEY, X_API_SECRET, X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

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
    retry_after_seconds,
    seconds_until,
)
from clarion.channels.x.rules import X_MAX_WEIGHTED_LENGTH, x_weighted_length
from clarion.channels.x.settings import X_API, XSettings

if TYPE_CHECKING:
    from clarion.channels.reconcile import Found, Lookup


#: X's free API tier allows this many posts per 24 hours (documented limit, late 2026).
X_FREE_TIER_POSTS_PER_DAY = 17

X_INTENT = "https://x.com/intent/post"
# tweepy logs request headers (the bearer token) at DEBUG: keep its logger above that.
logging.getLogger("tweepy").setLevel(logging.INFO)
# requests-oauthlib and oauthlib (OAuth 1.0a signing) log the consumer key, the access token and the signed
# Authorization header at DEBUG (found by tests/flows/test_secrets.py)
logging.getLogger("requests_oauthlib").setLevel(logging.INFO)
logging.getLogger("oauthlib").setLevel(logging.INFO)


class XConfig(ChannelConfig):
    """`channels.<id>:` for a post on X. The post goes to everyone, so templates see no `contact`."""

    provider: Literal["x"]


class _Rebase(HTTPAdapter):
    """Sends tweepy's requests, built for api.twitter.com, to another host (the sandbox), with a timeout.

    tweepy hard-codes its host; OAuth 1.0a signs the real URL before this adapter sees the request,
    which is what X itself would check.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self._base = urlsplit(base_url)
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if request.url and self._base.netloc != urlsplit(X_API).netloc:
            parts = urlsplit(request.url)
            request.url = urlunsplit(parts._replace(scheme=self._base.scheme, netloc=self._base.netloc))
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


class XChannel(Channel):
    provider: ClassVar[str] = "x"
    preload: ClassVar[tuple[str, ...]] = ("tweepy", "twitter_text")
    kind: ClassVar[ChannelKind] = ChannelKind.SOCIAL
    config_model: ClassVar[type[ChannelConfig]] = XConfig
    max_weighted_length: ClassVar[int] = X_MAX_WEIGHTED_LENGTH
    webhooks_module: ClassVar[str | None] = "clarion.channels.x.webhooks"
    emulator_class: ClassVar[str | None] = "clarion.channels.x.emulator:XEmulator"
    settings_model: ClassVar[type[ProviderSettings]] = XSettings
    composes: ClassVar[bool] = True
    listing_delay: ClassVar[float] = 60.0

    @classmethod
    def compose_url(cls, text: str, link: str) -> str:
        """X's web intent: opens the signed-in user's composer with `text` and `link`, for them to post."""
        post = f"{text.strip()} {link}"
        length = x_weighted_length(post)
        if length > cls.max_weighted_length:
            raise ValueError(
                f"share_x: the pre-filled post is {length} weighted characters with its link, over X's "
                f"{cls.max_weighted_length}; shorten the text"
            )
        return f"{X_INTENT}?{urlencode({'text': text.strip(), 'url': link}, quote_via=quote)}"

    def direct_message(self, participant_id: str, text: str) -> SendResult:
        """One DM to one account (a responder's reply); the result's provider_id is the dm_event_id."""
        from clarion.channels.x.dm import send_direct_message

        assert isinstance(self.settings, XSettings)
        try:
            event_id = send_direct_message(self.client(), participant_id, text, self.settings.oauth1)
        except ProviderError as exc:
            return exc.result(participant_id)
        return SendResult(participant_id, SendOutcome.SENT, event_id)

    def direct_message_events(self, max_results: int = 100) -> dict[str, Any]:
        """The newest page of the account's DM events (sent and received), for polling."""
        from clarion.channels.x.dm import read_direct_message_events

        assert isinstance(self.settings, XSettings)
        return read_direct_message_events(self.client(), max_results, self.settings.oauth1)

    @classmethod
    def measure(cls, message: Message) -> dict[str, Any]:
        return {"weighted_length": x_weighted_length(message.text)}

    @classmethod
    def size(cls, message: Message, config: ChannelConfig) -> tuple[int, int]:
        length = message.metrics.get("weighted_length", x_weighted_length(message.text))
        return int(length), cls.max_weighted_length

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        problems = []
        length = message.metrics.get("weighted_length", x_weighted_length(message.text))
        if length > cls.max_weighted_length:
            problems.append(
                (
                    "x_too_long",
                    f"post is {length} weighted characters, over X's limit of {cls.max_weighted_length} "
                    f"(URLs count 23, emoji and CJK count 2); shorten it",
                )
            )
        if not message.text.strip():
            problems.append(("empty", "post text is empty"))
        return problems

    # -- sending -----------------------------------------------------------------------------------

    def client(self) -> Any:
        import tweepy

        settings = self.settings
        assert isinstance(settings, XSettings)
        if settings.oauth1:
            assert settings.api_key and settings.api_secret and settings.access_token_secret
            client = tweepy.Client(
                consumer_key=settings.api_key.get_secret_value(),
                consumer_secret=settings.api_secret.get_secret_value(),
                access_token=settings.access_token.get_secret_value(),
                access_token_secret=settings.access_token_secret.get_secret_value(),
                wait_on_rate_limit=False,
            )
        else:
            client = tweepy.Client(
                bearer_token=settings.access_token.get_secret_value(), wait_on_rate_limit=False
            )
        adapter = _Rebase(settings.base_url, settings.timeout)
        client.session.mount("https://", adapter)
        client.session.mount("http://", adapter)
        return client

    def warm(self) -> None:
        self.client()

    def send(self, batch: Sequence[Outbound]) -> list[SendResult]:
        client = self.client()
        assert isinstance(self.settings, XSettings)
        results = []
        for item in batch:
            try:
                response = self._post(client, item.message.text, self.settings.oauth1)
            except ProviderError as exc:
                results.append(exc.result(item.recipient))
                continue
            results.append(SendResult(item.recipient, SendOutcome.SENT, str(response.data["id"])))
        return results

    def public_metrics(self, post_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each post's public_metrics (impressions, likes, reposts, replies, quotes, bookmarks), 100 per call.

        Raises a ProviderError subclass like `send`; a post X no longer returns is left out.
        """
        import tweepy

        client = self.client()
        found: dict[str, dict[str, int]] = {}
        for start in range(0, len(post_ids), 100):
            chunk = list(post_ids[start : start + 100])
            try:
                response = client.get_tweets(ids=chunk, tweet_fields=["public_metrics"], user_auth=False)
            except tweepy.TooManyRequests as exc:
                wait = seconds_until(exc.response.headers.get("x-rate-limit-reset"), time.time())
                raise RateLimited(f"X rate limit: {_detail(exc)}", "429", wait) from exc
            except tweepy.HTTPException as exc:
                raise Retryable(f"X refused the metrics lookup: {_detail(exc)}") from exc
            except requests.RequestException as exc:
                raise Retryable(f"cannot reach X: {type(exc).__name__}") from exc
            for post in response.data or []:
                metrics = post.public_metrics or {}
                found[str(post.id)] = {str(k): int(v) for k, v in metrics.items()}
        return found

    def reconcile(self, lookups: Sequence[Lookup]) -> list[Found]:
        """Each uncertain post looked for among the account's recent posts (channels/x/reconcile.py)."""
        from clarion.channels.x.reconcile import look_up

        assert isinstance(self.settings, XSettings)
        return look_up(self.client(), self.settings.oauth1, lookups)

    def verify(self, planned: int) -> list[AccountCheck]:
        """Whose account the token posts as (GET /2/users/me), and the planned posts against the free
        API tier's daily allowance."""
        import tweepy

        assert isinstance(self.settings, XSettings)
        try:
            me = self.client().get_me(user_auth=self.settings.oauth1)
        except tweepy.HTTPException as exc:
            status = exc.response.status_code
            why = (
                f"X refused the token (HTTP {status}): check X_ACCESS_TOKEN (and the OAuth 1.0a keys)"
                if status in (401, 403)
                else f"X answered HTTP {status} to the token check"
            )
            return [AccountCheck("credentials", False, why)]
        except requests.RequestException as exc:
            return [AccountCheck("credentials", False, f"cannot reach X: {type(exc).__name__}")]
        username = getattr(me.data, "username", None) or "?"
        ok = planned <= X_FREE_TIER_POSTS_PER_DAY
        return [
            AccountCheck("credentials", True, f"X accepts the token; posts go out as @{username}"),
            AccountCheck(
                "quota",
                ok,
                f"{planned} posts planned; X's free tier allows {X_FREE_TIER_POSTS_PER_DAY} a day",
            ),
        ]

    @staticmethod
    def _post(client: Any, text: str, user_auth: bool) -> Any:
        import tweepy

        try:
            return client.create_tweet(text=text, user_auth=user_auth)
        except tweepy.TooManyRequests as exc:
            headers: Mapping[str, str] = exc.response.headers
            wait = retry_after_seconds(headers.get("retry-after")) or seconds_until(
                headers.get("x-rate-limit-reset"), time.time()
            )
            raise RateLimited(f"X rate limit: {_detail(exc)}", "429", wait) from exc
        except tweepy.TwitterServerError as exc:
            raise Retryable(f"X server error {exc.response.status_code}: {_detail(exc)}", "5xx") from exc
        except tweepy.HTTPException as exc:
            status = exc.response.status_code
            raise Rejected(f"X refused the post ({status}): {_detail(exc)}", str(status)) from exc
        except requests.ConnectTimeout as exc:
            raise Retryable("cannot reach X: connection timed out") from exc
        except requests.Timeout as exc:
            raise Uncertain("X did not answer in time; the post may have been published") from exc
        except requests.ConnectionError as exc:
            if "NewConnectionError" in repr(exc) or "ConnectionRefused" in repr(exc):
                raise Retryable(f"cannot reach X: {type(exc).__name__}") from exc
            raise Uncertain("connection to X dropped mid-request; the post may have been published") from exc


def _detail(exc: Any) -> str:
    """X's own explanation: the problem `detail`, else its error messages, else the status text."""
    try:
        body = exc.response.json()
    except ValueError:
        return str(exc.response.reason or "")
    if isinstance(body, dict):
        if body.get("detail"):
            return str(body["detail"])
        errors = body.get("errors") or []
        if errors:
            return "; ".join(str(e.get("message", e)) for e in errors)
    return str(exc.response.reason or "")
