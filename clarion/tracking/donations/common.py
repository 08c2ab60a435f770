"""What the platforms' readers share: JSON bodies, amounts, times and constant-time credentials."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from clarion.channels.webhooks import Refused


def json_body(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, f"{what} body is not JSON") from None


def minor(raw: Any, what: str) -> int:
    """A decimal amount ("25.00", 25, 25.5) in minor units (cents)."""
    try:
        value = Decimal(str(raw).replace(",", "").strip())
    except (InvalidOperation, ValueError):
        raise Refused(422, f"{what}: amount {str(raw)[:20]!r} is not a number") from None
    if not value.is_finite() or abs(value) > 10**9:
        raise Refused(422, f"{what}: amount out of range")
    return int((value * 100).to_integral_value())


def when(raw: Any) -> datetime:
    """An ISO 8601 time (or epoch seconds) in UTC; now when missing or unreadable."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw, UTC)
    if isinstance(raw, str) and raw.strip():
        try:
            at = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            return datetime.now(UTC)
        return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return datetime.now(UTC)


def currency(raw: Any, default: str = "USD") -> str:
    code = str(raw or default).strip().upper()
    return code if len(code) == 3 and code.isalpha() else default


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of a credential."""
    return hmac.compare_digest(given.encode(), expected.encode())


def basic_credentials(headers: Any) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header, or None."""
    value = headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def text(value: Any, limit: int = 320) -> str | None:
    if value is None:
        return None
    shown = str(value).strip()
    return shown[:limit] or None


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
