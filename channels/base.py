"""What every provider declares: its campaign-file settings, its content rules, its limits, how it sends.

A provider is one folder, channels/<provider>/, whose package exports one `Channel` subclass, registered
under its name through the `clarion.channels` entry-point group (registry.py). The class says, as class
attributes, what kind of channel it is (social, email, sms), which contact column it sends to, and the
provider's limits; its `config_model` is the part of the campaign file under `channels.<id>:` for this
provider, `check()` applies the provider's content rules to a rendered message, `send()` sends (mapping the
SDK's errors to ours at this one boundary), and `verify()` asks the provider before a launch. Beside the
adapter: `webhooks()` (its webhook endpoints, channels/webhooks.py) and `emulator()` (its sandbox
emulator, channels/emulation.py), both imported only when asked for.

The error tree, at the adapter boundary (`send` never raises for a provider's answer):

    ProviderError                 an SDK error, mapped; `.result(recipient)` is the SendResult
    ├── Rejected                  permanently refused (bad address, opted out, content): never retried
    ├── Retryable                 refused for now (5xx, connection refused): safe to send again later
    │   └── RateLimited           a 429, with retry_after from the provider's headers
    └── Uncertain                 the request may have arrived (read timeout, dropped connection)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from clarion.base.errors import ClarionError
from clarion.base.timing import parse_duration

if TYPE_CHECKING:
    from collections.abc import Mapping

    from clarion.channels.emulation import Emulator
    from clarion.channels.reconcile import Found, Lookup
    from clarion.channels.webhooks import Webhook


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


class Retry(BaseModel):
    """How retryable refusals (5xx, 429, connection refused) are retried: bounded, with backoff."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=5, ge=1, le=20)
    base_delay: float = Field(default=0.5, ge=0, description="Seconds; doubles each attempt, with jitter.")
    max_delay: float = Field(
        default=30, ge=0, description="Cap of one backoff wait (Retry-After may be longer)."
    )


class FrequencyCap(BaseModel):
    """At most `max` messages of this channel's kind to one address per `per`, across all campaigns."""

    model_config = ConfigDict(extra="forbid")

    max: int = Field(ge=1, description="Messages per address within the window.")
    per: timedelta = Field(description="The window, e.g. 7d or 24h.")

    @field_validator("per", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        window = parse_duration(value)
        if window <= timedelta(0):
            raise ValueError("the window must be longer than 0s")
        return window


class ChannelConfig(BaseModel):
    """Settings shared by every channel under `channels.<id>:` in a campaign file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str
    body: str | None = Field(default=None, description="Inline Jinja template of the message text.")
    template: str | None = Field(
        default=None, description="Path of a Jinja template file, relative to the campaign file."
    )
    pacing: Pacing = Field(default_factory=Pacing)
    retry: Retry = Field(default_factory=Retry)

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
    run: str = ""
    token: str = ""  # the tracked link's token: provider events carry it back (custom_args, callback URL)
    unsubscribe: str | None = None  # the recipient's own unsubscribe URL (email)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: The parts (subject, html, text) as rendered once for every recipient, with a key where each
    #: per-recipient value goes, and this recipient's `values` by key: a provider that substitutes values
    #: itself sends the shared parts once for many. None: this message's parts are its own.
    shared: dict[str, str] | None = None
    values: dict[str, str] = field(default_factory=dict)


class ProviderSettings(BaseSettings):
    """Credentials and endpoint of one provider, read from the environment (never from a campaign file).

    Each secret field may instead come from a Prefect Secret block named by `<VARIABLE>_BLOCK`, e.g.
    SENDGRID_API_KEY_BLOCK=sendgrid-key. `base_url` points the SDK somewhere else than the provider (the
    sandbox, in tests and demos).
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    timeout: float = Field(
        default=20.0, gt=0, le=600, allow_inf_nan=False, validation_alias="CLARION_HTTP_TIMEOUT"
    )

    @classmethod
    def load(cls, channel: str) -> ProviderSettings:
        overrides: dict[str, str] = {}
        for name, field_info in cls.model_fields.items():
            env = field_info.validation_alias
            if isinstance(env, str) and not os.environ.get(env) and os.environ.get(f"{env}_BLOCK"):
                overrides[name] = _secret_block(os.environ[f"{env}_BLOCK"], env)
        try:
            return cls.model_validate(overrides)
        except ValidationError as exc:
            missing = [
                str(field_info.validation_alias)
                for name, field_info in cls.model_fields.items()
                if any(
                    err["loc"] and err["loc"][0] in (name, field_info.validation_alias)
                    for err in exc.errors()
                )
            ]
            # a check across fields (ours: its message names variables, never a value)
            whole = [str(e["msg"]).removeprefix("Value error, ") for e in exc.errors() if not e["loc"]]
            what = f"{', '.join(missing)} not set or invalid" if missing else "; ".join(whole)
            raise ClarionError(
                f"channel {channel!r}: {what or 'credentials not set or invalid'}; export them, "
                "name a Prefect Secret block in <VARIABLE>_BLOCK, or run with --sandbox"
            ) from None

    def secrets(self) -> list[str]:
        """Every secret value held, so outputs can be checked for leaks."""
        return [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr)]


