"""Bluesky's account and endpoint: BLUESKY_HANDLE, BLUESKY_APP_PASSWORD, CLARION_BLUESKY_URL.

On their own, apart from the adapter and its SDK: every command checks every provider's variables at
start-up (clarion.base.settings.check_environment), and this is all that check loads (the entry-point
group `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from clarion.channels.base import ProviderSettings

BLUESKY_URL = "https://bsky.social"


class BlueskySettings(ProviderSettings):
    handle: str = Field(validation_alias="BLUESKY_HANDLE", min_length=1)
    app_password: SecretStr = Field(validation_alias="BLUESKY_APP_PASSWORD")
    base_url: str = Field(default=BLUESKY_URL, validation_alias="CLARION_BLUESKY_URL")
