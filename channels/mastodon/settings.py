"""Mastodon's instance and token: MASTODON_INSTANCE, MASTODON_ACCESS_TOKEN.

On their own, apart from the adapter and its SDK: every command checks every provider's variables at
start-up (clarion.base.settings.check_environment), and this is all that check loads (the entry-point
group `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from clarion.channels.base import ProviderSettings


class MastodonSettings(ProviderSettings):
    instance: str = Field(validation_alias="MASTODON_INSTANCE", pattern=r"^https?://\S+$")
    access_token: SecretStr = Field(validation_alias="MASTODON_ACCESS_TOKEN")