def _secret_block(block: str, env: str) -> str:
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(block, _sync=True).get()  # type: ignore[call-arg,union-attr]
    except Exception as exc:  # any failure to reach Prefect or find the block is the user's to fix
        raise ClarionError(
            f"{env}_BLOCK names the Prefect Secret block {block!r}, which cannot be loaded: {exc}"
        ) from None
    return str(value)


class Channel:
    """Base of every provider adapter: limits as class attributes, rules as class methods, `send()`."""

    provider: ClassVar[str]
    kind: ClassVar[ChannelKind]
    config_model: ClassVar[type[ChannelConfig]]
    #: The contact column this channel sends to (None: a post to everyone).
    address_column: ClassVar[str | None] = None
    #: The contact column saying whether the contact agreed to this channel (None: no such column needed).
    consent_column: ClassVar[str | None] = None
    #: Recipients per provider request.
    max_batch: ClassVar[int] = 1
    #: Which config field a broken content rule points at, by rule code (default: the body or template).
    rule_fields: ClassVar[dict[str, str]] = {}
    #: The parts `send` takes from a message's shared parts (`Message.shared`), the recipient's `values`
    #: going as the provider's own substitutions: the send renders only the values for them
    #: (`Renderer.render(..., full=False)`), the filled-in message having been checked at planning.
    substitutes: ClassVar[frozenset[str]] = frozenset()
    #: Parts rendered for a message, keyed by name.
    parts: ClassVar[tuple[Part, ...]] = (Part("text", inline="body", file="template"),)
    settings_model: ClassVar[type[ProviderSettings]] = ProviderSettings
    #: Whether the provider has a compose link (`compose_url`): templates then get share_<provider>(text).
    composes: ClassVar[bool] = False
    #: Where its webhooks and its sandbox emulator live ("module" / "module:Class"), imported when asked for:
    #: a command that only validates never loads the SDKs' webhook helpers or the sandbox.
    webhooks_module: ClassVar[str | None] = None
    emulator_class: ClassVar[str | None] = None
    #: Modules a launch imports lazily to render and send on this channel (the SDK, large rule tables):
    #: `clarion worker` imports them once, before any event, into the process its flow runs fork from.
    preload: ClassVar[tuple[str, ...]] = ()
    #: Seconds the provider may take to list a message it accepted: before that, a message missing from
    #: its listing proves nothing (`reconcile` leaves the send uncertain).
    listing_delay: ClassVar[float] = 120.0
    #: Seconds ahead the provider can hold a message for a later delivery (SendGrid's send_at: 72 h); a
    #: per-contact local time within it is handed to the provider (`Outbound.send_at`), beyond it the send
    #: waits in the ledger. 0: the provider sends at once, and Clarion waits for every local time.
    schedule_horizon: ClassVar[float] = 0.0

    def __init__(
        self,
        channel_id: str,
        config: ChannelConfig,
        settings: ProviderSettings,
        *,
        callback_base: str | None = None,
    ) -> None:
        self.channel_id = channel_id
        self.config = config
        self.settings = settings
        self.callback_base = callback_base

    def warm(self) -> None:
        """Get ready to send (import the SDK, build its client) before the launch moment, not during it."""

    def verify(self, planned: int) -> list[AccountCheck]:
        """Ask the provider whether these credentials work and the account can take `planned` messages
        (pre-flight, before an approval). A refusal or an unreachable provider is a failed check saying
        why; this never raises for the provider's answer, and never shows a credential."""
        return []

    def verify_content(self, messages: Sequence[Message]) -> list[AccountCheck]:
        """Check rendered messages against limits that only the provider's account knows (a Mastodon
        instance's own character limit), at pre-flight; like `verify`, never raises for the provider's
        answer. Limits known beforehand are `check`ed at validation instead."""
        return []

    def send(self, batch: Sequence[Outbound]) -> list[SendResult]:
        """Send a batch (at most `max_batch` messages); one result per message, in order, never raising
        for a provider error: those are mapped to results."""
        raise NotImplementedError

    def schedule_batch(self) -> str | None:
        """An id under which this adapter's scheduled messages can be cancelled together (SendGrid's
        batch id), made once per adapter before its first scheduled send; None if the provider has none."""
        return None

    def cancel_scheduled(self, batch_id: str) -> None:
        """Cancel every scheduled message of a batch id not yet delivered; raises ProviderError."""
        raise NotImplementedError(f"{self.provider} cannot cancel scheduled messages")

    def reconcile(self, lookups: Sequence[Lookup]) -> list[Found]:
        """Ask the provider whether it has each of these uncertain sends (channels/reconcile.py); one
        answer per lookup, in order, never raising for the provider's answer. By default the provider
        cannot be asked, and every send stays uncertain."""
        from clarion.channels.reconcile import unknown

        return unknown(lookups, f"{self.provider} offers no way to look up a sent message")

    @classmethod
    def compose_url(cls, text: str, link: str) -> str:
        """A link that opens a post of `text` and `link` in the reader's own account (share kits);
        ValueError when the post would break the provider's rules."""
        raise NotImplementedError(f"{cls.provider} has no compose link")

    @classmethod
    def webhooks(cls, environ: Mapping[str, str]) -> list[Webhook]:
        """The provider's webhook endpoints for the tracking service, with their secrets from `environ`
        (`webhooks_module` names a module with a `webhooks(environ)` function)."""
        if cls.webhooks_module is None:
            return []
        found: list[Webhook] = importlib.import_module(cls.webhooks_module).webhooks(environ)
        return found

    @classmethod
    def emulator(cls) -> type[Emulator] | None:
        """The provider's sandbox emulator class (None: the sandbox does not emulate this provider)."""
        if cls.emulator_class is None:
            return None
        module, _, name = cls.emulator_class.partition(":")
        found: type[Emulator] = getattr(importlib.import_module(module), name)
        return found

    @classmethod
    def normalise_address(cls, raw: str, config: ChannelConfig) -> str:
        """The provider's form of a contact's address; ValueError with a readable reason when invalid."""
        return raw

    @classmethod
    def send_address(cls, raw: str, config: ChannelConfig) -> str:
        """The address to send to, for a contact whose address was validated when the run was planned."""
        return cls.normalise_address(raw, config)

    @classmethod
    def measure(cls, message: Message) -> dict[str, Any]:
        """Figures about a rendered message that people want to see (length, encoding, segments)."""
        return {}

    @classmethod
    def size(cls, message: Message, config: ChannelConfig) -> tuple[int, int] | None:
        """The message's length and the provider's limit for it, both counted as the provider counts
        (weighted characters, graphemes, septets, bytes...): `length` and `limit` in `clarion preview`.
        None where the provider sets no limit on what this channel sends."""
        return None

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        """The provider's content rules: a list of (rule code, message) for each rule the message breaks.

        A rule reads the message's content (parts, link, unsubscribe URL), not its recipient (`to`,
        `contact_id`) nor which characters its token has: validation checks one message for all the
        contacts whose messages differ only by those (`Renderer.check_key`)."""
        return []


