"""LinkedIn's token, page and endpoint: LINKEDIN_ACCESS_TOKEN, LINKEDIN_ORGANIZATION, LINKEDIN_VERSION,
CLARION_LINKEDIN_URL. Apart from the adapter (see clarion.channels.registry, `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from clarion.channels.base import ProviderSettings

LINKEDIN_API = "https://api.linkedin.com"


class LinkedInSettings(ProviderSettings):
    access_token: SecretStr = Field(validation_alias="LINKEDIN_ACCESS_TOKEN")
    organization: str = Field(validation_alias="LINKEDIN_ORGANIZATION")
    version: str = Field(default="202511", validation_alias="LINKEDIN_VERSION", pattern=r"^\d{6}$")
    base_url: str = Field(default=LINKEDIN_API, validation_alias="CLARION_LINKEDIN_URL")

    @field_validator("organization")
    @classmethod
    def _urn(cls, value: str) -> str:
        value = value.strip()
        if value.isdigit():
            return f"urn:li:organization:{value}"
        if value.startswith("urn:li:organization:") and value.rsplit(":", 1)[1].isdigit():
            return value
        raise ValueError("LINKEDIN_ORGANIZATION must be the page's numeric id or urn:li:organization:<id>")
