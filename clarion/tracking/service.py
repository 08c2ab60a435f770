"""The tracking service: tracked-link redirects and the provider and conversion webhooks, into the ledger.

    GET  /c/{token}            record the click, 302 to the run's CTA page (HEAD: redirect, record nothing)
    GET  /u/{token}            the unsubscribe page (a button; a GET never unsubscribes)
    POST /u/{token}            unsubscribe: the page's button, or RFC 8058 one-click from a mail client
    POST /webhooks/conversion  donations and sign-ups (HMAC-SHA256 over timestamp + body, replay window)
    POST /webhooks/actblue, /webhooks/actionnetwork, /webhooks/stripe   donation platforms (donations/)
    POST /webhooks/<provider>  every registered provider's webhooks (channels/<provider>/webhooks.py), e.g.
                               SendGrid's Event Webhook, Twilio's status callbacks and inbound texts
    GET  /healthz

Inbound texts (from any provider's webhook) are answered here the same way: STOP and its synonyms
suppress the sender for that kind of message, START lifts it, HELP gets CLARION_SMS_HELP_REPLY.

Starlette rather than FastAPI: these routes read raw bodies (signatures are over the exact bytes) and
answer redirects and plain pages, so FastAPI's request models and OpenAPI would add cost on the hot path
(/c/{token}) and nothing else. A request that is forged, malformed or too big gets a 4xx, records nothing,
and leaves one log line; a client that keeps sending such requests, or follows links faster than a person
could (CLARION_RATE_LIMIT, CLARION_REJECT_LIMIT), gets 429 without its requests being read. Every write is
acknowledged only once committed (clicks and events through the Recorder's group commit).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from clarion import channels
from clarion.base import addresses, signing
from clarion.base.consent import Reason, Reply, classify_reply
from clarion.base.errors import ClarionError
from clarion.base.settings import ClarionSettings, TrackingSettings
from clarion.base.text import printable
from clarion.channels.base import ChannelKind
from clarion.channels.webhooks import Inbound, Refused, Webhook, WebhookRead, WebhookRequest
from clarion.channels.webhooks import Target as WebhookTarget
from clarion.ledger import Click, Conversion, Ledger, Suppression
from clarion.messages.links import LinkSigner
from clarion.tracking.conversions import ConversionIn, parse_conversion
from clarion.tracking.donations.routes import donation_routes
from clarion.tracking.optouts import ClientLimits, unsubscribe_page
from clarion.tracking.recorder import Recorder
from clarion.tracking.runs import RunDirectory, Target

if TYPE_CHECKING:
    from clarion.responders.loader import LoadedResponder
    from clarion.responders.sender import ReplySender

log = logging.getLogger("clarion.tracking")

MAX_CONVERSION_BODY = 16 * 1024
MAX_UNSUBSCRIBE_BODY = 1024
TOO_MANY = "Too many requests from this address; try again in a minute.\n"
NOT_FOUND = "This link is not valid. Check that it was copied whole.\n"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class Lookup:
    """What a provider's webhook may ask the service: the run, channel, variant and contact of a token."""

    directory: RunDirectory

    def resolve(self, token: str) -> WebhookTarget | None:
        target = self.directory.resolve(token)
        return None if target is None else target.plain


@dataclass
class Service:
    """The service's parts, on `app.state.service` (tests reach the ledger and the counters through it)."""

    ledger: Ledger
    directory: RunDirectory
    recorder: Recorder
    settings: TrackingSettings
    limits: ClientLimits
    rejected: int = 0
    replies: ReplySender | None = None  # the responders' sender, when `clarion serve --responders`

    @property
    def lookup(self) -> Lookup:
        return Lookup(self.directory)


