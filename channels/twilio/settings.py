"""Twilio's credentials and endpoint: TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, CLARION_TWILIO_URL. Apart from
the adapter (see clarion.channels.registry, `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from clarion.channels.base import ProviderSettings


class TwilioSettings(ProviderSettings):
    account_sid: str = Field(validation_alias="TWILIO_ACCOUNT_SID", pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr = Field(validation_alias="TWILIO_AUTH_TOKEN")
    base_url: str = Field(default="https://api.twilio.com", validation_alias="CLARION_TWILIO_URL")
