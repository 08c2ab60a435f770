"""The ASGI app: every registered provider's emulator on one port, fault injection in front, `/_sandbox/*`.

`GET /_sandbox/messages` takes `provider`, `since_id` (messages after that id) and `limit` (at most that many,
oldest first), so a poller can page through a large run; `GET /_sandbox/counts` is the cheap progress check.

A provider request goes: read the body -> decide its fault (before anything is validated or stored) ->
latency -> the fault's answer, or the provider's handler -> the provider's headers -> the request log.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from clarion import channels
from clarion.channels.emulation import (
    MAX_REQUESTS,
    Emulator,
    Handler,
    Record,
    Store,
    json_response,
    parse_json,
    redacted_headers,
    utc_now_iso,
)
from clarion.sandbox.faults import FaultConfig, FaultKind, Faults, as_fault_config, parse_faults
from clarion.sandbox.page import LATEST, render_page
from clarion.sandbox.recipients import EngagementConfig, SimulatedRecipients

FaultsInput = Mapping[str, FaultConfig | Mapping[str, Any] | None]


def emulators(store: Store) -> dict[str, Emulator]:
    """One emulator per registered provider that ships one (channels/<provider>/emulator.py)."""
    found = {}
    for adapter in channels.adapters():
        emulator = adapter.emulator()
        if emulator is not None:
            found[adapter.provider] = emulator(store)
    return found


class SandboxState:
    """Everything one sandbox holds: the store, the fault settings, the emulators, and the ASGI app."""

    def __init__(
        self,
        faults: FaultsInput | None = None,
        opted_out: Iterable[str] = (),
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        names = [a.provider for a in channels.adapters() if a.emulator() is not None]
        self.store = Store(names, max_requests)
        self.emulators = emulators(self.store)
        self.faults = Faults(self.store.providers, parse_faults(faults, self.store.providers))
        if opted_out:
            self.control("twilio").set_opted_out(opted_out)
        self.stopping = threading.Event()  # set on shutdown: stalled requests stop waiting
        self.engagement: SimulatedRecipients | None = None
        self.app = build_app(self)

    def control(self, provider: str) -> Any:
        """A provider's emulator, for the controls only it has (Twilio's opted-out numbers, X's metrics)."""
        return self.emulators[self.store.check_provider(provider)]

    def set_engagement(self, config: EngagementConfig | Mapping[str, Any] | str | None) -> None:
        """Start simulated recipients with these settings (replacing any), or stop them (None)."""
        if self.engagement is not None:
            self.store.listeners.remove(self.engagement.offer)
            self.engagement.close()
            self.engagement = None
        if config is None:
            return
        self.engagement = SimulatedRecipients(EngagementConfig.load(config), self.emulators)
        self.store.listeners.append(self.engagement.offer)

    def webhook_environment(self) -> dict[str, str]:
        """What a tracking service needs to verify every webhook the sandbox's recipients send."""
        found: dict[str, str] = {}
        for emulator in self.emulators.values():
            found.update(emulator.webhook_environment())
        return found

    def reset(self) -> None:
        """Forget every message, request and post, and restore the accounts' defaults; fault settings
        stay, their sequences restart."""
        self.store.reset()
        self.faults.restart()
        for emulator in self.emulators.values():
            emulator.reset()

    def set_faults(self, provider: str, config: FaultConfig | Mapping[str, Any] | None) -> None:
        self.faults.set(provider, as_fault_config(config))

    def log(self, request: Request, body: bytes, provider: str, status: int, fault: FaultKind | None) -> None:
        entry: Record = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "provider": provider,
            "status": status,
            "fault": fault.value if fault else None,
            "headers": redacted_headers(request),
            "body": body.decode("utf-8", errors="replace"),
            "received_at": utc_now_iso(),
        }
        self.store.log_request(entry)

    async def stall(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.stopping.is_set() and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(left, 0.1))


Endpoint = Callable[[Request], Awaitable[Response]]


def _provider_endpoint(state: SandboxState, emulator: Emulator, handler: Handler) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:  # the client died mid-request (kill -9): the provider never got it
            return Response(status_code=400)
        decision = state.faults.decide(emulator.name)
        if decision.latency:
            await asyncio.sleep(decision.latency)
        kind = decision.kind
        if kind is None or decision.accepted:  # an accepted stall: stored now, answered too late
            limit = emulator.offload_bytes
            if limit is not None and len(body) > limit:
                response = await asyncio.to_thread(handler, request, body)
            else:
                response = handler(request, body)
        elif kind is FaultKind.RATE_LIMIT:
            response = emulator.rate_limited(decision.retry_after)
        else:
            response = emulator.server_error(decision.status)
        response = emulator.finish(request, response)
        state.log(request, body, emulator.name, response.status_code, kind)
        if kind is FaultKind.TIMEOUT:
            await state.stall(decision.stall)
        return response

    return endpoint


def _control_endpoint(handler: Handler) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return handler(request, await request.body())

    return endpoint


