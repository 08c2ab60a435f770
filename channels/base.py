"""What every channel adapter declares: its campaign-file settings, its content rules and its limits.

An adapter is one module in channels/ with one `Channel` subclass registered under its provider name
(`@register`). The class says, as class attributes, what kind of channel it is (social, email, sms),
which contact column it sends to, and the provider's limits; its `config_model` is the part of the
campaign file under `channels.<id>:` for this provider, and `check()` applies the provider's content rules
to a rendered message. Sending (credentials, the SDK call, error mapping) lives in the same module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ChannelKind(StrEnum):
    """What a channel is; also the `utm_medium` of its links."""

    SOCIAL = "social"
    EMAIL = "email"
    SMS = "sms"


@dataclass(frozen=True)
class Part:
    """One piece of a message that is rendered from a template (a subject, a text body, an HTML body).

    `inline` names the config field holding template text, `file` the field holding a template path; a
    config sets at most one of them. `html` parts are autoescaped.
    """

    name: str
    inline: str | None
    file: str | None = None
    html: bool = False
    required: bool = True


class Pacing(BaseModel):
    """How fast a channel may go; the send engine respects both limits."""

    model_config = ConfigDict(extra="forbid")

    messages_per_second: float | None = Field(default=None, gt=0)
    requests_per_second: float | None = Field(default=None, gt=0)


class ChannelConfig(BaseModel):
    """Settings shared by every channel under `channels.<id>:` in a campaign file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str
    body: str | None = Field(default=None, description="Inline Jinja template of the message text.")
    template: str | None = Field(
        default=None, description="Path of a Jinja template file, relative to the campaign file."
    )
    pacing: Pacing = Field(default_factory=Pacing)

    @model_validator(mode="after")
    def _one_content_source(self) -> ChannelConfig:
        if self.body is not None and self.template is not None:
            raise ValueError("give either `body` or `template`, not both")
        if self.body is None and self.template is None:
            raise ValueError("needs its content: an inline `body:` or a `template:` file")
        return self


@dataclass
class Message:
    """A rendered message for one channel, variant and (except for social posts) one contact."""

    channel: str
    provider: str
    kind: ChannelKind
    variant: str
    contact_id: str | None
    to: str | None
    link: str
    text: str
    subject: str | None = None
    html: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


class Channel:
    """Base of every provider adapter: limits as class attributes, rules as class methods."""

    provider: ClassVar[str]
    kind: ClassVar[ChannelKind]
    config_model: ClassVar[type[ChannelConfig]]
    #: The contact column this channel sends to (None: a post to everyone).
    address_column: ClassVar[str | None] = None
    #: Recipients per provider request.
    max_batch: ClassVar[int] = 1
    #: Parts rendered for a message, keyed by name.
    parts: ClassVar[tuple[Part, ...]] = (Part("text", inline="body", file="template"),)

    @classmethod
    def normalise_address(cls, raw: str, config: ChannelConfig) -> str:
        """The provider's form of a contact's address; ValueError with a readable reason when invalid."""
        return raw

    @classmethod
    def measure(cls, message: Message) -> dict[str, Any]:
        """Figures about a rendered message that people want to see (length, encoding, segments)."""
        return {}

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        """The provider's content rules: a list of (rule code, message) for each rule the message breaks."""
        return []
