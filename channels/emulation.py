"""What every provider emulator shares: the base class, JSON answers and reading the Authorization header."""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from clarion.sandbox.store import Store

#: A provider endpoint: the request and its body, already read, in; the answer out. It runs on the event
#: loop and must not block; it stores what it accepts before returning.
Handler = Callable[[Request, bytes], Response]

REDACTED = "[REDACTED]"


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None, media_type: str | None = None
) -> Response:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, dict(headers or {}), media_type or "application/json")


def parse_json(body: bytes) -> Any:
    """The body as JSON, or ValueError."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def basic_credentials(request: Request) -> tuple[str, str] | None:
    value = request.headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def redacted_headers(request: Request) -> dict[str, str]:
    """The request's headers with the credentials replaced: the scheme stays, so tests can check it."""
    headers = {}
    for name, value in request.headers.items():
        if name in ("authorization", "proxy-authorization"):
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} {REDACTED}" if scheme else REDACTED
        elif name == "cookie":
            value = REDACTED
        headers[name] = value
    return headers


class Emulator(ABC):
    """One provider's API: its routes, and the answers its faults give in its own wire format."""

    name: ClassVar[str]

    def __init__(self, store: Store) -> None:
        self.store = store

    @abstractmethod
    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) for each endpoint."""

    @abstractmethod
    def rate_limited(self, retry_after: float) -> Response:
        """The provider's 429."""

    @abstractmethod
    def server_error(self, status: int) -> Response:
        """The provider's 500 or 503."""

    def not_found(self, request: Request) -> Response:
        return json_response({"message": "Not Found", "status": 404}, 404)

    def finish(self, request: Request, response: Response) -> Response:
        """Add the headers the provider puts on every answer."""
        return response

    def reset(self) -> None:  # noqa: B027 (optional hook: most emulators keep no state of their own)
        """Forget per-run state (counters, windows)."""
