"""The unsubscribe page, and the per-client limits that keep link hammering and forgery cheap to refuse.

`GET /u/{token}` shows a page with one button; `POST /u/{token}` unsubscribes. RFC 8058 one-click: mail
clients POST `List-Unsubscribe=One-Click` to the URL of the List-Unsubscribe header, which is the same
URL. A GET never unsubscribes, so link scanners that fetch every URL of a message cannot opt anyone out.
(Providers' opt-out events are read by their webhooks, channels/<provider>/webhooks.py; inbound STOP,
START and HELP are handled by the service for every provider, clarion/tracking/service.py.)
"""

from __future__ import annotations

import html

from limits import RateLimitItem, parse, storage, strategies

from clarion.base.consent import Kind
from clarion.base.errors import ClarionError


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
