"""The tracking service: tracked-link redirects and the provider and conversion webhooks, into the ledger.

    GET  /c/{token}            record the click, 302 to the run's CTA page (HEAD: redirect, record nothing)
    GET  /u/{token}            the unsubscribe page (a button; a GET never unsubscribes)
    POST /u/{token}            unsubscribe: the page's button, or RFC 8058 one-click from a mail client
    POST /webhooks/sendgrid    SendGrid Event Webhook batches (ECDSA-signed)
    POST /webhooks/twilio      Twilio status callbacks (HMAC-SHA1-signed), the token in the callback URL
    POST /webhooks/twilio/inbound  replies to texts (HMAC-SHA1-signed): STOP, START, HELP
    POST /webhooks/conversion  donations and sign-ups (HMAC-SHA256 over timestamp + body, replay window)
    GET  /healthz

Starlette rather than FastAPI: these routes read raw bodies (signatures are over the exact bytes) and
answer redirects and plain pages, so FastAPI's request models and OpenAPI would add cost on the hot path
(/c/{token}) and nothing else. A request that is forged, malformed or too big gets a 4xx, records nothing,
and leaves one log line; a client that keeps sending such requests, or follows links faster than a person
could (CLARION_RATE_LIMIT, CLARION_REJECT_LIMIT), gets 429 without its requests being read. Every write is
acknowledged only once committed (clicks and events through the Recorder's group commit).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from clarion.base.consent import Kind, Reason, Reply, normalise
from clarion.base.errors import ClarionError
from clarion.base.settings import ClarionSettings, TrackingSettings
from clarion.channels.base import ChannelKind
from clarion.ledger import Click, Conversion, Ledger, Suppression
from clarion.messages.links import LinkSigner
from clarion.tracking.optouts import ClientLimits, sms_reply, twiml, unsubscribe_page
from clarion.tracking.recorder import Recorder
from clarion.tracking.runs import RunDirectory, Target
from clarion.tracking.webhooks import (
    ConversionIn,
    Read,
    Rejected,
    parse_conversion,
    read_sendgrid,
    read_twilio,
    sendgrid_verifier,
    twilio_verifier,
    verify_conversion,
)

log = logging.getLogger("clarion.tracking")

MAX_BODY = {
    "sendgrid": 8 * 1024 * 1024,
    "twilio": 16 * 1024,
    "twilio-inbound": 16 * 1024,
    "conversion": 16 * 1024,
    "unsubscribe": 1024,
}
TOO_MANY = "Too many requests from this address; try again in a minute.\n"
NOT_FOUND = "This link is not valid. Check that it was copied whole.\n"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@dataclass
class Service:
    """The service's parts, on `app.state.service` (tests reach the ledger and the counters through it)."""

    ledger: Ledger
    directory: RunDirectory
    recorder: Recorder
    settings: TrackingSettings
    limits: ClientLimits
    rejected: int = 0


