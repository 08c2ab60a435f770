"""Twilio SMS: one message per request, through the twilio SDK.

Credentials come from the environment: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import phonenumbers
from pydantic import Field, field_validator, model_validator

from channels.base import Channel, ChannelConfig, ChannelKind, Message
from channels.registry import register
from clarion.textrules import non_gsm_characters, sms_length

TWILIO_MAX_BODY = 1600


def to_e164(raw: str, region: str) -> str:
    """`raw` as an E.164 number, or ValueError saying why not."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{raw!r} is not a phone number (use E.164, e.g. +15551234567)") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{raw!r} is not a valid phone number (use E.164, e.g. +14155552671)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class TwilioConfig(ChannelConfig):
    """`channels.<id>:` for SMS through Twilio."""

    provider: Literal["twilio"]
    from_: str | None = Field(default=None, alias="from", description="Sending number in E.164 form.")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    max_segments: int = Field(default=3, ge=1, le=10, description="Messages longer than this are an error.")
    default_region: str = Field(
        default="US", description="Region used to read contact numbers written without a country code."
    )

    @field_validator("from_")
    @classmethod
    def _e164_sender(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("+"):
            raise ValueError(f"{value!r} is not an E.164 number (e.g. +15551234567)")
        return to_e164(value, "US")

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region code phonenumbers knows (e.g. US, GB, FR)")
        return value.upper()

    @model_validator(mode="after")
    def _has_sender(self) -> TwilioConfig:
        if not self.from_ and not self.messaging_service_sid:
            raise ValueError('needs a sender: `from: "+15551234567"` or `messaging_service_sid: MG...`')
        return self


@register
class TwilioChannel(Channel):
    provider: ClassVar[str] = "twilio"
    kind: ClassVar[ChannelKind] = ChannelKind.SMS
    config_model: ClassVar[type[ChannelConfig]] = TwilioConfig
    address_column: ClassVar[str | None] = "phone"
    body_maxlen: ClassVar[int] = TWILIO_MAX_BODY

    @classmethod
    def normalise_address(cls, raw: str, config: ChannelConfig) -> str:
        region = config.default_region if isinstance(config, TwilioConfig) else "US"
        return to_e164(raw, region)

    @classmethod
    def measure(cls, message: Message) -> dict[str, Any]:
        length = sms_length(message.text)
        return {"encoding": length.encoding, "segments": length.segments, "units": length.units}

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        assert isinstance(config, TwilioConfig)
        problems = []
        length = sms_length(message.text)  # cheap; measure() saw the same text
        if length.segments > config.max_segments:
            unit = "septets" if length.encoding == "GSM-7" else "UTF-16 units"
            hint = ""
            if length.encoding == "UCS-2":
                chars = "".join(non_gsm_characters(message.text)[:5])
                hint = f"; the characters {chars!r} force UCS-2 (70 per segment): replace them to use GSM-7"
            problems.append(
                (
                    "sms_segments",
                    f"message is {length.segments} segments ({length.encoding}, {length.units} {unit}), "
                    f"over max_segments {config.max_segments}; shorten it or raise max_segments{hint}",
                )
            )
        if len(message.text) > cls.body_maxlen:
            problems.append(
                (
                    "sms_too_long",
                    f"message is {len(message.text)} characters, over Twilio's {cls.body_maxlen}",
                )
            )
        if not message.text.strip():
            problems.append(("empty", "message text is empty"))
        return problems
