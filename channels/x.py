"""X (formerly Twitter): one post per variant, through tweepy's API v2 client.

Credentials come from the environment: X_ACCESS_TOKEN (an OAuth 2.0 user-context token), or the four
OAuth 1.0a keys X_API_KEY, X_API_SECRET, X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from channels.base import Channel, ChannelConfig, ChannelKind, Message
from channels.registry import register
from clarion.textrules import X_MAX_WEIGHTED_LENGTH, x_weighted_length


class XConfig(ChannelConfig):
    """`channels.<id>:` for a post on X. The post goes to everyone, so templates see no `contact`."""

    provider: Literal["x"]


@register
class XChannel(Channel):
    provider: ClassVar[str] = "x"
    kind: ClassVar[ChannelKind] = ChannelKind.SOCIAL
    config_model: ClassVar[type[ChannelConfig]] = XConfig
    max_weighted_length: ClassVar[int] = X_MAX_WEIGHTED_LENGTH

    @classmethod
    def measure(cls, message: Message) -> dict[str, Any]:
        return {"weighted_length": x_weighted_length(message.text)}

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
