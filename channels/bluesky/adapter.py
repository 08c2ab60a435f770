"""Bluesky: one post per variant, through the `atproto` SDK (AT Protocol XRPC).

Credentials come from the environment: BLUESKY_HANDLE (e.g. team.example.org) and BLUESKY_APP_PASSWORD (an
app password made in Bluesky's settings, never the account's main password). CLARION_BLUESKY_URL is the
account's PDS or entryway (default https://bsky.social). The session is made once per adapter
(createSession is itself rate limited: 30 per 5 minutes) and refreshed by the SDK.

Links in the text become link facets (UTF-8 byte offsets, found by the SDK's facet detection; mentions are
resolved to DIDs), and the post carries a link card (`app.bsky.embed.external`) for the call to action.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

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
    SendOutcome,
    SendResult,
)
from clarion.channels.bluesky.calls import call as _call
from clarion.channels.bluesky.rules import MAX_GRAPHEMES, post_problems
from clarion.channels.bluesky.settings import BlueskySettings
from clarion.channels.social import compose_link, with_empty
from clarion.channels.text import graphemes

if TYPE_CHECKING:
    from clarion.channels.reconcile import Found, Lookup

BLUESKY_INTENT = "https://bsky.app/intent/compose"
#: The PDS's documented write limits: 5,000 points an hour and 35,000 a day; a created record costs 3.
POSTS_PER_HOUR = 5000 // 3
POSTS_PER_DAY = 35000 // 3
# httpx logs each request line at INFO; the SDK logs nothing secret, but keep both quiet
logging.getLogger("httpx").setLevel(logging.WARNING)


class LinkCard(BaseModel):
    """The link card under the post (`app.bsky.embed.external`): Bluesky's apps show it as the CTA."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, description="Default: the post's text without its link.")
    description: str = ""


class BlueskyConfig(ChannelConfig):
    """`channels.<id>:` for a post on Bluesky. The post goes to everyone, so templates see no `contact`."""

    provider: Literal["bluesky"]
    card: LinkCard | None = Field(
        default_factory=LinkCard, description="The link card for the CTA; null for none."
    )
    langs: list[str] = Field(default_factory=lambda: ["en"], max_length=3)


