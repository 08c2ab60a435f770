"""Opt-outs arriving at the tracking service: unsubscribe links, SendGrid's suppression events, SMS replies.

- `GET /u/{token}` shows a page with one button; `POST /u/{token}` unsubscribes. RFC 8058 one-click: mail
  clients POST `List-Unsubscribe=One-Click` to the URL of the List-Unsubscribe header, which is the same
  URL. A GET never unsubscribes, so link scanners that fetch every URL of a message cannot opt anyone out.
- SendGrid events that mean "never again": unsubscribe, group_unsubscribe, spamreport, a hard bounce
  (type "bounce"; "blocked" is temporary), and drops SendGrid made because its own lists say so.
- Twilio's inbound-message webhook: STOP and its synonyms suppress the number for SMS, START/UNSTOP/YES lift
  it, HELP is answered with the configured reply (TwiML). Twilio also handles these keywords itself (and
  refuses later texts with error 21610); Clarion keeps its own record so every campaign, sender and
  provider account honours them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from limits import RateLimitItem, parse, storage, strategies

from clarion.base.consent import Kind, Reason, Reply, classify_reply, normalise
from clarion.base.errors import ClarionError
from clarion.ledger import Suppression

#: SendGrid `dropped` reasons that come from SendGrid's own suppression lists.
_DROPPED = {
    "Bounced Address": Reason.HARD_BOUNCE,
    "Unsubscribed Address": Reason.SENDGRID_UNSUBSCRIBE,
    "Spam Reporting Address": Reason.SPAM_REPORT,
}
_EVENTS = {
    "unsubscribe": Reason.SENDGRID_UNSUBSCRIBE,
    "group_unsubscribe": Reason.SENDGRID_GROUP_UNSUBSCRIBE,
    "spamreport": Reason.SPAM_REPORT,
}


def sendgrid_suppression(item: Mapping[str, Any]) -> Suppression | None:
    """The suppression one (verified) SendGrid event calls for, if any."""
    kind = item.get("event")
    reason = _EVENTS.get(str(kind))
    if kind == "bounce" and str(item.get("type", "bounce")) == "bounce":
        reason = Reason.HARD_BOUNCE
    elif kind == "dropped":
        reason = _DROPPED.get(str(item.get("reason", "")))
    email = item.get("email")
    if reason is None or not isinstance(email, str):
        return None
    try:
        address = normalise(Kind.EMAIL, email)
    except ClarionError:
        return None
    detail = str(item.get("reason") or item.get("status") or "")[:200] or None
    return Suppression(Kind.EMAIL, address, reason, "sendgrid", detail)


def sms_reply(params: Mapping[str, str], region: str = "US") -> tuple[Reply | None, str | None]:
    """What an inbound text asks for and the normalised number it came from (None: not a phone number).

    Twilio's Advanced Opt-Out names the keyword it matched (OptOutType); otherwise the body is read."""
    opt_out = params.get("OptOutType", "").strip().upper()
    reply = {"STOP": Reply.STOP, "START": Reply.START, "HELP": Reply.HELP}.get(opt_out)
    if reply is None:
        reply = classify_reply(params.get("Body", ""))
    try:
        number = normalise(Kind.SMS, params.get("From", ""), region)
    except ClarionError:
        number = None
    return reply, number


def twiml(message: str | None = None) -> str:
    """A TwiML answer: nothing to say, or one message back to the sender."""
    if not message:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    body = xml_escape(message)
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{body}</Message></Response>'


def unsubscribe_page(action: str, *, done: bool, kind: str) -> str:
    """The page a person sees: a confirmation button, or that they are unsubscribed."""
    what = "emails" if kind == Kind.EMAIL else "texts"
    if done:
        body = f"<h1>You are unsubscribed</h1><p>You will get no more {what} from us.</p>"
    else:
        body = (
            f"<h1>Unsubscribe</h1><p>Stop getting {what} from us?</p>"
            f'<form method="post" action="{html.escape(action)}">'
            '<button type="submit" name="List-Unsubscribe" value="One-Click">Unsubscribe</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>Unsubscribe</title></head><body>{body}</body></html>"
    )


class ClientLimits:
    """Per-client fixed-window limits (the `limits` package, in memory: one service process).

    `links` caps tracked-link and unsubscribe requests per client address; `rejections` caps how many refused
    requests (forged signatures, malformed bodies, unknown tokens) a client may make before its requests
    get 429 without being read: a forger cannot make the service verify signatures all day."""

    def __init__(self, links: str, rejections: str) -> None:
        self._limiter = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
        self._links = _parsed(links, "CLARION_RATE_LIMIT")
        self._rejections = _parsed(rejections, "CLARION_REJECT_LIMIT")

    def allow_link(self, client: str) -> bool:
        return self._links is None or self._limiter.hit(self._links, "link", client)

    def rejected(self, client: str) -> None:
        if self._rejections is not None:
            self._limiter.hit(self._rejections, "rejected", client)

    def blocked(self, client: str) -> bool:
        """Whether this client has used up its refusals for now."""
        if self._rejections is None:
            return False
        return not self._limiter.test(self._rejections, "rejected", client)


def _parsed(value: str, name: str) -> RateLimitItem | None:
    if value.strip().lower() in ("", "off", "0", "none"):
        return None
    try:
        return parse(value)
    except ValueError:
        hint = '(e.g. "30/second", "100/minute", or "off")'
        raise ClarionError(f"{name}={value!r} is not a rate {hint}") from None
