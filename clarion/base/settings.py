"""Clarion's own settings, from the environment (never from a campaign file).

CLARION_HOME           folder for local state (default .clarion): the SQLite ledger, the dev signing key
CLARION_SECRET_KEY     key that signs tracked links; without it a random key is kept in CLARION_HOME
CLARION_DATABASE_URL   the ledger's database (default sqlite:///<CLARION_HOME>/clarion.db)
CLARION_MAX_WORKERS    send tasks running at once in a launch (default 8)
CLARION_SLEEP_WITHIN   seconds a deployed launch sleeps through; a longer wait ends the flow run and
                       schedules its continuation (default 120)
CLARION_APPROVAL_POLL  seconds between a paused launch's checks for an approver's answer (default 2)
CLARION_REDIS_URL      Redis shared by a launch's shards (pacing, breaker, opening instant); needed with
                       CLARION_SEND_POOL
CLARION_SEND_POOL      a Prefect work pool whose workers send a launch's batches as shards (default: none,
                       every batch in the launch's own process)
CLARION_SHARDS         shards per wave when a send pool is set (default 2)
(Providers' credentials are read by their adapters: channels/<provider>/adapter.py.)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_KEY_LENGTH = 32


class ClarionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLARION_", extra="ignore")

    home: Path = Path(".clarion")
    secret_key: SecretStr | None = None
    database_url: str | None = None
    max_workers: int = Field(default=8, ge=1, le=256)
    sleep_within: float = Field(default=120.0, ge=0)
    approval_poll: float = Field(default=2.0, gt=0, le=60)
    redis_url: str | None = None
    send_pool: str | None = None
    shards: int = Field(default=2, ge=1, le=256)

    def ledger_url(self) -> str:
        """CLARION_DATABASE_URL, else a SQLite file in CLARION_HOME."""
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home.resolve() / 'clarion.db'}"

    def signing_key(self) -> bytes:
        """The key for link tokens: CLARION_SECRET_KEY, else one generated once and kept in CLARION_HOME.

        The generated key suits one machine (the demo, a laptop); production sets CLARION_SECRET_KEY so
        that the senders and the tracking service share it.
        """
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if len(value) < MIN_KEY_LENGTH:
                from clarion.base.errors import ClarionError

                raise ClarionError(
                    f"CLARION_SECRET_KEY is too short ({len(value)} characters); use at least "
                    f"{MIN_KEY_LENGTH}, e.g. the output of: "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
            return value.encode()
        path = self.home / "secret.key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()


class TrackingSettings(BaseSettings):
    """What `clarion serve` needs besides ClarionSettings, from the environment. (The providers' webhook
    keys, such as SENDGRID_WEBHOOK_PUBLIC_KEY and TWILIO_AUTH_TOKEN, are read by each provider's
    webhooks, channels/<provider>/webhooks.py.)

    CLARION_CONVERSION_SECRET    shared secret the landing page signs conversions with
    CLARION_PUBLIC_URL           the URL the service is reached at from outside (Twilio signs that URL);
                                 default: the URL of each request as the service sees it
    CLARION_RATE_LIMIT           tracked links and unsubscribe pages per client address (`limits` syntax,
                                 e.g. "30/second"; "off" turns it off)
    CLARION_REJECT_LIMIT         refused requests (forged, malformed) a client may make before every
                                 request of its gets 429 without being read ("off" turns it off)
    CLARION_SMS_HELP_REPLY       the answer to an SMS HELP (who you are, how to stop); none: no reply
    CLARION_ACTBLUE_USERNAME     the HTTP Basic credentials given to ActBlue for its webhooks
    CLARION_ACTBLUE_PASSWORD
    CLARION_ACTIONNETWORK_KEY    the key in the URL registered with Action Network (?key=...)
    STRIPE_WEBHOOK_SECRET        the Stripe endpoint's signing secret (whsec_...)
    CLARION_WEBHOOKS_TIMEOUT     seconds an outbound event's endpoint has to answer (default 10)
    CLARION_WEBHOOKS_MAX_ATTEMPTS  tries per outbound event before it is dead (default 12, about a day)
    A webhook whose key is not set is refused (403): nothing unverified is ever recorded.
    """

    model_config = SettingsConfigDict(extra="ignore")

    clarion_conversion_secret: SecretStr | None = None
    clarion_public_url: str | None = None
    clarion_rate_limit: str = "30/second"
    clarion_reject_limit: str = "20/minute"
    clarion_sms_help_reply: str | None = None
    clarion_actblue_username: str | None = None
    clarion_actblue_password: SecretStr | None = None
    clarion_actionnetwork_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    clarion_webhooks_timeout: float = Field(default=10.0, gt=0, le=120)
    clarion_webhooks_max_attempts: int = Field(default=12, ge=1, le=100)


class ConsoleSettings(BaseSettings):
    """The console of `clarion serve` (/console), from the environment.

    CLARION_CONSOLE_USER_HEADER      the header a reverse proxy names its authenticated user in (e.g.
                                     X-Forwarded-User); read only from CLARION_CONSOLE_TRUSTED_PROXIES
    CLARION_CONSOLE_TRUSTED_PROXIES  the proxies' addresses or networks, comma-separated (e.g.
                                     127.0.0.1,10.0.0.0/8); required with the header
    CLARION_CONSOLE_SESSION_HOURS    how long a sign-in lasts (default 8, a night's work)
    """

    model_config = SettingsConfigDict(extra="ignore")

    clarion_console_user_header: str | None = None
    clarion_console_trusted_proxies: str = ""
    clarion_console_session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
