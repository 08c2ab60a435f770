"""SendGrid email: up to 1,000 personalizations per /v3/mail/send request, through the sendgrid SDK.

Credentials come from the environment: SENDGRID_API_KEY.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
from collections import Counter
from collections.abc import Sequence
from email.utils import formataddr, parseaddr
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from markupsafe import escape
from pydantic import Field, field_validator

from clarion.base import addresses
from clarion.base.timing import parse_clock, zone
from clarion.channels.base import (
    AccountCheck,
    Channel,
    ChannelConfig,
    ChannelKind,
    FrequencyCap,
    Message,
    Outbound,
    Part,
    ProviderError,
    ProviderSettings,
    RateLimited,
    Rejected,
    Retryable,
    SendOutcome,
    SendResult,
    Uncertain,
    retry_after_seconds,
    seconds_until,
)
from clarion.channels.sendgrid.settings import SendGridSettings

if TYPE_CHECKING:
    from clarion.channels.reconcile import Found, Lookup


SENDGRID_MAX_PERSONALIZATIONS = 1000
JSON_UTF8 = "application/json; charset=utf-8"
#: SendGrid holds a message with send_at for at most 72 hours; keep an hour's margin.
SCHEDULE_HORIZON = 71 * 3600.0
# python_http_client logs request headers (the API key) and payloads (addresses) at DEBUG.
logging.getLogger("python_http_client").setLevel(logging.INFO)


#: SendGrid refuses an email (parts and attachments) of 30 MB or more (v3 Mail Send).
MAX_EMAIL_BYTES = 30_000_000


class SendGridConfig(ChannelConfig):
    """`channels.<id>:` for email through SendGrid; `body`/`template` is the HTML part."""

    provider: Literal["sendgrid"]
    from_: str = Field(alias="from", description='Sender, e.g. "Team Example <team@example.org>".')
    reply_to: str | None = None
    subject: str = Field(description="Inline Jinja template of the subject line.")
    text: str | None = Field(default=None, description="Inline Jinja template of the plain-text part.")
    text_template: str | None = Field(default=None, description="Template file of the plain-text part.")
    categories: list[str] = Field(default_factory=list, max_length=10)
    postal_address: str | None = Field(
        default=None,
        description="The sender's postal address, shown in every email ({{ postal_address }}); required.",
    )
    frequency_cap: FrequencyCap | None = Field(
        default=None, description="At most `max` emails to one address per `per`, across campaigns."
    )
    batch_size: int = Field(
        default=5 * SENDGRID_MAX_PERSONALIZATIONS,
        ge=1,
        le=10 * SENDGRID_MAX_PERSONALIZATIONS,
        description="Recipients per send task; a task sends them in requests of at most 1,000 (fewer when "
        "this is smaller). Five requests a task by default: Prefect's cost per task run is then paid "
        "once per 5,000 emails.",
    )
    send_at_local: str | None = Field(
        default=None,
        description='Deliver at this local time in each contact\'s zone, e.g. "09:00" (SendGrid send_at).',
    )
    default_timezone: str = Field(
        default="UTC", description="Zone for contacts with no `timezone` column value (IANA name)."
    )

    _check_send_at = field_validator("send_at_local")(
        lambda cls, v: None if v is None else parse_clock(v).strftime("%H:%M")
    )
    _check_zone = field_validator("default_timezone")(lambda cls, v: zone(v).key)

    @field_validator("from_", "reply_to")
    @classmethod
    def _valid_mailbox(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name, address = parseaddr(value)
        if not address:
            raise ValueError(f'{value!r} is not an email address (e.g. "Team <team@example.org>")')
        return formataddr((name, addresses.email(address))) if name else addresses.email(address)

    def sender(self) -> tuple[str | None, str]:
        name, address = parseaddr(self.from_)
        return (name or None, address)


#: Substitution keys standing for each recipient's tracked link and unsubscribe link, so one request's
#: content serves many.
LINK_HTML, LINK_TEXT = "-clarion.link.html-", "-clarion.link.text-"
UNSUB_HTML, UNSUB_TEXT = "-clarion.unsub.html-", "-clarion.unsub.text-"
#: RFC 8058 one-click unsubscribe: mail clients POST "List-Unsubscribe=One-Click" to the header's URL.
ONE_CLICK = "List-Unsubscribe=One-Click"


class SendGridChannel(Channel):
    provider: ClassVar[str] = "sendgrid"
    preload: ClassVar[tuple[str, ...]] = ("sendgrid", "sendgrid.helpers.mail", "python_http_client")
    kind: ClassVar[ChannelKind] = ChannelKind.EMAIL
    config_model: ClassVar[type[ChannelConfig]] = SendGridConfig
    address_column: ClassVar[str | None] = "email"
    max_batch: ClassVar[int] = SENDGRID_MAX_PERSONALIZATIONS
    substitutes: ClassVar[frozenset[str]] = frozenset({"html", "text"})  # see `send`
    rule_fields: ClassVar[dict[str, str]] = {
        "subject_empty": "subject",
        "subject_lines": "subject",
        "no_postal_address": "postal_address",
    }
    parts: ClassVar[tuple[Part, ...]] = (
        Part("subject", inline="subject"),
        Part("html", inline="body", file="template", html=True),
        Part("text", inline="text", file="text_template", required=False),
    )

    webhooks_module: ClassVar[str | None] = "clarion.channels.sendgrid.webhooks"
    emulator_class: ClassVar[str | None] = "clarion.channels.sendgrid.emulator:SendGridEmulator"
    settings_model: ClassVar[type[ProviderSettings]] = SendGridSettings
    #: Email Activity shows a message a few minutes after SendGrid processed it.
    listing_delay: ClassVar[float] = 600.0
    schedule_horizon: ClassVar[float] = SCHEDULE_HORIZON
    _batch_id: str | None = None

    @classmethod
    def normalise_address(cls, raw: str, config: ChannelConfig) -> str:
        return addresses.email(raw)

    @classmethod
    def send_address(cls, raw: str, config: ChannelConfig) -> str:
        return raw.strip()  # validated at planning; email-validator is the slowest step of a send

    @classmethod
    def measure(cls, message: Message) -> dict[str, Any]:
        return {"html_bytes": len((message.html or "").encode())}

    @classmethod
    def size(cls, message: Message, config: ChannelConfig) -> tuple[int, int]:
        """The message's bytes (subject, text and HTML parts) against SendGrid's 30 MB per email."""
        parts = (message.subject or "", message.text, message.html or "")
        return sum(len(part.encode()) for part in parts), MAX_EMAIL_BYTES

    @classmethod
    def check(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        problems = []
        subject = message.subject or ""
        if not subject.strip():
            problems.append(("subject_empty", "subject is empty; every email needs a subject line"))
        elif "\n" in subject.strip() or "\r" in subject:
            problems.append(("subject_lines", "subject spans several lines; keep it on one line"))
        if not message.text.strip():
            problems.append(("text_empty", "the plain-text part is empty"))
        problems.extend(cls._compliance(message, config))
        return problems

    @classmethod
    def _compliance(cls, message: Message, config: ChannelConfig) -> list[tuple[str, str]]:
        """What the law and the mailbox providers ask of bulk email: the sender's postal address and a
        working unsubscribe link in the message itself (the List-Unsubscribe headers are added at send)."""
        assert isinstance(config, SendGridConfig)
        problems = []
        if message.unsubscribe is None:
            problems.append(
                (
                    "no_unsubscribe_endpoint",
                    "an email needs an unsubscribe link served by the tracking service: set "
                    "`tracking: {base_url: ...}` (where `clarion serve` answers)",
                )
            )
        elif message.unsubscribe not in (message.html or "") and message.unsubscribe not in message.text:
            problems.append(
                (
                    "no_unsubscribe_link",
                    "the email has no unsubscribe link: add "
                    '<a href="{{ unsubscribe_url }}">Unsubscribe</a> to its template',
                )
            )
        if not (config.postal_address or "").strip():
            problems.append(
                (
                    "no_postal_address",
                    'an email needs the sender\'s postal address: add `postal_address: "..."` to the '
                    "channel and show it with {{ postal_address }} in the template",
                )
            )
        elif not _shows(config.postal_address, message):
            problems.append(
                (
                    "postal_address_not_shown",
                    "the email does not show the sender's postal address: add {{ postal_address }} to "
                    "its template",
                )
            )
        return problems

    # -- sending -----------------------------------------------------------------------------------

    def _client(self) -> Any:
        from sendgrid import SendGridAPIClient

        assert isinstance(self.settings, SendGridSettings)
        client = SendGridAPIClient(
            api_key=self.settings.api_key.get_secret_value(), host=self.settings.base_url
        )
        client.client.timeout = self.settings.timeout
        return client

    def warm(self) -> None:
        import sendgrid.helpers.mail  # noqa: F401

        self._client()

    def send(self, batch: Sequence[Outbound]) -> list[SendResult]:
        """One request per group of recipients whose content is the same but for their own values.

        A message rendered from a skeleton (`Message.shared`) carries its content with a key where each
        per-recipient value goes (first name, links, a variant's words) and the values apart: its group is
        the skeleton, so a campaign whose templates differ per contact only by such values goes out 1,000
        recipients a request, each personalization carrying its values as substitutions. A message rendered
        in full has its links replaced by keys the same way, and is grouped with those whose content is then
        the same.
        """
        groups: dict[tuple[str, str, int | None], list[tuple[Outbound, dict[str, str]]]] = {}
        for item in batch:
            m = item.message
            # one zone's local time is one instant: its contacts share a request
            at = None if item.send_at is None else int(item.send_at.timestamp())
            if m.shared is not None and "html" in m.shared and "text" in m.shared:
                groups.setdefault((m.shared["html"], m.shared["text"], at), []).append((item, m.values))
                continue
            html = (m.html or "").replace(str(escape(m.link)), LINK_HTML).replace(m.link, LINK_HTML)
            text = m.text.replace(m.link, LINK_TEXT)
            values = {LINK_HTML: str(escape(m.link)), LINK_TEXT: m.link}
            if m.unsubscribe:
                html = html.replace(str(escape(m.unsubscribe)), UNSUB_HTML).replace(m.unsubscribe, UNSUB_HTML)
                text = text.replace(m.unsubscribe, UNSUB_TEXT)
                values.update({UNSUB_HTML: str(escape(m.unsubscribe)), UNSUB_TEXT: m.unsubscribe})
            groups.setdefault((html, text, at), []).append((item, values))
        client = self._client()
        results: dict[str, SendResult] = {}
        for (html, text, at), items in groups.items():
            payload = self._payload(html, text, items)
            if at is not None:
                payload["send_at"] = at  # per personalization too (see _payload); both, as SendGrid allows
                if self._batch_id:
                    payload["batch_id"] = self._batch_id
            try:
                message_id = self._post(client, payload)
            except ProviderError as exc:
                results.update((i.recipient, exc.result(i.recipient)) for i, _ in items)
                continue
            results.update(
                (i.recipient, SendResult(i.recipient, SendOutcome.SENT, message_id)) for i, _ in items
            )
        return [results[item.recipient] for item in batch]

    def _payload(self, html: str, text: str, items: list[tuple[Outbound, dict[str, str]]]) -> dict[str, Any]:
        """The /v3/mail/send body, built as the SDK's `Mail(...).get()` builds it (the helpers' objects cost
        more than the request): content once, one personalization per recipient, nothing said twice
        (`_condensed`). The subject most of the request's recipients share is given at the top (SendGrid's
        schema requires one there), and in a personalization only where its recipient's differs (it wins
        there: a request may carry two variants' subjects)."""
        assert isinstance(self.config, SendGridConfig)
        name, address = self.config.sender()
        html, text, substitutions = _condensed(html, text, [values for _, values in items])
        subjects = Counter(item.message.subject or "" for item, _ in items)
        subject = subjects.most_common(1)[0][0]
        personalizations = []
        for (item, _), values in zip(items, substitutions, strict=True):
            m = item.message
            p: dict[str, Any] = {"to": [{"email": m.to or ""}]}
            if (m.subject or "") != subject:
                p["subject"] = m.subject or ""
            if values:
                p["substitutions"] = values
            if m.unsubscribe:
                p["headers"] = {"List-Unsubscribe": f"<{m.unsubscribe}>", "List-Unsubscribe-Post": ONE_CLICK}
            p["custom_args"] = self._custom_args(m)
            if item.send_at is not None:
                p["send_at"] = int(item.send_at.timestamp())
            personalizations.append(p)
        payload: dict[str, Any] = {
            "from": {"email": address, **({"name": name} if name else {})},
            "subject": subject,
            "personalizations": personalizations,
            "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        }
        if self.config.reply_to:
            reply_name, reply_address = parseaddr(self.config.reply_to)
            payload["reply_to"] = {"email": reply_address, **({"name": reply_name} if reply_name else {})}
        if self.config.categories:
            payload["categories"] = list(self.config.categories)
        return payload

    @staticmethod
    def _custom_args(message: Message) -> dict[str, str]:
        args = {"clarion_channel": message.channel, "clarion_variant": message.variant}
        if message.contact_id is not None:
            args["clarion_contact"] = message.contact_id
        if message.run:
            args["clarion_run"] = message.run
        if message.token:
            args["clarion_token"] = message.token  # signed; how the tracking service matches events
        return args

    def schedule_batch(self) -> str | None:
        """A batch id (POST /v3/mail/batch) that this adapter's scheduled emails carry, so that
        `clarion email cancel` can cancel them (POST /v3/user/scheduled_sends); None when SendGrid would
        not make one (the emails are then sent scheduled, but cannot be cancelled)."""
        if self._batch_id is None:
            client = self._client()
            try:
                response = client.client.mail.batch.post()
                self._batch_id = str(_json_body(response).get("batch_id") or "") or None
            except Exception as exc:  # every way the request can fail: scheduled without a batch id
                logging.getLogger("clarion.channels.sendgrid").warning(
                    "SendGrid made no batch id (%s): scheduled emails will not be cancellable",
                    _why_refused(exc),
                )
        return self._batch_id

    def cancel_scheduled(self, batch_id: str) -> None:
        """Cancel the batch's scheduled emails not yet delivered (SendGrid's Cancel Scheduled Sends)."""
        from python_http_client import exceptions as sg_errors

        client = self._client()
        try:
            client.client.user.scheduled_sends.post(request_body={"batch_id": batch_id, "status": "cancel"})
        except sg_errors.HTTPError as exc:
            raise _mapped(exc) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise Retryable(f"cannot reach SendGrid: {exc}") from exc

    def reconcile(self, lookups: Sequence[Lookup]) -> list[Found]:
        """Each uncertain email looked up in SendGrid's Email Activity API, where the account has it
        (channels/sendgrid/reconcile.py)."""
        from clarion.channels.sendgrid.reconcile import look_up

        assert isinstance(self.config, SendGridConfig)
        return look_up(self._client(), self.config.sender()[1], lookups)

    def verify(self, planned: int) -> list[AccountCheck]:
        """The key's scopes (GET /v3/scopes: it needs mail.send), then the credits left this period (GET
        /v3/user/credits, on plans that have them) against the planned volume."""
        client = self._client()
        try:
            scopes = _json_body(client.client.scopes.get()).get("scopes") or []
        except Exception as exc:  # every way a request can fail becomes the check's reason
            return [AccountCheck("credentials", False, _why_refused(exc))]
        if "mail.send" not in scopes:
            return [AccountCheck("credentials", False, "the API key lacks the Mail Send permission")]
        checks = [AccountCheck("credentials", True, "SendGrid accepts the API key, with Mail Send")]
        try:
            remain = int(_json_body(client.client.user.credits.get())["remain"])
        except Exception:  # no credits on this plan, or the key may not read them: nothing to compare
            checks.append(AccountCheck("quota", True, "SendGrid reports no credit limit for this key"))
            return checks
        ok = remain >= planned
        detail = f"{remain:,} emails left this period for {planned:,} planned"
        checks.append(AccountCheck("quota", ok, detail if ok else f"only {detail}"))
        return checks

    def _post(self, client: Any, payload: dict[str, Any]) -> str:
        """POST /v3/mail/send through the SDK's HTTP client (what `SendGridAPIClient.send` calls), the body
        serialised by orjson rather than the client's `json.dumps`: a 1,000-recipient body is about 1 MB,
        and `json.dumps` of it held the interpreter 0.5 s of a 100,000-email run's 7 (py-spy). Given a
        body that is not a dict, the client encodes it and sends it as it is when the request's
        Content-Type is not exactly `application/json`, so the body goes as `application/json;
        charset=utf-8` (what SendGrid's own C# library sends), UTF-8 rather than ASCII escapes
        (`_Body`). The client's headers are the SDK client's own (`_client()` makes one per adapter
        call), so nothing else sees the header."""
        from python_http_client import exceptions as sg_errors

        try:
            response = client.client.mail.send.post(
                request_body=_Body(orjson.dumps(payload)), request_headers={"Content-Type": JSON_UTF8}
            )
        except sg_errors.HTTPError as exc:
            raise _mapped(exc) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)) or "timed out" in str(exc.reason):
                raise Retryable(f"connection to SendGrid timed out: {exc.reason}") from exc
            raise Retryable(f"cannot reach SendGrid: {exc.reason}") from exc
        except TimeoutError as exc:
            raise Uncertain("SendGrid did not answer in time; the request may have been accepted") from exc
        except (http.client.HTTPException, ConnectionError) as exc:
            raise Uncertain(f"connection to SendGrid dropped mid-request: {exc}") from exc
        return str(response.headers.get("X-Message-Id") or "")


