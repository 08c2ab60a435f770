"""Threads' token, user and endpoint: THREADS_ACCESS_TOKEN, THREADS_USER_ID, CLARION_THREADS_URL. Apart from
the adapter (see clarion.channels.registry, `clarion.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from clarion.channels.base import ProviderSettings

THREADS_API = "https://graph.threads.net"


class ThreadsSettings(ProviderSettings):
    access_token: SecretStr = Field(validation_alias="THREADS_ACCESS_TOKEN")
    user_id: str = Field(default="me", validation_alias="THREADS_USER_ID", pattern=r"^(me|\d+)$")
    base_url: str = Field(default=THREADS_API, validation_alias="CLARION_THREADS_URL")
