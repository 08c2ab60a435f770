"""LinkedIn: one post per variant on an organisation's page, through LinkedIn's REST Posts API with httpx
(LinkedIn publishes no maintained Python SDK).

Credentials come from the environment: LINKEDIN_ACCESS_TOKEN (a 3-legged OAuth token of a page
administrator with the `w_organization_social` and `r_organization_social` scopes) and
LINKEDIN_ORGANIZATION (the page's numeric id, or its `urn:li:organization:<id>`). LINKEDIN_VERSION picks
the API version (`LinkedIn-Version: YYYYMM`); CLARION_LINKEDIN_URL points the client elsewhere (the sandbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

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
)
from clarion.channels.linkedin.rules import (
    MAX_CHARACTERS,
    escape_little_text,
    linkedin_length,
    post_problems,
)
from clarion.channels.linkedin.settings import LinkedInSettings
from clarion.channels.social import Once, http_client, with_empty

if TYPE_CHECKING:
    from clarion.channels.reconcile import Found, Lookup

#: LinkedIn's documented daily limit of posts created per member (the page's administrator).
POSTS_PER_DAY = 150


class ArticleCard(BaseModel):
    """The article preview under the post (`content.article`), linking the CTA."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, description="Default: the post's text without its link.")
    description: str = ""


class LinkedInConfig(ChannelConfig):
    """`channels.<id>:` for a post on an organisation's LinkedIn page (no `contact` in templates)."""

    provider: Literal["linkedin"]
    visibility: Literal["PUBLIC", "LOGGED_IN"] = "PUBLIC"
    card: ArticleCard | None = Field(default_factory=ArticleCard, description="null for no preview.")