class _Body:
    """A request body serialised already, as the SDK's HTTP client takes a body that is not a dict: it
    calls `encode("utf-8")` and sends what that returns."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self, encoding: str = "utf-8") -> bytes:
        assert encoding.lower().replace("-", "") == "utf8", encoding
        return _Sized(self.data)


class _Sized(bytes):
    """Request bytes that format as their size. python_http_client formats every request's body into a
    DEBUG line (`'PAYLOAD: {data}'.format(...)`) whatever the log level, which for a 1 MB body is a 1 MB
    repr made and thrown away (about 2 ms a request, 0.3 s of a 100,000-email run); and were that line
    ever logged, it would hold every recipient's address."""

    def __format__(self, spec: str) -> str:
        return f"<{len(self):,} bytes>"


def _condensed(html: str, text: str, values: list[dict[str, str]]) -> tuple[str, str, list[dict[str, str]]]:
    """One request's content and each recipient's substitutions, with nothing said twice.

    A key whose value is the same for every recipient of the request (a variant's words, or everything
    when the request has one recipient) is written into the content, and keys whose values are equal for
    every recipient (the HTML part's first name and the text part's, when no one's needs escaping) become
    one key. Each recipient gets the same words in the same places as SendGrid's substitution of the
    original keys would have given them; the request is about a quarter smaller (27-28% on the
    benchmarks' campaigns). (Values never contain
    a key: a recipient whose would is rendered in full, `substitutable`; a value the same for everyone
    that contains one is left to SendGrid all the same.)"""
    every = set().union(*values)  # a key some recipients lack stays theirs, and is never written in
    keys = [key for key in values[0] if all(key in other for other in values[1:])]
    stands: dict[str, str] = {}  # key -> what takes its place in the content
    first_with: dict[tuple[str, ...], str] = {}  # a column of values -> the first key that had it
    for key in keys:
        column = tuple(v[key] for v in values)
        if len(set(column)) == 1:
            if not any(other in column[0] for other in every):  # else SendGrid might substitute into it
                stands[key] = column[0]
        elif column in first_with:
            stands[key] = first_with[column]
        else:
            first_with[column] = key
    if not stands:
        return html, text, values
    for key, stand in stands.items():
        html, text = html.replace(key, stand), text.replace(key, stand)
    return html, text, [{k: v for k, v in each.items() if k not in stands} for each in values]


