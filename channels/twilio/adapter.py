"""Twilio SMS: one message per request, through the twilio SDK.

Credentials come from the environment: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from twilio.http.http_client import TwilioHttpClient

from clarion.base import addresses
from clarion.base.consent import SMS_CONSENT_COLUMN
from clarion.base.timing import parse_clock, zone
from clarion.channels.base import (
    AccountCheck,
    Channel,
    ChannelConfig,
    ChannelKind,
    FrequencyCap,
    Message,
    Outbound,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Rejected,
    Retryable,
    SendOutcome,
    SendResult,
    Uncertain,
    retry_after_seconds,
)
from clarion.channels.twilio.rules import (
    GSM7_MULTI,
    GSM7_SINGLE,
    UCS2_MULTI,
    UCS2_SINGLE,
    non_gsm_characters,
    sms_length,
    tells_how_to_opt_out,
)
from clarion.channels.twilio.settings import TwilioSettings

if TYPE_CHECKING:
    from clarion.channels.reconcile import Found, Lookup


TWILIO_MAX_BODY = 1600
E164 = re.compile(r"^\+[1-9]\d{7,14}$")


class QuietHours(BaseModel):
    """The local hours texts may go out; a text due outside them waits for the window to open."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(default="08:00", description="Local time the window opens (HH:MM).")
    end: str = Field(default="21:00", description="Local time the window closes (HH:MM).")

    _check = field_validator("start", "end")(lambda cls, v: parse_clock(v).strftime("%H:%M"))


