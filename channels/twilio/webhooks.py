"""Twilio's webhooks: status callbacks of our texts, and texts people send to our numbers.

Both are form-encoded and signed with the account's auth token (TWILIO_AUTH_TOKEN): X-Twilio-Signature is
HMAC-SHA1 over the URL Twilio called and the sorted form fields, verified with twilio's own
`RequestValidator`. Without the token every request is refused. A status callback's URL carries the
send's tracked-link token (`?ct=`), so it matches its send without a lookup. An inbound text is read into
an `Inbound` (the sender in E.164, the text, and the keyword Twilio's Advanced Opt-Out recognised, if
any); the tracking service decides what to do with it and this module answers in TwiML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape as xml_escape

from clarion.base import addresses
from clarion.base.consent import Reply
from clarion.channels.webhooks import Context, Inbound, Refused, Webhook, WebhookRead, WebhookRequest
from clarion.ledger import ProviderEvent

TOKEN_VARIABLE = "TWILIO_AUTH_TOKEN"
SIGNATURE = "X-Twilio-Signature"
MAX_BODY = 16 * 1024
STATUSES = frozenset(
    {"accepted", "queued", "sending", "sent", "delivered", "undelivered", "failed", "read", "canceled"}
)
_OPT_OUT_TYPES = {"STOP": Reply.STOP, "START": Reply.START, "HELP": Reply.HELP}

Verify = Callable[[str, Mapping[str, str], Mapping[str, str]], None]


def webhooks(environ: Mapping[str, str]) -> list[Webhook]:
    """Status callbacks and inbound texts; both refused (403) while TWILIO_AUTH_TOKEN is not set."""
    token = environ.get(TOKEN_VARIABLE)
    verify = verifier(token) if token else None

    def form(request: WebhookRequest) -> dict[str, str]:
        if verify is None:
            raise Refused(403, f"Twilio webhook refused: {TOKEN_VARIABLE} is not set")
        params = read_form(request)
        verify(request.url, params, request.headers)
        return params

    def status(request: WebhookRequest, context: Context) -> WebhookRead:
        return read_status(form(request), request.query.get("ct"), context)

    def inbound(request: WebhookRequest, context: Context) -> WebhookRead:
        return WebhookRead(inbound=[read_inbound(form(request))])

    return [
        Webhook("/webhooks/twilio", MAX_BODY, status),
        Webhook("/webhooks/twilio/inbound", MAX_BODY, inbound, reply=twiml),
    ]


def verifier(auth_token: str) -> Verify:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(auth_token)

    def verify(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> None:
        signature = headers.get(SIGNATURE)
        if not signature:
            raise Refused(401, "Twilio signature header missing")
        if not validator.validate(url, dict(params), signature):
            raise Refused(403, "Twilio signature does not verify")

    return verify


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature for a form posted to `url`, as Twilio computes it (the sandbox signs with this)."""
    from twilio.request_validator import RequestValidator

    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def read_form(request: WebhookRequest) -> dict[str, str]:
    if "application/x-www-form-urlencoded" not in request.content_type:
        raise Refused(415, "Twilio callbacks are form-encoded")
    try:
        body = request.body.decode()
        return dict(parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body)))
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "Twilio body is not a form") from None


def read_status(params: Mapping[str, str], token: str | None, context: Context) -> WebhookRead:
    status = params.get("MessageStatus") or params.get("SmsStatus")
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not status or not sid:
        raise Refused(400, "Twilio callback without MessageSid and MessageStatus")
    target = context.resolve(token) if token else None
    if target is None or status not in STATUSES:
        return WebhookRead(unmatched=1)
    error = params.get("ErrorCode")
    event = ProviderEvent(
        event_key=f"twilio:{sid}:{status}"[:255],
        run_id=target.run_id,
        channel=target.channel,
        variant=target.variant,
        contact_seq=target.contact_seq,
        kind=status,
        at=datetime.now(UTC),
        provider_id=sid[:64],
        detail=f"error {error[:16]}" if error else None,
    )
    return WebhookRead(events=[event])


def read_inbound(params: Mapping[str, str], region: str = "US") -> Inbound:
    """A text someone sent to one of our numbers. Twilio's Advanced Opt-Out names the keyword it matched
    (OptOutType); the text is classified again by the tracking service either way."""
    try:
        sender: str | None = addresses.phone(params.get("From", ""), region, strict=False)
    except addresses.AddressError:
        sender = None
    return Inbound(
        provider="twilio",
        kind=addresses.AddressKind.SMS,
        sender=sender,
        to=params.get("To", "")[:32],
        text=params.get("Body", ""),
        message_id=params.get("MessageSid", "")[:64],
        keyword=_OPT_OUT_TYPES.get(params.get("OptOutType", "").strip().upper()),
    )


def twiml(message: str | None = None) -> tuple[str, str]:
    """A TwiML answer: nothing to say, or one message back to the sender."""
    if not message:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>', "text/xml"
    body = xml_escape(message)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{body}</Message></Response>',
        "text/xml",
    )


__all__ = ["STATUSES", "read_inbound", "read_status", "sign", "twiml", "verifier", "webhooks"]