def _shows(postal_address: str | None, message: Message) -> bool:
    lines = [line.strip() for line in (postal_address or "").splitlines() if line.strip()]
    html = message.html or ""
    return all(line in message.text or str(escape(line)) in html for line in lines)


def _json_body(response: Any) -> dict[str, Any]:
    data = json.loads(response.body or b"{}")
    return data if isinstance(data, dict) else {}


def _why_refused(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return f"SendGrid refused the API key (HTTP {status}): check SENDGRID_API_KEY, or create a new key"
    if status:
        return f"SendGrid answered HTTP {status} to the key check: {_mapped(exc)}"
    reason = getattr(exc, "reason", exc)
    return f"cannot reach SendGrid to check the key: {type(exc).__name__}: {reason}"


def _mapped(exc: Any) -> ProviderError:
    """A python_http_client error as one of ours, with SendGrid's own message."""
    status = int(getattr(exc, "status_code", 0) or 0)
    body = getattr(exc, "body", b"") or b""
    try:
        errors = json.loads(body).get("errors") or []
        detail = "; ".join(
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in errors
        )
    except (ValueError, AttributeError, TypeError):
        detail = body[:200].decode(errors="replace") if isinstance(body, bytes) else str(body)[:200]
    detail = detail or getattr(exc, "reason", "") or f"HTTP {status}"
    if status == 429:
        headers = getattr(exc, "headers", None) or {}
        wait = retry_after_seconds(headers.get("Retry-After")) or seconds_until(
            headers.get("X-RateLimit-Reset"), time.time()
        )
        return RateLimited(f"SendGrid rate limit: {detail}", "429", wait)
    if status >= 500:
        return Retryable(f"SendGrid server error {status}: {detail}", str(status))
    return Rejected(f"SendGrid refused the request ({status}): {detail}", str(status))
