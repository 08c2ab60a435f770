"""Clarion's own request signature: HMAC-SHA256 over "<timestamp>.<body>", sent as `v1=<hex>`.

The conversion webhook a landing page calls is signed this way (headers X-Clarion-Timestamp and
X-Clarion-Signature), and so is everything Clarion itself sends out signed. Stripe and the Standard
Webhooks specification use the same construction: the timestamp inside the signed bytes and a replay
window make a captured request worthless after a few minutes. The providers' own schemes (SendGrid's
ECDSA, Twilio's HMAC-SHA1) live with their provider, in channels/<provider>/webhooks.py.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Clarion-Signature"
TIMESTAMP_HEADER = "X-Clarion-Timestamp"
REPLAY_WINDOW_S = 300


class SignatureError(Exception):
    """A signed request that does not verify; `status` is the HTTP answer (401 unsigned, 403 forged)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (epoch seconds, as text)."""
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """Both headers for `body`, timestamped now."""
    stamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body)}


def verify(
    secret: bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    window: int = REPLAY_WINDOW_S,
    what: str = "request",
) -> None:
    """Raise SignatureError unless `headers` sign `body` with `secret` within the replay window."""
    signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise SignatureError(401, f"{what} signature headers missing")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(401, f"{what} timestamp is not a number") from None
    if abs((time.time() if now is None else now) - sent) > window:
        raise SignatureError(401, f"{what} timestamp outside the {window} s replay window")
    if not hmac.compare_digest(signature.strip(), sign(secret, timestamp, body)):
        raise SignatureError(403, f"{what} signature does not verify")


__all__ = [
    "REPLAY_WINDOW_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "sign",
    "signed_headers",
    "verify",
]