# -- sending ---------------------------------------------------------------------------------------


class SendOutcome(StrEnum):
    """What became of one recipient's message at the provider."""

    SENT = "sent"  # accepted; provider_id kept
    REJECTED = "rejected"  # permanently refused (bad address, opted out, content refused): never retried
    RETRY = "retry"  # refused for now (5xx, 429, connection refused): safe to send again later
    UNCERTAIN = "uncertain"  # the request may have arrived (read timeout, dropped connection): not resent


@dataclass(frozen=True)
class AccountCheck:
    """One pre-flight answer from a provider: `what` is credentials, account or quota."""

    what: str
    ok: bool
    detail: str


#: The records made once per message (`Outbound`, `SendResult`; the ledger's `Settlement`) are slotted and
#: not frozen: a frozen dataclass sets each field through `object.__setattr__`, which made the three cost
#: 5.6 us a message against 2.4 (a million emails: 3.2 CPU s). Nothing changes one once made; read them so.
@dataclass(slots=True)
class Outbound:
    """One message to send; `recipient` is its key in the ledger (contact id, or post:<variant>)."""

    recipient: str
    message: Message
    send_at: datetime | None = None  # the provider delivers it then (within Channel.schedule_horizon)


@dataclass(slots=True)
class SendResult:
    recipient: str
    outcome: SendOutcome
    provider_id: str | None = None
    code: str | None = None  # the provider's error code, e.g. "21211" or "400"
    error: str | None = None  # the provider's message; never carries credentials
    retry_after: float | None = None  # seconds, when the provider said how long to wait


class ProviderError(Exception):
    """An SDK error mapped at the adapter boundary; `outcome` says what the send engine does with it."""

    outcome: ClassVar[SendOutcome]

    def __init__(self, message: str, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after

    def result(self, recipient: str) -> SendResult:
        return SendResult(recipient, self.outcome, None, self.code, self.message, self.retry_after)


class Rejected(ProviderError):
    outcome = SendOutcome.REJECTED


class Retryable(ProviderError):
    outcome = SendOutcome.RETRY


class RateLimited(Retryable):
    """A 429; `retry_after` from Retry-After, X-RateLimit-Reset or x-rate-limit-reset."""


class Uncertain(ProviderError):
    outcome = SendOutcome.UNCERTAIN


def seconds_until(reset_epoch: str | None, now: float) -> float | None:
    """Seconds from `now` to an epoch-seconds reset header, or None when absent or unreadable."""
    if not reset_epoch:
        return None
    try:
        return max(float(reset_epoch) - now, 0.0)
    except ValueError:
        return None


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header given in seconds (the form these providers use)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None