def build_app(
    ledger: Ledger | None = None,
    *,
    signer: LinkSigner | None = None,
    settings: TrackingSettings | None = None,
    environ: Mapping[str, str] | None = None,
    responders: list[LoadedResponder] | None = None,
    reply_workers: int = 8,
) -> Starlette:
    """The ASGI app; by default on the ledger and signing key of ClarionSettings (the environment).

    `environ` holds the providers' webhook secrets (SENDGRID_WEBHOOK_PUBLIC_KEY, TWILIO_AUTH_TOKEN,
    X_CONSUMER_SECRET, ...); default: the process environment. `responders` answer the messages people
    write in (after the compliance keywords), replying through the providers' APIs."""
    if ledger is None:
        ledger = Ledger(ClarionSettings().ledger_url())
    if signer is None:
        signer = LinkSigner.from_settings()
    settings = settings or TrackingSettings()
    limits = ClientLimits(settings.clarion_rate_limit, settings.clarion_reject_limit)
    service = Service(ledger, RunDirectory(ledger, signer), Recorder(ledger), settings, limits)
    answering = None
    if responders:
        from clarion.responders.engine import Responders
        from clarion.responders.sender import ReplySender

        answering = Responders(list(responders), ledger, signer, ClarionSettings().signing_key())
        service.replies = ReplySender(answering, workers=reply_workers)
    provided = [
        w
        for adapter in channels.adapters()
        for w in adapter.webhooks(os.environ if environ is None else environ)
    ]
    conversion_secret = settings.clarion_conversion_secret

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(ledger.migrate)
        await service.recorder.start()
        if answering is not None and service.replies is not None:
            from clarion.responders.lookups import warm

            await anyio.to_thread.run_sync(warm)  # zipcodes' first query takes ~1 s: not in a webhook
            await anyio.to_thread.run_sync(answering.start)
            service.replies.start()
        try:
            yield
        finally:
            if service.replies is not None:
                await anyio.to_thread.run_sync(service.replies.close)
            await service.recorder.stop()

    def rejected(request: Request, exc: Refused) -> Response:
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
        if target.run.responder and target.contact_seq is not None:
            location = await anyio.to_thread.run_sync(service.directory.responder_redirect, target)
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

    def endpoint(webhook: Webhook) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if limits.blocked(_client(request)):
                return PlainTextResponse(TOO_MANY, status_code=429, headers={"Retry-After": "60"})
            try:
                body = await _read_body(request, webhook.max_body)
                incoming = WebhookRequest(
                    request.method,
                    _public_url(request, settings.clarion_public_url),
                    request.headers,
                    request.query_params,
                    body,
                )
                read = webhook.read(incoming, service.lookup)
                answer = await _inbound(read.inbound) if read.inbound else None
            except Refused as exc:
                return rejected(request, exc)
            await record(webhook.name, read)
            if webhook.reply is not None:
                content, media_type = webhook.reply(answer)
                return Response(content, media_type=media_type)
            recorded = len(read.events) + len(read.conversions)
            return JSONResponse({"recorded": recorded, "unmatched": read.unmatched})

        return handle

    def challenge(webhook: Webhook) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if limits.blocked(_client(request)):
                return PlainTextResponse(TOO_MANY, status_code=429, headers={"Retry-After": "60"})
            assert webhook.challenge is not None
            incoming = WebhookRequest(
                "GET",
                _public_url(request, settings.clarion_public_url),
                request.headers,
                request.query_params,
                b"",
            )
            try:
                status, content, media_type = webhook.challenge(incoming)
            except Refused as exc:
                return rejected(request, exc)
            return Response(content, status_code=status, media_type=media_type)

        return handle

    async def record(name: str, read: WebhookRead) -> None:
        if read.suppress:
            await anyio.to_thread.run_sync(ledger.suppress, read.suppress)
        await service.recorder.write(events=read.events, conversions=read.conversions)
        if read.unmatched:
            log.warning("%s webhook: %d item(s) matched no run of this ledger", name, read.unmatched)

    async def _inbound(messages: list[Inbound]) -> str | None:
        """Messages people wrote in. The compliance keywords first, for every provider and not overridable:
        STOP suppresses the sender for that kind of message, START lifts it, HELP on SMS is answered with
        CLARION_SMS_HELP_REPLY through the provider's webhook reply (TwiML). Then the responders, if any,
        record the message and queue their reply (sent through the provider's API, off this request)."""
        answer = None
        for message in messages:
            reply = message.keyword or classify_reply(message.text)
            if reply is not None:
                if message.sender is None:
                    raise Refused(400, "inbound message without a readable sender")
                await _compliance(message, message.sender, reply)
                if reply is Reply.HELP and message.kind == addresses.AddressKind.SMS:
                    answer = settings.clarion_sms_help_reply
            if answering is not None:
                await anyio.to_thread.run_sync(answering.receive, message, reply)
        return answer

    async def _compliance(message: Inbound, sender: str, reply: Reply) -> None:
        what = "SMS" if message.kind == addresses.AddressKind.SMS else "DM"
        if reply is Reply.STOP:
            reason = Reason.SMS_STOP if what == "SMS" else Reason.DM_STOP
            source = f"{message.provider}:inbound"
            stop = Suppression(message.kind, sender, reason, source, message.message_id or None)
            await anyio.to_thread.run_sync(ledger.suppress, [stop])
            log.info("%s opt-out recorded (%s)", what, printable(message.text.strip().upper(), 16))
        elif reply is Reply.START:
            await anyio.to_thread.run_sync(ledger.lift, message.kind, sender)
            log.info("%s opt-in recorded", what)

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
            await _read_body(request, MAX_UNSUBSCRIBE_BODY)  # "List-Unsubscribe=One-Click", or the form
            raw = await anyio.to_thread.run_sync(
                service.directory.address_of, target.run, target.contact_seq, kind
            )
            if raw is None:
                raise Refused(404, "the contact of this unsubscribe link has no address on file")
            address = addresses.suppression_form(kind.value, raw)
        except Refused as exc:
            return rejected(request, exc)
        except ClarionError as exc:  # the run's contacts file is gone: the client may retry later
            log.error("unsubscribe for run %s not recorded: %s", target.run.run_id, exc)
            return PlainTextResponse("Please try again in a few minutes.\n", status_code=503)
        detail = f"run {target.run.run_id}, channel {target.channel}"
        gone = Suppression(kind.value, address, Reason.UNSUBSCRIBE_LINK, "tracking:/u", detail)
        await anyio.to_thread.run_sync(ledger.suppress, [gone])
        page = unsubscribe_page(str(request.url.path), done=True, kind=kind.value)
        return HTMLResponse(page, headers=_NO_STORE)

    async def conversion(request: Request) -> Response:
        if limits.blocked(_client(request)):
            return PlainTextResponse(TOO_MANY, status_code=429, headers={"Retry-After": "60"})
        try:
            if conversion_secret is None:
                raise Refused(403, "conversion webhook refused: CLARION_CONVERSION_SECRET is not set")
            body = await _read_body(request, MAX_CONVERSION_BODY)
            try:
                signing.verify(
                    conversion_secret.get_secret_value().encode(), body, request.headers, what="conversion"
                )
            except signing.SignatureError as exc:
                raise Refused(exc.status, exc.reason) from None
            incoming = parse_conversion(body)
            found = await anyio.to_thread.run_sync(_resolve_conversion, service, incoming)
        except Refused as exc:
            return rejected(request, exc)
        read = WebhookRead(conversions=[found] if found else [], unmatched=0 if found else 1)
        await record("conversion", read)
        return JSONResponse({"recorded": len(read.conversions), "unmatched": read.unmatched})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "written": service.recorder.written, "rejected": service.rejected})

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("Not found.\n", status_code=404)

    routes = [
        Route("/c/{token}", click, methods=["GET", "HEAD"]),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/webhooks/conversion", conversion, methods=["POST"]),
        *donation_routes(
            service, settings, read_body=_read_body, rejected=rejected, record=record, client=_client
        ),
        *(Route(w.path, endpoint(w), methods=["POST"]) for w in provided),
        *(Route(w.path, challenge(w), methods=["GET"]) for w in provided if w.challenge is not None),
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
            raise Refused(404, "conversion token is unknown or forged")
        return _conversion(incoming, target.run.run_id, target.variant, target.channel, target.contact_seq)
    assert incoming.run is not None
    facts = service.directory.run_by_id(incoming.run)
    if facts is None:
        raise Refused(404, "conversion names an unknown run")
    try:
        seq = service.directory.contact_by_address(facts, email=incoming.email, phone=incoming.phone)
    except ClarionError as exc:  # the run's contacts file moved: the sender should retry once it is back
        raise Refused(503, str(exc)) from None
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
        raise Refused(413, f"body over {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise Refused(413, f"body over {limit} bytes")
    except ClientDisconnect:  # the client went away mid-body: nothing to record, no one to answer
        raise Refused(400, "the client disconnected before the whole body arrived") from None
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
