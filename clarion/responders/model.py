"""The responder file format: pydantic models whose key names are the user-facing contract.

A responder file names the channels it answers on (SMS through Twilio, direct messages on X), an ordered
list of rules (first match wins, after the compliance keywords, which no rule can claim), an optional
fallback, the data tables its lookups read, and the limits that keep it safe. Add keys; never rename them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from clarion.base import addresses
from clarion.base.identifiers import check_name
from clarion.base.timing import parse_clock, parse_duration, zone

IDENT = r"[A-Za-z_][A-Za-z0-9_]{0,31}"
#: The compliance families' own rule ids in the ledger and the report.
COMPLIANCE_IDS = ("stop", "start", "help")
FALLBACK = "fallback"
ANSWER_SUFFIX = "/answer"
X_DM_MAX = 10_000  # characters of one direct message (tweepy's docstring, X's docs)

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _slug(value: str, what: str) -> str:
    return check_name(value, what)  # the one identifier pattern: clarion/base/identifiers.py


def _problem(message: str, at: tuple[str | int, ...], **context: Any) -> PydanticCustomError:
    return PydanticCustomError("responder", message, {**context, "at": at})


class QuietHours(_Strict):
    """Local hours a follow-up may go out (a reply to someone who just wrote is never held)."""

    start: str = Field(default="08:00", description="Local time the window opens (HH:MM).")
    end: str = Field(default="21:00", description="Local time the window closes (HH:MM).")

    _check = field_validator("start", "end")(lambda cls, v: parse_clock(v).strftime("%H:%M"))


class SmsChannel(_Strict):
    """`channels.<id>:` answering texts through Twilio (its inbound-message webhook)."""

    provider: Literal["twilio"]
    numbers: list[str] = Field(
        default_factory=list,
        description="Our numbers (E.164) this responder answers on; texts from them are never answered.",
    )
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    max_segments: int = Field(default=3, ge=1, le=10, description="A longer reply is a validation error.")
    default_region: str = Field(default="US", description="Region of numbers written without +country.")
    quiet_hours: QuietHours | None = Field(
        default_factory=QuietHours, description="Follow-ups wait for these local hours; null: any hour."
    )
    default_timezone: str = Field(default="UTC", description="Zone of a sender whose number tells none.")

    _check_zone = field_validator("default_timezone")(lambda cls, v: zone(v).key)

    @field_validator("numbers")
    @classmethod
    def _e164(cls, value: list[str]) -> list[str]:
        return [addresses.phone(n, "US") for n in value]

    @model_validator(mode="after")
    def _has_sender(self) -> SmsChannel:
        if not self.numbers and not self.messaging_service_sid:
            raise ValueError(
                'needs our number: `numbers: ["+15551234567"]` or `messaging_service_sid: MG...`'
            )
        return self


class DmChannel(_Strict):
    """`channels.<id>:` answering direct messages on X (Account Activity webhook, or polling)."""

    provider: Literal["x"]
    account_id: str = Field(
        pattern=r"^[0-9]{1,20}$", description="The numeric user id of the account whose DMs are answered."
    )
    app_ids: list[str] = Field(
        default_factory=list, description="Our own X app ids: DMs created through them are never answered."
    )
    max_length: int = Field(default=X_DM_MAX, ge=1, le=X_DM_MAX, description="Longest reply, in characters.")
    replies_per_15_minutes: int = Field(
        default=15, ge=1, le=1000, description="DMs sent per 15 minutes (X's lower documented limit: 15)."
    )
    replies_per_day: int = Field(
        default=1440, ge=1, le=100_000, description="DMs sent per 24 hours (X's documented limit: 1,440)."
    )


Channel = Annotated[SmsChannel | DmChannel, Field(discriminator="provider")]


class Remind(_Strict):
    """One follow-up when a question goes unanswered: held to the sender's quiet hours."""

    after: Duration = Field(description="How long after the question, e.g. 2h.")
    reply: str = Field(description="The reminder (a template).")

    @field_validator("after")
    @classmethod
    def _after(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=7):
            raise ValueError("must be between 1m and 7d")
        return value


class Answering(_Strict):
    """What a rule's reply and a follow-up answer share: lookups, the link's destination, the texts."""

    lookup: dict[str, str] = Field(
        default_factory=dict,
        description="Names bound in order to expressions: zipcode(zip), table('deadlines', place.state).",
    )
    link: str | None = Field(
        default=None, description="Where {{ link }} leads for this reply (a template); default `link.url`."
    )
    reply: str = Field(description="The answer (a Jinja template).")
    not_found: str | None = Field(
        default=None, description="The answer when a lookup finds nothing (default: the fallback)."
    )

    @field_validator("lookup")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(IDENT, name):
                raise ValueError(f"lookup name {name!r} must be an identifier (letters, digits, _)")
        return value


class Ask(Answering):
    """One follow-up question: the next message from the sender, within `within`, is tried against
    `pattern` first (after the compliance keywords)."""

    pattern: str = Field(description="What an answer looks like, e.g. '(?P<zip>\\d{5})'.")
    within: Duration = Field(default=timedelta(minutes=30), description="How long the question stays open.")
    retry: str | None = Field(default=None, description="Asked again once when the answer does not fit.")
    remind: Remind | None = None
    examples: list[str] = Field(default_factory=list, description="Answers it must accept (checked).")

    @field_validator("within")
    @classmethod
    def _within(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=7):
            raise ValueError("must be between 1m and 7d")
        return value