class LinkedInChannel(Channel):
    provider: ClassVar[str] = "linkedin"
    kind: ClassVar[ChannelKind] = ChannelKind.SOCIAL
    config_model: ClassVar[type[ChannelConfig]] = LinkedInConfig
    settings_model: ClassVar[type[ProviderSettings]] = LinkedInSettings
    emulator_class: ClassVar[str | None] = "clarion.channels.linkedin.emulator:LinkedInEmulator"
    max_characters: ClassVar[int] = MAX_CHARACTERS
    listing_delay: ClassVar[float] = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = Once(self._new_http)

    @classmethod
    def size(cls, message: Message, config: ChannelConfig) -> tuple[int, int]:
        return linkedin_length(message.text), MAX_CHARACTERS

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        return with_empty(post_problems(message.text), message.text)

    # -- the wire ------------------------------------------------------------------------------------

    def _new_http(self) -> httpx.Client:
        settings = self.settings
        assert isinstance(settings, LinkedInSettings)
        return http_client(
            settings.base_url,
            settings.timeout,
            {
                "Authorization": f"Bearer {settings.access_token.get_secret_value()}",
                "LinkedIn-Version": settings.version,
                "X-Restli-Protocol-Version": "2.0.0",
            },
        )

    def http(self) -> httpx.Client:
        return self._http.get()

    def warm(self) -> None:
        self.http()

    def request(
        self, what: str, method: str, path: str, *, writes: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One call to LinkedIn's REST API; its errors mapped to ours (see channels/base.py)."""
        try:
            response = self.http().request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise Retryable(f"cannot reach LinkedIn: {type(exc).__name__}") from exc
        except httpx.ConnectTimeout as exc:
            raise Retryable("cannot reach LinkedIn: connection timed out") from exc
        except httpx.TransportError as exc:
            if writes:
                raise Uncertain("LinkedIn did not answer in time; the post may have been published") from exc
            raise Retryable(f"LinkedIn did not answer: {type(exc).__name__}") from exc
        status = response.status_code
        if status < 400:
            return response
        detail = _detail(response)
        if status == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            raise RateLimited(f"LinkedIn rate limit: {detail}", "429", wait)
        if status >= 500:
            raise Retryable(f"LinkedIn server error {status}: {detail}", "5xx")
        hint = " (check LINKEDIN_ACCESS_TOKEN)" if status == 401 else ""
        raise Rejected(f"LinkedIn refused to {what} ({status}): {detail}{hint}", str(status))

    # -- sending -------------------------------------------------------------------------------------

    def body(self, message: Message) -> dict[str, Any]:
        """The Posts API's request for one post: commentary in little text, the CTA as an article."""
        config, settings = self.config, self.settings
        assert isinstance(config, LinkedInConfig) and isinstance(settings, LinkedInSettings)
        body: dict[str, Any] = {
            "author": settings.organization,
            "commentary": escape_little_text(message.text),
            "visibility": config.visibility,
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        if config.card is not None and message.link:
            title = config.card.title or message.text.replace(message.link, "").strip() or message.link
            article = {"source": message.link, "title": title[:400]}
            if config.card.description:
                article["description"] = config.card.description
            body["content"] = {"article": article}
        return body

    def send(self, batch: Sequence[Outbound]) -> list[SendResult]:
        results = []
        for item in batch:
            try:
                response = self.request(
                    "post", "POST", "/rest/posts", json=self.body(item.message), writes=True
                )
            except ProviderError as exc:
                results.append(exc.result(item.recipient))
                continue
            post_id = response.headers.get("x-restli-id") or response.headers.get("x-linkedin-id")
            if not post_id:
                results.append(
                    Uncertain("LinkedIn accepted the post without saying its id").result(item.recipient)
                )
                continue
            results.append(SendResult(item.recipient, SendOutcome.SENT, post_id))
        return results

    def public_metrics(self, post_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each post's lifetime statistics (organizationalEntityShareStatistics): impressions, reactions,
        comments, reposts, clicks."""
        settings = self.settings
        assert isinstance(settings, LinkedInSettings)
        found: dict[str, dict[str, int]] = {}
        for kind in ("share", "ugcPost"):
            ids = [p for p in post_ids if p.startswith(f"urn:li:{kind}:")]
            for start in range(0, len(ids), 20):
                listed = ",".join(quote(p, safe="") for p in ids[start : start + 20])
                query = (
                    f"q=organizationalEntity&organizationalEntity={quote(settings.organization, safe='')}"
                    f"&{kind}s=List({listed})"
                )
                response = self.request(
                    "read the posts' statistics", "GET", f"/rest/organizationalEntityShareStatistics?{query}"
                )
                for element in _json(response).get("elements") or []:
                    stats = element.get("totalShareStatistics") or {}
                    post = element.get(kind) or element.get("share") or element.get("ugcPost")
                    if post:
                        found[str(post)] = {
                            "impression_count": int(stats.get("impressionCount") or 0),
                            "like_count": int(stats.get("likeCount") or 0),
                            "reply_count": int(stats.get("commentCount") or 0),
                            "retweet_count": int(stats.get("shareCount") or 0),
                            "click_count": int(stats.get("clickCount") or 0),
                        }
        return found

    def reconcile(self, lookups: Sequence[Lookup]) -> list[Found]:
        from clarion.channels.linkedin.reconcile import look_up

        if not lookups:
            return []
        settings = self.settings
        assert isinstance(settings, LinkedInSettings)
        return look_up(self.request, settings.organization, lookups)

    def verify(self, planned: int) -> list[AccountCheck]:
        """The token can read the page (GET /rest/organizations/{id}), whose name the posts go out under,
        and the planned posts against LinkedIn's daily limit per member."""
        settings = self.settings
        assert isinstance(settings, LinkedInSettings)
        number = settings.organization.rsplit(":", 1)[1]
        try:
            page = _json(self.request("read the page", "GET", f"/rest/organizations/{number}"))
        except ProviderError as exc:
            return [AccountCheck("credentials", False, exc.message)]
        name = page.get("localizedName") or page.get("vanityName") or settings.organization
        return [
            AccountCheck("credentials", True, f"LinkedIn accepts the token; posts go out as the page {name}"),
            AccountCheck(
                "quota",
                planned <= POSTS_PER_DAY,
                f"{planned} posts planned; LinkedIn allows {POSTS_PER_DAY} a day",
            ),
        ]


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _detail(response: httpx.Response) -> str:
    """LinkedIn's own `message` (and service error code), else the status text."""
    data = _json(response)
    message = data.get("message")
    if message:
        code = data.get("serviceErrorCode")
        return f"{message} (serviceErrorCode {code})" if code is not None else str(message)
    return response.reason_phrase or str(response.status_code)
