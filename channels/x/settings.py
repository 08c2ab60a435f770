"""X's credentials and endpoint: X_ACCESS_TOKEN (OAuth 2.0) or the four OAuth 1.0a keys, CLARION_X_URL. Apart
from the adapter (see clarion.channels.registry, `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from clarion.channels.base import ProviderSettings

X_API = "https://api.twitter.com"


class XSettings(ProviderSettings):
    """OAuth 2.0 user token (X_ACCESS_TOKEN alone) or OAuth 1.0a (the four keys)."""

    access_token: SecretStr = Field(validation_alias="X_ACCESS_TOKEN")
    api_key: SecretStr | None = Field(default=None, validation_alias="X_API_KEY")
    api_secret: SecretStr | None = Field(default=None, validation_alias="X_API_SECRET")
    access_token_secret: SecretStr | None = Field(default=None, validation_alias="X_ACCESS_TOKEN_SECRET")
    base_url: str = Field(default=X_API, validation_alias="CLARION_X_URL")

    @model_validator(mode="after")
    def _complete_oauth1(self) -> XSettings:
        given = {
            "X_API_KEY": self.api_key,
            "X_API_SECRET": self.api_secret,
            "X_ACCESS_TOKEN_SECRET": self.access_token_secret,
        }
        if any(given.values()) and not all(given.values()):
            lacking = ", ".join(name for name, value in given.items() if not value)
            raise ValueError(f"OAuth 1.0a needs all four keys; {lacking} missing")
        return self

    @property
    def oauth1(self) -> bool:
        return self.api_key is not None