class Rule(Answering):
    """One rule: a keyword (the whole message) or a pattern (a regular expression with named groups)."""

    id: str
    keywords: list[str] | None = Field(
        default=None, description="Whole-message keywords, any case or accent."
    )
    pattern: str | None = Field(
        default=None, description="An RE2 regular expression; named groups are variables."
    )
    fullmatch: bool = Field(default=False, description="The whole message must match the pattern.")
    case_sensitive: bool = False
    channels: list[str] | None = Field(default=None, description="Only on these channel ids (default: all).")
    ask: Ask | None = None
    examples: list[str] = Field(default_factory=list, description="Messages this rule must answer (checked).")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        _slug(value, "rule id")
        if value in (*COMPLIANCE_IDS, FALLBACK):
            raise ValueError(
                f"{value!r} is reserved (compliance keywords and the fallback); name it otherwise"
            )
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> Rule:
        if (self.keywords is None) == (self.pattern is None):
            raise ValueError("give exactly one of `keywords:` (a list of words) or `pattern:` (a regex)")
        if self.keywords is not None and not self.keywords:
            raise ValueError("`keywords:` is empty; give at least one word")
        if self.pattern is not None and not self.examples:
            raise ValueError(
                "a pattern rule needs `examples:` (messages it must answer), so validation can check the "
                "pattern and render its reply"
            )
        return self


class Fallback(_Strict):
    reply: str = Field(description="The answer to anything no rule matches (a template).")


class Link(_Strict):
    url: str = Field(description="Where {{ link }} leads unless a rule says otherwise.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. https://vote.example.org/register)")
        return value


class Tracking(_Strict):
    base_url: str | None = Field(
        default=None, description="Public URL of `clarion serve`: personal links go through it."
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL (e.g. https://go.example.org)")
        return None if value is None else value.rstrip("/")


class Table(_Strict):
    file: str = Field(description="CSV file relative to the responder file, with a header line.")
    key: str = Field(description="The column rows are looked up by (compared trimmed, any case).")


class Contacts(_Strict):
    file: str = Field(description="A contacts CSV (as a campaign's): senders found in it are known.")
    phone: str = Field(default="phone", description="Column holding the phone number.")
    x: str = Field(default="x_id", description="Column holding the numeric X user id.")


class Limits(_Strict):
    replies_per_hour: int = Field(default=5, ge=1, le=100, description="Replies to one sender per hour.")
    fallbacks_in_a_row: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Fallbacks to one sender in a row, then silence until a rule matches.",
    )
    max_chars: int = Field(default=1600, ge=16, le=10_000, description="Longer inbound texts are cut.")


class Compliance(_Strict):
    """Confirmations sent by direct message (SMS: Twilio confirms STOP and START itself, and HELP is
    answered with CLARION_SMS_HELP_REPLY)."""

    stop: str = "You will get no more messages from us. Send START to opt back in."
    start: str = "You are opted back in. Send STOP to opt out."
    help: str = "Automated answers from our team. Send STOP to opt out."


class Responder(_Strict):
    """One responder file."""

    name: str = Field(description="The responder's name: its links' utm_campaign and its report's name.")
    description: str = ""
    channels: dict[str, Channel] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    fallback: Fallback | None = Field(default=None, description="null: anything else gets no answer.")
    link: Link | None = None
    tracking: Tracking = Field(default_factory=Tracking)
    tables: dict[str, Table] = Field(default_factory=dict)
    contacts: Contacts | None = None
    limits: Limits = Field(default_factory=Limits)
    retention: Duration = Field(default=timedelta(days=30), description="How long message texts are kept.")
    compliance: Compliance = Field(default_factory=Compliance)

    _name = field_validator("name")(lambda cls, v: _slug(v, "responder name"))

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            _slug(key, "channel id")
        return value

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: timedelta) -> timedelta:
        if not timedelta(hours=1) <= value <= timedelta(days=3650):
            raise ValueError("must be between 1h and 3650d")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Responder:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.id in seen:
                raise _problem(
                    "rule id '{id}' is used twice; rule ids must be unique", ("rules", i, "id"), id=rule.id
                )
            seen.add(rule.id)
            for j, cid in enumerate(rule.channels or []):
                if cid not in self.channels:
                    raise _problem(
                        "rule '{id}' names channel '{cid}', which `channels:` does not define ({known})",
                        ("rules", i, "channels", j),
                        id=rule.id,
                        cid=cid,
                        known=", ".join(self.channels),
                    )
        kinds = [c.provider for c in self.channels.values()]
        for provider in ("twilio", "x"):
            if kinds.count(provider) > 1:
                raise _problem(
                    "two channels use provider '{p}'; a responder answers once per provider",
                    ("channels",),
                    p=provider,
                )
        return self

    def channel_by_provider(self, provider: str) -> tuple[str, SmsChannel | DmChannel] | None:
        for cid, config in self.channels.items():
            if config.provider == provider:
                return cid, config
        return None


def json_schema() -> dict[str, Any]:
    """The responder format's JSON Schema, for editor completion."""
    schema = Responder.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Clarion responder"
    return schema