def _error(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status)


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise ValueError(f"{name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def build_app(state: SandboxState) -> Starlette:
    store = state.store

    def provider_param(request: Request) -> str | None:
        provider = request.query_params.get("provider") or None
        return store.check_provider(provider) if provider else None

    async def home(request: Request) -> Response:
        labels = {name: e.label for name, e in state.emulators.items()}
        return HTMLResponse(
            render_page(labels, store.counts(), store.latest(LATEST), state.faults.snapshot())
        )

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "providers": list(store.providers)})

    async def messages(request: Request) -> Response:
        if request.method == "DELETE":
            state.reset()
            return Response(status_code=204)
        try:
            records = store.messages(provider_param(request))
            since = _int_param(request, "since_id")
            limit = _int_param(request, "limit")
        except ValueError as exc:
            return _error(str(exc))
        if since is not None:
            records = records[bisect.bisect_right(records, since, key=lambda m: int(m["id"])) :]
        return json_response(records if limit is None else records[:limit])

    async def counts(request: Request) -> Response:
        return json_response(store.counts())

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            store.clear_requests()
            return Response(status_code=204)
        try:
            return json_response(store.requests(provider_param(request)))
        except ValueError as exc:
            return _error(str(exc))

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            try:
                payload = parse_json(await request.body())
                if not isinstance(payload, dict):
                    raise ValueError('expected an object such as {"twilio": {"failure_rate": 0.2}}')
                for provider, config in parse_faults(payload, store.providers).items():
                    state.faults.set(provider, config)
            except ValueError as exc:
                return _error(str(exc))
        return json_response(state.faults.snapshot())

    async def accounts(request: Request) -> Response:
        if request.method == "PUT":
            try:
                payload = parse_json(await request.body())
                if not isinstance(payload, dict) or not all(
                    p in state.emulators and isinstance(v, dict) for p, v in payload.items()
                ):
                    known = "|".join(state.emulators)
                    raise ValueError(
                        f'expected {{"{known}": {{setting: value}}}}, e.g. {{"x": {{"revoked": true}}}}'
                    )
                for provider, settings in payload.items():
                    state.emulators[provider].update_account(settings)
            except ValueError as exc:
                return _error(str(exc))
        return json_response({name: e.account_dict() for name, e in state.emulators.items()})

    async def keys(request: Request) -> Response:
        return json_response(state.webhook_environment())

    async def engagement(request: Request) -> Response:
        if request.method == "POST":
            try:
                payload = parse_json(await request.body())
                if payload is not None and not isinstance(payload, dict):
                    raise ValueError('expected an object such as {"tracking_url": "http://127.0.0.1:8765"}')
                state.set_engagement(payload)
            except ValueError as exc:
                return _error(str(exc))
        current = state.engagement
        return json_response(None if current is None else current.snapshot())

    async def people(request: Request) -> Response:
        """A person writes in: {"provider": "twilio"|"x", "from", "text", "webhook", "to"?, "id"?} (an id
        seen before is a redelivery). Posted, signed as the provider signs, to the webhook."""
        try:
            payload = parse_json(await request.body())
            if not isinstance(payload, dict) or not all(
                isinstance(payload.get(k), str) for k in ("provider", "from", "text", "webhook")
            ):
                raise ValueError(
                    'expected {"provider": "twilio", "from": "+14155550100", "text": "94110", '
                    '"webhook": "http://127.0.0.1:8765/webhooks/twilio/inbound"}'
                )
            provider, sender, text, webhook = (payload[k] for k in ("provider", "from", "text", "webhook"))
            if provider == "twilio":
                twilio = state.control("twilio")
                token = twilio.credentials["TWILIO_AUTH_TOKEN"]
                to = payload.get("to") or "+15005550006"
                call = functools.partial(
                    twilio.reply,
                    sender,
                    text,
                    webhook=webhook,
                    auth_token=token,
                    to=to,
                    message_sid=payload.get("id"),
                )
            elif provider == "x":
                inbox = state.control("x").inbox
                call = functools.partial(inbox.write, sender, text, webhook, event_id=payload.get("id"))
            else:
                raise ValueError(f"provider {provider!r}: people write in by twilio (SMS) or x (DM)")
        except ValueError as exc:
            return _error(str(exc))
        answer = await asyncio.to_thread(call)
        return json_response({"status": answer.status_code, "body": answer.text[:500]})

    async def unknown(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        path = request.url.path
        emulator = next(
            (e for e in state.emulators.values() if any(path.startswith(p) for p in e.prefixes)), None
        )
        if emulator is None:
            return json_response({"error": f"{request.method} {path}: not found"}, status)
        body = await request.body()
        response = emulator.finish(request, emulator.not_found(request))
        if status == 405:
            response.status_code = 405
        state.log(request, body, emulator.name, response.status_code, None)
        return response

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/messages", messages, methods=["GET", "DELETE"]),
        Route("/_sandbox/counts", counts, methods=["GET"]),
        Route("/_sandbox/requests", requests, methods=["GET", "DELETE"]),
        Route("/_sandbox/faults", faults, methods=["GET", "PUT"]),
        Route("/_sandbox/keys", keys, methods=["GET"]),
        Route("/_sandbox/accounts", accounts, methods=["GET", "PUT"]),
        Route("/_sandbox/engagement", engagement, methods=["GET", "POST"]),
        Route("/_sandbox/people/write", people, methods=["POST"]),
    ]
    for emulator in state.emulators.values():
        for method, path, handler in emulator.controls():
            routes.append(Route(path, _control_endpoint(handler), methods=[method]))
        for method, path, handler in emulator.routes():
            routes.append(Route(path, _provider_endpoint(state, emulator, handler), methods=[method]))
    return Starlette(routes=routes, exception_handlers={404: unknown, 405: unknown})
