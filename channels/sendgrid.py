"""SendGrid email: up to 1,000 personalizations per /v3/mail/send request, through the sendgrid SDK.

Credentials come from the environment: SENDGRID_API_KEY.
"""

from __future__ import annotations

from email.utils import formataddr, parseaddr
from typing import Any, ClassVar, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, field_validator

from channels.base import Channel, ChannelConfig, ChannelKind, Message, Part
from channels.registry import register

SENDGRID_MAX_PERSONALIZATIONS = 1000


def check_email(raw: str) -> str:
    """The normalised form of one address, or ValueError with the validator's reason."""
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{raw!r} is not a valid email address: {exc}") from None


class SendGridConfig(ChannelConfig):
    """`channels.<id>:` for email through SendGrid; `body`/`template` is the HTML part."""

    provider: Literal["sendgrid"]
    from_: str = Field(alias="from", description='Sender, e.g. "Team Example <team@example.org>".')
    reply_to: str | None = None
    subject: str = Field(description="Inline Jinja template of the subject line.")
    text: str | None = Field(default=None, description="Inline Jinja template of the plain-text part.")
    text_template: str | None = Field(default=None, description="Template file of the plain-text part.")
    categories: list[str] = Field(default_factory=list, max_length=10)
    batch_size: int = Field(default=SENDGRID_MAX_PERSONALIZATIONS, ge=1, le=SENDGRID_MAX_PERSONALIZATIONS)

    @field_validator("from_", "reply_to")
    @classmethod
    def _valid_mailbox(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name, address = parseaddr(value)
        if not address:
            raise ValueError(f'{value!r} is not an email address (e.g. "Team <team@example.org>")')
        return formataddr((name, check_email(address))) if name else check_email(address)

    def sender(self) -> tuple[str | None, str]:
        name, address = parseaddr(self.from_)
        return (name or None, address)


@register
class SendGridChannel(Channel):
    provider: ClassVar[str] = "sendgrid"
    kind: ClassVar[ChannelKind] = ChannelKind.EMAIL
    config_model: ClassVar[type[ChannelConfig]] = SendGridConfig
    address_column: ClassVar[str | None] = "email"
    max_batch: ClassVar[int] = SENDGRID_MAX_PERSONALIZATIONS
    parts: ClassVar[tuple[Part, ...]] = (
        Part("subject", inline="subject"),
        Part("html", inline="body", file="template", html=True),
        Part("text", inline="text", file="text_template", required=False),
    )

    @classmethod
    def normalise_address(cls, raw: str, config: ChannelConfig) -> str:
        return check_email(raw)

    @classmethod
    def measure(cls, message: Message) -> dict[str, Any]:
        return {"html_bytes": len((message.html or "").encode())}

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        problems = []
        subject = message.subject or ""
        if not subject.strip():
            problems.append(("subject_empty", "subject is empty; every email needs a subject line"))
        elif "\n" in subject.strip() or "\r" in subject:
            problems.append(("subject_lines", "subject spans several lines; keep it on one line"))
        if not message.text.strip():
            problems.append(("text_empty", "the plain-text part is empty"))
        return problems