def build_app(
    ledger: Ledger | None = None,
    *,
    signer: LinkSigner | None = None,
    settings: TrackingSettings | None = None,
) -> Starlette:
    """The ASGI app; by default on the ledger and signing key of ClarionSettings (the environment)."""
    if ledger is None:
        ledger = Ledger(ClarionSettings().ledger_url())
    if signer is None:
        signer = LinkSigner(ClarionSettings().signing_key())
    settings = settings or TrackingSettings()
    limits = ClientLimits(settings.clarion_rate_limit, settings.clarion_reject_limit)
    service = Service(ledger, RunDirectory(ledger, signer), Recorder(ledger), settings, limits)
    verify_sendgrid = (
        sendgrid_verifier(settings.sendgrid_webhook_public_key)
        if settings.sendgrid_webhook_public_key
        else None
    )
    auth_token = settings.twilio_auth_token
    verify_twilio = twilio_verifier(auth_token.get_secret_value()) if auth_token else None
    conversion_secret = settings.clarion_conversion_secret

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(ledger.migrate)
        await service.recorder.start()
        try:
            yield
        finally:
            await service.recorder.stop()

    def rejected(request: Request, exc: Rejected) -> Response:
        service.rejected += 1
        client = _client(request)
        limits.rejected(client)
        log.warning(
            "%s %s from %s rejected (%d): %s",
            request.method,
            request.url.path,
            client,
            exc.status,
            exc.reason,
        )
        return PlainTextResponse(f"{exc.reason}\n", status_code=exc.status)

    async def click(request: Request) -> Response:
        if not limits.allow_link(_client(request)) or limits.blocked(_client(request)):
            return PlainTextResponse(TOO_MANY, status_code=429, headers={"Retry-After": "60", **_NO_STORE})
        token = request.path_params["token"]
        target = service.directory.resolve(token)
        if target is None:
            return rejected_link(request, token)
        location = target.redirect()
        if request.method == "GET":
            record = Click(target.run.run_id, target.channel, target.variant, target.contact_seq, _now())
            try:
                await service.recorder.write(clicks=[record])
            except Exception as exc:  # the supporter still reaches the page; the loss is logged, not silent
                log.error("click on run %s not recorded: %s", target.run.run_id, exc)
        return RedirectResponse(location, status_code=302, headers=_NO_STORE)

    def rejected_link(request: Request, token: str) -> Response:
        service.rejected += 1
        client = _client(request)
        limits.rejected(client)
        # enough to find it in an access log, not the whole token; nothing a forger chose is logged raw
        start = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "?" for ch in token[:6])
        log.warning("%s /c/%s... from %s: unknown or forged token", request.method, start, client)
        return PlainTextResponse(NOT_FOUND, status_code=404, headers=_NO_STORE)

    def webhook(
        name: str, handler: Callable[[Request, bytes], Awaitable[Read]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if limits.blocked(_client(request)):
                return PlainTextResponse(TOO_MANY, status_code=429, headers={"Retry-After": "60"})
            try:
                body = await _read_body(request, MAX_BODY[name])
                read = await handler(request, body)
            except Rejected as exc:
                return rejected(request, exc)
            if read.suppress:
                await anyio.to_thread.run_sync(ledger.suppress, read.suppress)
            await service.recorder.write(events=read.events, conversions=read.conversions)
            if read.unmatched:
                log.warning("%s webhook: %d item(s) matched no run of this ledger", name, read.unmatched)
            recorded = len(read.events) + len(read.conversions)
            return JSONResponse({"recorded": recorded, "unmatched": read.unmatched})

        return endpoint

    async def sendgrid(request: Request, body: bytes) -> Read:
        if verify_sendgrid is None:
            raise Rejected(403, "SendGrid webhook refused: SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
        verify_sendgrid(body, request.headers)
        return read_sendgrid(body, service.directory.resolve)

    async def twilio(request: Request, body: bytes) -> Read:
        params = await twilio_form(request, body)
        return read_twilio(params, request.query_params.get("ct"), service.directory.resolve)

    async def twilio_form(request: Request, body: bytes) -> dict[str, str]:
        if verify_twilio is None:
            raise Rejected(403, "Twilio webhook refused: TWILIO_AUTH_TOKEN is not set")
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise Rejected(415, "Twilio callbacks are form-encoded")
        try:
            params = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
        except (UnicodeDecodeError, ValueError):
            raise Rejected(400, "Twilio body is not a form") from None
        verify_twilio(_public_url(request, settings.clarion_public_url), params, request.headers)
        return params

    async def inbound(request: Request) -> Response:
        """A reply to one of our texts: STOP suppresses the number, START lifts it, HELP gets the reply."""
        if limits.blocked(_client(request)):
            return PlainTextResponse(TOO_MANY, status_code=429, headers={"Retry-After": "60"})
        try:
            params = await twilio_form(request, await _read_body(request, MAX_BODY["twilio-inbound"]))
            reply, number = sms_reply(params)
            if reply is not None and number is None:
                raise Rejected(400, "inbound text without a valid From number")
        except Rejected as exc:
            return rejected(request, exc)
        answer = None
        if reply is Reply.STOP and number:
            sid = params.get("MessageSid", "")[:64] or None
            stop = Suppression(Kind.SMS, number, Reason.SMS_STOP, "twilio:inbound", sid)
            await anyio.to_thread.run_sync(ledger.suppress, [stop])
            log.info("SMS opt-out recorded (%s)", params.get("Body", "").strip()[:16].upper())
        elif reply is Reply.START and number:
            await anyio.to_thread.run_sync(ledger.lift, Kind.SMS.value, number)
            log.info("SMS opt-in recorded")
        elif reply is Reply.HELP:
            answer = settings.clarion_sms_help_reply
        return Response(twiml(answer), media_type="text/xml")

    async def unsubscribe(request: Request) -> Response:
        client = _client(request)
        if not limits.allow_link(client) or limits.blocked(client):
            return PlainTextResponse(TOO_MANY, status_code=429, headers={"Retry-After": "60", **_NO_STORE})
        token = request.path_params["token"]
        target = service.directory.resolve(token)
        kind = None if target is None else target.run.kinds.get(target.channel)
        if target is None or target.contact_seq is None or kind not in (ChannelKind.EMAIL, ChannelKind.SMS):
            return rejected_link(request, token)
        assert kind is not None and target.contact_seq is not None
        if request.method == "GET":
            page = unsubscribe_page(str(request.url.path), done=False, kind=kind.value)
            return HTMLResponse(page, headers=_NO_STORE)
        try:
            await _read_body(request, MAX_BODY["unsubscribe"])  # "List-Unsubscribe=One-Click", or the form
            raw = await anyio.to_thread.run_sync(
                service.directory.address_of, target.run, target.contact_seq, kind
            )
            if raw is None:
                raise Rejected(404, "the contact of this unsubscribe link has no address on file")
            address = normalise(kind.value, raw)
        except Rejected as exc:
            return rejected(request, exc)
        except ClarionError as exc:  # the run's contacts file is gone: the client may retry later
            log.error("unsubscribe for run %s not recorded: %s", target.run.run_id, exc)
            return PlainTextResponse("Please try again in a few minutes.\n", status_code=503)
        detail = f"run {target.run.run_id}, channel {target.channel}"
        gone = Suppression(kind.value, address, Reason.UNSUBSCRIBE_LINK, "tracking:/u", detail)
        await anyio.to_thread.run_sync(ledger.suppress, [gone])
        page = unsubscribe_page(str(request.url.path), done=True, kind=kind.value)
        return HTMLResponse(page, headers=_NO_STORE)

    async def conversion(request: Request, body: bytes) -> Read:
        if conversion_secret is None:
            raise Rejected(403, "conversion webhook refused: CLARION_CONVERSION_SECRET is not set")
        verify_conversion(conversion_secret.get_secret_value().encode(), body, request.headers)
        incoming = parse_conversion(body)
        found = await anyio.to_thread.run_sync(_resolve_conversion, service, incoming)
        return Read([], [found] if found else [], unmatched=0 if found else 1)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "written": service.recorder.written, "rejected": service.rejected})

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("Not found.\n", status_code=404)

    routes = [
        Route("/c/{token}", click, methods=["GET", "HEAD"]),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/webhooks/twilio/inbound", inbound, methods=["POST"]),
        Route("/webhooks/sendgrid", webhook("sendgrid", sendgrid), methods=["POST"]),
        Route("/webhooks/twilio", webhook("twilio", twilio), methods=["POST"]),
        Route("/webhooks/conversion", webhook("conversion", conversion), methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found})
    app.router.redirect_slashes = False  # no redirect the campaign did not name, not even to a sibling path
    app.state.service = service
    return app


def _resolve_conversion(service: Service, incoming: ConversionIn) -> Conversion | None:
    """The conversion to record, attributed to its contact and arm; None for a donor outside the audience."""
    if incoming.token:
        target: Target | None = service.directory.resolve(incoming.token)
        if target is None:
            raise Rejected(404, "conversion token is unknown or forged")
        return _conversion(incoming, target.run.run_id, target.variant, target.channel, target.contact_seq)
    assert incoming.run is not None
    facts = service.directory.run_by_id(incoming.run)
    if facts is None:
        raise Rejected(404, "conversion names an unknown run")
    try:
        seq = service.directory.contact_by_address(facts, email=incoming.email, phone=incoming.phone)
    except ClarionError as exc:  # the run's contacts file moved: the sender should retry once it is back
        raise Rejected(503, str(exc)) from None
    arm = None if seq is None else service.ledger.arms_of(facts.run_id, [seq]).get(seq)
    if seq is None or arm is None:
        return None
    return _conversion(incoming, facts.run_id, arm, None, seq)


def _conversion(
    incoming: ConversionIn, run_id: str, arm: str, channel: str | None, seq: int | None
) -> Conversion:
    return Conversion(
        run_id=run_id,
        source="webhook",
        external_id=incoming.id,
        arm=arm,
        amount_minor=incoming.amount_minor(),
        currency=incoming.currency.upper(),
        at=incoming.occurred_at or _now(),
        channel=channel,
        contact_seq=seq,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Rejected(413, f"body over {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise Rejected(413, f"body over {limit} bytes")
    except ClientDisconnect:  # the client went away mid-body: nothing to record, no one to answer
        raise Rejected(400, "the client disconnected before the whole body arrived") from None
    return bytes(body)


def _public_url(request: Request, public: str | None) -> str:
    """The URL the provider signed: CLARION_PUBLIC_URL + path + query, else the request's own URL."""
    if not public:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return public.rstrip("/") + request.url.path + query


def _client(request: Request) -> str:
    """The client's address (behind a proxy: what uvicorn's proxy_headers read from X-Forwarded-For)."""
    return request.client.host if request.client else "-"


def _now() -> datetime:
    return datetime.now(UTC)
