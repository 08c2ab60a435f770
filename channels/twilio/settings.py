"""Twilio's credentials and endpoint: TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, CLARION_TWILIO_URL.

On their own, apart from the adapter and its SDK: every command checks every provider's variables at
start-up (clarion.base.settings.check_environment), and this is all that check loads (the entry-point
group `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from clarion.channels.base import ProviderSettings


class TwilioSettings(ProviderSettings):
    account_sid: str = Field(validation_alias="TWILIO_ACCOUNT_SID", pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr = Field(validation_alias="TWILIO_AUTH_TOKEN")
    base_url: str = Field(default="https://api.twilio.com", validation_alias="CLARION_TWILIO_URL")
