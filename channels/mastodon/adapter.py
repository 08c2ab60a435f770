"""Mastodon: one status per variant on any instance, through `Mastodon.py`.

Credentials come from the environment: MASTODON_INSTANCE (the instance's URL, e.g.
https://mastodon.social) and MASTODON_ACCESS_TOKEN (an application's token with the `write:statuses` and
`read` scopes, made in the instance's Development settings).

Every status carries an `Idempotency-Key` derived from the run, channel and post: Mastodon answers a
repeated key (for an hour) with the status it already made, so a retried or resent post is never doubled.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import requests
from pydantic import Field

from clarion.channels.base import (
    AccountCheck,
    Channel,
    ChannelConfig,
    ChannelKind,
    Message,
    Outbound,
    ProviderError,
    ProviderSettings,
    Rejected,
    SendOutcome,
    SendResult,
)
from clarion.channels.mastodon.calls import call as _call
from clarion.channels.mastodon.rules import (
    DEFAULT_CHARACTERS_PER_URL,
    DEFAULT_MAX_CHARACTERS,
    mastodon_length,
    post_problems,
)
from clarion.channels.mastodon.settings import MastodonSettings
from clarion.channels.social import compose_link, with_empty

if TYPE_CHECKING:
    from clarion.channels.reconcile import Found, Lookup

#: Mastodon's default limit on posting: 300 statuses per account in 3 hours.
STATUSES_PER_3_HOURS = 300
#: A share page that asks the reader for their instance, then opens its composer (Share₂Fedi).
SHARE_PAGE = "https://s2f.kytta.dev/"


class MastodonConfig(ChannelConfig):
    """`channels.<id>:` for a status on Mastodon. The status goes to everyone: no `contact` in templates."""

    provider: Literal["mastodon"]
    visibility: Literal["public", "unlisted", "private"] = "public"
    language: str | None = Field(default="en", description="ISO 639-1 code of the status's language.")
    spoiler_text: str | None = Field(default=None, description="A content warning shown before the text.")
    max_characters: int = Field(
        default=DEFAULT_MAX_CHARACTERS,
        ge=1,
        description="The instance's limit used at validation; pre-flight checks the instance's own.",
    )
    characters_reserved_per_url: int = Field(default=DEFAULT_CHARACTERS_PER_URL, ge=0)


def idempotency_key(message: Message, recipient: str) -> str:
    """The same key for every attempt at one post of one run: Mastodon keeps keys for an hour."""
    seed = f"clarion:{message.run}:{message.channel}:{recipient}"
    return hashlib.sha256(seed.encode()).hexdigest()[:40]


class MastodonChannel(Channel):
    provider: ClassVar[str] = "mastodon"
    preload: ClassVar[tuple[str, ...]] = ("mastodon",)
    kind: ClassVar[ChannelKind] = ChannelKind.SOCIAL
    config_model: ClassVar[type[ChannelConfig]] = MastodonConfig
    settings_model: ClassVar[type[ProviderSettings]] = MastodonSettings
    emulator_class: ClassVar[str | None] = "clarion.channels.mastodon.emulator:MastodonEmulator"
    composes: ClassVar[bool] = True
    listing_delay: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._client: Any = None

    # -- rules ---------------------------------------------------------------------------------------

    @classmethod
    def size(cls, message: Message, config: ChannelConfig) -> tuple[int, int]:
        assert isinstance(config, MastodonConfig)
        length = mastodon_length(message.text, config.spoiler_text or "", config.characters_reserved_per_url)
        return length, config.max_characters

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        length, limit = cls.size(message, config)
        return with_empty(post_problems(length, limit, "max_characters"), message.text, "status")

    @classmethod
    def compose_url(cls, text: str, link: str) -> str:
        """A share page that asks the reader for their instance, then opens its composer with the text
        and link (Mastodon has no single compose URL: each instance has its own `/share`)."""
        return compose_link(
            cls.provider,
            SHARE_PAGE,
            text,
            link,
            lambda post: post_problems(mastodon_length(post), DEFAULT_MAX_CHARACTERS, "Mastodon's default"),
            "status",
        )

    # -- the client ----------------------------------------------------------------------------------

    def client(self) -> Any:
        from mastodon import Mastodon

        with self._lock:
            if self._client is None:
                settings = self.settings
                assert isinstance(settings, MastodonSettings)
                session = requests.Session()
                # one connection per call, closed by the instance: nothing is left open when the adapter
                # goes (a statement per variant does not need a pool)
                session.headers["Connection"] = "close"
                self._client = Mastodon(
                    session=session,
                    access_token=settings.access_token.get_secret_value(),
                    api_base_url=settings.instance,
                    request_timeout=settings.timeout,
                    ratelimit_method="throw",  # the engine waits, not the SDK
                    version_check_mode="none",
                )
            return self._client

    def warm(self) -> None:
        self.client()

    # -- sending -------------------------------------------------------------------------------------

    def send(self, batch: Sequence[Outbound]) -> list[SendResult]:
        client = self.client()
        config = self.config
        assert isinstance(config, MastodonConfig)
        results = []
        for item in batch:
            key = idempotency_key(item.message, item.recipient)
            try:
                status = _call(
                    client,
                    "post",
                    lambda k=key, m=item.message: client.status_post(
                        m.text,
                        visibility=config.visibility,
                        language=config.language,
                        spoiler_text=config.spoiler_text,
                        idempotency_key=k,
                    ),
                    writes=True,
                )
            except ProviderError as exc:
                results.append(exc.result(item.recipient))
                continue
            results.append(SendResult(item.recipient, SendOutcome.SENT, str(status["id"])))
        return results

    def public_metrics(self, post_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each status's counts: favourites, boosts, replies, quotes (Mastodon publishes no impressions)."""
        client = self.client()
        found: dict[str, dict[str, int]] = {}
        for post_id in post_ids:
            try:
                status = _call(client, "read the status", lambda p=post_id: client.status(p))
            except Rejected:  # deleted since
                continue
            found[str(post_id)] = {
                "like_count": int(status.get("favourites_count") or 0),
                "retweet_count": int(status.get("reblogs_count") or 0),
                "reply_count": int(status.get("replies_count") or 0),
                "quote_count": int(status.get("quotes_count") or 0),
            }
        return found

    def reconcile(self, lookups: Sequence[Lookup]) -> list[Found]:
        """Each uncertain status looked for among the account's own statuses (reconcile.py)."""
        from clarion.channels.mastodon.reconcile import look_up

        if not lookups:
            return []
        return look_up(self.client(), lookups)

    def instance_limits(self) -> tuple[int, int]:
        """The instance's `max_characters` and `characters_reserved_per_url` (GET /api/v2/instance)."""
        client = self.client()
        instance = _call(client, "describe the instance", client.instance_v2)
        statuses = (instance.get("configuration") or {}).get("statuses") or {}
        return (
            int(statuses.get("max_characters") or DEFAULT_MAX_CHARACTERS),
            int(statuses.get("characters_reserved_per_url") or DEFAULT_CHARACTERS_PER_URL),
        )

    def verify(self, planned: int) -> list[AccountCheck]:
        """Whose account the token posts as (verify_credentials), and the planned statuses against
        Mastodon's posting limit."""
        client = self.client()
        try:
            me = _call(client, "check the token", client.account_verify_credentials)
        except ProviderError as exc:
            hint = " (check MASTODON_ACCESS_TOKEN)" if exc.code == "401" else ""
            return [AccountCheck("credentials", False, exc.message + hint)]
        settings = self.settings
        assert isinstance(settings, MastodonSettings)
        return [
            AccountCheck(
                "credentials",
                True,
                f"{settings.instance} accepts the token; statuses go out as @{me.get('acct', '?')}"
                f" ({int(me.get('followers_count') or 0):,} followers)",
            ),
            AccountCheck(
                "quota",
                planned <= STATUSES_PER_3_HOURS,
                f"{planned} statuses planned; Mastodon allows {STATUSES_PER_3_HOURS} per 3 hours",
            ),
        ]

    def verify_content(self, messages: Sequence[Message]) -> list[AccountCheck]:
        """Every planned status against the instance's own limit, read now."""
        try:
            limit, per_url = self.instance_limits()
        except ProviderError as exc:
            return [AccountCheck("length", False, f"cannot read the instance's limits: {exc.message}")]
        config = self.config
        assert isinstance(config, MastodonConfig)
        too_long = [
            (m.variant, length)
            for m in messages
            if (length := mastodon_length(m.text, config.spoiler_text or "", per_url)) > limit
        ]
        if too_long:
            what = ", ".join(f"{variant} is {length}" for variant, length in too_long)
            return [
                AccountCheck(
                    "length",
                    False,
                    f"the instance allows {limit} characters per status: {what}; shorten them "
                    f"(and set max_characters: {limit} so validation counts the same)",
                )
            ]
        return [AccountCheck("length", True, f"every status fits the instance's {limit} characters")]
