"""Mastodon's instance and token: MASTODON_INSTANCE, MASTODON_ACCESS_TOKEN. Apart from the adapter (see
clarion.channels.registry, `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from clarion.channels.base import ProviderSettings


class MastodonSettings(ProviderSettings):
    instance: str = Field(validation_alias="MASTODON_INSTANCE", pattern=r"^https?://\S+$")
    access_token: SecretStr = Field(validation_alias="MASTODON_ACCESS_TOKEN")
