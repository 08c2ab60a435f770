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
CLARION_SEND_HELPERS   processes of this machine that help a launch send its batches, beside its own
                       (default auto: one on a machine with two cores or more, for an audience file of
                       1 MB or more; 0: none; clarion/engine/helpers.py)
(Providers' credentials are read by their adapters: channels/<provider>/adapter.py.)
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_KEY_LENGTH = 32
MAX_HELPERS = 16  # local send helpers (CLARION_SEND_HELPERS): beyond this, use a send pool
#: The tracking service's default rate limits (per client, and for refused requests), in the `limits` syntax.
_DEFAULT_LIMITS = ("30/second", "20/minute")


class ClarionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLARION_", extra="ignore")

    home: Path = Path(".clarion")
    secret_key: SecretStr | None = None
    database_url: str | None = None
    max_workers: int = Field(default=8, ge=1, le=256)
    sleep_within: float = Field(default=120.0, ge=0, le=7 * 86_400, allow_inf_nan=False)
    approval_poll: float = Field(default=2.0, gt=0, le=60, allow_inf_nan=False)
    redis_url: str | None = None
    send_pool: str | None = None
    shards: int = Field(default=2, ge=1, le=256)
    send_helpers: str = "auto"

    @field_validator("home")
    @classmethod
    def _home(cls, value: Path) -> Path:
        for folder in (value, *value.parents):
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"{str(folder)!r} is a file, not a folder; CLARION_HOME names a folder")
        return value

    @field_validator("send_helpers")
    @classmethod
    def _helpers(cls, value: str) -> str:
        value = value.strip().lower()
        if value == "auto" or (value.isdigit() and int(value) <= MAX_HELPERS):
            return value
        raise ValueError(f"use 'auto', or a number of helper processes from 0 to {MAX_HELPERS}")

    @field_validator("send_pool")
    @classmethod
    def _pool(cls, value: str | None) -> str | None:
        from clarion.base.identifiers import check_identifier

        return None if not value else check_identifier(value, "work pool name")

    @property
    def postgres_ledger(self) -> bool:
        """Whether the ledger is a PostgreSQL database (CLARION_DATABASE_URL), not a SQLite file."""
        return (self.database_url or "").startswith(("postgresql", "postgres"))

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
            # written whole, then linked in place: processes starting together (a launch and its send
            # helper, a first run beside `clarion serve`) agree on one key, and none reads a half-written one
            self.home.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".secret.key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(32))
                os.link(temporary, path)
            except FileExistsError:  # another process linked its key first: that one is the key
                pass
            finally:
                temporary.unlink(missing_ok=True)
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
    clarion_rate_limit: str = _DEFAULT_LIMITS[0]
    clarion_reject_limit: str = _DEFAULT_LIMITS[1]
    clarion_sms_help_reply: str | None = Field(default=None, max_length=1600)
    clarion_actblue_username: str | None = None
    clarion_actblue_password: SecretStr | None = None
    clarion_actionnetwork_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    clarion_webhooks_timeout: float = Field(default=10.0, gt=0, le=120)
    clarion_webhooks_max_attempts: int = Field(default=12, ge=1, le=100)

    @field_validator("clarion_rate_limit", "clarion_reject_limit")
    @classmethod
    def _limit(cls, value: str) -> str:
        if value.strip().lower() == "off" or value in _DEFAULT_LIMITS:
            return value  # the defaults are good: every command need not load `limits` to say so
        from limits import parse_many

        try:
            items = parse_many(value)
        except ValueError:
            items = []
        zero_window = re.search(r"(/|\bper)\s*0+\s*[a-z]", value.lower())  # `limits` reads 1/0 s as 1/s
        if not items or zero_window or any(item.amount < 1 for item in items):
            raise ValueError(
                f"{value!r} is not a rate limit: use e.g. 30/second, 20/minute or 100 per hour ('off' "
                "turns it off)"
            )
        return value


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
    clarion_console_session_hours: float = Field(default=8.0, gt=0, le=24 * 30, allow_inf_nan=False)

    @field_validator("clarion_console_user_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
            raise ValueError(f"{value!r} is not an HTTP header name (e.g. X-Forwarded-User)")
        return value

    @field_validator("clarion_console_trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        import ipaddress

        for item in (part.strip() for part in value.split(",") if value.strip()):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an address or network (e.g. 127.0.0.1,10.0.0.0/8)"
                ) from None
        return value


#: Prefect phones home from its server (a telemetry heartbeat) and its client (analytics events): neither
#: can reach anything from an offline machine, and the server's failure printed a traceback before
#: Clarion's own output. Off unless the user set them.
QUIET_ENVIRONMENT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}


