"""The console's HTTP hygiene: security headers on every answer, same-origin POSTs only, small forms.

- Content-Security-Policy without 'unsafe-inline': scripts and styles come from /console/static only;
  nothing may frame the console (frame-ancestors 'none', X-Frame-Options DENY); forms post only here.
- A POST must come from the console's own origin: `Sec-Fetch-Site` (sent by every current browser, and
  not settable by a page) must be same-origin; a client that does not send it must send an `Origin`
  naming this host. Together with SameSite=Strict
  cookies and the CSRF token of every form, another site cannot make a signed-in browser act.
- Forms are `application/x-www-form-urlencoded` and at most 8 KiB: parsed here, without a multipart
  parser the console does not need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request

MAX_FORM = 8 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send `Origin: null`
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
NO_STORE = (b"cache-control", b"no-store")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: the headers above on every response; pages are never cached (they show the
    ledger), static files may be."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [h for h in HEADERS if h[0] not in names]
                if not static and NO_STORE[0] not in names:
                    extra.append(NO_STORE)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def same_origin(request: Request) -> bool:
    """Whether a state-changing request comes from a page of this console: the browser's own
    `Sec-Fetch-Site` says so (a page cannot forge it), or, from a client without it, `Origin` names this
    host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == request.headers.get("host", "")


async def read_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST (first value of each field), or None when too big or not a form."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}


def peer(request: Request) -> str:
    """The direct peer of the connection (before any X-Forwarded-For rewriting, see clarion serve)."""
    stashed = request.scope.get("clarion.peer")
    if stashed:
        return str(stashed)
    return request.client.host if request.client else ""


class StashPeer:
    """Outermost ASGI wrapper of `clarion serve`: keeps the TCP peer before uvicorn's proxy-headers
    middleware (inside this one) replaces it with X-Forwarded-For's client, so that the console checks
    the proxy itself against CLARION_CONSOLE_TRUSTED_PROXIES."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            scope["clarion.peer"] = scope["client"][0]
        await self.app(scope, receive, send)


__all__ = ["CSP", "SecurityHeaders", "StashPeer", "peer", "read_form", "same_origin"]