class TwilioConfig(ChannelConfig):
    """`channels.<id>:` for SMS through Twilio."""

    provider: Literal["twilio"]
    from_: str | None = Field(default=None, alias="from", description="Sending number in E.164 form.")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    max_segments: int = Field(default=3, ge=1, le=10, description="Messages longer than this are an error.")
    batch_size: int = Field(default=250, ge=1, le=5000, description="Messages per send task.")
    default_region: str = Field(
        default="US", description="Region used to read contact numbers written without a country code."
    )
    quiet_hours: QuietHours | None = Field(
        default_factory=QuietHours,
        description="Texts only go out inside these local hours (default 08:00-21:00); null turns it off.",
    )
    send_at_local: str | None = Field(
        default=None, description='Send at this local time in each contact\'s zone, e.g. "09:00".'
    )
    frequency_cap: FrequencyCap | None = Field(
        default=None, description="At most `max` texts to one number per `per`, across campaigns."
    )
    default_timezone: str = Field(
        default="UTC",
        description="Zone for contacts with no `timezone` whose number does not tell one (IANA name).",
    )

    @field_validator("from_")
    @classmethod
    def _e164_sender(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("+"):
            raise ValueError(f"{value!r} is not an E.164 number (e.g. +15551234567)")
        return addresses.phone(value, "US")

    _check_send_at = field_validator("send_at_local")(
        lambda cls, v: None if v is None else parse_clock(v).strftime("%H:%M")
    )
    _check_zone = field_validator("default_timezone")(lambda cls, v: zone(v).key)

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        import phonenumbers  # here: reading the settings does not load the numbering plans

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region code phonenumbers knows (e.g. US, GB, FR)")
        return value.upper()

    @model_validator(mode="after")
    def _has_sender(self) -> TwilioConfig:
        if not self.from_ and not self.messaging_service_sid:
            raise ValueError('needs a sender: `from: "+15551234567"` or `messaging_service_sid: MG...`')
        return self


#: Twilio error codes that mean "not now" rather than "never".
RETRYABLE_CODES = {20429, 20500, 20503, 30001}


class TwilioChannel(Channel):
    provider: ClassVar[str] = "twilio"
    preload: ClassVar[tuple[str, ...]] = ("twilio.rest", "twilio.rest.api")
    kind: ClassVar[ChannelKind] = ChannelKind.SMS
    config_model: ClassVar[type[ChannelConfig]] = TwilioConfig
    address_column: ClassVar[str | None] = "phone"
    consent_column: ClassVar[str | None] = SMS_CONSENT_COLUMN
    body_maxlen: ClassVar[int] = TWILIO_MAX_BODY
    webhooks_module: ClassVar[str | None] = "clarion.channels.twilio.webhooks"
    emulator_class: ClassVar[str | None] = "clarion.channels.twilio.emulator:TwilioEmulator"
    listing_delay: ClassVar[float] = 60.0  # the Message resource exists once Twilio answered 201
    settings_model: ClassVar[type[ProviderSettings]] = TwilioSettings

    @classmethod
    def normalise_address(cls, raw: str, config: ChannelConfig) -> str:
        region = config.default_region if isinstance(config, TwilioConfig) else "US"
        return addresses.phone(raw, region)

    @classmethod
    def send_address(cls, raw: str, config: ChannelConfig) -> str:
        raw = raw.strip()
        if E164.match(raw):
            return raw  # validated at planning, already in the provider's form
        return cls.normalise_address(raw, config)

    @classmethod
    def measure(cls, message: Message) -> dict[str, Any]:
        length = sms_length(message.text)
        return {"encoding": length.encoding, "segments": length.segments, "units": length.units}

    @classmethod
    def size(cls, message: Message, config: ChannelConfig) -> tuple[int, int]:
        """Septets (GSM-7) or UTF-16 units (UCS-2), against what `max_segments` segments hold."""
        assert isinstance(config, TwilioConfig)
        length = sms_length(message.text)
        single, multi = (GSM7_SINGLE, GSM7_MULTI) if length.encoding == "GSM-7" else (UCS2_SINGLE, UCS2_MULTI)
        return length.units, single if config.max_segments == 1 else multi * config.max_segments

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        assert isinstance(config, TwilioConfig)
        problems = []
        length = sms_length(message.text)  # cheap; measure() saw the same text
        if length.segments > config.max_segments:
            unit = "septets" if length.encoding == "GSM-7" else "UTF-16 units"
            hint = ""
            if length.encoding == "UCS-2":
                chars = "".join(non_gsm_characters(message.text)[:5])
                hint = f"; the characters {chars!r} force UCS-2 (70 per segment): replace them to use GSM-7"
            problems.append(
                (
                    "sms_segments",
                    f"message is {length.segments} segments ({length.encoding}, {length.units} {unit}), "
                    f"over max_segments {config.max_segments}; shorten it or raise max_segments{hint}",
                )
            )
        if len(message.text) > cls.body_maxlen:
            problems.append(
                (
                    "sms_too_long",
                    f"message is {len(message.text)} characters, over Twilio's {cls.body_maxlen}",
                )
            )
        if not message.text.strip():
            problems.append(("empty", "message text is empty"))
        elif not tells_how_to_opt_out(message.text):
            problems.append(
                (
                    "no_opt_out",
                    'the text does not tell how to opt out; end it with e.g. "Reply STOP to opt out" '
                    "(carriers require it, and STOP replies are honoured across campaigns)",
                )
            )
        return problems

    # -- sending -----------------------------------------------------------------------------------

    _local = threading.local()

    def _client(self) -> Any:
        """One twilio Client per thread: the SDK keeps the last response on its HTTP client."""
        from twilio.rest import Client

        assert isinstance(self.settings, TwilioSettings)
        key = (self.settings.account_sid, self.settings.base_url)
        cached = getattr(self._local, "client", None)
        if cached is None or cached[0] != key:
            http = _RecordingHttpClient(timeout=self.settings.timeout)
            client = Client(
                self.settings.account_sid, self.settings.auth_token.get_secret_value(), http_client=http
            )
            client.api.base_url = self.settings.base_url
            self._local.client = (key, client)
        return self._local.client[1]

    def warm(self) -> None:
        self._client()

    def send(self, batch: Sequence[Outbound]) -> list[SendResult]:
        client = self._client()
        assert isinstance(self.config, TwilioConfig)
        callback = f"{self.callback_base}/webhooks/twilio" if self.callback_base else None
        results = []
        for item in batch:
            kwargs: dict[str, Any] = {"to": item.message.to, "body": item.message.text}
            if self.config.messaging_service_sid:
                kwargs["messaging_service_sid"] = self.config.messaging_service_sid
            else:
                kwargs["from_"] = self.config.from_
            if callback:
                # the token names run, channel, variant and contact: callbacks match without a lookup
                token = item.message.token
                kwargs["status_callback"] = f"{callback}?ct={token}" if token else callback
            try:
                created = self._create(client, kwargs)
            except ProviderError as exc:
                results.append(exc.result(item.recipient))
                continue
            results.append(SendResult(item.recipient, SendOutcome.SENT, str(created.sid)))
        return results

    def reconcile(self, lookups: Sequence[Lookup]) -> list[Found]:
        """Each uncertain text looked up in Twilio's Messages list (channels/twilio/reconcile.py)."""
        from clarion.channels.twilio.reconcile import look_up

        assert isinstance(self.config, TwilioConfig)
        service = self.config.messaging_service_sid
        return look_up(self._client(), None if service else self.config.from_, service, lookups)

    def reply(
        self,
        to: str,
        text: str,
        *,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
    ) -> SendResult:
        """One text answering someone who wrote in (a responder's reply), through the REST API: the
        reply's sid comes back at once, so the ledger keys it by the inbound message before anything else."""
        kwargs: dict[str, Any] = {"to": to, "body": text}
        if messaging_service_sid:
            kwargs["messaging_service_sid"] = messaging_service_sid
        else:
            kwargs["from_"] = from_
        if status_callback:
            kwargs["status_callback"] = status_callback
        try:
            created = self._create(self._client(), kwargs)
        except ProviderError as exc:
            return exc.result(to)
        return SendResult(to, SendOutcome.SENT, str(created.sid))

    def verify(self, planned: int) -> list[AccountCheck]:
        """The account (its status must be active) and its balance, shown with the planned volume."""
        from twilio.base.exceptions import TwilioRestException

        assert isinstance(self.settings, TwilioSettings)
        account = self._client().api.v2010.accounts(self.settings.account_sid)
        try:
            status = account.fetch().status
        except TwilioRestException as exc:
            if exc.status in (401, 403):
                why = (
                    f"Twilio refused the credentials (error {exc.code}): "
                    "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
                )
            else:
                why = f"Twilio answered HTTP {exc.status} (error {exc.code}) to the account check"
            return [AccountCheck("credentials", False, why)]
        except requests.RequestException as exc:
            return [AccountCheck("credentials", False, f"cannot reach Twilio: {type(exc).__name__}")]
        checks = [AccountCheck("credentials", True, "Twilio accepts the credentials")]
        if status != "active":
            checks.append(AccountCheck("account", False, f"the Twilio account is {status}, not active"))
            return checks
        try:
            balance = account.balance.fetch()
            shown = f"balance {balance.balance} {balance.currency}"
            ok = float(balance.balance) > 0
        except (TwilioRestException, requests.RequestException, TypeError, ValueError):
            shown, ok = "balance not readable with these credentials", True
        detail = f"{shown}; {planned:,} texts planned (each segment is billed)"
        checks.append(AccountCheck("quota", ok, detail if ok else f"no credit left: {detail}"))
        return checks

    @staticmethod
    def _create(client: Any, kwargs: dict[str, Any]) -> Any:
        from twilio.base.exceptions import TwilioRestException

        try:
            return client.messages.create(**kwargs)
        except TwilioRestException as exc:
            code = exc.code
            detail = f"Twilio error {code}: {exc.msg}" if code else f"Twilio HTTP {exc.status}: {exc.msg}"
            if exc.status == 429 or code == 20429:
                last = getattr(client.http_client, "last_seen", None)
                wait = retry_after_seconds(last.headers.get("Retry-After")) if last is not None else None
                raise RateLimited(detail, str(code or 429), wait) from exc
            if exc.status >= 500 or code in RETRYABLE_CODES:
                raise Retryable(detail, str(code or exc.status)) from exc
            raise Rejected(detail, str(code or exc.status)) from exc
        except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
            raise Retryable(f"cannot reach Twilio: {type(exc).__name__}") from exc
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise Retryable(f"cannot reach Twilio: {type(exc).__name__}") from exc
            raise Uncertain("connection to Twilio dropped mid-request; it may have been accepted") from exc
        except requests.Timeout as exc:
            raise Uncertain("Twilio did not answer in time; the message may have been accepted") from exc


class _RecordingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Keeps the last response, whose headers (Retry-After) the SDK's exception does not carry; reads the
    environment's proxy and CA settings once, not for every text.

    `requests` reads them again for every request (the proxies for its host, honouring NO_PROXY, and
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE), and reading them walks the whole environment: some 15% of the
    SDK's CPU a text. Here the CA bundle is read when the client is made (a send thread's first text) and
    the proxies once per host the SDK asks for (api.twilio.com, or the edge and region host it makes from
    TWILIO_EDGE and TWILIO_REGION), with requests' own rules; netrc does not apply (the SDK always sends
    its own credentials)."""

    last_seen: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._proxies: dict[str, dict[str, str]] = {}
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self.session.verify = bundle
        self.session.trust_env = False

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        origin = "/".join(url.split("/", 3)[:3])  # scheme://host[:port]
        if (proxies := self._proxies.get(origin)) is None:
            proxies = self._proxies[origin] = dict(requests.utils.get_environ_proxies(url))
        self.proxy = proxies
        self.last_seen = super().request(method, url, *args, **kwargs)
        return self.last_seen


def _never_sent(exc: requests.ConnectionError) -> bool:
    """A refused or unresolvable connection never carried the request."""
    text = repr(exc)
    return any(s in text for s in ("ConnectionRefused", "NewConnectionError", "NameResolution"))