def quiet_dependencies() -> None:
    """Turn off the dependencies' telemetry (the user's own setting wins), for this process and the
    servers it starts (they inherit the environment)."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def check_environment(extra: Iterable[type[BaseSettings]] = ()) -> None:
    """Read every Clarion setting now: a malformed one is a ClarionError naming the variable and what it
    must be, never a traceback later (or a server that starts and refuses every request).

    `extra`: more settings classes (the providers'), whose variables are checked only when set (a
    provider's credentials are needed only by the commands that reach it).
    """
    from clarion.base.errors import ClarionError

    providers = _PROVIDER_VARIABLES | {
        str(field.validation_alias)
        for model in extra
        for field in model.model_fields.values()
        if isinstance(field.validation_alias, str)
    }
    problems = [
        problem for name, value in os.environ.items() if (problem := _generic(name, value, providers))
    ]
    for model in (ClarionSettings, TrackingSettings, ConsoleSettings):
        try:
            settings = model()
        except ValidationError as exc:
            problems += [_named(model, error) for error in exc.errors()]
            continue
        if isinstance(settings, ClarionSettings) and settings.secret_key is not None:
            try:
                settings.signing_key()  # too short: said now, not at the first link
            except ClarionError as exc:
                problems.append(str(exc))
    for provider in extra:
        problems += _set_fields(provider)
    if problems:
        raise ClarionError("; ".join(dict.fromkeys(problems)))


#: The variables whose value is a URL, with the schemes each takes; any other CLARION_..._URL (a provider's
#: API address, e.g. CLARION_BLUESKY_URL) takes http or https.
URL_SCHEMES = {
    "CLARION_DATABASE_URL": ("sqlite", "postgresql", "postgres"),
    "CLARION_REDIS_URL": ("redis", "rediss", "unix"),
    "CLARION_PUBLIC_URL": ("http", "https"),
    "CLARION_SENDGRID_URL": ("http", "https"),
    "CLARION_TWILIO_URL": ("http", "https"),
    "CLARION_X_URL": ("http", "https"),
}
MIN_SECRET = {"CLARION_CONVERSION_SECRET": 16}


def _generic(name: str, value: str, providers: set[str]) -> str | None:
    """What is wrong with a Clarion variable (or a provider's, `providers`) whatever its type: control
    characters, blanks around it, a URL that is not one."""
    if not name.startswith("CLARION_") and name not in providers:
        return None
    shown = "its value" if _secret(name) else repr(value if len(value) <= 60 else value[:57] + "...")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{name}: {shown} holds control characters (a newline pasted with it?); remove them"
    if value != value.strip():
        return f"{name}: {shown} starts or ends with blanks; remove them"
    schemes = URL_SCHEMES.get(name) or (("http", "https") if name.endswith("_URL") else None)
    if schemes and value:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises for a port out of range)
        except ValueError as exc:
            return f"{name}: {shown} is not a URL ({exc})"
        if parts.scheme.split("+", 1)[0] not in schemes or not (parts.netloc or parts.path.strip("/")):
            return f"{name}: {shown} is not a {' or '.join(schemes)} URL"
    if name in MIN_SECRET and 0 < len(value) < MIN_SECRET[name]:
        return f"{name}: too short ({len(value)} characters); use at least {MIN_SECRET[name]}"
    return None


#: Provider variables checked for control characters and blanks (their types by the providers' models):
#: the webhook keys read by channels/<provider>/webhooks.py and by the donation platforms' webhooks
#: (clarion/tracking/donations); every registered provider's settings model
#: adds its own variables (check_environment's `extra`).
_PROVIDER_VARIABLES = {
    "SENDGRID_API_KEY",
    "SENDGRID_WEBHOOK_PUBLIC_KEY",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "X_ACCESS_TOKEN",
    "X_API_KEY",
    "X_API_SECRET",
    "X_ACCESS_TOKEN_SECRET",
    "X_CONSUMER_SECRET",
    "STRIPE_WEBHOOK_SECRET",
}


def _secret(name: str) -> bool:
    return any(word in name for word in ("KEY", "SECRET", "TOKEN", "PASSWORD"))


def _named(model: type[BaseSettings], error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    prefix = model.model_config.get("env_prefix", "") or ""
    name = (prefix + field).upper()
    value = "its value" if _secret(name) else repr(error.get("input"))[:60]
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}: {value}: {message}; fix it or unset it"


def _set_fields(model: type[BaseSettings]) -> list[str]:
    """The problems of the variables of `model` that are set, each field checked on its own."""
    from pydantic import TypeAdapter

    problems = []
    for field in model.model_fields.values():
        name = field.validation_alias
        if not isinstance(name, str) or name not in os.environ:
            continue
        try:
            shape: Any = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
            TypeAdapter(shape).validate_python(os.environ[name])
        except ValidationError as exc:
            value = "its value" if _secret(name) else repr(os.environ[name])[:60]
            problems.append(f"{name}: {value}: {exc.errors()[0]['msg']}; fix it or unset it")
    return problems
