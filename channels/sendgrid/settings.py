"""SendGrid's credentials and endpoint: SENDGRID_API_KEY, CLARION_SENDGRID_URL. Apart from the adapter (see
clarion.channels.registry, `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from clarion.channels.base import ProviderSettings


class SendGridSettings(ProviderSettings):
    api_key: SecretStr = Field(validation_alias="SENDGRID_API_KEY")
    base_url: str = Field(default="https://api.sendgrid.com", validation_alias="CLARION_SENDGRID_URL")