class BlueskyChannel(Channel):
    provider: ClassVar[str] = "bluesky"
    preload: ClassVar[tuple[str, ...]] = (
        "atproto",
        "atproto_client.request",
        "atproto_client.utils.facet_detection",
    )
    kind: ClassVar[ChannelKind] = ChannelKind.SOCIAL
    config_model: ClassVar[type[ChannelConfig]] = BlueskyConfig
    settings_model: ClassVar[type[ProviderSettings]] = BlueskySettings
    emulator_class: ClassVar[str | None] = "clarion.channels.bluesky.emulator:BlueskyEmulator"
    composes: ClassVar[bool] = True
    max_graphemes: ClassVar[int] = MAX_GRAPHEMES
    listing_delay: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._client: Any = None

    # -- rules ---------------------------------------------------------------------------------------

    @classmethod
    def size(cls, message: Message, config: ChannelConfig) -> tuple[int, int]:
        return graphemes(message.text), MAX_GRAPHEMES

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        return with_empty(post_problems(message.text), message.text)

    @classmethod
    def compose_url(cls, text: str, link: str) -> str:
        """Bluesky's compose intent: opens the signed-in reader's composer with the text and link."""
        return compose_link(cls.provider, BLUESKY_INTENT, text, link, post_problems)

    # -- the session ---------------------------------------------------------------------------------

    def warm(self) -> None:
        """Sign in before the launch moment, so the first post is one request; a refusal is reported
        by the sends (and by pre-flight), not here."""
        with contextlib.suppress(ProviderError):
            self.client()
        self._record("warm https://example.org", "https://example.org")  # builds the SDK's models once

    def _record(self, text: str, link: str) -> Any:
        """The post's record as `send_post` makes it: its facets (links, mentions resolved to DIDs when
        signed in) and the link card."""
        from atproto import models
        from atproto_client.utils import facet_detection

        config = self.config
        assert isinstance(config, BlueskyConfig)
        client = self._client
        facets = (
            _call("detect the post's links", lambda: client.detect_facets(text))
            if client is not None
            else facet_detection.detect_facets(text)
        )
        embed = None
        if config.card is not None and link:
            title = config.card.title or text.replace(link, "").strip() or link
            embed = models.AppBskyEmbedExternal.Main(
                external=models.AppBskyEmbedExternal.External(
                    uri=link, title=title, description=config.card.description
                )
            )
        return models.AppBskyFeedPost.Record(
            text=text,
            created_at="2026-01-01T00:00:00Z",
            facets=facets or None,
            embed=embed,
            langs=config.langs,
        )

    def client(self) -> Any:
        """The signed-in SDK client (createSession once); a ProviderError when Bluesky refuses."""
        from atproto import Client
        from atproto_client.request import Request

        with self._lock:
            if self._client is not None:
                return self._client
            settings = self.settings
            assert isinstance(settings, BlueskySettings)
            # no idle connections kept: nothing is left open when the adapter goes
            limits = httpx.Limits(max_keepalive_connections=0)
            client = Client(settings.base_url, request=Request(timeout=settings.timeout, limits=limits))
            _call(
                "sign in",
                lambda: client.login(settings.handle, settings.app_password.get_secret_value()),
                login=True,
            )
            self._client = client
            return client

    # -- sending -------------------------------------------------------------------------------------

    def send(self, batch: Sequence[Outbound]) -> list[SendResult]:
        results = []
        for item in batch:
            try:
                uri = self._post(item.message)
            except ProviderError as exc:
                results.append(exc.result(item.recipient))
                continue
            results.append(SendResult(item.recipient, SendOutcome.SENT, uri))
        return results

    def _post(self, message: Message) -> str:
        client = self.client()
        record = self._record(message.text, message.link)
        response = _call(
            "post",
            lambda: client.send_post(
                record.text, facets=record.facets, embed=record.embed, langs=record.langs
            ),
            writes=True,
        )
        return str(response.uri)

    def public_metrics(self, post_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each post's counts (`app.bsky.feed.getPosts`, 25 a call): likes, reposts, replies, quotes,
        bookmarks. Bluesky publishes no impressions."""
        client = self.client()
        found: dict[str, dict[str, int]] = {}
        for start in range(0, len(post_ids), 25):
            chunk = list(post_ids[start : start + 25])
            response = _call("read the posts' counts", lambda c=chunk: client.get_posts(c))
            for post in response.posts:
                found[str(post.uri)] = {
                    "like_count": int(post.like_count or 0),
                    "retweet_count": int(post.repost_count or 0),
                    "reply_count": int(post.reply_count or 0),
                    "quote_count": int(post.quote_count or 0),
                    "bookmark_count": int(post.bookmark_count or 0),
                }
        return found

    def reconcile(self, lookups: Sequence[Lookup]) -> list[Found]:
        """Each uncertain post looked for among the account's own post records, newest first."""
        from clarion.channels.bluesky.reconcile import look_up

        if not lookups:
            return []
        return look_up(self.client, lookups)

    def verify(self, planned: int) -> list[AccountCheck]:
        """Bluesky accepts the handle and app password (createSession), whose account posts, and the
        planned posts against the PDS's hourly write budget."""
        try:
            client = self.client()
        except ProviderError as exc:
            return [AccountCheck("credentials", False, exc.message)]
        me = getattr(client, "me", None)
        handle = getattr(me, "handle", None) or getattr(self.settings, "handle", "?")
        followers = getattr(me, "followers_count", None)
        who = f"posts go out as @{handle}" + (f" ({followers:,} followers)" if followers is not None else "")
        return [
            AccountCheck("credentials", True, f"Bluesky accepts the app password; {who}"),
            AccountCheck(
                "quota",
                planned <= POSTS_PER_HOUR,
                f"{planned} posts planned; a PDS takes about {POSTS_PER_HOUR:,} posts an hour "
                f"({POSTS_PER_DAY:,} a day)",
            ),
        ]
