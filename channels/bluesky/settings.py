"""Bluesky's account and endpoint: BLUESKY_HANDLE, BLUESKY_APP_PASSWORD, CLARION_BLUESKY_URL. Apart from the
adapter (see clarion.channels.registry, `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from clarion.channels.base import ProviderSettings

BLUESKY_URL = "https://bsky.social"


class BlueskySettings(ProviderSettings):
    handle: str = Field(validation_alias="BLUESKY_HANDLE", min_length=1)
    app_password: SecretStr = Field(validation_alias="BLUESKY_APP_PASSWORD")
    base_url: str = Field(default=BLUESKY_URL, validation_alias="CLARION_BLUESKY_URL")
