"""The donation platforms' endpoints of the tracking service (mounted by clarion.tracking.service)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from clarion.base.settings import TrackingSettings
from clarion.channels.webhooks import Refused, WebhookRead, WebhookRequest
from clarion.ledger import Ledger
from clarion.tracking.donations import Gift, actblue, actionnetwork, stripe_events
from clarion.tracking.donations.attribute import attribute
from clarion.tracking.optouts import ClientLimits
from clarion.tracking.runs import RunDirectory


class Service(Protocol):
    """What these endpoints use of the tracking service (clarion.tracking.service.Service)."""

    ledger: Ledger
    directory: RunDirectory
    limits: ClientLimits


Reader = Callable[[WebhookRequest, Service], list[Gift]]


def donation_routes(
    service: Service,
    settings: TrackingSettings,
    *,
    read_body: Callable[[Request, int], Awaitable[bytes]],
    rejected: Callable[[Request, Refused], Response],
    record: Callable[[str, WebhookRead], Awaitable[None]],
    client: Callable[[Request], str],
) -> list[Route]:
    def secret(value: object) -> str | None:
        getter = getattr(value, "get_secret_value", None)
        return None if getter is None else str(getter()) or None

    def read_actblue(request: WebhookRequest, _: Service) -> list[Gift]:
        actblue.authenticate(
            request, settings.clarion_actblue_username, secret(settings.clarion_actblue_password)
        )
        return actblue.read(request.body)

    def read_actionnetwork(request: WebhookRequest, _: Service) -> list[Gift]:
        actionnetwork.authenticate(request, secret(settings.clarion_actionnetwork_key))
        return actionnetwork.read(request.body)[0]

    def read_stripe(request: WebhookRequest, svc: Service) -> list[Gift]:
        event = stripe_events.verify(request, secret(settings.stripe_webhook_secret))
        return stripe_events.read(event, lambda gift: svc.ledger.refunded(stripe_events.SOURCE, gift))

    def endpoint(name: str, limit: int, reader: Reader) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if service.limits.blocked(client(request)):
                return PlainTextResponse(
                    "Too many requests.\n", status_code=429, headers={"Retry-After": "60"}
                )
            try:
                body = await read_body(request, limit)
                incoming = WebhookRequest(
                    "POST", str(request.url), request.headers, request.query_params, body
                )
                gifts = await anyio.to_thread.run_sync(reader, incoming, service)
                found, unmatched = await anyio.to_thread.run_sync(
                    attribute, service.directory, service.ledger, gifts
                )
            except Refused as exc:
                return rejected(request, exc)
            read = WebhookRead(conversions=found, unmatched=unmatched)
            await record(name, read)
            return JSONResponse({"recorded": len(found), "unmatched": unmatched})

        return handle

    return [
        Route("/webhooks/actblue", endpoint("actblue", actblue.MAX_BODY, read_actblue), methods=["POST"]),
        Route(
            "/webhooks/actionnetwork",
            endpoint("actionnetwork", actionnetwork.MAX_BODY, read_actionnetwork),
            methods=["POST"],
        ),
        Route("/webhooks/stripe", endpoint("stripe", stripe_events.MAX_BODY, read_stripe), methods=["POST"]),
    ]
